#include "client/lib/roster.h"

#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "client/lib/pki.h"
#include "client/lib/yaml_proto.h"
#include "google/protobuf/util/json_util.h"
#include "ledger/crypto/dsse.h"

namespace corridor {
namespace {

bool IsValidOrgId(absl::string_view id) {
  if (id.empty() || id.size() > 63) return false;
  for (char c : id) {
    if (!(absl::ascii_islower(c) || absl::ascii_isdigit(c) || c == '-')) return false;
  }
  return id.front() != '-' && id.back() != '-';
}

absl::Status ValidateTime(absl::string_view value, absl::string_view where) {
  if (value.empty()) return absl::OkStatus();
  absl::Time t;
  std::string err;
  if (!absl::ParseTime(absl::RFC3339_full, value, &t, &err)) {
    return absl::InvalidArgumentError(absl::StrCat(
        where, ": \"", value, "\" is not an RFC 3339 time (e.g. 2026-01-31T00:00:00Z)"));
  }
  return absl::OkStatus();
}

DsseEnvelope ToDsse(const v1::Envelope& env) {
  DsseEnvelope d{env.payload_type(), env.payload(), {}};
  for (const auto& s : env.signatures()) d.signatures.push_back({s.keyid(), s.sig()});
  return d;
}

}  // namespace

absl::StatusOr<v1::Envelope> ParseSignedRosterEnvelope(absl::string_view json) {
  v1::Envelope env;
  if (auto st = ParseJsonStrict(json, "signed roster", &env); !st.ok()) return st;
  if (env.payload_type() != kRosterPayloadType) {
    return absl::InvalidArgumentError(absl::StrCat("signed roster has payload type \"",
                                                   env.payload_type(), "\", expected \"",
                                                   kRosterPayloadType, "\""));
  }
  return env;
}

absl::Status ValidateRoster(const v1::Roster& roster) {
  if (roster.federation().empty()) return absl::InvalidArgumentError("roster: federation is empty");
  if (roster.version() == 0)
    return absl::InvalidArgumentError("roster: version must be at least 1");
  if (auto st = ValidateTime(roster.issued_at(), "roster.issued_at"); !st.ok()) return st;
  std::set<std::string> orgs;
  for (int i = 0; i < roster.members_size(); ++i) {
    const v1::Member& m = roster.members(i);
    const std::string where = absl::StrCat("roster.members[", i, "] (", m.org(), ")");
    if (!IsValidOrgId(m.org())) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": org id must be 1-63 characters of a-z, 0-9 and '-'"));
    }
    if (!orgs.insert(m.org()).second) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": org listed twice"));
    }
    if (m.endpoint().empty())
      return absl::InvalidArgumentError(absl::StrCat(where, ": endpoint is empty"));
    if (m.kind() == v1::ORG_KIND_UNSPECIFIED) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": kind is not set"));
    }
    if (auto info = pki::InspectCertificate(m.ca_cert_pem()); !info.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": ca_cert_pem is not a certificate: ", info.status().message()));
    }
    for (int j = 0; j < m.revoked_serials_size(); ++j) {
      if (auto normal = pki::NormalizeSerial(m.revoked_serials(j)); !normal.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat(where, ".revoked_serials[", j, "]: ", normal.status().message()));
      }
    }
    std::set<std::string> key_ids;
    for (const v1::SigningKey& k : m.signing_keys()) {
      const std::string kwhere = absl::StrCat(where, ".signing_keys[", k.key_id(), "]");
      if (k.key_id().empty())
        return absl::InvalidArgumentError(absl::StrCat(where, ": a signing key has no key_id"));
      if (!key_ids.insert(k.key_id()).second) {
        return absl::InvalidArgumentError(absl::StrCat(kwhere, ": key id listed twice"));
      }
      auto raw = Base64Decode(k.public_key());
      if (!raw.ok() || !Ed25519PublicKey::FromRaw(*raw).ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat(kwhere, ": public_key must be a base64 32-byte Ed25519 key"));
      }
      if (k.status() == v1::KEY_STATUS_UNSPECIFIED) {
        return absl::InvalidArgumentError(absl::StrCat(kwhere, ": status is not set"));
      }
      if (auto st = ValidateTime(k.valid_from(), kwhere + ".valid_from"); !st.ok()) return st;
      if (auto st = ValidateTime(k.valid_until(), kwhere + ".valid_until"); !st.ok()) return st;
      // A retired key is kept only so that envelopes already signed with it still verify:
      // without an end it would stay usable for ever.
      if (k.status() == v1::KEY_STATUS_RETIRED && k.valid_until().empty()) {
        return absl::InvalidArgumentError(absl::StrCat(
            kwhere,
            ": a retired key needs valid_until, the time after which nothing it signed is "
            "accepted (e.g. its retirement plus the envelope lifetime, 7 days)"));
      }
    }
  }
  std::set<std::string> agreements;
  for (const v1::Agreement& a : roster.agreements()) {
    const std::string where = absl::StrCat("roster.agreements[", a.id(), "]");
    if (a.id().empty()) return absl::InvalidArgumentError("roster: an agreement has no id");
    if (!agreements.insert(a.id()).second) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": agreement listed twice"));
    }
    if (a.parties_size() < 2) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": needs at least two parties"));
    }
    for (const std::string& p : a.parties()) {
      if (!orgs.count(p)) {
        return absl::InvalidArgumentError(
            absl::StrCat(where, ": party \"", p, "\" is not a member"));
      }
    }
    if (a.purposes_size() == 0) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": lists no purposes"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<VerifiedRoster> VerifySignedRoster(absl::string_view envelope_json,
                                                  const std::vector<StewardPublicKey>& stewards,
                                                  uint32_t threshold,
                                                  absl::string_view expected_federation) {
  auto env = ParseSignedRosterEnvelope(envelope_json);
  if (!env.ok()) return env.status();
  if (threshold == 0) return absl::FailedPreconditionError("steward threshold must be at least 1");
  // Verify before parsing the payload: count distinct stewards whose signature holds.
  const DsseEnvelope dsse = ToDsse(*env);
  VerifiedRoster out;
  for (const StewardPublicKey& s : stewards) {
    if (DsseVerifiedBy(dsse, s.name, s.key)) out.signed_by.push_back(s.name);
  }
  if (out.signed_by.size() < threshold) {
    return absl::PermissionDeniedError(absl::StrCat(
        "roster has ", out.signed_by.size(), " valid steward signature(s)",
        out.signed_by.empty() ? "" : absl::StrCat(" (", absl::StrJoin(out.signed_by, ", "), ")"),
        "; this node requires ", threshold, " of the ", stewards.size(),
        " configured steward keys"));
  }
  if (auto st = ParseProtoStrict(env->payload(), "roster payload", &out.roster); !st.ok())
    return st;
  if (out.roster.federation() != expected_federation) {
    return absl::InvalidArgumentError(
        absl::StrCat("roster is for federation \"", out.roster.federation(),
                     "\", this node is in \"", expected_federation, "\""));
  }
  if (auto st = ValidateRoster(out.roster); !st.ok()) return st;
  out.payload = env->payload();
  out.digest_hex = HexEncode(DigestBytes(Sha256(out.payload)));
  return out;
}

absl::StatusOr<std::vector<note::Verifier>> LedgerVerifiersFromRoster(const v1::Roster& roster,
                                                                      absl::string_view org) {
  std::vector<note::Verifier> active, retired;
  for (const v1::Member& m : roster.members()) {
    if (m.org() != org) continue;
    for (const v1::SigningKey& k : m.signing_keys()) {
      if (k.status() != v1::KEY_STATUS_ACTIVE && k.status() != v1::KEY_STATUS_RETIRED) continue;
      auto raw = Base64Decode(k.public_key());
      if (!raw.ok()) continue;
      auto key = Ed25519PublicKey::FromRaw(*raw);
      if (!key.ok()) continue;
      (k.status() == v1::KEY_STATUS_ACTIVE ? active : retired)
          .push_back(note::Verifier{absl::StrCat(roster.federation(), "/", org), 0x01, *key});
    }
    active.insert(active.end(), retired.begin(), retired.end());
    if (active.empty()) {
      return absl::NotFoundError(absl::StrCat("the roster lists no usable signing key for ", org));
    }
    return active;
  }
  return absl::NotFoundError(absl::StrCat("org ", org, " is not in the roster"));
}

}  // namespace corridor
