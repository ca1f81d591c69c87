#include "client/ctl/roster_edit.h"

#include <algorithm>
#include <map>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "client/ctl/args.h"
#include "client/ctl/roster_signing.h"
#include "client/lib/pki.h"
#include "client/lib/yaml_proto.h"
#include "corridor/v1/config.pb.h"
#include "ledger/crypto/crypto.h"

namespace corridor::roster_edit {
namespace {

std::string Rfc3339(absl::Time t) {
  return absl::FormatTime(absl::RFC3339_sec, t, absl::UTCTimeZone());
}

std::string StatusWord(v1::KeyStatus s) {
  return absl::AsciiStrToLower(absl::StripPrefix(v1::KeyStatus_Name(s), "KEY_STATUS_"));
}

std::string KindWord(v1::OrgKind k) {
  return absl::AsciiStrToLower(absl::StripPrefix(v1::OrgKind_Name(k), "ORG_KIND_"));
}

v1::Member* FindMember(v1::Roster& roster, absl::string_view org) {
  for (v1::Member& m : *roster.mutable_members()) {
    if (m.org() == org) return &m;
  }
  return nullptr;
}

absl::StatusOr<v1::Member*> MemberOrError(v1::Roster& roster, absl::string_view org) {
  if (v1::Member* m = FindMember(roster, org)) return m;
  std::vector<std::string> orgs;
  for (const v1::Member& m : roster.members()) orgs.push_back(m.org());
  return absl::NotFoundError(absl::StrCat("org \"", org, "\" is not in this roster (its members: ",
                                          orgs.empty() ? "none" : absl::StrJoin(orgs, ", "), ")"));
}

absl::StatusOr<v1::SigningKey*> KeyOrError(v1::Member& m, absl::string_view key_id) {
  std::vector<std::string> ids;
  for (v1::SigningKey& k : *m.mutable_signing_keys()) {
    if (k.key_id() == key_id) return &k;
    ids.push_back(k.key_id());
  }
  return absl::NotFoundError(absl::StrCat("org ", m.org(), " has no signing key \"", key_id,
                                          "\" (its keys: ", absl::StrJoin(ids, ", "), ")"));
}

// Refuses to take away `key`, the member's last active key: its node could
// sign nothing peers accept.
absl::Status CheckNotLastActive(const v1::Member& m, const v1::SigningKey& key,
                                absl::string_view verb) {
  if (key.status() != v1::KEY_STATUS_ACTIVE) return absl::OkStatus();
  for (const v1::SigningKey& k : m.signing_keys()) {
    if (&k != &key && k.status() == v1::KEY_STATUS_ACTIVE) return absl::OkStatus();
  }
  return absl::FailedPreconditionError(absl::StrCat(
      "key ", key.key_id(), " is the last active signing key of ", m.org(), "; before you ", verb,
      " it, add its replacement: `corridorctl pki signing-key --org ", m.org(),
      " --out DIR` and `corridorctl roster add-key --roster FILE --org ", m.org(),
      " --key-dir DIR`, and set the node's signing_key to the new key"));
}

// Who else holds `public_key` (base64), or "".
std::string PublicKeyHolder(const v1::Roster& roster, absl::string_view public_key) {
  for (const v1::Member& m : roster.members()) {
    for (const v1::SigningKey& k : m.signing_keys()) {
      if (k.public_key() == public_key) return absl::StrCat(m.org(), "'s key ", k.key_id());
    }
  }
  return "";
}

bool ValidEndpoint(absl::string_view endpoint) {
  const size_t colon = endpoint.rfind(':');
  if (colon == absl::string_view::npos || colon == 0) return false;
  int port = 0;
  return absl::SimpleAtoi(endpoint.substr(colon + 1), &port) && port > 0 && port < 65536;
}

template <typename T>
std::map<std::string, const T*> ById(const google::protobuf::RepeatedPtrField<T>& items,
                                     const std::string& (T::*id)() const) {
  std::map<std::string, const T*> out;
  for (const T& item : items) out[(item.*id)()] = &item;
  return out;
}

std::string Quoted(absl::string_view s) { return absl::StrCat("\"", s, "\""); }

std::string DescribeKey(const v1::SigningKey& k) {
  std::string s = absl::StrCat("signing key ", k.key_id(), " (", StatusWord(k.status()));
  if (!k.valid_until().empty()) absl::StrAppend(&s, ", valid until ", k.valid_until());
  return s + ")";
}

std::string CaSummary(const std::string& pem) {
  auto info = pki::InspectCertificate(pem);
  if (!info.ok()) return "an unreadable certificate";
  return absl::StrCat(info->subject, ", serial ", info->serial_hex);
}

void DescribeKeyChanges(const v1::Member& a, const v1::Member& b, std::vector<std::string>& out) {
  const std::string& org = b.org();
  auto before = ById(a.signing_keys(), &v1::SigningKey::key_id);
  auto after = ById(b.signing_keys(), &v1::SigningKey::key_id);
  for (const auto& [id, k] : after) {
    auto it = before.find(id);
    if (it == before.end()) {
      out.push_back(absl::StrCat(org, ": ", DescribeKey(*k), " added"));
      continue;
    }
    const v1::SigningKey& old = *it->second;
    if (old.public_key() != k->public_key()) {
      out.push_back(absl::StrCat(org, ": signing key ", id,
                                 " now has a different public key (a new key under an old id)"));
    }
    if (old.status() != k->status()) {
      out.push_back(absl::StrCat(
          org, ": signing key ", id, " ", StatusWord(old.status()), " → ", StatusWord(k->status()),
          k->status() == v1::KEY_STATUS_REVOKED ? " (nothing it signed is accepted any more)"
          : k->valid_until().empty()            ? ""
                                     : absl::StrCat(" (valid until ", k->valid_until(), ")")));
    } else if (old.valid_until() != k->valid_until() || old.valid_from() != k->valid_from()) {
      out.push_back(absl::StrCat(org, ": signing key ", id, " validity ",
                                 old.valid_from().empty() ? "…" : old.valid_from(), " to ",
                                 old.valid_until().empty() ? "…" : old.valid_until(), " → ",
                                 k->valid_from().empty() ? "…" : k->valid_from(), " to ",
                                 k->valid_until().empty() ? "…" : k->valid_until()));
    }
  }
  for (const auto& [id, k] : before) {
    if (!after.count(id)) {
      out.push_back(absl::StrCat(
          org, ": ", DescribeKey(*k),
          " removed from the roster (nothing it signed verifies any more, checkpoints included)"));
    }
  }
}

void DescribeMemberChanges(const v1::Member& a, const v1::Member& b,
                           std::vector<std::string>& out) {
  const std::string& org = b.org();
  if (a.name() != b.name())
    out.push_back(absl::StrCat(org, ": name ", Quoted(a.name()), " → ", Quoted(b.name())));
  if (a.country() != b.country())
    out.push_back(absl::StrCat(org, ": country ", a.country(), " → ", b.country()));
  if (a.kind() != b.kind())
    out.push_back(absl::StrCat(org, ": kind ", KindWord(a.kind()), " → ", KindWord(b.kind())));
  if (a.endpoint() != b.endpoint())
    out.push_back(absl::StrCat(org, ": endpoint ", a.endpoint(), " → ", b.endpoint(),
                               " (peers will call the new address)"));
  if (!pki::SameCertificate(a.ca_cert_pem(), b.ca_cert_pem())) {
    out.push_back(absl::StrCat(org, ": CA certificate replaced (", CaSummary(a.ca_cert_pem()),
                               " → ", CaSummary(b.ca_cert_pem()),
                               "); certificates from the old CA are no longer accepted"));
  }
  DescribeKeyChanges(a, b, out);
  auto normal = [](const v1::Member& m) {
    std::set<std::string> s;
    for (const std::string& x : m.revoked_serials()) s.insert(pki::NormalizeSerial(x).value_or(x));
    return s;
  };
  const std::set<std::string> rb = normal(a), ra = normal(b);
  for (const std::string& s : ra) {
    if (!rb.count(s)) out.push_back(absl::StrCat(org, ": certificate serial ", s, " revoked"));
  }
  for (const std::string& s : rb) {
    if (!ra.count(s))
      out.push_back(absl::StrCat(org, ": revocation of certificate serial ", s,
                                 " withdrawn (the certificate is accepted again)"));
  }
}

std::string DescribeAgreement(const v1::Agreement& a) {
  const std::string requesters = EvidenceRequesters(a);
  return absl::StrCat(a.id(), a.title().empty() ? "" : absl::StrCat(" (", a.title(), ")"),
                      ": parties ", absl::StrJoin(a.parties(), ", "), "; purposes ",
                      absl::StrJoin(a.purposes(), ", "),
                      requesters.empty() ? "" : "; evidence may be requested by " + requesters);
}

void DescribeAgreementChanges(const v1::Roster& before, const v1::Roster& after,
                              std::vector<std::string>& out) {
  auto b = ById(before.agreements(), &v1::Agreement::id);
  auto a = ById(after.agreements(), &v1::Agreement::id);
  for (const auto& [id, ag] : a) {
    if (!b.count(id)) out.push_back("agreement added: " + DescribeAgreement(*ag));
  }
  for (const auto& [id, ag] : b) {
    if (!a.count(id)) out.push_back("agreement ended: " + DescribeAgreement(*ag));
  }
  for (const auto& [id, ag] : a) {
    auto it = b.find(id);
    if (it == b.end()) continue;
    const v1::Agreement& old = *it->second;
    auto list = [](const auto& xs) { return absl::StrJoin(xs, ", "); };
    if (list(old.parties()) != list(ag->parties()))
      out.push_back(absl::StrCat("agreement ", id, ": parties ", list(old.parties()), " → ",
                                 list(ag->parties())));
    if (list(old.purposes()) != list(ag->purposes()))
      out.push_back(absl::StrCat("agreement ", id, ": purposes ", list(old.purposes()), " → ",
                                 list(ag->purposes())));
    if (EvidenceRequesters(old) != EvidenceRequesters(*ag)) {
      auto none = [](const std::string& s) { return s.empty() ? std::string("none") : s; };
      out.push_back(absl::StrCat("agreement ", id, ": evidence may be requested by ",
                                 none(EvidenceRequesters(old)), " → ",
                                 none(EvidenceRequesters(*ag))));
    }
    if (old.title() != ag->title())
      out.push_back(absl::StrCat("agreement ", id, ": title ", Quoted(old.title()), " → ",
                                 Quoted(ag->title())));
  }
}

}  // namespace

v1::Roster NewVersion(const v1::Roster& in_force, absl::Time now) {
  v1::Roster next = in_force;
  next.set_version(in_force.version() + 1);
  next.set_issued_at(Rfc3339(now));
  return next;
}

absl::Status AddMember(v1::Roster& roster, const v1::Member& member) {
  if (FindMember(roster, member.org())) {
    return absl::AlreadyExistsError(absl::StrCat(
        "org ", member.org(), " is already in the roster; to change it, remove it first ",
        "(`roster remove-member`) or edit its keys with `roster add-key`/`retire-key`"));
  }
  if (member.country().size() != 2 || !absl::ascii_isalpha(member.country()[0]) ||
      !absl::ascii_isalpha(member.country()[1])) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--country \"", member.country(), "\" is not a two-letter ISO 3166 code such as SG or ID"));
  }
  if (!ValidEndpoint(member.endpoint())) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--endpoint \"", member.endpoint(), "\" is not HOST:PORT, e.g. node.union.example:7443"));
  }
  for (const v1::Member& m : roster.members()) {
    if (pki::SameCertificate(m.ca_cert_pem(), member.ca_cert_pem())) {
      return absl::InvalidArgumentError(
          absl::StrCat("the CA certificate of ", member.org(), " is already ", m.org(),
                       "'s; each org has its own CA (`corridorctl pki org`)"));
    }
  }
  for (const v1::SigningKey& k : member.signing_keys()) {
    if (std::string holder = PublicKeyHolder(roster, k.public_key()); !holder.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("the signing key of ", member.org(), " is already ", holder,
                       "; each org makes its own (`corridorctl pki org` or `pki signing-key`)"));
    }
  }
  *roster.add_members() = member;
  return absl::OkStatus();
}

