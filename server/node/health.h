// The node's grpc.health.v1.Health service, answered from the node's actual
// state on every call (gRPC's built-in service only knows what it was last
// told): SERVING while the ledger accepts writes and the database can write,
// NOT_SERVING otherwise, with the reason in the trailing metadata key
// kHealthReasonKey (client/lib/grpc_util.h; corridorctl health prints it).
//
// Check answers for the whole node (service "") and for every
// "corridor.v1." service; NOT_FOUND for other names. Watch is not
// implemented (UNIMPLEMENTED): poll Check.
//
// Thread-safe if `check` is.
#ifndef CORRIDOR_SERVER_NODE_HEALTH_H_
#define CORRIDOR_SERVER_NODE_HEALTH_H_

#include <functional>

#include "absl/status/status.h"
#include "client/lib/grpc_util.h"
#include "grpc/health/v1/health.grpc.pb.h"

namespace corridor {

class HealthServiceImpl final : public grpc::health::v1::Health::CallbackService {
 public:
  // `check` returns OK while the node can serve, or the reason it cannot.
  explicit HealthServiceImpl(std::function<absl::Status()> check) : check_(std::move(check)) {}

  grpc::ServerUnaryReactor* Check(grpc::CallbackServerContext* ctx,
                                  const grpc::health::v1::HealthCheckRequest* req,
                                  grpc::health::v1::HealthCheckResponse* resp) override;

 private:
  const std::function<absl::Status()> check_;
};

}  // namespace corridor

#endif  // CORRIDOR_SERVER_NODE_HEALTH_H_
