// corridorctl roster: write, sign, co-sign, show and push the federation roster.
#include "client/lib/roster.h"

#include <sys/stat.h>

#include <functional>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/ctl/command.h"
#include "client/ctl/display.h"
#include "client/ctl/roster_edit.h"
#include "client/ctl/roster_signing.h"
#include "client/lib/pki.h"
#include "client/lib/yaml_proto.h"
#include "corridor/v1/node.grpc.pb.h"
#include "ledger/crypto/crypto.h"

namespace corridor::ctl {
namespace {

absl::StatusOr<v1::Roster> LoadRosterSource(const std::string& path) {
  v1::Roster roster;
  if (auto st = LoadYamlFileToProto(path, &roster); !st.ok()) return st;
  return roster;
}

absl::Status SaveRosterSource(const std::string& path, const v1::Roster& roster) {
  return WriteFileAtomically(path, ProtoToYaml(roster) + "\n");
}

std::string Rfc3339(absl::Time t) {
  return absl::FormatTime(absl::RFC3339_sec, t, absl::UTCTimeZone());
}

// Loads the source --roster, applies `edit`, checks the result with
// ValidateRoster and writes it atomically. On any refusal the file is unchanged.
absl::Status EditSource(Context& c, const std::function<absl::Status(v1::Roster&)>& edit) {
  const std::string path = c.args.Get("roster");
  auto roster = LoadRosterSource(path);
  if (!roster.ok()) return roster.status();
  v1::Roster edited = *roster;
  if (auto st = edit(edited); !st.ok()) {
    return absl::Status(st.code(), absl::StrCat(st.message(), "; ", path, " is unchanged"));
  }
  if (auto st = ValidateRoster(edited); !st.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("the result would not be a valid roster (",
                                                   st.message(), "); ", path, " is unchanged"));
  }
  return SaveRosterSource(path, edited);
}

// A roster file of either kind: a signed roster (JSON, signatures not
// checked) or a roster source (YAML).
absl::StatusOr<v1::Roster> LoadAnyRoster(const std::string& path) {
  auto text = ReadFileToString(path);
  if (!text.ok()) return text.status();
  if (absl::StrContains(*text, "\"payloadType\"")) {
    auto roster = PeekSignedRoster(*text);
    if (!roster.ok())
      return absl::Status(roster.status().code(),
                          absl::StrCat(path, ": ", roster.status().message()));
    return roster;
  }
  return LoadRosterSource(path);
}

absl::Status RunRosterInit(Context& c) {
  if (auto st = Require(c.args, {"federation", "out"}); !st.ok()) return st;
  v1::Roster roster;
  roster.set_federation(c.args.Get("federation"));
  uint64_t version = 1;
  if (c.args.Has("version") &&
      (!absl::SimpleAtoi(c.args.Get("version"), &version) || version == 0)) {
    return absl::InvalidArgumentError("--version must be a positive number");
  }
  roster.set_version(version);
  roster.set_issued_at(Rfc3339(absl::Now()));
  if (auto st = ValidateRoster(roster); !st.ok()) return st;
  struct stat st;
  if (!c.args.Has("force") && stat(c.args.Get("out").c_str(), &st) == 0) {
    return absl::AlreadyExistsError(
        absl::StrCat(c.args.Get("out"), " already exists; not overwriting it (use --force)"));
  }
  if (auto s = SaveRosterSource(c.args.Get("out"), roster); !s.ok()) return s;
  c.out << "roster source " << c.args.Get("out") << " (version " << version << ") created\n";
  return absl::OkStatus();
}

absl::Status RunRosterNewVersion(Context& c) {
  if (auto st = Require(c.args, {"from", "out"}); !st.ok()) return st;
  auto text = ReadFileToString(c.args.Get("from"));
  if (!text.ok()) return text.status();
  if (!absl::StrContains(*text, "\"payloadType\"")) {
    return absl::InvalidArgumentError(
        absl::StrCat(c.args.Get("from"),
                     " is not a signed roster; --from takes the roster in force (the signed "
                     "JSON file the nodes use)"));
  }
  std::string checked = "signatures not checked (give --stewards FILE to check them)";
  absl::StatusOr<v1::Roster> in_force = PeekSignedRoster(*text);
  if (c.args.Has("stewards")) {
    auto verified =
        roster_edit::CheckSignatures(c.args, c.args.Get("stewards"), c.args.Get("from"), *text);
    if (!verified.ok()) return verified.status();
    checked = roster_edit::SignedBySentence(*verified);
    in_force = verified->roster.roster;
  }
  if (!in_force.ok()) return in_force.status();
  struct stat st;
  if (!c.args.Has("force") && stat(c.args.Get("out").c_str(), &st) == 0) {
    return absl::AlreadyExistsError(
        absl::StrCat(c.args.Get("out"), " already exists; not overwriting it (use --force)"));
  }
  const v1::Roster next = roster_edit::NewVersion(*in_force, absl::Now());
  if (auto s = SaveRosterSource(c.args.Get("out"), next); !s.ok()) return s;
  c.out << "roster source " << c.args.Get("out") << ": version " << next.version()
        << ", from version " << in_force->version() << " in " << c.args.Get("from") << " ("
        << checked << ")\n  edit it with the roster commands, compare with `corridorctl roster "
        << "diff`, then have the stewards sign it\n";
  return absl::OkStatus();
}

absl::Status RunRosterAddMember(Context& c) {
  if (auto st =
          Require(c.args, {"roster", "org", "name", "country", "kind", "endpoint", "org-dir"});
      !st.ok()) {
    return st;
  }
  const std::string dir = c.args.Get("org-dir");
  v1::Member m;
  m.set_org(c.args.Get("org"));
  m.set_name(c.args.Get("name"));
  m.set_country(absl::AsciiStrToUpper(c.args.Get("country")));
  m.set_endpoint(c.args.Get("endpoint"));
  v1::OrgKind kind;
  if (!v1::OrgKind_Parse("ORG_KIND_" + absl::AsciiStrToUpper(c.args.Get("kind")), &kind) ||
      kind == v1::ORG_KIND_UNSPECIFIED) {
    return absl::InvalidArgumentError(
        "--kind must be one of ministry, inspectorate, union, prosecutor, ngo");
  }
  m.set_kind(kind);
  auto ca = ReadFileToString(dir + "/ca.crt");
  if (!ca.ok()) return ca.status();
  m.set_ca_cert_pem(*ca);
  auto pub = ReadFileToString(dir + "/signing.pub");
  if (!pub.ok()) return pub.status();
  auto key_id = ReadFileToString(dir + "/signing.keyid");
  if (!key_id.ok()) return key_id.status();
  v1::SigningKey* k = m.add_signing_keys();
  k->set_key_id(std::string(absl::StripAsciiWhitespace(*key_id)));
  k->set_public_key(std::string(absl::StripAsciiWhitespace(*pub)));
  k->set_status(v1::KEY_STATUS_ACTIVE);
  k->set_valid_from(Rfc3339(absl::Now() - absl::Hours(1)));
  if (auto st = EditSource(c, [&](v1::Roster& r) { return roster_edit::AddMember(r, m); });
      !st.ok()) {
    return st;
  }
  c.out << "added " << m.org() << " (" << m.name() << ", " << m.country() << ") at " << m.endpoint()
        << " to " << c.args.Get("roster") << "\n";
  return absl::OkStatus();
}

absl::Status RunRosterRemoveMember(Context& c) {
  if (auto st = Require(c.args, {"roster", "org"}); !st.ok()) return st;
  const std::string org = c.args.Get("org");
  if (auto st = EditSource(c, [&](v1::Roster& r) { return roster_edit::RemoveMember(r, org); });
      !st.ok()) {
    return st;
  }
  c.out << "removed " << org << " from " << c.args.Get("roster")
        << "; once the new version is in force, nodes refuse it\n";
  return absl::OkStatus();
}

absl::Status RunRosterAddKey(Context& c) {
  if (auto st = Require(c.args, {"roster", "org"}); !st.ok()) return st;
  std::string key_id = c.args.Get("key-id"), pub = c.args.Get("public-key");
  if (c.args.Has("key-dir") && c.args.Has("public-key")) {
    return absl::InvalidArgumentError(
        "give either --key-dir DIR or --public-key, not both: which key is meant?");
  }
  if (c.args.Has("key-dir")) {
    const std::string dir = c.args.Get("key-dir");
    auto p = ReadFileToString(dir + "/signing.pub");
    if (!p.ok()) return p.status();
    pub = std::string(absl::StripAsciiWhitespace(*p));
    if (key_id.empty()) {
      auto id = ReadFileToString(dir + "/signing.keyid");
      if (!id.ok()) return id.status();
      key_id = std::string(absl::StripAsciiWhitespace(*id));
    }
  } else if (key_id.empty() || pub.empty()) {
    return absl::InvalidArgumentError(
        "give --key-dir DIR (what `pki signing-key` wrote), or both --key-id and --public-key");
  }
  const std::string org = c.args.Get("org");
  if (auto st = EditSource(c,
                           [&](v1::Roster& r) {
                             return roster_edit::AddKey(r, org, key_id, pub,
                                                        absl::Now() - absl::Hours(1));
                           });
      !st.ok()) {
    return st;
  }
  c.out << "added signing key " << key_id << " (active) to " << org << " in "
        << c.args.Get("roster") << "\n";
  return absl::OkStatus();
}

absl::Status RunRosterRetireKey(Context& c) {
  if (auto st = Require(c.args, {"roster", "org", "key-id"}); !st.ok()) return st;
  absl::Time until = absl::Now() + roster_edit::kDefaultRetiredKeyGrace;
  std::string err;
  if (c.args.Has("valid-until") &&
      !absl::ParseTime(absl::RFC3339_full, c.args.Get("valid-until"), &until, &err)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--valid-until \"", c.args.Get("valid-until"),
                     "\" is not an RFC 3339 time (e.g. 2026-01-31T00:00:00Z)"));
  }
  const std::string org = c.args.Get("org"), id = c.args.Get("key-id");
  if (auto st = EditSource(c,
                           [&](v1::Roster& r) {
                             return roster_edit::RetireKey(r, org, id, until,
                                                           c.args.Has("valid-until"));
                           });
      !st.ok()) {
    return st;
  }
  c.out << "retired signing key " << id << " of " << org << ": what it signed verifies until "
        << Rfc3339(until) << "\n";
  return absl::OkStatus();
}