absl::Status RemoveMember(v1::Roster& roster, absl::string_view org) {
  auto m = MemberOrError(roster, org);
  if (!m.ok()) return m.status();
  std::vector<std::string> bound;
  for (const v1::Agreement& a : roster.agreements()) {
    if (std::find(a.parties().begin(), a.parties().end(), org) != a.parties().end())
      bound.push_back(a.id());
  }
  if (!bound.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        org, " is a party to agreement(s) ", absl::StrJoin(bound, ", "),
        "; end them first with `corridorctl roster end-agreement --id ID` (and add them back "
        "without ",
        org, " if the others go on)"));
  }
  auto* members = roster.mutable_members();
  for (int i = 0; i < members->size(); ++i) {
    if (members->Get(i).org() == org) {
      members->erase(members->begin() + i);
      break;
    }
  }
  return absl::OkStatus();
}

absl::Status AddKey(v1::Roster& roster, absl::string_view org, absl::string_view key_id,
                    absl::string_view public_key_b64, absl::Time valid_from) {
  auto m = MemberOrError(roster, org);
  if (!m.ok()) return m.status();
  if (key_id.empty()) return absl::InvalidArgumentError("the key id is empty");
  auto raw = Base64Decode(public_key_b64);
  if (!raw.ok() || !Ed25519PublicKey::FromRaw(*raw).ok()) {
    return absl::InvalidArgumentError(
        "the public key is not a base64 32-byte Ed25519 key (the signing.pub that "
        "`corridorctl pki signing-key` writes)");
  }
  for (const v1::SigningKey& k : (*m)->signing_keys()) {
    if (k.key_id() == key_id) {
      return absl::AlreadyExistsError(
          absl::StrCat(org, " already has a signing key \"", key_id, "\" (", StatusWord(k.status()),
                       "); give the new key another id (`pki signing-key --key-id`)"));
    }
  }
  if (std::string holder = PublicKeyHolder(roster, public_key_b64); !holder.empty()) {
    return absl::AlreadyExistsError(
        absl::StrCat("this public key is already in the roster as ", holder,
                     "; a key is listed once: make a new one with `corridorctl pki signing-key`"));
  }
  v1::SigningKey* k = (*m)->add_signing_keys();
  k->set_key_id(std::string(key_id));
  k->set_public_key(std::string(public_key_b64));
  k->set_status(v1::KEY_STATUS_ACTIVE);
  k->set_valid_from(Rfc3339(valid_from));
  return absl::OkStatus();
}

