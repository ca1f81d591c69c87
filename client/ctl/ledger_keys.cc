#include "client/ctl/ledger_keys.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "client/ctl/command.h"
#include "client/ctl/roster_edit.h"
#include "client/ctl/roster_signing.h"
#include "client/lib/pki.h"
#include "client/lib/roster.h"
#include "ledger/crypto/crypto.h"

namespace corridor::ctl {

std::vector<OptionSpec> LedgerKeyOptions() {
  return {
      {"roster", "FILE", "signed roster to take the key from (env CORRIDOR_ROSTER)"},
      {"org", "ORG", "whose ledger"},
      {"stewards", "FILE",
       "steward keys the roster's signatures are checked against (env CORRIDOR_STEWARDS)"},
      {"threshold", "N", "steward signatures required (default: the stewards file's)"},
      {"vkey", "VKEY", "verifier key (name+id+key) instead of the roster"},
  };
}

absl::StatusOr<v1::Roster> RosterFromOptions(const Args& args, const std::string& roster_file) {
  // The roster is the auditor's source of every org's key, so it is believed only
  // with the stewards' signatures checked against keys the auditor holds: a copy
  // with one key swapped must not make a rewritten ledger "verify".
  const std::string stewards_file = OptionOrEnv(args, "stewards", "CORRIDOR_STEWARDS");
  if (stewards_file.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "give the federation's steward keys (--stewards FILE or CORRIDOR_STEWARDS: the "
        "stewards.yaml the stewards published, or your node's config) so the signatures on ",
        roster_file,
        " are checked before its keys are trusted; or give the org's key itself with --vkey"));
  }
  auto text = ReadFileToString(roster_file);
  if (!text.ok()) return text.status();
  auto checked = roster_edit::CheckSignatures(args, stewards_file, roster_file, *text);
  if (!checked.ok()) return checked.status();
  return checked->roster.roster;
}

absl::StatusOr<std::vector<note::Verifier>> VerifiersFromOptions(const Args& args,
                                                                 const std::string& default_org,
                                                                 v1::Roster* roster_out) {
  return LedgerVerifiers(args, args.Get("org", default_org), roster_out);
}

absl::StatusOr<std::vector<note::Verifier>> LedgerVerifiers(const Args& args,
                                                            const std::string& org,
                                                            v1::Roster* roster_out) {
  if (args.Has("vkey")) {
    auto v = note::ParseVerifier(args.Get("vkey"));
    if (!v.ok()) return v.status();
    return std::vector<note::Verifier>{*v};
  }
  const std::string roster_file = OptionOrEnv(args, "roster", "CORRIDOR_ROSTER");
  if (roster_file.empty()) {
    return absl::InvalidArgumentError(
        "give the roster (--roster FILE or CORRIDOR_ROSTER) so the key comes from the federation, "
        "not from the node being audited; or --vkey NAME+ID+KEY");
  }
  auto roster = RosterFromOptions(args, roster_file);
  if (!roster.ok()) return roster.status();
  if (org.empty())
    return absl::InvalidArgumentError("name the org whose ledger this is: --org ORG");
  if (roster_out != nullptr) *roster_out = *roster;
  return LedgerVerifiersFromRoster(*roster, org);
}

std::string SignedByRevokedKey(const Args& args, const std::string& default_org,
                               const std::function<bool(const note::Verifier&)>& verifies) {
  const std::string roster_file = OptionOrEnv(args, "roster", "CORRIDOR_ROSTER");
  if (roster_file.empty() || args.Has("vkey")) return "";
  auto roster = RosterFromOptions(args, roster_file);
  if (!roster.ok()) return "";
  const std::string org = args.Get("org", default_org);
  for (const v1::Member& m : roster->members()) {
    if (m.org() != org) continue;
    for (const v1::SigningKey& k : m.signing_keys()) {
      if (k.status() != v1::KEY_STATUS_REVOKED) continue;
      auto raw = Base64Decode(k.public_key());
      if (!raw.ok()) continue;
      auto key = Ed25519PublicKey::FromRaw(*raw);
      if (!key.ok()) continue;
      if (verifies(note::Verifier{absl::StrCat(roster->federation(), "/", org), 0x01, *key})) {
        return absl::StrCat("it is signed with key \"", k.key_id(), "\" of ", org,
                            ", which roster version ", roster->version(),
                            " lists as revoked: what that key signed is not trusted");
      }
    }
  }
  return "";
}

absl::StatusOr<OpenedCheckpoint> OpenCheckpointWithAny(const Args& args,
                                                       const std::string& default_org,
                                                       const std::vector<note::Verifier>& verifiers,
                                                       const std::string& checkpoint_text) {
  absl::StatusOr<note::Checkpoint> cp = absl::NotFoundError("no key");
  for (const auto& v : verifiers) {
    cp = note::OpenCheckpoint(checkpoint_text, v);
    if (cp.ok()) return OpenedCheckpoint{*cp, v};
  }
  const std::string revoked = SignedByRevokedKey(args, default_org, [&](const note::Verifier& r) {
    return note::OpenCheckpoint(checkpoint_text, r).ok();
  });
  return absl::DataLossError(absl::StrCat("the node's checkpoint does not verify: ",
                                          revoked.empty() ? cp.status().message() : revoked));
}

absl::StatusOr<std::vector<merkle::Hash>> ProofHashes(
    const google::protobuf::RepeatedPtrField<std::string>& proof) {
  std::vector<merkle::Hash> hashes;
  for (const std::string& p : proof) {
    auto h = merkle::FromBytes(p);
    if (!h.ok()) return absl::DataLossError("the proof holds a malformed hash");
    hashes.push_back(*h);
  }
  return hashes;
}

std::string OrgOfCertificate(const Args& args) {
  const std::string cert_file = OptionOrEnv(args, "cert", "CORRIDOR_CERT");
  if (cert_file.empty()) return "";
  auto pem = ReadFileToString(cert_file);
  if (!pem.ok()) return "";
  auto info = pki::InspectCertificate(*pem);
  if (!info.ok()) return "";
  for (const std::string& uri : info->uris) {
    if (!absl::StartsWith(uri, "spiffe://")) continue;
    // spiffe://FEDERATION/ORG/user/NAME
    std::vector<std::string> parts = absl::StrSplit(uri.substr(9), '/');
    if (parts.size() == 4 && parts[2] == "user") return parts[1];
  }
  return "";
}

absl::StatusOr<Ed25519PublicKey> MemberSigningKey(const v1::Roster& roster, const std::string& org,
                                                  const std::string& key_id) {
  for (const v1::Member& m : roster.members()) {
    if (m.org() != org) continue;
    for (const v1::SigningKey& k : m.signing_keys()) {
      if (k.key_id() != key_id) continue;
      if (k.status() == v1::KEY_STATUS_REVOKED) {
        return absl::PermissionDeniedError(
            absl::StrCat("it is signed with key ", key_id, ", which the roster lists as revoked"));
      }
      auto raw = Base64Decode(k.public_key());
      if (!raw.ok()) return raw.status();
      return Ed25519PublicKey::FromRaw(*raw);
    }
    return absl::NotFoundError(absl::StrCat("the roster lists no key ", key_id, " of ", org));
  }
  return absl::NotFoundError(absl::StrCat(org, " is not in the roster"));
}

}  // namespace corridor::ctl
