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
// table (MethodRules() in access_table.h; docs/access-control.md). Deny by default: a
// method missing from the table is refused to everyone.
// Thread-safe.
#ifndef CORRIDOR_SERVER_AUTH_AUTH_H_
#define CORRIDOR_SERVER_AUTH_AUTH_H_

#include <functional>
#include <memory>

#include "absl/status/statusor.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/security/auth_metadata_processor.h"
#include "server/auth/identity.h"
#include "server/auth/refusal_sink.h"
#include "server/auth/rpc.h"
#include "server/common/rate_limit.h"
#include "server/common/request_metrics.h"

namespace corridor {

class CorridorAuthProcessor : public grpc::AuthMetadataProcessor {
 public:
  // Every refusal is queued to `log` (may be null in tests): refused
  // identities as `auth.refused`, and calls to methods outside the Corridor
  // services (health, reflection, anything unknown) that the access table
  // does not open to the caller as `auth.denied`. The Corridor services check
  // and record their own methods, with the call's details.
  // Calls of verified users take a token from `users`, of peer nodes from
  // `peers` (either may be null: no limit); without one the call is refused
  // with RESOURCE_EXHAUSTED and recorded as `auth.rate_limited`.
  // Each call refused here is counted in `metrics` (may be null; not owned):
  // no handler runs for it, so the servers' interceptor never sees it.
  CorridorAuthProcessor(std::shared_ptr<IdentityResolver> resolver, RefusalSink* log,
                        std::string federation, std::shared_ptr<CallLimiter> users = nullptr,
                        std::shared_ptr<CallLimiter> peers = nullptr,
                        RequestMetrics* metrics = nullptr)
      : resolver_(std::move(resolver)),
        log_(log),
        federation_(std::move(federation)),
        user_limiter_(std::move(users)),
        peer_limiter_(std::move(peers)),
        metrics_(metrics) {}

  // A cache lookup, or one certificate check per connection: cheap enough to
  // run inline on gRPC's transport thread, without a hop to its blocking pool.
  bool IsBlocking() const override { return false; }

  grpc::Status Process(const InputMetadata& auth_metadata, grpc::AuthContext* context,
                       OutputMetadata* consumed_auth_metadata,
                       OutputMetadata* response_metadata) override;

 private:
  // Process() for the call of `method`, before it is counted.
  grpc::Status Check(const std::string& method, grpc::AuthContext* context);
  // `method` is the call's gRPC path, recorded as the resource tried when it is a
  // method the node serves (anything else is typed text: only its digest).
  void RecordRefusedIdentity(const std::string& cert_pem, const std::string& method,
                             const absl::Status& why) const;

  std::shared_ptr<IdentityResolver> resolver_;
  RefusalSink* log_;
  const std::string federation_;
  std::shared_ptr<CallLimiter> user_limiter_, peer_limiter_;
  RequestMetrics* metrics_;
};

// Queues (does not wait for) a ledger entry recording that `who` was denied
// `method` because of `why`. No-op if `log` is null.
void RecordDenied(RefusalSink* log, const Principal& who, absl::string_view method,
                  const absl::Status& why);

// The Principal of the call's peer certificate, from `identity`'s cache.
// UNAUTHENTICATED if the call carries no certificate, PERMISSION_DENIED if
// the identity is (now) refused — e.g. revoked since the connection opened.
absl::StatusOr<Principal> CallerOf(const IdentityResolver& identity,
                                   const grpc::AuthContext& context);

// Whether `principal` may call `method` ("/corridor.v1.NodeService/Whoami").
// PERMISSION_DENIED with a reason a person can act on.
absl::Status CheckAccess(const Principal& principal, absl::string_view method);

// CallerOf + CheckAccess of `rpc` (Rpc::Served in the handler: the method
// dispatched) for a server call; logs refusals and, given a log, records them
// in the ledger (queued, not waited for).
absl::StatusOr<Principal> Authorize(const IdentityResolver& identity,
                                    const grpc::CallbackServerContext& context, const Rpc& rpc,
                                    RefusalSink* log = nullptr);

}  // namespace corridor

#endif  // CORRIDOR_SERVER_AUTH_AUTH_H_