absl::Status RunRosterRevokeKey(Context& c) {
  if (auto st = Require(c.args, {"roster", "org", "key-id"}); !st.ok()) return st;
  const std::string org = c.args.Get("org"), id = c.args.Get("key-id");
  if (auto st = EditSource(c, [&](v1::Roster& r) { return roster_edit::RevokeKey(r, org, id); });
      !st.ok()) {
    return st;
  }
  c.out << "revoked signing key " << id << " of " << org
        << ": once the new version is in force, nothing it signed is accepted\n";
  return absl::OkStatus();
}

// The serial to revoke: --serial, or the serial of --cert (which must be `org`'s).
absl::StatusOr<std::string> SerialToRevoke(const Args& args, const std::string& org) {
  if (args.Has("serial") == args.Has("cert")) {
    return absl::InvalidArgumentError("give either --serial HEX or --cert FILE");
  }
  if (args.Has("serial")) return args.Get("serial");
  auto pem = ReadFileToString(args.Get("cert"));
  if (!pem.ok()) return pem.status();
  auto info = pki::InspectCertificate(*pem);
  if (!info.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(args.Get("cert"), " is not a certificate: ", info.status().message()));
  }
  for (const std::string& uri : info->uris) {
    // spiffe://<federation>/<org>/...
    std::vector<std::string> parts = absl::StrSplit(uri, '/');
    if (parts.size() > 3 && parts[0] == "spiffe:" && parts[3] != org) {
      return absl::InvalidArgumentError(
          absl::StrCat(args.Get("cert"), " belongs to ", parts[3], " (", uri, "), not to ", org));
    }
  }
  return info->serial_hex;
}

