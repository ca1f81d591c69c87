// Authentication and authorisation at the gRPC edge.
//
// CorridorAuthProcessor runs for every call before any handler: it resolves
// the peer certificate with IdentityResolver, refuses unknown, revoked or
// mismatched identities, and stamps the Principal onto the call's AuthContext.
// Handlers then call Authorize(), which checks the method against the one
// access table (kMethodRules in auth.cc; docs/architecture.md). Deny by default:
// a method missing from the table is refused to everyone.
// Thread-safe.
#ifndef CORRIDOR_SERVER_AUTH_H_
#define CORRIDOR_SERVER_AUTH_H_

#include <functional>
#include <memory>

#include "absl/status/statusor.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/security/auth_metadata_processor.h"
#include "server/identity.h"

namespace corridor {

class CorridorAuthProcessor : public grpc::AuthMetadataProcessor {
 public:
  // Called (and waited for) for every refused identity, with the peer's
  // certificate PEM and the reason: the node records the refusal in its ledger.
  using RefusalRecorder = std::function<void(const std::string& cert_pem, const absl::Status& why)>;

  explicit CorridorAuthProcessor(std::shared_ptr<IdentityResolver> resolver,
                                 RefusalRecorder on_refused = nullptr)
      : resolver_(std::move(resolver)), on_refused_(std::move(on_refused)) {}

  // Refusals wait for a durable ledger write: run on gRPC's blocking pool.
  bool IsBlocking() const override { return true; }

  grpc::Status Process(const InputMetadata& auth_metadata, grpc::AuthContext* context,
                       OutputMetadata* consumed_auth_metadata,
                       OutputMetadata* response_metadata) override;

 private:
  std::shared_ptr<IdentityResolver> resolver_;
  RefusalRecorder on_refused_;
};

// The Principal stamped on the call by CorridorAuthProcessor.
// UNAUTHENTICATED if there is none (which the processor prevents).
absl::StatusOr<Principal> CallerOf(const grpc::AuthContext& context);

// Whether `principal` may call `method` ("/corridor.v1.NodeService/Whoami").
// PERMISSION_DENIED with a reason a person can act on.
absl::Status CheckAccess(const Principal& principal, absl::string_view method);

// CallerOf + CheckAccess for a server call; logs refusals.
absl::StatusOr<Principal> Authorize(const grpc::CallbackServerContext& context,
                                    absl::string_view method);

}  // namespace corridor

#endif  // CORRIDOR_SERVER_AUTH_H_
