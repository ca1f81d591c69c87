// corridorctl roster: write, sign, co-sign, show and push the federation roster.
#include "client/lib/roster.h"

#include <sys/stat.h>

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
#include "client/ctl/roster_signing.h"
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

absl::Status RunRosterInit(Context& c) {
  if (auto st = Require(c.args, {"federation", "out"}); !st.ok()) return st;
  v1::Roster roster;
  roster.set_federation(c.args.Get("federation"));
  uint64_t version = 1;
  if (c.args.Has("version") && !absl::SimpleAtoi(c.args.Get("version"), &version)) {
    return absl::InvalidArgumentError("--version must be a positive number");
  }
  roster.set_version(version);
  roster.set_issued_at(absl::FormatTime(absl::RFC3339_sec, absl::Now(), absl::UTCTimeZone()));
  struct stat st;
  if (!c.args.Has("force") && stat(c.args.Get("out").c_str(), &st) == 0) {
    return absl::AlreadyExistsError(absl::StrCat(c.args.Get("out"), " already exists"));
  }
  if (auto s = SaveRosterSource(c.args.Get("out"), roster); !s.ok()) return s;
  c.out << "roster source " << c.args.Get("out") << " (version " << version << ") created\n";
  return absl::OkStatus();
}

absl::Status RunRosterAddMember(Context& c) {
  if (auto st =
          Require(c.args, {"roster", "org", "name", "country", "kind", "endpoint", "org-dir"});
      !st.ok()) {
    return st;
  }
  auto roster = LoadRosterSource(c.args.Get("roster"));
  if (!roster.ok()) return roster.status();
  const std::string dir = c.args.Get("org-dir");
  v1::Member m;
  m.set_org(c.args.Get("org"));
  m.set_name(c.args.Get("name"));
  m.set_country(c.args.Get("country"));
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
  k->set_valid_from(
      absl::FormatTime(absl::RFC3339_sec, absl::Now() - absl::Hours(1), absl::UTCTimeZone()));
  for (const auto& existing : roster->members()) {
    if (existing.org() == m.org()) {
      return absl::AlreadyExistsError(absl::StrCat("org ", m.org(), " is already in the roster"));
    }
  }
  *roster->add_members() = m;
  if (auto st = SaveRosterSource(c.args.Get("roster"), *roster); !st.ok()) return st;
  c.out << "added " << m.org() << " (" << m.name() << ", " << m.country() << ") at " << m.endpoint()
        << " to " << c.args.Get("roster") << "\n";
  return absl::OkStatus();
}

absl::Status RunRosterAddAgreement(Context& c) {
  if (auto st = Require(c.args, {"roster", "id", "parties", "purposes"}); !st.ok()) return st;
  auto roster = LoadRosterSource(c.args.Get("roster"));
  if (!roster.ok()) return roster.status();
  v1::Agreement* a = roster->add_agreements();
  a->set_id(c.args.Get("id"));
  a->set_title(c.args.Get("title"));
  for (absl::string_view p : absl::StrSplit(c.args.Get("parties"), ',', absl::SkipEmpty())) {
    a->add_parties(std::string(p));
  }
  for (absl::string_view p : absl::StrSplit(c.args.Get("purposes"), ',', absl::SkipEmpty())) {
    a->add_purposes(std::string(p));
  }
  if (auto st = SaveRosterSource(c.args.Get("roster"), *roster); !st.ok()) return st;
  c.out << "added agreement " << a->id() << " to " << c.args.Get("roster") << "\n";
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
  if (c.json()) {
    c.out << ToJson(*roster);
    return absl::OkStatus();
  }
  c.out << "federation " << Printable(roster->federation()) << ", roster version "
        << roster->version() << ", issued " << Printable(roster->issued_at())
        << " (signatures not checked here)\n";
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
  for (const auto& a : roster->agreements()) {
    c.out << "agreement " << Printable(a.id()) << ": parties "
          << Printable(absl::StrJoin(a.parties(), ", ")) << "; purposes "
          << Printable(absl::StrJoin(a.purposes(), ", ")) << "\n";
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
        << "; peers fetch it from this node when they next say hello\n";
  return absl::OkStatus();
}

}  // namespace

std::vector<Command> RosterCommands() {
  return {
      {{"roster", "init"},
       "--federation NAME --out FILE",
       "start a roster source file",
       {{"federation", "NAME", "federation name"},
        {"out", "FILE", "roster source (YAML)"},
        {"version", "N", "roster version (default 1)"},
        {"force", "", "overwrite an existing file"}},
       RunRosterInit},
      {{"roster", "add-member"},
       "--roster FILE --org ID --name NAME --country CC --kind KIND --endpoint HOST:PORT --org-dir "
       "DIR",
       "add an org to a roster source",
       {{"roster", "FILE", "roster source (YAML)"},
        {"org", "ID", "org id"},
        {"name", "NAME", "the org's name"},
        {"country", "CC", "ISO 3166 country code"},
        {"kind", "KIND", "ministry, inspectorate, union, prosecutor or ngo"},
        {"endpoint", "HOST:PORT", "where the org's node listens"},
        {"org-dir", "DIR", "the directory `pki org` wrote"}},
       RunRosterAddMember},
      {{"roster", "add-agreement"},
       "--roster FILE --id ID --parties A,B --purposes P,Q",
       "add an agreement (MoU, MLA treaty) to a roster source",
       {{"roster", "FILE", "roster source (YAML)"},
        {"id", "ID", "agreement id"},
        {"title", "TEXT", "human title"},
        {"parties", "A,B", "member org ids"},
        {"purposes", "P,Q", "purposes it covers"}},
       RunRosterAddAgreement},
      {{"roster", "sign"},
       "--in FILE --key FILE --key-name NAME --out FILE",
       "sign a roster source, or co-sign a signed roster, as a steward",
       {{"in", "FILE", "roster source (YAML) or signed roster (JSON)"},
        {"key", "FILE", "your steward key"},
        {"key-name", "NAME", "your steward key name as nodes know it, e.g. steward-1"},
        {"out", "FILE", "signed roster to write"}},
       RunRosterSign},
      {{"roster", "push"},
       "--in FILE",
       "install a newer signed roster at your node (admins)",
       With(ConnectionOptions(), {{"in", "FILE", "signed roster"}}),
       RunRosterPush},
      {{"roster", "show"},
       "--in FILE",
       "show a signed roster",
       {{"in", "FILE", "signed roster"}, {"json", "", "print JSON"}},
       RunRosterShow},
  };
}

}  // namespace corridor::ctl