absl::Status RunRosterRevokeCert(Context& c) {
  if (auto st = Require(c.args, {"roster", "org"}); !st.ok()) return st;
  const std::string org = c.args.Get("org");
  auto serial = SerialToRevoke(c.args, org);
  if (!serial.ok()) return serial.status();
  std::string normal;
  if (auto st = EditSource(c,
                           [&](v1::Roster& r) {
                             auto n = roster_edit::RevokeCert(r, org, *serial);
                             if (n.ok()) normal = *n;
                             return n.status();
                           });
      !st.ok()) {
    return st;
  }
  c.out << "revoked certificate serial " << normal << " of " << org << " in "
        << c.args.Get("roster") << "\n";
  return absl::OkStatus();
}

absl::Status RunRosterAddAgreement(Context& c) {
  if (auto st = Require(c.args, {"roster", "id", "parties", "purposes"}); !st.ok()) return st;
  v1::Agreement a;
  a.set_id(c.args.Get("id"));
  a.set_title(c.args.Get("title"));
  for (absl::string_view p : absl::StrSplit(c.args.Get("parties"), ',', absl::SkipEmpty())) {
    a.add_parties(std::string(absl::StripAsciiWhitespace(p)));
  }
  for (absl::string_view p : absl::StrSplit(c.args.Get("purposes"), ',', absl::SkipEmpty())) {
    a.add_purposes(std::string(absl::StripAsciiWhitespace(p)));
  }
  for (absl::string_view k :
       absl::StrSplit(c.args.Get("evidence-requesters"), ',', absl::SkipEmpty())) {
    v1::OrgKind kind;
    const std::string word(absl::StripAsciiWhitespace(k));
    if (!v1::OrgKind_Parse("ORG_KIND_" + absl::AsciiStrToUpper(word), &kind) ||
        kind == v1::ORG_KIND_UNSPECIFIED) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--evidence-requesters: \"", word,
          "\" is not a kind of member (ministry, inspectorate, union, prosecutor, ngo)"));
    }
    a.add_evidence_requesters(kind);
  }
  if (auto st = EditSource(c, [&](v1::Roster& r) { return roster_edit::AddAgreement(r, a); });
      !st.ok()) {
    return st;
  }
  c.out << "added agreement " << a.id() << " to " << c.args.Get("roster") << "\n";
  return absl::OkStatus();
}