absl::Status RetireKey(v1::Roster& roster, absl::string_view org, absl::string_view key_id,
                       absl::Time valid_until, bool until_given) {
  auto m = MemberOrError(roster, org);
  if (!m.ok()) return m.status();
  auto k = KeyOrError(**m, key_id);
  if (!k.ok()) return k.status();
  if ((*k)->status() == v1::KEY_STATUS_REVOKED) {
    return absl::FailedPreconditionError(
        absl::StrCat("key ", key_id, " of ", org, " is revoked; a revoked key is not retired"));
  }
  if ((*k)->status() == v1::KEY_STATUS_RETIRED && !until_given) {
    return absl::FailedPreconditionError(absl::StrCat(
        "key ", key_id, " of ", org, " is already retired (valid until ", (*k)->valid_until(),
        "); give --valid-until TIME to change when it stops being valid"));
  }
  if (auto st = CheckNotLastActive(**m, **k, "retire"); !st.ok()) return st;
  (*k)->set_status(v1::KEY_STATUS_RETIRED);
  (*k)->set_valid_until(Rfc3339(valid_until));
  return absl::OkStatus();
}

absl::Status RevokeKey(v1::Roster& roster, absl::string_view org, absl::string_view key_id) {
  auto m = MemberOrError(roster, org);
  if (!m.ok()) return m.status();
  auto k = KeyOrError(**m, key_id);
  if (!k.ok()) return k.status();
  if ((*k)->status() == v1::KEY_STATUS_REVOKED) {
    return absl::FailedPreconditionError(
        absl::StrCat("key ", key_id, " of ", org, " is already revoked"));
  }
  if (auto st = CheckNotLastActive(**m, **k, "revoke"); !st.ok()) return st;
  (*k)->set_status(v1::KEY_STATUS_REVOKED);
  return absl::OkStatus();
}

