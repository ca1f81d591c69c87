// The node's gRPC calls as metrics: corridor_grpc_requests_total by service,
// method and status code, and corridor_grpc_request_duration_seconds per
// method (docs/operations.md, "Monitor"). A server interceptor counts every
// call a handler answered; the auth processor counts the calls it refused
// before any handler ran (RecordRefused), so each call is counted exactly once.
// The label values are the methods the node serves (fixed at construction);
// any other path is counted as service="other", method="other", so callers
// cannot grow the label set. The counting path takes no lock. Thread-safe.
#ifndef CORRIDOR_SERVER_COMMON_REQUEST_METRICS_H_
#define CORRIDOR_SERVER_COMMON_REQUEST_METRICS_H_

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/support/server_interceptor.h"
#include "server/common/metrics.h"

namespace corridor {

class RequestMetrics {
 public:
  // `methods`: every gRPC path the node serves ("/corridor.v1.CaseService/GetCase").
  RequestMetrics(metrics::Registry* registry, const std::vector<std::string>& methods);

  // A call of `path` that ended with `code` after `seconds`.
  void Record(absl::string_view path, grpc::StatusCode code, double seconds);
  // A call of `path` refused with `code` before it reached a handler: counted,
  // with no duration (none was spent serving it).
  void RecordRefused(absl::string_view path, grpc::StatusCode code);

  // For ServerBuilder::experimental().SetInterceptorCreators: one interceptor
  // per call, recording it when its status is sent. `this` must outlive the server.
  std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> InterceptorFactory();

  // "OK", "PERMISSION_DENIED", ... (gRPC's names); "UNKNOWN" for a code out of range.
  static const char* CodeName(grpc::StatusCode code);

 private:
  static constexpr int kCodes = 17;  // OK .. UNAUTHENTICATED
  struct Method {
    metrics::Counter* calls[kCodes];
    metrics::Histogram* duration;
  };
  Method& Find(absl::string_view path);

  std::map<std::string, Method, std::less<>> methods_;  // fixed after construction
  Method other_;
};

}  // namespace corridor

#endif  // CORRIDOR_SERVER_COMMON_REQUEST_METRICS_H_