absl::Status RunRosterEndAgreement(Context& c) {
  if (auto st = Require(c.args, {"roster", "id"}); !st.ok()) return st;
  const std::string id = c.args.Get("id");
  if (auto st = EditSource(c, [&](v1::Roster& r) { return roster_edit::EndAgreement(r, id); });
      !st.ok()) {
    return st;
  }
  c.out << "ended agreement " << id << " in " << c.args.Get("roster") << "\n";
  return absl::OkStatus();
}

absl::Status RunRosterDiff(Context& c) {
  if (c.args.positional().size() != 2) {
    return absl::InvalidArgumentError(
        "give two rosters: corridorctl roster diff OLD NEW (each a source or a signed roster)");
  }
  const std::string& old_path = c.args.positional()[0];
  const std::string& new_path = c.args.positional()[1];
  auto before = LoadAnyRoster(old_path);
  if (!before.ok()) return before.status();
  auto after = LoadAnyRoster(new_path);
  if (!after.ok()) return after.status();
  const std::vector<std::string> changes = roster_edit::DescribeChanges(*before, *after);
  c.out << "from " << Printable(old_path) << " (version " << before->version() << ") to "
        << Printable(new_path) << " (version " << after->version() << "):\n";
  if (changes.empty()) c.out << "  no changes\n";
  for (const std::string& line : changes) c.out << "  - " << Printable(line) << "\n";
  return absl::OkStatus();
}

