// Load against real nodes, for tests and benchmarks: mutual-TLS channels that
// each own their connection, a driver that keeps N calls in flight through
// gRPC's callback API for a while, and a tally of outcomes per method and
// status code.
//
// A call is started by a CallStarter, which must not block and must make sure
// its `done` runs exactly once, from any thread (StartUnaryCall does that for
// unary methods). Thread-safety is stated per class.
#ifndef CORRIDOR_TESTS_TESTING_LOAD_H_
#define CORRIDOR_TESTS_TESTING_LOAD_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/lib/grpc_util.h"
#include "grpcpp/grpcpp.h"

namespace corridor::testing {

// A mutual-TLS channel to `target` with a TCP connection of its own: gRPC
// otherwise shares one connection between channels whose arguments are equal,
// and "several channels" would then be one connection.
std::shared_ptr<grpc::Channel> MakeDedicatedChannel(const TlsIdentity& identity,
                                                    const std::string& target);

// "OK", "PERMISSION_DENIED", ... as gRPC spells the codes.
std::string StatusCodeName(grpc::StatusCode code);

// Outcomes per method and status code. Thread-safe.
class OutcomeTally {
 public:
  using Counts = std::map<std::string, std::map<grpc::StatusCode, uint64_t>>;

  void Add(absl::string_view method, grpc::StatusCode code);
  uint64_t Count(absl::string_view method, grpc::StatusCode code) const;
  // Every call of `method`, whatever its outcome.
  uint64_t Total(absl::string_view method) const;
  // Every call.
  uint64_t Total() const;
  Counts Snapshot() const;
  // One line per method: "GetCase: OK 120, ABORTED 3".
  std::string ToString() const;

 private:
  mutable absl::Mutex mu_;
  Counts counts_ ABSL_GUARDED_BY(mu_);
};

// Called exactly once when a started call has finished.
using CallDone = std::function<void(const grpc::Status&)>;
// Starts call number `n` (0, 1, ... within one run) without blocking.
using CallStarter = std::function<void(uint64_t n, CallDone done)>;

struct LoadOptions {
  // Calls kept in flight at once. Must be at least 1.
  int in_flight = 32;
  // New calls are started for this long; the calls then in flight finish.
  absl::Duration duration = absl::Seconds(2);
  // No more calls than this are started (0: no limit).
  uint64_t max_calls = 0;
};

struct LoadResult {
  uint64_t calls = 0;  // started, and all of them finished
  absl::Duration elapsed;
};

// Keeps `options.in_flight` calls from `start` in flight until
// `options.duration` has passed or `options.max_calls` were started, then
// waits until every started call has finished (so every call must have a
// deadline). Calls are started from the calling thread, one at a time, so
// `start` need not be thread-safe; `done` may run on any thread. Blocks.
LoadResult RunLoad(const LoadOptions& options, const CallStarter& start);

// Picks a starter by weight, deterministically from the call number:
// weights {3, 1} start the first starter for n % 4 in {0, 1, 2} and the
// second for n % 4 == 3. Weights must be positive.
CallStarter WeightedMix(std::vector<std::pair<int, CallStarter>> starters);

// Starts one unary call through the callback API with a deadline `timeout`
// from now; `done` gets the status and the response when it finishes.
// `method` is e.g.
//   [stub](grpc::ClientContext* c, const Req* q, Resp* r, std::function<void(grpc::Status)> cb) {
//     stub->async()->GetCase(c, q, r, std::move(cb));
//   }
template <typename Request, typename Response, typename AsyncMethod>
void StartUnaryCall(const AsyncMethod& method, Request request, absl::Duration timeout,
                    std::function<void(const grpc::Status&, const Response&)> done) {
  struct Call {
    grpc::ClientContext context;
    Request request;
    Response response;
    std::function<void(const grpc::Status&, const Response&)> done;
  };
  auto* call = new Call;
  call->request = std::move(request);
  call->done = std::move(done);
  call->context.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  method(&call->context, &call->request, &call->response, [call](grpc::Status status) {
    call->done(status, call->response);
    delete call;
  });
}

}  // namespace corridor::testing

#endif  // CORRIDOR_TESTS_TESTING_LOAD_H_