absl::StatusOr<std::string> RevokeCert(v1::Roster& roster, absl::string_view org,
                                       absl::string_view serial) {
  auto m = MemberOrError(roster, org);
  if (!m.ok()) return m.status();
  auto normal = pki::NormalizeSerial(serial);
  if (!normal.ok()) return normal.status();
  for (const std::string& s : (*m)->revoked_serials()) {
    if (pki::NormalizeSerial(s).value_or(s) == *normal) {
      return absl::AlreadyExistsError(
          absl::StrCat("certificate serial ", *normal, " of ", org, " is already revoked"));
    }
  }
  (*m)->add_revoked_serials(*normal);
  return *normal;
}

std::string EvidenceRequesters(const v1::Agreement& a) {
  std::vector<std::string> kinds;
  for (int k : a.evidence_requesters()) kinds.push_back(KindWord(static_cast<v1::OrgKind>(k)));
  return absl::StrJoin(kinds, ", ");
}

absl::Status AddAgreement(v1::Roster& roster, const v1::Agreement& agreement) {
  if (agreement.id().empty()) return absl::InvalidArgumentError("the agreement id is empty");
  for (const v1::Agreement& a : roster.agreements()) {
    if (a.id() == agreement.id()) {
      return absl::AlreadyExistsError(
          absl::StrCat("agreement ", a.id(),
                       " is already in the roster; to change it, end it "
                       "(`roster end-agreement`) and add it again"));
    }
  }
  if (agreement.parties_size() < 2) {
    return absl::InvalidArgumentError("an agreement needs at least two parties (--parties A,B)");
  }
  std::set<std::string> seen;
  for (const std::string& p : agreement.parties()) {
    if (!FindMember(roster, p)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "party \"", p, "\" is not a member of the roster; add it first (`roster add-member`)"));
    }
    if (!seen.insert(p).second)
      return absl::InvalidArgumentError(absl::StrCat("party ", p, " is listed twice"));
  }
  if (agreement.purposes_size() == 0) {
    return absl::InvalidArgumentError("an agreement covers at least one purpose (--purposes)");
  }
  *roster.add_agreements() = agreement;
  return absl::OkStatus();
}