absl::Status RunRosterVerify(Context& c) {
  if (auto st = Require(c.args, {"in", "stewards"}); !st.ok()) return st;
  auto text = ReadFileToString(c.args.Get("in"));
  if (!text.ok()) return text.status();
  auto checked =
      roster_edit::CheckSignatures(c.args, c.args.Get("stewards"), c.args.Get("in"), *text);
  if (!checked.ok()) return checked.status();
  const v1::Roster& r = checked->roster.roster;
  c.out << Printable(c.args.Get("in")) << ": federation " << Printable(r.federation())
        << ", roster version " << r.version() << " is valid; "
        << roster_edit::SignedBySentence(*checked) << "\n";
  return absl::OkStatus();
}

absl::Status RunRosterSign(Context& c) {
  if (auto st = Require(c.args, {"in", "key", "key-name", "out"}); !st.ok()) return st;
  auto key = Ed25519PrivateKey::FromPemFile(c.args.Get("key"));
  if (!key.ok()) return key.status();
  auto text = ReadFileToString(c.args.Get("in"));
  if (!text.ok()) return text.status();
  absl::StatusOr<std::string> signed_json;
  if (absl::StrContains(*text, "\"payloadType\"")) {
    signed_json = SignRoster(nullptr, *text, c.args.Get("key-name"), *key);  // co-sign
  } else {
    auto roster = LoadRosterSource(c.args.Get("in"));
    if (!roster.ok()) return roster.status();
    signed_json = SignRoster(&*roster, "", c.args.Get("key-name"), *key);
  }
  if (!signed_json.ok()) return signed_json.status();
  if (auto st = WriteFileAtomically(c.args.Get("out"), *signed_json); !st.ok()) return st;
  auto roster = PeekSignedRoster(*signed_json);
  c.out << "signed roster version " << roster->version() << " as "
        << Printable(c.args.Get("key-name")) << " → " << c.args.Get("out") << "\n";
  return absl::OkStatus();
}

absl::Status RunRosterShow(Context& c) {
  if (auto st = Require(c.args, {"in"}); !st.ok()) return st;
  auto text = ReadFileToString(c.args.Get("in"));
  if (!text.ok()) return text.status();
  auto roster = PeekSignedRoster(*text);
  if (!roster.ok()) return roster.status();
  std::string checked = "signatures not checked here (give --stewards FILE to check them)";
  if (c.args.Has("stewards")) {
    auto verified =
        roster_edit::CheckSignatures(c.args, c.args.Get("stewards"), c.args.Get("in"), *text);
    if (!verified.ok()) return verified.status();
    roster = verified->roster.roster;
    checked = roster_edit::SignedBySentence(*verified);
  }
  if (c.json()) {
    c.out << ToJson(*roster);
    return absl::OkStatus();
  }
  c.out << "federation " << Printable(roster->federation()) << ", roster version "
        << roster->version() << ", issued " << Printable(roster->issued_at()) << "\n"
        << Printable(checked) << "\n";
  std::vector<std::vector<std::string>> rows = {
      {"ORG", "NAME", "COUNTRY", "KIND", "ENDPOINT", "KEYS"}};
  for (const auto& m : roster->members()) {
    std::vector<std::string> keys;
    for (const auto& k : m.signing_keys()) {
      keys.push_back(absl::StrCat(
          k.key_id(), "(",
          absl::AsciiStrToLower(absl::StripPrefix(v1::KeyStatus_Name(k.status()), "KEY_STATUS_")),
          ")"));
    }
    rows.push_back(
        {m.org(), m.name(), m.country(),
         absl::AsciiStrToLower(absl::StripPrefix(v1::OrgKind_Name(m.kind()), "ORG_KIND_")),
         m.endpoint(), absl::StrJoin(keys, " ")});
  }
  PrintTable(c.out, rows);
  for (const auto& m : roster->members()) {
    if (m.revoked_serials_size() == 0) continue;
    c.out << "revoked certificates of " << Printable(m.org()) << ": "
          << Printable(absl::StrJoin(m.revoked_serials(), ", ")) << "\n";
  }
  for (const auto& a : roster->agreements()) {
    c.out << "agreement " << Printable(a.id()) << ": parties "
          << Printable(absl::StrJoin(a.parties(), ", ")) << "; purposes "
          << Printable(absl::StrJoin(a.purposes(), ", "));
    const std::string kinds = roster_edit::EvidenceRequesters(a);
    if (!kinds.empty()) c.out << "; evidence may be requested by " << Printable(kinds);
    c.out << "\n";
  }
  return absl::OkStatus();
}

