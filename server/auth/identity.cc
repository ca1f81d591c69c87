#include "server/auth/identity.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "client/lib/pki.h"
#include "ledger/crypto/crypto.h"
#include "server/common/edge.h"

namespace corridor {
namespace {

// Whether `serial_hex` (NormalizeSerial form) is in `list`, however the list
// writes it (colons, case, leading zeros). Config and roster loading refuse
// entries that do not parse; one that still does not is compared as written.
bool SerialListed(const google::protobuf::RepeatedPtrField<std::string>& list,
                  const std::string& serial_hex) {
  for (const std::string& s : list) {
    auto normal = pki::NormalizeSerial(s);
    if ((normal.ok() ? *normal : absl::AsciiStrToLower(s)) == serial_hex) return true;
  }
  return false;
}

// At most this many claims, each at most this long, are named in a refusal.
constexpr size_t kMaxClaimsNamed = 4;
constexpr size_t kMaxClaimLength = 160;

// The SAN URIs a refused certificate claims, for the refusal's message:
// quoted, escaped, each cut to kMaxClaimLength, at most kMaxClaimsNamed.
std::string NameClaims(const std::vector<std::string>& uris) {
  std::vector<std::string> named;
  for (size_t i = 0; i < uris.size() && i < kMaxClaimsNamed; ++i) {
    std::string shown = absl::CHexEscape(uris[i].substr(0, kMaxClaimLength));
    if (uris[i].size() > kMaxClaimLength) shown += "...";
    named.push_back(absl::StrCat("\"", shown, "\""));
  }
  if (uris.size() > kMaxClaimsNamed) {
    named.push_back(absl::StrCat("and ", uris.size() - kMaxClaimsNamed, " more"));
  }
  return absl::StrJoin(named, ", ");
}

}  // namespace

bool Principal::HasRole(v1::Role role) const {
  return std::find(roles.begin(), roles.end(), role) != roles.end();
}

absl::StatusOr<SpiffeId> ParseSpiffeUri(absl::string_view uri, absl::string_view federation) {
  const std::string prefix = absl::StrCat("spiffe://", federation, "/");
  if (!absl::StartsWith(uri, prefix)) {
    return absl::InvalidArgumentError(
        absl::StrCat("\"", uri, "\" is not an identity in federation \"", federation, "\""));
  }
  std::vector<std::string> parts = absl::StrSplit(uri.substr(prefix.size()), '/');
  SpiffeId id;
  if (parts.size() == 2 && parts[1] == "node" && !parts[0].empty()) {
    id.org = parts[0];
    id.kind = PrincipalKind::kNode;
    return id;
  }
  if (parts.size() == 3 && parts[1] == "user" && !parts[0].empty() && !parts[2].empty()) {
    id.org = parts[0];
    id.kind = PrincipalKind::kUser;
    id.user = parts[2];
    return id;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "\"", uri, "\" is neither spiffe://<federation>/<org>/node nor .../<org>/user/<name>"));
}

IdentityResolver::IdentityResolver(v1::NodeConfig config, std::shared_ptr<const v1::Roster> roster,
                                   const Clock* clock)
    : config_(std::move(config)), clock_(clock), roster_(std::move(roster)) {
  SetLocalAccess(config_);
}

void IdentityResolver::SetRoster(std::shared_ptr<const v1::Roster> roster) {
  {
    absl::MutexLock lock(&mu_);
    roster_ = std::move(roster);
  }
  DropCache();
}

void IdentityResolver::SetLocalAccess(const v1::NodeConfig& config) {
  auto access = std::make_shared<v1::NodeConfig>();
  *access->mutable_users() = config.users();
  *access->mutable_tls()->mutable_revoked_serials() = config.tls().revoked_serials();
  {
    absl::MutexLock lock(&mu_);
    local_access_ = std::move(access);
  }
  DropCache();
}

void IdentityResolver::DropCache() {
  absl::MutexLock lock(&cache_mu_);
  ++generation_;
  cache_.clear();
  issuers_.clear();
}