absl::Status EndAgreement(v1::Roster& roster, absl::string_view id) {
  auto* list = roster.mutable_agreements();
  std::vector<std::string> ids;
  for (int i = 0; i < list->size(); ++i) {
    if (list->Get(i).id() == id) {
      list->erase(list->begin() + i);
      return absl::OkStatus();
    }
    ids.push_back(list->Get(i).id());
  }
  return absl::NotFoundError(absl::StrCat("agreement \"", id, "\" is not in this roster (its ",
                                          "agreements: ", ids.empty() ? "none" : "",
                                          absl::StrJoin(ids, ", "), ")"));
}

std::vector<std::string> DescribeChanges(const v1::Roster& before, const v1::Roster& after) {
  std::vector<std::string> out;
  if (before.version() != after.version()) {
    out.push_back(
        absl::StrCat("version ", before.version(), " → ", after.version(),
                     after.version() > before.version()
                         ? ""
                         : " (not newer: nodes holding the old version will refuse the new one)"));
  }
  if (before.federation() != after.federation()) {
    out.push_back(absl::StrCat("federation ", Quoted(before.federation()), " → ",
                               Quoted(after.federation()),
                               " (nodes of the old federation will refuse it)"));
  }
  auto b = ById(before.members(), &v1::Member::org);
  auto a = ById(after.members(), &v1::Member::org);
  for (const auto& [org, m] : a) {
    if (b.count(org)) continue;
    std::vector<std::string> keys;
    for (const v1::SigningKey& k : m->signing_keys()) keys.push_back(k.key_id());
    out.push_back(absl::StrCat("member added: ", org, " (", m->name(), ", ", m->country(), ", ",
                               KindWord(m->kind()), ") at ", m->endpoint(), ", signing key(s) ",
                               absl::StrJoin(keys, ", ")));
  }
  for (const auto& [org, m] : b) {
    if (!a.count(org))
      out.push_back(absl::StrCat("member removed: ", org, " (", m->name(),
                                 "); nodes stop exchanging with it"));
  }
  for (const auto& [org, m] : a) {
    auto it = b.find(org);
    if (it != b.end()) DescribeMemberChanges(*it->second, *m, out);
  }
  DescribeAgreementChanges(before, after, out);
  return out;
}

