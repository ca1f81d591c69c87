// Who is calling: the one place that maps a call's peer certificate to a
// Principal (org, subject, roles).
//
// Rules (docs/architecture.md, "Identity"):
//  - The certificate must carry exactly one SAN URI of this federation:
//    spiffe://<federation>/<org>/node or spiffe://<federation>/<org>/user/<name>.
//    Two or more are refused as ambiguous (UNAUTHENTICATED), the message naming
//    every claim, quoted, escaped and bounded, as unverified.
//  - The org must be a member of the roster in force.
//  - A node certificate must chain to *that org's* CA from the roster, so one
//    member's CA cannot speak for another member.
//  - A user must belong to this node's org, chain to this org's CA, and be listed
//    (not suspended) in the node config; roles come from the config.
//  - Serials revoked in the roster (for the org) or in tls.revoked_serials are refused,
//    compared in pki::NormalizeSerial form however the lists write them.
// Failures: UNAUTHENTICATED when the certificate carries no usable Corridor
// identity, PERMISSION_DENIED when the identity is known to be not allowed.
//
// Resolving a certificate parses and verifies it (tens of microseconds).
// ResolveCached does that once per certificate: gRPC calls on one connection
// all present the same certificate, and the result is kept in a bounded cache
// keyed by the certificate's SHA-256, dropped whenever the roster in force
// changes and re-checked periodically, so a revocation, suspension or role
// change takes effect on the next call of an already-open connection.
//
// Thread-safe: the roster can be replaced while calls are resolved.
#ifndef CORRIDOR_SERVER_AUTH_IDENTITY_H_
#define CORRIDOR_SERVER_AUTH_IDENTITY_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "corridor/v1/config.pb.h"
#include "corridor/v1/roster.pb.h"
#include "ledger/base/clock.h"

namespace corridor {

enum class PrincipalKind { kNode, kUser };

struct Principal {
  PrincipalKind kind = PrincipalKind::kUser;
  std::string org;
  std::string subject;          // "node" or "user/<name>"
  std::vector<v1::Role> roles;  // empty for nodes
  std::string serial_hex;
  // The certificate's notAfter: the principal is not valid after it.
  absl::Time cert_not_after = absl::InfiniteFuture();

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
  // `clock` (not owned; it must outlive the resolver) is the time calls are
  // resolved at (certificate validity, cache rechecks).
  IdentityResolver(v1::NodeConfig config, std::shared_ptr<const v1::Roster> roster,
                   const Clock* clock = &Clock::Real());

  // The node's clock, for resolving calls as of now.
  const Clock& clock() const { return *clock_; }

  // Resolves a peer's leaf certificate (PEM) as of `now`. No caching.
  absl::StatusOr<Principal> Resolve(absl::string_view cert_pem, absl::Time now) const;

  // Resolve() through the cache: the same answer (a principal or the
  // refusal), computed at most once per certificate per roster version and
  // recheck interval. The principal is immutable and shared.
  absl::StatusOr<std::shared_ptr<const Principal>> ResolveCached(absl::string_view cert_pem,
                                                                 absl::Time now) const;

  // Replaces the roster in force (a newer, verified one) and drops every
  // cached resolution, so the next call of every connection is re-checked.
  void SetRoster(std::shared_ptr<const v1::Roster> roster);
  std::shared_ptr<const v1::Roster> roster() const;
  // Replaces what the node config says about access — `users` (roles,
  // suspension) and `tls.revoked_serials`, the only parts of `config` read
  // here — and drops every cached resolution like SetRoster (SIGHUP).
  void SetLocalAccess(const v1::NodeConfig& config);
  // The node's purpose vocabulary, the only purpose codes callers may state:
  // the purposes of the roster's agreements this node's org is party to, and
  // the node's own (config `purposes`). Follows SetRoster.
  std::vector<std::string> Purposes() const;

  // The roster member whose CA issued `cert_pem`, checked by its signature, or
  // "" if none did: the one verified thing about a refused certificate (what it
  // claims is not). Refusal budgets are kept per issuer for refused
  // identities, so that a member cannot get a fresh budget for each name it
  // puts into a certificate. Cached like ResolveCached.
  std::string IssuingMember(absl::string_view cert_pem, absl::Time now) const;

  // How many full resolutions ResolveCached has done (for tests).
  uint64_t resolutions() const;

  // A cached principal is re-checked after this long even if nothing changed.
  static constexpr absl::Duration kRecheckAllowed = absl::Minutes(5);
  // A cached refusal is re-checked after this long.
  static constexpr absl::Duration kRecheckRefused = absl::Seconds(10);
  // At most this many certificates are cached; when full the cache starts over.
  static constexpr size_t kMaxCached = 4096;

 private:
  // Resolve() for a user `id` of roster member `member`: this node's org,
  // issued by its CA, listed in the config and not suspended; `p` so far.
  absl::StatusOr<Principal> ResolveUser(absl::string_view cert_pem, const v1::Member& member,
                                        const SpiffeId& id, absl::Time now, Principal p) const;

  struct Cached {
    absl::StatusOr<std::shared_ptr<const Principal>> result;
    absl::Time recheck_at;
  };

  // Drops every cached answer; a resolution in progress is not kept.
  void DropCache();
  std::shared_ptr<const v1::NodeConfig> local_access() const;

  const v1::NodeConfig config_;
  const Clock* const clock_;
  mutable absl::Mutex mu_;
  std::shared_ptr<const v1::Roster> roster_ ABSL_GUARDED_BY(mu_);
  // users and tls.revoked_serials, replaced by SetLocalAccess.
  std::shared_ptr<const v1::NodeConfig> local_access_ ABSL_GUARDED_BY(mu_);

  mutable absl::Mutex cache_mu_;
  // Bumped by SetRoster; a resolution started under an older generation is
  // not cached.
  mutable uint64_t generation_ ABSL_GUARDED_BY(cache_mu_) = 0;
  mutable uint64_t resolutions_ ABSL_GUARDED_BY(cache_mu_) = 0;
  mutable absl::flat_hash_map<std::string, Cached> cache_ ABSL_GUARDED_BY(cache_mu_);
  // IssuingMember's answers by certificate digest; cleared with cache_.
  mutable absl::flat_hash_map<std::string, std::string> issuers_ ABSL_GUARDED_BY(cache_mu_);
};

}  // namespace corridor

#endif  // CORRIDOR_SERVER_AUTH_IDENTITY_H_
