// Who is calling: the one place that maps a call's peer certificate to a
// Principal (org, subject, roles).
//
// Rules (docs/architecture.md, "Identity"):
//  - The certificate must carry exactly one SAN URI of this federation:
//    spiffe://<federation>/<org>/node or spiffe://<federation>/<org>/user/<name>.
//  - The org must be a member of the roster in force.
//  - A node certificate must chain to *that org's* CA from the roster, so one
//    member's CA cannot speak for another member.
//  - A user must belong to this node's org, chain to this org's CA, and be listed
//    (not suspended) in the node config; roles come from the config.
//  - Serials revoked in the roster (for the org) or in tls.revoked_serials are refused.
// Failures: UNAUTHENTICATED when the certificate carries no usable Corridor
// identity, PERMISSION_DENIED when the identity is known to be not allowed.
//
// Thread-safe: the roster can be replaced while calls are resolved.
#ifndef CORRIDOR_SERVER_IDENTITY_H_
#define CORRIDOR_SERVER_IDENTITY_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "corridor/v1/config.pb.h"
#include "corridor/v1/roster.pb.h"

namespace corridor {

enum class PrincipalKind { kNode, kUser };

struct Principal {
  PrincipalKind kind = PrincipalKind::kUser;
  std::string org;
  std::string subject;          // "node" or "user/<name>"
  std::vector<v1::Role> roles;  // empty for nodes
  std::string serial_hex;

  bool HasRole(v1::Role role) const;
  // "org/subject", for logs and ledger entries.
  std::string Name() const { return org + "/" + subject; }
};

// A parsed SPIFFE URI of this federation.
struct SpiffeId {
  std::string org;
  PrincipalKind kind;
  std::string user;  // for kUser
};
// Parses spiffe://<federation>/<org>/node or .../<org>/user/<name>;
// InvalidArgument otherwise.
absl::StatusOr<SpiffeId> ParseSpiffeUri(absl::string_view uri, absl::string_view federation);

class IdentityResolver {
 public:
  IdentityResolver(v1::NodeConfig config, std::shared_ptr<const v1::Roster> roster);

  // Resolves a peer's leaf certificate (PEM) as of `now`.
  absl::StatusOr<Principal> Resolve(absl::string_view cert_pem, absl::Time now) const;

  // Replaces the roster in force (a newer, verified one).
  void SetRoster(std::shared_ptr<const v1::Roster> roster);
  std::shared_ptr<const v1::Roster> roster() const;

 private:
  const v1::NodeConfig config_;
  mutable absl::Mutex mu_;
  std::shared_ptr<const v1::Roster> roster_ ABSL_GUARDED_BY(mu_);
};

}  // namespace corridor

#endif  // CORRIDOR_SERVER_IDENTITY_H_