absl::StatusOr<Stewards> LoadStewards(const std::string& path) {
  v1::RosterConfig section;
  if (auto st = LoadYamlFileToProto(path, &section); !st.ok()) {
    // Perhaps a whole node config: its roster: section holds the keys.
    v1::NodeConfig config;
    if (!LoadYamlFileToProto(path, &config).ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, " is neither a stewards file (what `pki federation` writes) nor a node config: ",
          st.message()));
    }
    section = config.roster();
  }
  if (section.steward_keys_size() == 0) {
    return absl::InvalidArgumentError(absl::StrCat(path, " lists no steward_keys"));
  }
  Stewards out;
  out.threshold = section.threshold();
  for (const v1::StewardKey& k : section.steward_keys()) {
    auto raw = Base64Decode(k.public_key());
    absl::StatusOr<Ed25519PublicKey> key =
        raw.ok() ? Ed25519PublicKey::FromRaw(*raw) : absl::StatusOr<Ed25519PublicKey>(raw.status());
    if (k.name().empty() || !key.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": steward key \"", k.name(),
                       "\" needs a name and a base64 32-byte Ed25519 public_key"));
    }
    out.keys.push_back({k.name(), *key});
  }
  return out;
}

absl::StatusOr<Checked> CheckSignatures(const Args& args, const std::string& stewards_file,
                                        const std::string& label, const std::string& json) {
  auto stewards = roster_edit::LoadStewards(stewards_file);
  if (!stewards.ok()) return stewards.status();
  Checked out;
  out.stewards = stewards->keys.size();
  out.threshold = stewards->threshold;
  if (args.Has("threshold") &&
      (!absl::SimpleAtoi(args.Get("threshold"), &out.threshold) || out.threshold == 0)) {
    return absl::InvalidArgumentError("--threshold must be a positive number");
  }
  if (out.threshold == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(stewards_file,
                     " gives no threshold: pass --threshold N, the number of steward signatures "
                     "your nodes require (their roster.threshold)"));
  }
  if (!absl::StrContains(json, "\"payloadType\"")) {
    return absl::InvalidArgumentError(absl::StrCat(
        label,
        " is not a signed roster (the JSON file `roster sign` writes); a roster source "
        "has no signatures to check"));
  }
  std::string federation = args.Get("federation");
  if (federation.empty()) {
    auto peek = PeekSignedRoster(json);
    if (!peek.ok()) {
      return absl::Status(peek.status().code(),
                          absl::StrCat(label, " is not valid: ", peek.status().message()));
    }
    federation = peek->federation();
  }
  auto verified = VerifySignedRoster(json, stewards->keys, out.threshold, federation);
  if (!verified.ok()) {
    return absl::Status(verified.status().code(),
                        absl::StrCat(label, " is not valid: ", verified.status().message()));
  }
  out.roster = *std::move(verified);
  return out;
}

std::string SignedBySentence(const Checked& c) {
  return absl::StrCat("signatures checked: signed by ", absl::StrJoin(c.roster.signed_by, ", "),
                      " (", c.roster.signed_by.size(), " of ", c.stewards, " stewards; ",
                      c.threshold, " required)");
}

}  // namespace corridor::roster_edit