std::shared_ptr<const v1::NodeConfig> IdentityResolver::local_access() const {
  absl::MutexLock lock(&mu_);
  return local_access_;
}

std::string IdentityResolver::IssuingMember(absl::string_view cert_pem, absl::Time now) const {
  const std::string key = DigestBytes(Sha256(cert_pem));
  uint64_t generation;
  {
    absl::MutexLock lock(&cache_mu_);
    if (auto it = issuers_.find(key); it != issuers_.end()) return it->second;
    generation = generation_;
  }
  std::string issuer;
  // Held for the loop: a range over roster()->members() would outlive the
  // temporary owner, and a roster change meanwhile would free what it reads.
  const std::shared_ptr<const v1::Roster> in_force = roster();
  for (const v1::Member& m : in_force->members()) {
    if (!m.ca_cert_pem().empty() && pki::VerifyIssuedBy(cert_pem, m.ca_cert_pem(), now).ok()) {
      issuer = m.org();
      break;
    }
  }
  absl::MutexLock lock(&cache_mu_);
  if (generation == generation_) {
    if (issuers_.size() >= kMaxCached) issuers_.clear();
    issuers_[key] = issuer;
  }
  return issuer;
}

uint64_t IdentityResolver::resolutions() const {
  absl::MutexLock lock(&cache_mu_);
  return resolutions_;
}

absl::StatusOr<std::shared_ptr<const Principal>> IdentityResolver::ResolveCached(
    absl::string_view cert_pem, absl::Time now) const {
  const std::string key = DigestBytes(Sha256(cert_pem));
  uint64_t generation;
  {
    absl::MutexLock lock(&cache_mu_);
    auto it = cache_.find(key);
    if (it != cache_.end() && now < it->second.recheck_at) return it->second.result;
    generation = generation_;
    ++resolutions_;
  }
  // Resolve outside the lock: it parses and verifies the certificate.
  Cached fresh;
  auto principal = Resolve(cert_pem, now);
  if (principal.ok()) {
    fresh.recheck_at = std::min(principal->cert_not_after, now + kRecheckAllowed);
    fresh.result = std::make_shared<const Principal>(*std::move(principal));
  } else {
    fresh.recheck_at = now + kRecheckRefused;
    fresh.result = principal.status();
  }
  absl::MutexLock lock(&cache_mu_);
  // A roster change while resolving: answer this call, but do not keep it.
  if (generation == generation_) {
    if (cache_.size() >= kMaxCached) cache_.clear();
    cache_[key] = fresh;
  }
  return fresh.result;
}

std::shared_ptr<const v1::Roster> IdentityResolver::roster() const {
  absl::MutexLock lock(&mu_);
  return roster_;
}

std::vector<std::string> IdentityResolver::Purposes() const {
  std::vector<std::string> codes(config_.purposes().begin(), config_.purposes().end());
  if (codes.empty()) {
    for (absl::string_view p : kDefaultLocalPurposes) codes.emplace_back(p);
  }
  const std::shared_ptr<const v1::Roster> roster = this->roster();
  for (const v1::Agreement& a : roster->agreements()) {
    if (std::find(a.parties().begin(), a.parties().end(), config_.org()) == a.parties().end()) {
      continue;
    }
    for (const std::string& p : a.purposes()) {
      if (std::find(codes.begin(), codes.end(), p) == codes.end()) codes.push_back(p);
    }
  }
  return codes;
}

