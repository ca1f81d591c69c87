// Authentication and authorisation at the gRPC edge.
//
// CorridorAuthProcessor runs for every call before any handler, health and
// reflection included: it resolves the peer certificate through the
// IdentityResolver's cache (a full check once per certificate and roster
// version) and refuses unknown, revoked or mismatched identities. It never
// writes to the AuthContext: that object belongs to the whole connection and
// every call on it reads it concurrently (grpc/grpc#28809).
// Handlers then call Authorize() / CallerOf(), which get the same immutable
// Principal from the same cache and check the method against the one access
// table (MethodRules in auth.cc; docs/access-control.md). Deny by default: a
// method missing from the table is refused to everyone.
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
  // Called for every refused identity, with the peer's certificate PEM and the
  // reason: the node records the refusal in its ledger. It runs on a gRPC
  // transport thread and must not block (queue the ledger write, do not wait).
  using RefusalRecorder = std::function<void(const std::string& cert_pem, const absl::Status& why)>;

  explicit CorridorAuthProcessor(std::shared_ptr<IdentityResolver> resolver,
                                 RefusalRecorder on_refused = nullptr)
      : resolver_(std::move(resolver)), on_refused_(std::move(on_refused)) {}

  // A cache lookup, or one certificate check per connection: cheap enough to
  // run inline on gRPC's transport thread, without a hop to its blocking pool.
  bool IsBlocking() const override { return false; }

  grpc::Status Process(const InputMetadata& auth_metadata, grpc::AuthContext* context,
                       OutputMetadata* consumed_auth_metadata,
                       OutputMetadata* response_metadata) override;

 private:
  std::shared_ptr<IdentityResolver> resolver_;
  RefusalRecorder on_refused_;
};

// The Principal of the call's peer certificate, from `identity`'s cache.
// UNAUTHENTICATED if the call carries no certificate, PERMISSION_DENIED if
// the identity is (now) refused — e.g. revoked since the connection opened.
absl::StatusOr<Principal> CallerOf(const IdentityResolver& identity,
                                   const grpc::AuthContext& context);

// Whether `principal` may call `method` ("/corridor.v1.NodeService/Whoami").
// PERMISSION_DENIED with a reason a person can act on.
absl::Status CheckAccess(const Principal& principal, absl::string_view method);

// CallerOf + CheckAccess for a server call; logs refusals.
absl::StatusOr<Principal> Authorize(const IdentityResolver& identity,
                                    const grpc::CallbackServerContext& context,
                                    absl::string_view method);

}  // namespace corridor

#endif  // CORRIDOR_SERVER_AUTH_H_
