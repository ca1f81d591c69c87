// The node's server reflection (grpc.reflection.v1alpha.ServerReflection,
// proto/grpc/reflection/v1alpha/reflection.proto), for tools such as grpcurl:
// lists the services the node serves and answers file, symbol and extension
// requests from the descriptors compiled into the node.
//
// A callback service, so a held stream holds no thread, and bounded like the
// node's other streams (docs/threat-model.md, "Streams"):
// - at most kMaxStreams streams open at once; one more is refused
//   RESOURCE_EXHAUSTED, and the refusal is recorded;
// - a stream that moves nothing for limits.stream_idle_timeout_seconds is
//   cancelled (logged: it was granted nothing that the ledger records);
// - a request over kMaxRequestBytes is refused INVALID_ARGUMENT, recorded,
//   and ends the stream. A request the node cannot answer (an unknown symbol)
//   gets the protocol's own error response and the stream stays open.
// Callers are checked against the access table by the auth processor and
// again here (Authorize), as every other handler does.
//
// Thread-safe. The destructor waits until every stream has ended; the gRPC
// server must be shut down before.
#ifndef CORRIDOR_SERVER_NODE_REFLECTION_H_
#define CORRIDOR_SERVER_NODE_REFLECTION_H_

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "grpc/reflection/v1alpha/reflection.grpc.pb.h"
#include "ledger/base/clock.h"
#include "server/audit/access_log.h"
#include "server/auth/identity.h"
#include "server/common/rate_limit.h"

namespace corridor {

// The answer to one reflection request. `services` are the services the
// server registered (RecordServedServices, server/auth/access_table.h).
grpc::reflection::v1alpha::ServerReflectionResponse AnswerReflection(
    const grpc::reflection::v1alpha::ServerReflectionRequest& request,
    const std::vector<std::string>& services);

class ReflectionService final
    : public grpc::reflection::v1alpha::ServerReflection::CallbackService {
 public:
  static constexpr uint32_t kMaxStreams = 32;
  static constexpr size_t kMaxRequestBytes = 4096;

  // `services` is filled when the server is built, before it serves a call.
  ReflectionService(std::shared_ptr<const std::vector<std::string>> services,
                    const IdentityResolver* identity, AccessLog* log, absl::Duration idle_timeout,
                    const Clock* clock);
  ~ReflectionService() override;

  grpc::ServerBidiReactor<grpc::reflection::v1alpha::ServerReflectionRequest,
                          grpc::reflection::v1alpha::ServerReflectionResponse>*
  ServerReflectionInfo(grpc::CallbackServerContext* ctx) override;

 private:
  class Stream;

  const std::shared_ptr<const std::vector<std::string>> services_;
  const IdentityResolver* const identity_;
  AccessLog* const log_;
  TransferSlots slots_{kMaxStreams};
  StreamWatchdog watchdog_;
  std::atomic<int> live_{0};  // Stream reactors not yet deleted
};

}  // namespace corridor

#endif  // CORRIDOR_SERVER_NODE_REFLECTION_H_
