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
      {"stewards", "FILE", "check the roster's signatures against these steward keys"},
      {"threshold", "N", "steward signatures required (default: the stewards file's)"},
      {"vkey", "VKEY", "verifier key (name+id+key) instead of the roster"},
  };
}

absl::StatusOr<v1::Roster> RosterFromOptions(const Args& args, const std::string& roster_file,
                                             std::ostream& err) {
  auto text = ReadFileToString(roster_file);
  if (!text.ok()) return text.status();
  if (args.Has("stewards")) {
    auto checked = roster_edit::CheckSignatures(args, roster_file, *text);
    if (!checked.ok()) return checked.status();
    return checked->roster.roster;
  }
  err << "warning: the steward signatures on " << roster_file
      << " were not checked; give --stewards FILE (the federation's stewards.yaml, with "
         "--threshold N) so a forged roster cannot supply the key\n";
  return PeekSignedRoster(*text);
}

absl::StatusOr<std::vector<note::Verifier>> VerifiersFromOptions(const Args& args,
                                                                 const std::string& default_org,
                                                                 std::ostream& err,
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
  auto roster = RosterFromOptions(args, roster_file, err);
  if (!roster.ok()) return roster.status();
  const std::string org = args.Get("org", default_org);
  if (org.empty())
    return absl::InvalidArgumentError("name the org whose ledger this is: --org ORG");
  if (roster_out != nullptr) *roster_out = *roster;
  return LedgerVerifiersFromRoster(*roster, org);
}

std::string SignedByRevokedKey(const Args& args, const std::string& default_org,
                               const std::function<bool(const note::Verifier&)>& verifies) {
  const std::string roster_file = OptionOrEnv(args, "roster", "CORRIDOR_ROSTER");
  if (roster_file.empty() || args.Has("vkey")) return "";
  auto text = ReadFileToString(roster_file);
  if (!text.ok()) return "";
  auto roster = PeekSignedRoster(*text);
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

}  // namespace corridor::ctl