absl::Status RunRosterPush(Context& c) {
  if (auto st = Require(c.args, {"in"}); !st.ok()) return st;
  auto text = ReadFileToString(c.args.Get("in"));
  if (!text.ok()) return text.status();
  auto conn = Connect(c.args);
  if (!conn.ok()) return conn.status();
  v1::PushRosterRequest req;
  req.set_signed_roster(*text);
  auto ctx = conn->NewContext();
  v1::PushRosterResponse resp;
  grpc::Status s = v1::NodeService::NewStub(conn->channel)->PushRoster(ctx.get(), req, &resp);
  if (!s.ok()) return Explain(s, *conn);
  c.out << "roster version " << resp.version() << " is in force at " << Printable(conn->target)
        << "; peers fetch it from this node when they next say hello (within "
           "limits.peer_probe_interval_seconds), and every node follows it without a restart: "
           "new members are trusted and probed, removed ones refused.\n"
           "  check with `corridorctl health --require-peers --wait 60` at this node: it waits "
           "until every peer is healthy and on version "
        << resp.version() << " (a new member shows as joining until its node is up and verified)\n";
  return absl::OkStatus();
}

}  // namespace

std::vector<Command> RosterCommands() {
  const OptionSpec source{"roster", "FILE", "roster source (YAML) to edit"};
  const OptionSpec org{"org", "ID", "member org id"};
  const std::vector<OptionSpec> check = {
      {"stewards", "FILE", "steward keys: stewards.yaml from `pki federation`, or a node config"},
      {"threshold", "N", "signatures required (default: the file's threshold)"},
      {"federation", "NAME", "the federation expected (default: the roster's own)"}};
  return {
      {{"roster", "init"},
       "--federation NAME --out FILE",
       "start a roster source file",
       {{"federation", "NAME", "federation name"},
        {"out", "FILE", "roster source (YAML)"},
        {"version", "N", "roster version (default 1)"},
        {"force", "", "overwrite an existing file"}},
       RunRosterInit},
      {{"roster", "new-version"},
       "--from SIGNED.json --out FILE [--stewards FILE]",
       "start the next roster version from the signed roster in force",
       With({{"from", "FILE", "the signed roster in force (JSON)"},
             {"out", "FILE", "roster source (YAML) to write"},
             {"force", "", "overwrite an existing file"}},
            check),
       RunRosterNewVersion},
      {{"roster", "add-member"},
       "--roster FILE --org ID --name NAME --country CC --kind KIND --endpoint HOST:PORT --org-dir "
       "DIR",
       "add an org to a roster source",
       {source,
        org,
        {"name", "NAME", "the org's name"},
        {"country", "CC", "ISO 3166 country code"},
        {"kind", "KIND", "ministry, inspectorate, union, prosecutor or ngo"},
        {"endpoint", "HOST:PORT", "where the org's node listens"},
        {"org-dir", "DIR", "the directory `pki org` wrote"}},
       RunRosterAddMember},
      {{"roster", "remove-member"},
       "--roster FILE --org ID",
       "remove an org from a roster source (end its agreements first)",
       {source, org},
       RunRosterRemoveMember},
      {{"roster", "add-key"},
       "--roster FILE --org ID --key-dir DIR",
       "add a new signing key to a member",
       {source,
        org,
        {"key-dir", "DIR", "the directory `pki signing-key` wrote"},
        {"key-id", "ID", "key id (default: DIR/signing.keyid)"},
        {"public-key", "BASE64", "the public key, instead of --key-dir"}},
       RunRosterAddKey},
      {{"roster", "retire-key"},
       "--roster FILE --org ID --key-id ID [--valid-until TIME]",
       "retire a member's signing key (what it signed still verifies until TIME)",
       {source,
        org,
        {"key-id", "ID", "the key to retire"},
        {"valid-until", "TIME", "RFC 3339 end of its validity (default: 30 days from now)"}},
       RunRosterRetireKey},
      {{"roster", "revoke-key"},
       "--roster FILE --org ID --key-id ID",
       "revoke a member's signing key (nothing it signed is accepted any more)",
       {source, org, {"key-id", "ID", "the key to revoke"}},
       RunRosterRevokeKey},
      {{"roster", "revoke-cert"},
       "--roster FILE --org ID (--serial HEX | --cert FILE)",
       "revoke one of a member's certificates (a node's or a user's)",
       {source,
        org,
        {"serial", "HEX", "the certificate's serial, as `pki user` or `pki revoke` prints it"},
        {"cert", "FILE", "the certificate itself, instead of --serial"}},
       RunRosterRevokeCert},
      {{"roster", "add-agreement"},
       "--roster FILE --id ID --parties A,B --purposes P,Q [--evidence-requesters KIND,...]",
       "add an agreement (MoU, MLA treaty) to a roster source",
       {source,
        {"id", "ID", "agreement id"},
        {"title", "TEXT", "human title"},
        {"parties", "A,B", "member org ids"},
        {"purposes", "P,Q", "purposes it covers"},
        {"evidence-requesters", "KIND,...",
         "kinds of member that may request evidence under it (e.g. prosecutor); default none"}},
       RunRosterAddAgreement},
      {{"roster", "end-agreement"},
       "--roster FILE --id ID",
       "remove an agreement from a roster source",
       {source, {"id", "ID", "agreement id"}},
       RunRosterEndAgreement},
      {{"roster", "diff"},
       "OLD NEW",
       "what changes from one roster to another (each a source or a signed roster)",
       {},
       RunRosterDiff},
      {{"roster", "sign"},
       "--in FILE --key FILE --key-name NAME --out FILE",
       "sign a roster source, or co-sign a signed roster, as a steward",
       {{"in", "FILE", "roster source (YAML) or signed roster (JSON)"},
        {"key", "FILE", "your steward key"},
        {"key-name", "NAME", "your steward key name as nodes know it, e.g. steward-1"},
        {"out", "FILE", "signed roster to write"}},
       RunRosterSign},
      {{"roster", "verify"},
       "--in FILE --stewards FILE [--threshold N]",
       "check a signed roster's signatures as a node would, offline",
       With({{"in", "FILE", "signed roster"}}, check),
       RunRosterVerify},
      {{"roster", "push"},
       "--in FILE",
       "install a newer signed roster at your node (admins)",
       With(ConnectionOptions(), {{"in", "FILE", "signed roster"}}),
       RunRosterPush},
      {{"roster", "show"},
       "--in FILE [--stewards FILE]",
       "show a signed roster",
       With({{"in", "FILE", "signed roster"}, {"json", "", "print JSON"}}, check),
       RunRosterShow},
  };
}

}  // namespace corridor::ctl