namespace {

// The one spiffe:// identity of this federation that `info` claims
// (unverified); UNAUTHENTICATED if it claims none or several.
absl::StatusOr<SpiffeId> ClaimedIdentity(const pki::CertificateInfo& info,
                                         const std::string& federation) {
  std::vector<std::string> ours;
  for (const std::string& uri : info.uris) {
    if (absl::StartsWith(uri, "spiffe://")) ours.push_back(uri);
  }
  if (ours.empty()) {
    return absl::UnauthenticatedError(
        "the certificate carries no spiffe:// identity; it must carry exactly one");
  }
  if (ours.size() > 1) {
    // Ambiguous: which one would it be? None; every claim is named, unverified.
    return absl::UnauthenticatedError(absl::StrCat(
        "the certificate is ambiguous: it carries ", ours.size(),
        " spiffe:// identities and must carry exactly one (unverified claims: ", NameClaims(ours),
        ")"));
  }
  auto id = ParseSpiffeUri(ours[0], federation);
  if (!id.ok()) return absl::UnauthenticatedError(id.status().message());
  return id;
}

}  // namespace

absl::StatusOr<Principal> IdentityResolver::Resolve(absl::string_view cert_pem,
                                                    absl::Time now) const {
  if (cert_pem.empty()) return absl::UnauthenticatedError("no client certificate was presented");
  auto info = pki::InspectCertificate(cert_pem);
  if (!info.ok()) return absl::UnauthenticatedError("the client certificate cannot be read");
  auto id = ClaimedIdentity(*info, config_.federation());
  if (!id.ok()) return id.status();

  const std::shared_ptr<const v1::Roster> roster = this->roster();
  const v1::Member* member = nullptr;
  for (const v1::Member& m : roster->members()) {
    if (m.org() == id->org) member = &m;
  }
  if (member == nullptr) {
    return absl::PermissionDeniedError(absl::StrCat(
        "org \"", id->org, "\" is not in the roster in force (version ", roster->version(), ")"));
  }

  Principal p;
  p.org = id->org;
  p.kind = id->kind;
  p.serial_hex = info->serial_hex;
  p.cert_not_after = info->not_after;
  if (SerialListed(member->revoked_serials(), p.serial_hex) ||
      SerialListed(local_access()->tls().revoked_serials(), p.serial_hex)) {
    return absl::PermissionDeniedError(
        absl::StrCat("certificate ", p.serial_hex, " of org \"", p.org, "\" has been revoked"));
  }
  if (id->kind == PrincipalKind::kUser) return ResolveUser(cert_pem, *member, *id, now, p);
  // The TLS layer accepted any member's CA; here the issuer must be the claimed org's.
  if (auto st = pki::VerifyIssuedBy(cert_pem, member->ca_cert_pem(), now, pki::Purpose::kTlsClient);
      !st.ok()) {
    return absl::PermissionDeniedError(absl::StrCat("certificate claims to be a node of \"", p.org,
                                                    "\" but was not issued by that org's CA (",
                                                    st.message(), ")"));
  }
  p.subject = "node";
  return p;
}

absl::StatusOr<Principal> IdentityResolver::ResolveUser(absl::string_view cert_pem,
                                                        const v1::Member& member,
                                                        const SpiffeId& id, absl::Time now,
                                                        Principal p) const {
  if (id.org != config_.org()) {
    return absl::PermissionDeniedError(
        absl::StrCat("user \"", id.user, "\" of org \"", id.org,
                     "\" must use their own org's node; this node serves \"", config_.org(), "\""));
  }
  if (auto st = pki::VerifyIssuedBy(cert_pem, member.ca_cert_pem(), now, pki::Purpose::kTlsClient);
      !st.ok()) {
    return absl::PermissionDeniedError(absl::StrCat(
        "user certificate was not issued by the CA of \"", p.org, "\" (", st.message(), ")"));
  }
  const std::shared_ptr<const v1::NodeConfig> access = local_access();
  auto it = access->users().find(id.user);
  if (it == access->users().end()) {
    return absl::PermissionDeniedError(absl::StrCat(
        "user \"", id.user,
        "\" is not listed in this node's configuration; ask the node's admin to add them"));
  }
  if (it->second.suspended()) {
    return absl::PermissionDeniedError(absl::StrCat("user \"", id.user, "\" is suspended"));
  }
  p.subject = absl::StrCat("user/", id.user);
  for (int r : it->second.roles()) p.roles.push_back(static_cast<v1::Role>(r));
  return p;
}

}  // namespace corridor
