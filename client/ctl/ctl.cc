#include "client/ctl/ctl.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <functional>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/ctl/args.h"
#include "client/ctl/display.h"
#include "client/lib/grpc_util.h"
#include "client/lib/pki.h"
#include "client/lib/roster.h"
#include "client/lib/yaml_proto.h"
#include "corridor/v1/case.grpc.pb.h"
#include "corridor/v1/federation.grpc.pb.h"
#include "corridor/v1/node.grpc.pb.h"
#include "google/protobuf/util/json_util.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "ledger/crypto/crypto.h"
#include "ledger/export.h"
#include "ledger/merkle.h"
#include "ledger/note.h"

namespace corridor::ctl {
namespace {

// Everything a command needs: its options and where to write.
struct Context {
  const Args& args;
  std::ostream& out;
  std::ostream& err;
  bool json() const { return args.Has("json"); }
};

using Handler = std::function<absl::Status(Context&)>;

struct Command {
  std::vector<std::string> words;
  std::string usage;  // after the words, e.g. "--in FILE"
  std::string summary;
  std::vector<OptionSpec> options;
  Handler run;
};

// Options shared by every command that talks to a node.
std::vector<OptionSpec> ConnectionOptions() {
  return {
      {"node", "HOST:PORT", "the node to talk to (env CORRIDOR_NODE)"},
      {"cert", "FILE", "your certificate (env CORRIDOR_CERT)"},
      {"key", "FILE", "your private key (env CORRIDOR_KEY)"},
      {"ca", "FILE", "your org's CA certificate (env CORRIDOR_CA)"},
      {"server-name", "NAME", "name the node's certificate must carry, if not the host of --node"},
      {"timeout", "SECONDS", "deadline for each call (default 10)"},
      {"json", "", "print JSON for scripts instead of tables"},
  };
}

std::vector<OptionSpec> With(std::vector<OptionSpec> a, const std::vector<OptionSpec>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

std::string OptionOrEnv(const Args& args, const std::string& name, const char* env) {
  if (args.Has(name)) return args.Get(name);
  const char* v = getenv(env);
  return v == nullptr ? "" : v;
}

// A connection to the user's node, as the options and environment describe it.
struct Connection {
  std::shared_ptr<grpc::Channel> channel;
  absl::Duration timeout;
  std::string target;

  std::unique_ptr<grpc::ClientContext> NewContext() const {
    auto ctx = std::make_unique<grpc::ClientContext>();
    ctx->set_deadline(absl::ToChronoTime(absl::Now() + timeout));
    return ctx;
  }
};

absl::StatusOr<Connection> Connect(const Args& args) {
  Connection c;
  c.target = OptionOrEnv(args, "node", "CORRIDOR_NODE");
  const std::string cert = OptionOrEnv(args, "cert", "CORRIDOR_CERT");
  const std::string key = OptionOrEnv(args, "key", "CORRIDOR_KEY");
  const std::string ca = OptionOrEnv(args, "ca", "CORRIDOR_CA");
  std::vector<std::string> missing;
  if (c.target.empty()) missing.push_back("--node (or CORRIDOR_NODE)");
  if (cert.empty()) missing.push_back("--cert (or CORRIDOR_CERT)");
  if (key.empty()) missing.push_back("--key (or CORRIDOR_KEY)");
  if (ca.empty()) missing.push_back("--ca (or CORRIDOR_CA)");
  if (!missing.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("to reach your node, set ", absl::StrJoin(missing, ", ")));
  }
  auto identity = LoadTlsIdentity(cert, key, ca);
  if (!identity.ok()) return identity.status();
  int seconds = 10;
  if (args.Has("timeout") && (!absl::SimpleAtoi(args.Get("timeout"), &seconds) || seconds <= 0)) {
    return absl::InvalidArgumentError("--timeout must be a positive number of seconds");
  }
  c.timeout = absl::Seconds(seconds);
  c.channel = MakeMutualTlsChannel(*identity, c.target, args.Get("server-name"));
  return c;
}

// Explains a failed call in words a person can act on.
absl::Status Explain(const grpc::Status& s, const Connection& c) {
  switch (s.error_code()) {
    case grpc::StatusCode::UNAVAILABLE:
      // The node itself saying "not now" (its disk is full, its ledger
      // cannot record) is not the same as no node at all.
      if (AnsweredByServer(s, *c.channel)) {
        return absl::UnavailableError(absl::StrCat(
            "the node at ", c.target, " refused the request for now: ", s.error_message(),
            " (the node is running; the problem is on its side, not in your request: "
            "`corridorctl health` shows why)"));
      }
      return absl::UnavailableError(absl::StrCat(
          "cannot reach the node at ", c.target, " (", s.error_message(),
          "). Is corridord running there, is the address right, and are --cert/--key/--ca from "
          "your org?"));
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return absl::DeadlineExceededError(
          absl::StrCat("the node at ", c.target, " did not answer in time"));
    case grpc::StatusCode::UNAUTHENTICATED:
      return absl::UnauthenticatedError(
          absl::StrCat("the node did not accept your certificate: ", s.error_message()));
    case grpc::StatusCode::PERMISSION_DENIED:
      return absl::PermissionDeniedError(absl::StrCat("refused: ", s.error_message()));
    default:
      return FromGrpcStatus(s);
  }
}

std::string ToJson(const google::protobuf::Message& m) {
  google::protobuf::util::JsonPrintOptions o;
  o.add_whitespace = true;
  o.preserve_proto_field_names = true;
  std::string s;
  (void)google::protobuf::util::MessageToJsonString(m, &s, o);
  // Protobuf escapes controls but leaves bidi isolates and the like raw.
  return TerminalSafeJson(s);
}

std::string RoleName(int r) {
  std::string n = v1::Role_Name(static_cast<v1::Role>(r));
  return absl::AsciiStrToLower(absl::StripPrefix(n, "ROLE_"));
}

std::string PeerStateName(v1::PeerState s) {
  return absl::AsciiStrToLower(absl::StripPrefix(v1::PeerState_Name(s), "PEER_STATE_"));
}

// Prints rows as an aligned table.
// Every cell is shown through Printable(): cells hold what nodes answered, and a
// newline or escape sequence in one must not forge a row or reach the terminal.
void PrintTable(std::ostream& out, std::vector<std::vector<std::string>> rows) {
  for (auto& r : rows) {
    for (std::string& cell : r) cell = Printable(cell);
  }
  std::vector<size_t> width;
  for (const auto& r : rows) {
    for (size_t i = 0; i < r.size(); ++i) {
      if (width.size() <= i) width.push_back(0);
      width[i] = std::max(width[i], r[i].size());
    }
  }
  for (const auto& r : rows) {
    std::string line;
    for (size_t i = 0; i < r.size(); ++i) {
      std::string cell = r[i];
      if (i + 1 < r.size()) cell.resize(width[i] + 2, ' ');
      line += cell;
    }
    out << line << "\n";
  }
}

// ---- node commands ---------------------------------------------------------

absl::Status RunHealth(Context& c) {
  auto conn = Connect(c.args);
  if (!conn.ok()) return conn.status();
  int wait_seconds = 0;
  if (c.args.Has("wait") && !absl::SimpleAtoi(c.args.Get("wait"), &wait_seconds)) {
    return absl::InvalidArgumentError("--wait must be a number of seconds");
  }
  const bool require_peers = c.args.Has("require-peers");
  const absl::Time give_up = absl::Now() + absl::Seconds(wait_seconds);
  auto health = grpc::health::v1::Health::NewStub(conn->channel);
  auto node = v1::NodeService::NewStub(conn->channel);
  while (true) {
    grpc::health::v1::HealthCheckResponse hresp;
    v1::StatusResponse sresp;
    absl::Status problem;
    std::string not_serving;  // the node's reason, if it answered NOT_SERVING
    {
      auto ctx = conn->NewContext();
      // While waiting, let the call wait for the connection instead of failing fast.
      if (absl::Now() < give_up) ctx->set_wait_for_ready(true);
      grpc::Status s = health->Check(ctx.get(), grpc::health::v1::HealthCheckRequest(), &hresp);
      if (!s.ok()) {
        problem = Explain(s, *conn);
      } else if (hresp.status() != grpc::health::v1::HealthCheckResponse::SERVING) {
        const auto& trailers = ctx->GetServerTrailingMetadata();
        auto reason = trailers.find(kHealthReasonKey);
        not_serving = reason == trailers.end()
                          ? "no reason given"
                          : std::string(reason->second.data(), reason->second.size());
        problem = absl::UnavailableError(absl::StrCat(
            "the node at ", conn->target, " is running but not serving: ", not_serving,
            ". It refuses to record anything until this is fixed; once it is (e.g. disk space "
            "freed) it recovers by itself."));
      }
    }
    // Not serving still answers: show the node's view with the reason.
    if (problem.ok() || !not_serving.empty()) {
      auto ctx = conn->NewContext();
      grpc::Status s = node->Status(ctx.get(), v1::StatusRequest(), &sresp);
      if (!s.ok() && problem.ok()) problem = Explain(s, *conn);
    }
    std::vector<std::string> unhealthy;
    if (problem.ok()) {
      for (const auto& p : sresp.peers()) {
        if (p.state() != v1::PEER_STATE_HEALTHY) unhealthy.push_back(p.org());
      }
      if (require_peers && !unhealthy.empty()) {
        problem = absl::UnavailableError(
            absl::StrCat("peers not healthy: ", absl::StrJoin(unhealthy, ", ")));
      }
    }
    // A refusal will not change by waiting; anything else might.
    const bool refused = absl::IsPermissionDenied(problem) || absl::IsUnauthenticated(problem);
    if (!problem.ok() && !refused && absl::Now() < give_up) {
      std::this_thread::sleep_for(std::chrono::milliseconds(250));
      continue;
    }
    if (!problem.ok() && sresp.org().empty()) return problem;
    if (c.json()) {
      c.out << ToJson(sresp);
    } else {
      c.out << "node " << Printable(sresp.org()) << " (" << Printable(sresp.federation()) << ") at "
            << Printable(conn->target) << ": "
            << (not_serving.empty() ? "serving" : "NOT SERVING (" + Printable(not_serving) + ")")
            << ", roster version " << sresp.roster_version() << "\n";
      std::vector<std::vector<std::string>> rows = {{"PEER", "ENDPOINT", "STATE", "DETAIL"}};
      for (const auto& p : sresp.peers()) {
        rows.push_back({p.org(), p.endpoint(), PeerStateName(p.state()),
                        p.state() == v1::PEER_STATE_HEALTHY
                            ? "mutual TLS ok, roster v" + std::to_string(p.peer_roster_version())
                            : p.last_error()});
      }
      PrintTable(c.out, rows);
    }
    return problem;
  }
}

absl::Status RunWhoami(Context& c) {
  auto conn = Connect(c.args);
  if (!conn.ok()) return conn.status();
  auto stub = v1::NodeService::NewStub(conn->channel);
  auto ctx = conn->NewContext();
  v1::WhoamiResponse resp;
  grpc::Status s = stub->Whoami(ctx.get(), v1::WhoamiRequest(), &resp);
  if (!s.ok()) return Explain(s, *conn);
  if (c.json()) {
    c.out << ToJson(resp);
    return absl::OkStatus();
  }
  std::vector<std::string> roles;
  for (int r : resp.roles()) roles.push_back(RoleName(r));
  c.out << "org:     " << Printable(resp.org()) << "\n"
        << "subject: " << Printable(resp.subject()) << "\n"
        << "roles:   " << (roles.empty() ? "(none)" : absl::StrJoin(roles, ", ")) << "\n"
        << "node:    " << Printable(resp.node_org()) << " in federation "
        << Printable(resp.federation()) << "\n";
  return absl::OkStatus();
}

// ---- PKI commands ----------------------------------------------------------

absl::Status Require(const Args& args, std::initializer_list<const char*> names) {
  std::vector<std::string> missing;
  for (const char* n : names) {
    if (args.Get(n).empty()) missing.push_back(absl::StrCat("--", n));
  }
  if (missing.empty()) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat("missing ", absl::StrJoin(missing, ", ")));
}

absl::Status MakeDir(const std::string& dir) {
  std::string path;
  for (absl::string_view part : absl::StrSplit(dir, '/')) {
    path += std::string(part) + "/";
    if (part.empty()) continue;
    if (mkdir(path.c_str(), 0755) != 0 && errno != EEXIST) {
      return absl::InternalError(absl::StrCat("cannot create directory ", path));
    }
  }
  return absl::OkStatus();
}

// Writes a new file; refuses to overwrite so keys are never lost by accident.
absl::Status WriteNew(const std::string& path, absl::string_view data, int mode, bool force) {
  struct stat st;
  if (!force && stat(path.c_str(), &st) == 0) {
    return absl::AlreadyExistsError(
        absl::StrCat(path, " already exists; not overwriting it (use --force to replace)"));
  }
  return WriteFileAtomically(path, data, mode);
}

absl::Status RunPkiFederation(Context& c) {
  if (auto st = Require(c.args, {"federation", "out"}); !st.ok()) return st;
  int count = 3;
  if (c.args.Has("stewards") && (!absl::SimpleAtoi(c.args.Get("stewards"), &count) || count < 1)) {
    return absl::InvalidArgumentError("--stewards must be a positive number");
  }
  const std::string dir = c.args.Get("out");
  const bool force = c.args.Has("force");
  if (auto st = MakeDir(dir); !st.ok()) return st;
  std::string yaml = "steward_keys:\n";
  for (int i = 1; i <= count; ++i) {
    const std::string name = absl::StrCat("steward-", i);
    Ed25519PrivateKey key = Ed25519PrivateKey::Generate();
    if (auto st = WriteNew(absl::StrCat(dir, "/", name, ".key"), key.ToPem(), 0600, force);
        !st.ok()) {
      return st;
    }
    absl::StrAppend(&yaml, "  - name: ", name,
                    "\n    public_key: ", Base64Encode(key.public_key().raw()), "\n");
  }
  if (auto st = WriteNew(dir + "/stewards.yaml", yaml, 0644, force); !st.ok()) return st;
  c.out << "federation " << c.args.Get("federation") << ": " << count << " steward keys in " << dir
        << "\n  give each steward their steward-N.key; paste " << dir
        << "/stewards.yaml into every node's roster: section\n";
  return absl::OkStatus();
}

absl::Status RunPkiOrg(Context& c) {
  if (auto st = Require(c.args, {"federation", "org", "out"}); !st.ok()) return st;
  const std::string fed = c.args.Get("federation");
  const std::string org = c.args.Get("org");
  const std::string dir = c.args.Get("out");
  const bool force = c.args.Has("force");
  if (auto st = MakeDir(dir); !st.ok()) return st;

  pki::CaOptions ca_opts;
  ca_opts.federation = fed;
  ca_opts.org = org;
  ca_opts.common_name = absl::StrCat(org, " Corridor CA");
  auto ca = pki::CreateOrgCa(ca_opts);
  if (!ca.ok()) return ca.status();

  pki::LeafOptions node_opts;
  node_opts.spiffe_uri = pki::NodeSpiffeUri(fed, org);
  node_opts.common_name = absl::StrCat(org, " node");
  node_opts.server_auth = true;
  node_opts.dns_names = {"localhost"};
  node_opts.ip_addresses = {"127.0.0.1"};
  for (const std::string& h : c.args.GetAll("host")) {
    bool is_ip = !h.empty() && (absl::ascii_isdigit(h[0]) || h.find(':') != std::string::npos);
    (is_ip ? node_opts.ip_addresses : node_opts.dns_names).push_back(h);
  }
  auto node = pki::IssueLeaf(*ca, node_opts);
  if (!node.ok()) return node.status();

  Ed25519PrivateKey signing = Ed25519PrivateKey::Generate();
  const std::string key_id = c.args.Get("key-id", absl::StrCat(org, "-1"));
  const std::vector<std::pair<std::string, std::pair<std::string, int>>> files = {
      {"ca.key", {ca->key_pem, 0600}},
      {"ca.crt", {ca->cert_pem, 0644}},
      {"node.key", {node->key_pem, 0600}},
      {"node.crt", {node->cert_pem, 0644}},
      {"signing.key", {signing.ToPem(), 0600}},
      {"signing.pub", {Base64Encode(signing.public_key().raw()) + "\n", 0644}},
      {"signing.keyid", {key_id + "\n", 0644}},
      // Wraps the node's per-case data keys; never leaves the node.
      {"master.key", {Base64Encode(RandomBytes(32)) + "\n", 0600}},
  };
  for (const auto& [name, content] : files) {
    if (auto st = WriteNew(absl::StrCat(dir, "/", name), content.first, content.second, force);
        !st.ok()) {
      return st;
    }
  }
  c.out << "org " << org << ": CA, node certificate (" << node_opts.spiffe_uri
        << ") and signing key " << key_id << " in " << dir
        << "\n  keep ca.key offline; add the org to the roster with `corridorctl roster "
           "add-member`\n";
  return absl::OkStatus();
}

absl::Status RunPkiUser(Context& c) {
  if (auto st = Require(c.args, {"federation", "org", "org-dir", "name", "out"}); !st.ok())
    return st;
  const std::string dir = c.args.Get("org-dir");
  auto ca_key = ReadFileToString(dir + "/ca.key");
  if (!ca_key.ok()) return ca_key.status();
  auto ca_cert = ReadFileToString(dir + "/ca.crt");
  if (!ca_cert.ok()) return ca_cert.status();
  pki::LeafOptions opts;
  const std::string name = c.args.Get("name");
  opts.spiffe_uri = pki::UserSpiffeUri(c.args.Get("federation"), c.args.Get("org"), name);
  opts.common_name = name;
  auto user = pki::IssueLeaf({*ca_key, *ca_cert}, opts);
  if (!user.ok()) return user.status();
  const std::string out = c.args.Get("out");
  if (auto st = MakeDir(out); !st.ok()) return st;
  const bool force = c.args.Has("force");
  if (auto st = WriteNew(absl::StrCat(out, "/", name, ".key"), user->key_pem, 0600, force);
      !st.ok()) {
    return st;
  }
  if (auto st = WriteNew(absl::StrCat(out, "/", name, ".crt"), user->cert_pem, 0644, force);
      !st.ok()) {
    return st;
  }
  c.out << "user " << opts.spiffe_uri << ": " << out << "/" << name << ".crt and .key"
        << "\n  the node admin must list \"" << name << "\" under users: with their roles\n";
  return absl::OkStatus();
}

// ---- roster commands -------------------------------------------------------

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

// ---- case commands ---------------------------------------------------------

template <typename Enum>
absl::StatusOr<Enum> ParseEnumOption(const std::string& value, const std::string& option,
                                     const google::protobuf::EnumDescriptor* desc) {
  std::string want;
  for (char ch : value) want.push_back(ch == '-' ? '_' : absl::ascii_toupper(ch));
  std::vector<std::string> names;
  for (int i = 1; i < desc->value_count(); ++i) {
    const std::string& name = desc->value(i)->name();
    if (name == want || absl::EndsWith(name, "_" + want))
      return static_cast<Enum>(desc->value(i)->number());
    std::string short_name =
        absl::AsciiStrToLower(name.substr(name.find('_', name.find('_') + 1) + 1));
    for (char& ch : short_name)
      if (ch == '_') ch = '-';
    names.push_back(short_name);
  }
  return absl::InvalidArgumentError(
      absl::StrCat("--", option, " must be one of ", absl::StrJoin(names, ", ")));
}

std::string EnumShort(const google::protobuf::EnumDescriptor* desc, int value) {
  const auto* v = desc->FindValueByNumber(value);
  if (v == nullptr) return "?";
  std::string name = v->name();
  std::string s = absl::AsciiStrToLower(name.substr(name.find('_', name.find('_') + 1) + 1));
  for (char& ch : s)
    if (ch == '_') ch = '-';
  return s;
}

std::string CaseIdArg(const Args& args) {
  return args.positional().empty() ? args.Get("id") : args.positional()[0];
}

absl::Status NeedCaseId(const Args& args) {
  if (CaseIdArg(args).empty())
    return absl::InvalidArgumentError("name the case, e.g. `corridorctl case show C-3F9A0C12D4E7`");
  return absl::OkStatus();
}

// Every value is shown through Printable(): a received case holds what a peer sent.
void PrintCase(std::ostream& out, const v1::Case& c) {
  const auto P = [](absl::string_view s) { return Printable(s); };
  out << "case " << P(c.id()) << " (" << EnumShort(v1::CaseStatus_descriptor(), c.status()) << ")\n"
      << "  category:    " << EnumShort(v1::CaseCategory_descriptor(), c.category()) << "\n"
      << "  sector:      " << P(c.sector()) << "\n"
      << "  corridor:    " << P(c.origin_country()) << " -> " << P(c.destination_country()) << "\n"
      << "  worker:      " << P(c.worker().name());
  if (!c.worker().date_of_birth().empty()) out << ", born " << P(c.worker().date_of_birth());
  if (!c.worker().document_number().empty()) {
    out << ", document " << P(c.worker().document_number());
  }
  out << "\n";
  if (!c.worker().contact().empty()) out << "  contact:     " << P(c.worker().contact()) << "\n";
  if (!c.employer().name().empty()) out << "  employer:    " << P(c.employer().name()) << "\n";
  if (!c.recruiter().name().empty()) {
    out << "  recruiter:   " << P(c.recruiter().name());
    if (!c.recruiter().licence_number().empty())
      out << " (licence " << P(c.recruiter().licence_number()) << ")";
    out << "\n";
  }
  if (!c.narrative().empty()) out << "  narrative:   " << P(c.narrative()) << "\n";
  for (const auto& g : c.consent().grants()) {
    out << "  consent:     " << P(g.org()) << " for " << P(absl::StrJoin(g.purposes(), ", "))
        << "\n";
  }
  out << "  owner:       " << P(c.owner_org()) << ", created " << P(c.created_at()) << " by "
      << P(c.created_by()) << ", updated " << P(c.updated_at()) << "\n";
  for (const auto& l : c.referrals()) {
    out << "  referral:    " << P(l.referral_id()) << (l.outgoing() ? " to " : " from ")
        << P(l.peer_org())
        << (l.peer_case_id().empty() ? "" : " (their case " + P(l.peer_case_id()) + ")") << ", "
        << EnumShort(v1::ReferralState_descriptor(), l.state()) << ", " << P(l.purpose())
        << " under " << P(l.agreement()) << (l.reason().empty() ? "" : ": " + P(l.reason()))
        << "\n";
  }
  for (const auto& h : c.history()) {
    out << "  history:     " << P(h.time()) << "  " << P(h.org()) << "  " << P(h.author());
    if (h.status() != v1::CASE_STATUS_UNSPECIFIED)
      out << "  status " << EnumShort(v1::CaseStatus_descriptor(), h.status());
    if (!h.outcome().empty()) out << "  outcome " << P(h.outcome());
    if (!h.note().empty()) out << "  " << P(h.note());
    out << "\n";
  }
}

absl::Status RunCaseCreate(Context& c) {
  if (auto st = Require(c.args, {"category", "origin", "destination", "worker-name"}); !st.ok())
    return st;
  v1::CreateCaseRequest req;
  v1::Case* k = req.mutable_case_();
  auto cat = ParseEnumOption<v1::CaseCategory>(c.args.Get("category"), "category",
                                               v1::CaseCategory_descriptor());
  if (!cat.ok()) return cat.status();
  k->set_category(*cat);
  k->set_sector(c.args.Get("sector"));
  k->set_origin_country(absl::AsciiStrToUpper(c.args.Get("origin")));
  k->set_destination_country(absl::AsciiStrToUpper(c.args.Get("destination")));
  k->mutable_worker()->set_name(c.args.Get("worker-name"));
  k->mutable_worker()->set_date_of_birth(c.args.Get("worker-dob"));
  k->mutable_worker()->set_document_number(c.args.Get("worker-document"));
  k->mutable_worker()->set_contact(c.args.Get("worker-contact"));
  for (absl::string_view l : absl::StrSplit(c.args.Get("languages"), ',', absl::SkipEmpty())) {
    k->mutable_worker()->add_languages(std::string(l));
  }
  k->mutable_employer()->set_name(c.args.Get("employer"));
  k->mutable_recruiter()->set_name(c.args.Get("recruiter"));
  k->mutable_recruiter()->set_licence_number(c.args.Get("recruiter-licence"));
  k->mutable_recruiter()->set_country(c.args.Get("recruiter-country"));
  k->set_narrative(c.args.Get("narrative"));
  for (const std::string& grant : c.args.GetAll("consent")) {
    std::vector<std::string> parts = absl::StrSplit(grant, absl::MaxSplits(':', 1));
    if (parts.size() != 2 || parts[0].empty() || parts[1].empty()) {
      return absl::InvalidArgumentError(
          "--consent is ORG:PURPOSE[,PURPOSE...], e.g. ministry-id:fee-recovery");
    }
    auto* g = k->mutable_consent()->add_grants();
    g->set_org(parts[0]);
    for (absl::string_view p : absl::StrSplit(parts[1], ',', absl::SkipEmpty()))
      g->add_purposes(std::string(p));
  }
  if (k->consent().grants_size() > 0) {
    k->mutable_consent()->set_method(c.args.Get("consent-method", "recorded by caseworker"));
    k->mutable_consent()->set_given_at(
        absl::FormatTime(absl::RFC3339_sec, absl::Now(), absl::UTCTimeZone()));
  }
  auto conn = Connect(c.args);
  if (!conn.ok()) return conn.status();
  auto ctx = conn->NewContext();
  v1::Case resp;
  grpc::Status s = v1::CaseService::NewStub(conn->channel)->CreateCase(ctx.get(), req, &resp);
  if (!s.ok()) return Explain(s, *conn);
  if (c.json()) {
    c.out << ToJson(resp);
  } else {
    c.out << "created case " << Printable(resp.id()) << "\n";
  }
  return absl::OkStatus();
}

absl::Status RunCaseShow(Context& c) {
  if (auto st = NeedCaseId(c.args); !st.ok()) return st;
  if (auto st = Require(c.args, {"purpose"}); !st.ok()) {
    return absl::InvalidArgumentError(
        "say why you read this worker's data: --purpose (e.g. case-handling)");
  }
  auto conn = Connect(c.args);
  if (!conn.ok()) return conn.status();
  v1::GetCaseRequest req;
  req.set_id(CaseIdArg(c.args));
  req.set_purpose(c.args.Get("purpose"));
  auto ctx = conn->NewContext();
  v1::Case resp;
  grpc::Status s = v1::CaseService::NewStub(conn->channel)->GetCase(ctx.get(), req, &resp);
  if (!s.ok()) return Explain(s, *conn);
  if (c.json()) {
    c.out << ToJson(resp);
  } else {
    PrintCase(c.out, resp);
  }
  return absl::OkStatus();
}

absl::Status RunCaseList(Context& c) {
  v1::ListCasesRequest req;
  if (c.args.Has("status")) {
    auto st = ParseEnumOption<v1::CaseStatus>(c.args.Get("status"), "status",
                                              v1::CaseStatus_descriptor());
    if (!st.ok()) return st.status();
    req.set_status(*st);
  }
  if (c.args.Has("category")) {
    auto cat = ParseEnumOption<v1::CaseCategory>(c.args.Get("category"), "category",
                                                 v1::CaseCategory_descriptor());
    if (!cat.ok()) return cat.status();
    req.set_category(*cat);
  }
  req.set_sector(c.args.Get("sector"));
  req.set_origin_country(absl::AsciiStrToUpper(c.args.Get("origin")));
  req.set_destination_country(absl::AsciiStrToUpper(c.args.Get("destination")));
  req.set_created_after(c.args.Get("after"));
  req.set_created_before(c.args.Get("before"));
  uint32_t page = 0;
  if (c.args.Has("page-size") && !absl::SimpleAtoi(c.args.Get("page-size"), &page)) {
    return absl::InvalidArgumentError("--page-size must be a number");
  }
  req.set_page_size(page);
  req.set_page_token(c.args.Get("page-token"));
  auto conn = Connect(c.args);
  if (!conn.ok()) return conn.status();
  auto ctx = conn->NewContext();
  v1::ListCasesResponse resp;
  grpc::Status s = v1::CaseService::NewStub(conn->channel)->ListCases(ctx.get(), req, &resp);
  if (!s.ok()) return Explain(s, *conn);
  if (c.json()) {
    c.out << ToJson(resp);
    return absl::OkStatus();
  }
  std::vector<std::vector<std::string>> rows = {
      {"CASE", "STATUS", "CATEGORY", "SECTOR", "CORRIDOR", "CREATED"}};
  for (const auto& k : resp.cases()) {
    rows.push_back({k.id(), EnumShort(v1::CaseStatus_descriptor(), k.status()),
                    EnumShort(v1::CaseCategory_descriptor(), k.category()), k.sector(),
                    k.origin_country() + "->" + k.destination_country(), k.created_at()});
  }
  PrintTable(c.out, rows);
  if (!resp.next_page_token().empty()) {
    c.out << "more: --page-token " << Printable(resp.next_page_token()) << "\n";
  }
  return absl::OkStatus();
}

absl::Status RunCaseUpdate(Context& c) {
  if (auto st = NeedCaseId(c.args); !st.ok()) return st;
  v1::UpdateCaseRequest req;
  req.set_id(CaseIdArg(c.args));
  if (c.args.Has("status")) {
    auto st = ParseEnumOption<v1::CaseStatus>(c.args.Get("status"), "status",
                                              v1::CaseStatus_descriptor());
    if (!st.ok()) return st.status();
    req.set_status(*st);
  }
  req.set_narrative(c.args.Get("narrative"));
  if (c.args.Has("employer")) req.mutable_employer()->set_name(c.args.Get("employer"));
  if (c.args.Has("recruiter")) req.mutable_recruiter()->set_name(c.args.Get("recruiter"));
  auto conn = Connect(c.args);
  if (!conn.ok()) return conn.status();
  auto ctx = conn->NewContext();
  v1::Case resp;
  grpc::Status s = v1::CaseService::NewStub(conn->channel)->UpdateCase(ctx.get(), req, &resp);
  if (!s.ok()) return Explain(s, *conn);
  if (c.json()) {
    c.out << ToJson(resp);
  } else {
    c.out << "updated case " << Printable(resp.id()) << " ("
          << EnumShort(v1::CaseStatus_descriptor(), resp.status()) << ")\n";
  }
  return absl::OkStatus();
}

absl::Status RunCaseClose(Context& c) {
  if (auto st = NeedCaseId(c.args); !st.ok()) return st;
  v1::CloseCaseRequest req;
  req.set_id(CaseIdArg(c.args));
  req.set_reason(c.args.Get("reason"));
  auto conn = Connect(c.args);
  if (!conn.ok()) return conn.status();
  auto ctx = conn->NewContext();
  v1::CaseSummary resp;
  grpc::Status s = v1::CaseService::NewStub(conn->channel)->CloseCase(ctx.get(), req, &resp);
  if (!s.ok()) return Explain(s, *conn);
  c.json() ? c.out << ToJson(resp) : c.out << "closed case " << Printable(resp.id()) << "\n";
  return absl::OkStatus();
}

absl::Status RunCaseErase(Context& c) {
  if (auto st = NeedCaseId(c.args); !st.ok()) return st;
  if (auto st = Require(c.args, {"reason"}); !st.ok()) return st;
  v1::EraseCaseRequest req;
  req.set_id(CaseIdArg(c.args));
  req.set_reason(c.args.Get("reason"));
  auto conn = Connect(c.args);
  if (!conn.ok()) return conn.status();
  auto ctx = conn->NewContext();
  v1::EraseCaseResponse resp;
  grpc::Status s = v1::CaseService::NewStub(conn->channel)->EraseCase(ctx.get(), req, &resp);
  if (!s.ok()) return Explain(s, *conn);
  c.json() ? c.out << ToJson(resp)
           : c.out << "erased case " << Printable(resp.id())
                   << ": its data key is destroyed; the erasure is ledger entry "
                   << resp.ledger_index() << "\n";
  return absl::OkStatus();
}

// ---- evidence commands -----------------------------------------------------

// Progress on stderr for people at a terminal; silent for scripts.
class Progress {
 public:
  Progress(std::ostream& err, std::string verb, uint64_t total)
      : err_(err), verb_(std::move(verb)), total_(total), tty_(isatty(2)) {}
  void Update(uint64_t done) {
    if (!tty_) return;
    char buf[128];
    if (total_ > 0) {
      snprintf(buf, sizeof(buf), "\r%s %.1f / %.1f MiB (%d%%)   ", verb_.c_str(), done / 1048576.0,
               total_ / 1048576.0, static_cast<int>(100.0 * done / total_));
    } else {
      snprintf(buf, sizeof(buf), "\r%s %.1f MiB   ", verb_.c_str(), done / 1048576.0);
    }
    err_ << buf << std::flush;
  }
  void Done() {
    if (tty_) err_ << "\n";
  }

 private:
  std::ostream& err_;
  std::string verb_;
  uint64_t total_;
  bool tty_;
};

absl::Status RunEvidenceAdd(Context& c) {
  if (auto st = NeedCaseId(c.args); !st.ok()) return st;
  if (c.args.positional().size() < 2) {
    return absl::InvalidArgumentError("name the file: corridorctl evidence add CASE FILE");
  }
  const std::string path = c.args.positional()[1];
  auto data = ReadFileToString(path);
  if (!data.ok()) return data.status();
  auto conn = Connect(c.args);
  if (!conn.ok()) return conn.status();
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Minutes(10)));
  v1::EvidenceItem item;
  auto writer = v1::CaseService::NewStub(conn->channel)->AddEvidence(&ctx, &item);
  v1::AddEvidenceRequest header;
  header.mutable_header()->set_case_id(CaseIdArg(c.args));
  const size_t slash = path.rfind('/');
  header.mutable_header()->set_file_name(
      c.args.Get("name", slash == std::string::npos ? path : path.substr(slash + 1)));
  header.mutable_header()->set_media_type(c.args.Get("media-type", "application/octet-stream"));
  Progress progress(c.err, "uploading", data->size());
  bool open = writer->Write(header);
  constexpr size_t kPiece = 256 * 1024;
  for (size_t off = 0; open && off < data->size(); off += kPiece) {
    v1::AddEvidenceRequest part;
    part.set_data(data->substr(off, kPiece));
    open = writer->Write(part);
    progress.Update(std::min(off + kPiece, data->size()));
  }
  writer->WritesDone();
  grpc::Status s = writer->Finish();
  progress.Done();
  if (!s.ok()) return Explain(s, *conn);
  const std::string local = HexEncode(DigestBytes(Sha256(*data)));
  if (HexEncode(item.sha256()) != local) {
    return absl::DataLossError(
        "the node recorded a different SHA-256 than this file has: upload again");
  }
  if (c.json()) {
    c.out << ToJson(item);
  } else {
    c.out << "added evidence " << Printable(item.id()) << " to case "
          << Printable(CaseIdArg(c.args)) << ": " << Printable(item.file_name()) << ", "
          << item.size() << " bytes, SHA-256 " << local << "\n";
  }
  return absl::OkStatus();
}

absl::Status RunEvidenceList(Context& c) {
  if (auto st = NeedCaseId(c.args); !st.ok()) return st;
  auto conn = Connect(c.args);
  if (!conn.ok()) return conn.status();
  v1::ListEvidenceRequest req;
  req.set_case_id(CaseIdArg(c.args));
  req.set_purpose(c.args.Get("purpose"));
  auto ctx = conn->NewContext();
  v1::ListEvidenceResponse resp;
  grpc::Status s = v1::CaseService::NewStub(conn->channel)->ListEvidence(ctx.get(), req, &resp);
  if (!s.ok()) return Explain(s, *conn);
  if (c.json()) {
    c.out << ToJson(resp);
    return absl::OkStatus();
  }
  std::vector<std::vector<std::string>> rows = {
      {"EVIDENCE", "FILE", "TYPE", "BYTES", "SHA-256", "ADDED"}};
  for (const auto& i : resp.items()) {
    rows.push_back({i.id(), i.file_name(), i.media_type(), std::to_string(i.size()),
                    HexEncode(i.sha256()).substr(0, 16) + "...",
                    i.added_at() + " by " + i.added_by()});
  }
  PrintTable(c.out, rows);
  return absl::OkStatus();
}

absl::Status RunEvidenceGet(Context& c) {
  if (c.args.positional().size() < 2) {
    return absl::InvalidArgumentError(
        "corridorctl evidence get CASE EVIDENCE --out FILE --purpose P");
  }
  if (auto st = Require(c.args, {"out", "purpose"}); !st.ok()) return st;
  auto conn = Connect(c.args);
  if (!conn.ok()) return conn.status();
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Minutes(10)));
  v1::GetEvidenceRequest req;
  req.set_case_id(c.args.positional()[0]);
  req.set_evidence_id(c.args.positional()[1]);
  req.set_purpose(c.args.Get("purpose"));
  auto reader = v1::CaseService::NewStub(conn->channel)->GetEvidence(&ctx, req);
  v1::EvidenceChunk chunk;
  v1::EvidenceItem item;
  std::string data;
  std::unique_ptr<Progress> progress;
  while (reader->Read(&chunk)) {
    if (chunk.has_item()) {
      item = chunk.item();
      progress = std::make_unique<Progress>(c.err, "downloading", item.size());
    }
    data += chunk.data();
    if (progress) progress->Update(data.size());
  }
  grpc::Status s = reader->Finish();
  if (progress) progress->Done();
  if (!s.ok()) return Explain(s, *conn);
  // End to end: what arrived must be what was recorded on upload.
  if (data.size() != item.size() || DigestBytes(Sha256(data)) != item.sha256()) {
    return absl::DataLossError(
        "what arrived does not match the recorded size and SHA-256; nothing was saved");
  }
  if (auto st = WriteFileAtomically(c.args.Get("out"), data, 0600); !st.ok()) return st;
  c.out << "saved " << Printable(item.file_name()) << " (" << item.size()
        << " bytes, SHA-256 verified) to " << Printable(c.args.Get("out")) << "\n";
  return absl::OkStatus();
}

// ---- referral commands -----------------------------------------------------

absl::Status RunRefer(Context& c) {
  if (auto st = NeedCaseId(c.args); !st.ok()) return st;
  if (auto st = Require(c.args, {"to", "agreement", "purpose"}); !st.ok()) return st;
  v1::ReferCaseRequest req;
  req.set_case_id(CaseIdArg(c.args));
  req.set_to_org(c.args.Get("to"));
  req.set_agreement(c.args.Get("agreement"));
  req.set_purpose(c.args.Get("purpose"));
  for (const std::string& inc : c.args.GetAll("include")) {
    for (absl::string_view part : absl::StrSplit(inc, ',', absl::SkipEmpty())) {
      if (part == "personal-data") {
        req.set_include_personal_data(true);
      } else if (absl::StartsWith(part, "E-")) {
        req.add_evidence_ids(std::string(part));
      } else {
        return absl::InvalidArgumentError(
            "--include takes personal-data and/or evidence ids (E-...)");
      }
    }
  }
  req.set_deidentify(c.args.Has("deidentify"));
  if (c.args.Has("onward")) {
    auto o = ParseEnumOption<v1::OnwardSharing>(c.args.Get("onward"), "onward",
                                                v1::OnwardSharing_descriptor());
    if (!o.ok()) return o.status();
    req.set_onward_sharing(*o);
  }
  req.set_retention_until(c.args.Get("retain-until"));
  auto conn = Connect(c.args);
  if (!conn.ok()) return conn.status();
  auto ctx = conn->NewContext();
  v1::ReferCaseResponse resp;
  grpc::Status s = v1::ReferralService::NewStub(conn->channel)->Refer(ctx.get(), req, &resp);
  if (!s.ok()) return Explain(s, *conn);
  if (c.json()) {
    c.out << ToJson(resp);
  } else {
    c.out << "referral " << Printable(resp.referral_id()) << " of case " << Printable(req.case_id())
          << " to " << Printable(req.to_org()) << " is queued for delivery (envelope "
          << Printable(resp.envelope_id()) << ")"
          << (resp.deidentified() ? ", without the worker's personal data"
                                  : ", with the worker's personal data (consented)")
          << "\n  follow it with `corridorctl outbox`\n";
  }
  return absl::OkStatus();
}

absl::Status RunInbox(Context& c) {
  auto conn = Connect(c.args);
  if (!conn.ok()) return conn.status();
  auto ctx = conn->NewContext();
  v1::ListInboxResponse resp;
  grpc::Status s = v1::ReferralService::NewStub(conn->channel)->ListInbox(ctx.get(), {}, &resp);
  if (!s.ok()) return Explain(s, *conn);
  if (c.json()) {
    c.out << ToJson(resp);
    return absl::OkStatus();
  }
  std::vector<std::vector<std::string>> rows = {
      {"REFERRAL", "FROM", "CASE", "CATEGORY", "CORRIDOR", "PURPOSE", "RECEIVED"}};
  for (const auto& i : resp.items()) {
    rows.push_back({i.referral_id(), i.from_org(), i.case_id(),
                    EnumShort(v1::CaseCategory_descriptor(), i.summary().category()),
                    i.summary().origin_country() + "->" + i.summary().destination_country(),
                    i.purpose(), i.received_at()});
  }
  PrintTable(c.out, rows);
  if (resp.items().empty()) c.out << "(no referrals waiting)\n";
  return absl::OkStatus();
}

absl::Status Decide(Context& c, bool accept) {
  if (c.args.positional().empty()) return absl::InvalidArgumentError("name the referral: REF-...");
  if (!accept) {
    if (auto st = Require(c.args, {"reason"}); !st.ok()) return st;
  }
  v1::DecideReferralRequest req;
  req.set_referral_id(c.args.positional()[0]);
  req.set_accept(accept);
  req.set_reason(c.args.Get("reason"));
  auto conn = Connect(c.args);
  if (!conn.ok()) return conn.status();
  auto ctx = conn->NewContext();
  v1::DecideReferralResponse resp;
  grpc::Status s = v1::ReferralService::NewStub(conn->channel)->Decide(ctx.get(), req, &resp);
  if (!s.ok()) return Explain(s, *conn);
  if (c.json()) {
    c.out << ToJson(resp);
  } else {
    c.out << (accept ? "accepted " : "declined ") << Printable(req.referral_id()) << "; local case "
          << Printable(resp.case_id()) << "; the decision is on its way back (envelope "
          << Printable(resp.envelope_id()) << ")\n";
  }
  return absl::OkStatus();
}
absl::Status RunAccept(Context& c) { return Decide(c, true); }
absl::Status RunDecline(Context& c) { return Decide(c, false); }

absl::Status RunPostUpdate(Context& c) {
  if (auto st = NeedCaseId(c.args); !st.ok()) return st;
  v1::PostUpdateRequest req;
  req.set_case_id(CaseIdArg(c.args));
  if (c.args.Has("status")) {
    auto st = ParseEnumOption<v1::CaseStatus>(c.args.Get("status"), "status",
                                              v1::CaseStatus_descriptor());
    if (!st.ok()) return st.status();
    req.set_status(*st);
  }
  req.set_outcome(c.args.Get("outcome"));
  req.set_note(c.args.Get("note"));
  auto conn = Connect(c.args);
  if (!conn.ok()) return conn.status();
  auto ctx = conn->NewContext();
  v1::PostUpdateResponse resp;
  grpc::Status s = v1::ReferralService::NewStub(conn->channel)->PostUpdate(ctx.get(), req, &resp);
  if (!s.ok()) return Explain(s, *conn);
  if (c.json()) {
    c.out << ToJson(resp);
  } else {
    c.out << "update recorded on case " << Printable(req.case_id()) << " and sent to "
          << resp.envelope_ids_size() << " linked organisation(s)\n";
  }
  return absl::OkStatus();
}

absl::Status RunPermit(Context& c) {
  if (auto st = NeedCaseId(c.args); !st.ok()) return st;
  if (auto st = Require(c.args, {"referral", "to", "purpose", "agreement"}); !st.ok()) return st;
  v1::PermitRequest req;
  req.set_case_id(CaseIdArg(c.args));
  req.set_referral_id(c.args.Get("referral"));
  req.set_to_org(c.args.Get("to"));
  req.set_purpose(c.args.Get("purpose"));
  req.set_agreement(c.args.Get("agreement"));
  auto conn = Connect(c.args);
  if (!conn.ok()) return conn.status();
  auto ctx = conn->NewContext();
  v1::PermitResponse resp;
  grpc::Status s = v1::ReferralService::NewStub(conn->channel)->Permit(ctx.get(), req, &resp);
  if (!s.ok()) return Explain(s, *conn);
  if (c.json()) {
    c.out << ToJson(resp);
  } else {
    c.out << "signed permission to pass case " << Printable(req.case_id()) << " on to "
          << Printable(req.to_org()) << " is on its way to the receiver of "
          << Printable(req.referral_id()) << " (envelope " << Printable(resp.envelope_id())
          << ")\n";
  }
  return absl::OkStatus();
}

absl::Status RunOutbox(Context& c) {
  auto conn = Connect(c.args);
  if (!conn.ok()) return conn.status();
  // Every page, shown as one list.
  v1::ListOutboxResponse resp;
  v1::ListOutboxRequest req;
  req.set_page_size(1000);
  do {
    auto ctx = conn->NewContext();
    v1::ListOutboxResponse page;
    grpc::Status s = v1::ReferralService::NewStub(conn->channel)->ListOutbox(ctx.get(), req, &page);
    if (!s.ok()) return Explain(s, *conn);
    for (auto& e : *page.mutable_entries()) *resp.add_entries() = std::move(e);
    req.set_page_token(page.next_page_token());
  } while (!req.page_token().empty());
  if (c.json()) {
    c.out << ToJson(resp);
    return absl::OkStatus();
  }
  std::vector<std::vector<std::string>> rows = {
      {"ENVELOPE", "TO", "KIND", "STATE", "ATTEMPTS", "DETAIL"}};
  for (const auto& e : resp.entries()) {
    std::string detail = e.state() == "delivered" ? absl::StrCat("receipt: their ledger entry ",
                                                                 e.receipt_ledger_index())
                                                  : e.last_error();
    if (e.state() == "pending" && !e.next_attempt().empty())
      detail += " (next try " + e.next_attempt() + ")";
    rows.push_back({e.envelope_id(), e.recipient_org(), e.kind(), e.state(),
                    std::to_string(e.attempts()), detail});
  }
  PrintTable(c.out, rows);
  return absl::OkStatus();
}

// ---- audit commands --------------------------------------------------------

std::string EventTime(const v1::AccessEvent& e) {
  return absl::FormatTime("%Y-%m-%d %H:%M:%S", absl::FromUnixMicros(e.time_unix_micros()),
                          absl::UTCTimeZone());
}

absl::Status RunAuditLog(Context& c) {
  v1::QueryEventsRequest req;
  req.set_case_id(c.args.Get("case"));
  req.set_actor(c.args.Get("actor"));
  req.set_org(c.args.Get("org"));
  req.set_action(c.args.Get("action"));
  if (c.args.Has("outcome")) {
    auto o = ParseEnumOption<v1::AccessOutcome>(c.args.Get("outcome"), "outcome",
                                                v1::AccessOutcome_descriptor());
    if (!o.ok()) return o.status();
    req.set_outcome(*o);
  }
  req.set_after(c.args.Get("after"));
  req.set_before(c.args.Get("before"));
  uint32_t limit = 50;
  if (c.args.Has("limit") && !absl::SimpleAtoi(c.args.Get("limit"), &limit)) {
    return absl::InvalidArgumentError("--limit must be a number");
  }
  req.set_page_size(limit);
  req.set_page_token(c.args.Get("page-token"));
  auto conn = Connect(c.args);
  if (!conn.ok()) return conn.status();
  auto ctx = conn->NewContext();
  v1::QueryEventsResponse resp;
  grpc::Status s = v1::AuditService::NewStub(conn->channel)->QueryEvents(ctx.get(), req, &resp);
  if (!s.ok()) return Explain(s, *conn);
  if (c.json()) {
    c.out << ToJson(resp);
    return absl::OkStatus();
  }
  std::vector<std::vector<std::string>> rows = {
      {"INDEX", "TIME (UTC)", "ACTOR", "ACTION", "RESOURCE", "PURPOSE", "OUTCOME", "REASON"}};
  for (const auto& le : resp.events()) {
    const auto& e = le.event();
    rows.push_back(
        {std::to_string(le.index()), EventTime(e), e.actor_org() + "/" + e.actor_subject(),
         e.action(), e.resource_kind() + (e.resource_id().empty() ? "" : " " + e.resource_id()),
         e.purpose(), EnumShort(v1::AccessOutcome_descriptor(), e.outcome()), e.reason()});
  }
  PrintTable(c.out, rows);
  if (!resp.next_page_token().empty())
    c.out << "more: --page-token " << Printable(resp.next_page_token()) << "\n";
  return absl::OkStatus();
}

// The keys that may have signed `org`'s checkpoints, from a roster file
// (--roster FILE --org ORG), or the one given with --vkey.
absl::StatusOr<std::vector<note::Verifier>> VerifiersFromOptions(const Args& args,
                                                                 const std::string& default_org) {
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
  auto text = ReadFileToString(roster_file);
  if (!text.ok()) return text.status();
  auto roster = PeekSignedRoster(*text);
  if (!roster.ok()) return roster.status();
  const std::string org = args.Get("org", default_org);
  if (org.empty())
    return absl::InvalidArgumentError("name the org whose ledger this is: --org ORG");
  return LedgerVerifiersFromRoster(*roster, org);
}

absl::Status RunAuditKey(Context& c) {
  const std::string org = c.args.positional().empty() ? c.args.Get("org") : c.args.positional()[0];
  auto vs = VerifiersFromOptions(c.args, org);
  if (!vs.ok()) return vs.status();
  for (const auto& v : *vs) c.out << Printable(v.ToString()) << "\n";
  return absl::OkStatus();
}

absl::Status RunAuditCheckpoint(Context& c) {
  auto conn = Connect(c.args);
  if (!conn.ok()) return conn.status();
  auto ctx = conn->NewContext();
  v1::CheckpointResponse resp;
  grpc::Status s = v1::AuditService::NewStub(conn->channel)
                       ->GetCheckpoint(ctx.get(), v1::GetCheckpointRequest(), &resp);
  if (!s.ok()) return Explain(s, *conn);
  // A checkpoint is a signed note: lines of text, each shown through Printable().
  if (c.json()) {
    c.out << ToJson(resp);
  } else {
    for (absl::string_view line : absl::StrSplit(resp.checkpoint(), '\n')) {
      c.out << Printable(line) << "\n";
    }
  }
  return absl::OkStatus();
}

absl::Status RunAuditProve(Context& c) {
  if (c.args.positional().empty())
    return absl::InvalidArgumentError("name the ledger entry: corridorctl audit prove INDEX");
  uint64_t index = 0;
  if (!absl::SimpleAtoi(c.args.positional()[0], &index))
    return absl::InvalidArgumentError("INDEX must be a number");
  auto verifiers = VerifiersFromOptions(c.args, "");
  if (!verifiers.ok()) return verifiers.status();
  auto conn = Connect(c.args);
  if (!conn.ok()) return conn.status();
  auto ctx = conn->NewContext();
  v1::InclusionProofRequest req;
  req.set_index(index);
  v1::InclusionProofResponse resp;
  grpc::Status s =
      v1::AuditService::NewStub(conn->channel)->GetInclusionProof(ctx.get(), req, &resp);
  if (!s.ok()) return Explain(s, *conn);
  // Check everything here, with the roster's key: nothing is taken on the node's word.
  absl::StatusOr<note::Checkpoint> cp = absl::NotFoundError("no key");
  const note::Verifier* verifier = nullptr;
  for (const auto& v : *verifiers) {
    cp = note::OpenCheckpoint(resp.checkpoint(), v);
    if (cp.ok()) {
      verifier = &v;
      break;
    }
  }
  if (!cp.ok())
    return absl::DataLossError(
        absl::StrCat("the node's checkpoint does not verify: ", cp.status().message()));
  if (cp->size != resp.tree_size())
    return absl::DataLossError("the checkpoint is for another tree size");
  std::vector<merkle::Hash> proof;
  for (const std::string& p : resp.proof()) {
    auto h = merkle::FromBytes(p);
    if (!h.ok()) return absl::DataLossError("the proof holds a malformed hash");
    proof.push_back(*h);
  }
  const merkle::Hash leaf = merkle::HashLeaf(resp.entry());
  absl::Status verified = merkle::VerifyInclusion(index, resp.tree_size(), leaf, proof, cp->root);
  if (c.json()) {
    c.out << "{\n  \"leaf_index\": " << index << ",\n  \"tree_size\": " << resp.tree_size()
          << ",\n  \"entry\": \"" << Base64Encode(resp.entry()) << "\",\n  \"leaf_hash\": \""
          << Base64Encode(merkle::ToBytes(leaf)) << "\",\n  \"proof\": [";
    for (size_t i = 0; i < proof.size(); ++i) {
      c.out << (i ? ", " : "") << "\"" << Base64Encode(merkle::ToBytes(proof[i])) << "\"";
    }
    c.out << "],\n  \"root_hash\": \"" << Base64Encode(merkle::ToBytes(cp->root))
          << "\",\n  \"checkpoint\": " << JsonQuoted(resp.checkpoint())
          << ",\n  \"verifier_key\": " << JsonQuoted(verifier->ToString())
          << ",\n  \"verified\": " << (verified.ok() ? "true" : "false") << "\n}\n";
  } else if (verified.ok()) {
    c.out << "entry " << index << " is in the ledger of " << Printable(cp->origin) << " at size "
          << cp->size << ": inclusion proof (" << proof.size()
          << " hashes) verified against the checkpoint signed by " << Printable(verifier->name)
          << "\n";
    if (auto e = v1::AccessEvent(); e.ParseFromString(resp.entry())) {
      c.out << "  " << EventTime(e) << "  " << Printable(e.actor_org() + "/" + e.actor_subject())
            << "  " << Printable(e.action()) << "  " << Printable(e.resource_kind()) << " "
            << Printable(e.resource_id()) << "  "
            << EnumShort(v1::AccessOutcome_descriptor(), e.outcome()) << "\n";
    }
  }
  if (!verified.ok())
    return absl::DataLossError(
        absl::StrCat("the inclusion proof does NOT verify: ", verified.message()));
  return absl::OkStatus();
}

absl::Status RunAuditExport(Context& c) {
  if (auto st = Require(c.args, {"out"}); !st.ok()) return st;
  v1::ExportRequest req;
  uint64_t begin = 0, end = 0;
  if ((c.args.Has("begin") && !absl::SimpleAtoi(c.args.Get("begin"), &begin)) ||
      (c.args.Has("end") && !absl::SimpleAtoi(c.args.Get("end"), &end))) {
    return absl::InvalidArgumentError("--begin and --end are entry indexes");
  }
  req.set_begin(begin);
  req.set_end(end);
  auto conn = Connect(c.args);
  if (!conn.ok()) return conn.status();
  auto ctx = conn->NewContext();
  // The export arrives in pieces (an export may be larger than any one message).
  std::string exported;
  v1::ExportResponse piece;
  auto stub = v1::AuditService::NewStub(conn->channel);
  auto reader = stub->Export(ctx.get(), req);
  while (reader->Read(&piece)) exported += piece.export_();
  grpc::Status s = reader->Finish();
  if (!s.ok()) return Explain(s, *conn);
  if (auto st = WriteFileAtomically(c.args.Get("out"), exported); !st.ok()) return st;
  c.out << "exported to " << c.args.Get("out") << " (" << exported.size()
        << " bytes); check it with `corridorctl audit verify " << c.args.Get("out")
        << " --roster FILE --org ORG`\n";
  return absl::OkStatus();
}

absl::Status RunAuditVerify(Context& c) {
  if (c.args.positional().empty())
    return absl::InvalidArgumentError("name the export file: corridorctl audit verify FILE");
  auto verifiers = VerifiersFromOptions(c.args, "");
  if (!verifiers.ok()) return verifiers.status();
  auto text = ReadFileToString(c.args.positional()[0]);
  if (!text.ok()) return text.status();
  absl::StatusOr<ledger::VerifiedExport> v = absl::NotFoundError("no key");
  const note::Verifier* verifier = nullptr;
  for (const auto& candidate : *verifiers) {
    v = ledger::VerifyExport(*text, candidate);
    verifier = &candidate;
    // Only a wrong key is worth another try; a bad export stays bad.
    if (v.ok() || !absl::IsPermissionDenied(v.status())) break;
  }
  if (!v.ok())
    return absl::DataLossError(absl::StrCat("the export does NOT verify: ", v.status().message()));
  size_t undecodable = 0;
  for (const std::string& e : v->entries) {
    v1::AccessEvent ev;
    if (!ev.ParseFromString(e)) ++undecodable;
  }
  c.out << "verified: entries " << v->first_index << ".." << v->first_index + v->entries.size() - 1
        << " of " << Printable(v->checkpoint.origin)
        << " are exactly those committed to by its checkpoint at size " << v->checkpoint.size
        << ", signed by " << Printable(verifier->name) << "\n";
  if (undecodable) c.out << "  note: " << undecodable << " entries are not access events\n";
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

const std::vector<Command>& Commands() {
  static const auto* commands = new std::vector<Command>{
      {{"health"},
       "",
       "is the node serving, and which peers has it authenticated?",
       With(ConnectionOptions(),
            {{"wait", "SECONDS", "keep trying for up to this long"},
             {"require-peers", "", "fail unless every roster peer is healthy"}}),
       RunHealth},
      {{"whoami"},
       "",
       "the org, subject and roles the node sees for you",
       ConnectionOptions(),
       RunWhoami},
      {{"pki", "federation"},
       "--federation NAME --out DIR",
       "create the federation's steward keys",
       {{"federation", "NAME", "federation name, e.g. corridor.example"},
        {"out", "DIR", "where to write the keys"},
        {"stewards", "N", "how many steward keys (default 3)"},
        {"force", "", "overwrite existing files"}},
       RunPkiFederation},
      {{"pki", "org"},
       "--federation NAME --org ID --out DIR",
       "create an org's CA, node certificate and Ed25519 signing key",
       {{"federation", "NAME", "federation name"},
        {"org", "ID", "org id, e.g. union-sg"},
        {"out", "DIR", "where to write"},
        {"host", "NAME", "extra DNS name or IP for the node certificate", true},
        {"key-id", "ID", "signing key id (default <org>-1)"},
        {"force", "", "overwrite existing files"}},
       RunPkiOrg},
      {{"pki", "user"},
       "--federation NAME --org ID --org-dir DIR --name USER --out DIR",
       "issue a user certificate from the org's CA",
       {{"federation", "NAME", "federation name"},
        {"org", "ID", "org id"},
        {"org-dir", "DIR", "the directory `pki org` wrote (holds ca.crt, ca.key)"},
        {"name", "USER", "user name"},
        {"out", "DIR", "where to write USER.crt and USER.key"},
        {"force", "", "overwrite existing files"}},
       RunPkiUser},
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
      {{"case", "create"},
       "--category C --origin CC --destination CC --worker-name NAME ...",
       "record a worker's case",
       With(ConnectionOptions(),
            {{"category", "C",
              "recruitment-fees, wage-theft, passport-confiscation, debt-bondage, "
              "forced-labour-indicators, trafficking-indicators, unsafe-work, abuse"},
             {"sector", "S", "e.g. domestic-work, construction, fishing"},
             {"origin", "CC", "the worker's home country (ISO code)"},
             {"destination", "CC", "where the abuse happened (ISO code)"},
             {"worker-name", "NAME", "the worker's name"},
             {"worker-dob", "YYYY-MM-DD", "date of birth"},
             {"worker-document", "NUMBER", "passport or ID number"},
             {"worker-contact", "TEXT", "how to reach the worker"},
             {"languages", "A,B", "languages the worker speaks"},
             {"employer", "NAME", "employer"},
             {"recruiter", "NAME", "recruiter or agency"},
             {"recruiter-licence", "NUMBER", "the recruiter's licence number"},
             {"recruiter-country", "CC", "where the recruiter is licensed"},
             {"narrative", "TEXT", "what happened"},
             {"consent", "ORG:PURPOSES",
              "the worker consents to ORG receiving their data for PURPOSES", true},
             {"consent-method", "TEXT", "how consent was given"}}),
       RunCaseCreate},
      {{"case", "show"},
       "ID --purpose P",
       "show a case, including the worker's personal data",
       With(ConnectionOptions(), {{"purpose", "P", "why you read it (recorded in the ledger)"}}),
       RunCaseShow},
      {{"case", "list"},
       "[filters]",
       "list cases (no personal data)",
       With(ConnectionOptions(), {{"status", "S", "open, in-progress, referred, closed, erased"},
                                  {"category", "C", "case category"},
                                  {"sector", "S", "sector"},
                                  {"origin", "CC", "origin country"},
                                  {"destination", "CC", "destination country"},
                                  {"after", "TIME", "created at or after (RFC 3339)"},
                                  {"before", "TIME", "created before (RFC 3339)"},
                                  {"page-size", "N", "cases per page (default 50)"},
                                  {"page-token", "T", "continue a listing"}}),
       RunCaseList},
      {{"case", "update"},
       "ID [--status S] [--narrative TEXT] ...",
       "change a case",
       With(ConnectionOptions(), {{"status", "S", "open, in-progress, referred, closed"},
                                  {"narrative", "TEXT", "new narrative"},
                                  {"employer", "NAME", "employer"},
                                  {"recruiter", "NAME", "recruiter"}}),
       RunCaseUpdate},
      {{"case", "close"},
       "ID [--reason TEXT]",
       "close a case",
       With(ConnectionOptions(), {{"reason", "TEXT", "why"}}),
       RunCaseClose},
      {{"case", "erase"},
       "ID --reason TEXT",
       "destroy a case's content for good (approvers)",
       With(ConnectionOptions(), {{"reason", "TEXT", "why (recorded in the ledger)"}}),
       RunCaseErase},
      {{"evidence", "add"},
       "CASE FILE [--media-type T]",
       "attach a document to a case",
       With(ConnectionOptions(), {{"media-type", "T", "e.g. application/pdf, image/jpeg"},
                                  {"name", "NAME", "file name to record"}}),
       RunEvidenceAdd},
      {{"evidence", "list"},
       "CASE",
       "a case's evidence items",
       With(ConnectionOptions(), {{"purpose", "P", "why you look"}}),
       RunEvidenceList},
      {{"evidence", "get"},
       "CASE EVIDENCE --out FILE --purpose P",
       "download an evidence item (digest-checked)",
       With(ConnectionOptions(),
            {{"out", "FILE", "where to save it"}, {"purpose", "P", "why you read it"}}),
       RunEvidenceGet},
      {{"refer"},
       "CASE --to ORG --agreement ID --purpose P [--include personal-data,E-...]",
       "refer a case to another organisation",
       With(ConnectionOptions(),
            {{"to", "ORG", "the receiving org"},
             {"agreement", "ID", "the agreement (MoU, MLA treaty) it is shared under"},
             {"purpose", "P", "the purpose, as the agreement names it"},
             {"include", "WHAT", "personal-data and/or evidence ids to share", true},
             {"deidentify", "", "send without personal data if consent does not cover it"},
             {"onward", "RULE",
              "may the receiver pass it on: never (default), with-originator-permission, "
              "within-agreement"},
             {"retain-until", "TIME",
              "RFC 3339; the receiver closes it to reads after (default one year)"}}),
       RunRefer},
      {{"inbox"}, "", "referrals waiting for your decision", ConnectionOptions(), RunInbox},
      {{"accept"},
       "REF",
       "accept a referral (its case becomes one of yours)",
       ConnectionOptions(),
       RunAccept},
      {{"decline"},
       "REF --reason TEXT",
       "decline a referral",
       With(ConnectionOptions(), {{"reason", "TEXT", "why (sent back to the referring org)"}}),
       RunDecline},
      {{"update"},
       "CASE [--status S] [--outcome O] [--note TEXT]",
       "post a status change, outcome or note to a case and every linked organisation",
       With(ConnectionOptions(),
            {{"status", "S", "in-progress, closed, ..."},
             {"outcome", "O", "e.g. fees-refunded, licence-suspended, prosecution-opened"},
             {"note", "TEXT", "what happened"}}),
       RunPostUpdate},
      {{"permit"},
       "CASE --referral REF --to ORG --purpose P --agreement ID",
       "let the receiver of your referral pass the case on to another org (signed permission)",
       With(ConnectionOptions(),
            {{"referral", "REF", "your referral whose receiver may pass it on"},
             {"to", "ORG", "to whom"},
             {"purpose", "P", "for what"},
             {"agreement", "ID", "under which agreement"}}),
       RunPermit},
      {{"outbox"},
       "",
       "messages to other organisations: pending, delivered or failed",
       ConnectionOptions(),
       RunOutbox},
      {{"audit", "log"},
       "[--case ID] [--actor ORG/SUBJECT] ...",
       "who did what, newest first (auditors)",
       With(ConnectionOptions(),
            {{"case", "ID", "events about this case"},
             {"actor", "ORG/SUBJECT", "events by this actor, e.g. union-sg/user/caseworker1"},
             {"org", "ORG", "events by this org's actors"},
             {"action", "A", "e.g. case.get, case.erase, auth.refused"},
             {"outcome", "O", "allowed, denied or error"},
             {"after", "TIME", "at or after (RFC 3339)"},
             {"before", "TIME", "before (RFC 3339)"},
             {"limit", "N", "events per page (default 50)"},
             {"page-token", "T", "continue"}}),
       RunAuditLog},
      {{"audit", "checkpoint"},
       "",
       "the node's latest signed checkpoint",
       ConnectionOptions(),
       RunAuditCheckpoint},
      {{"audit", "key"},
       "ORG --roster FILE",
       "an org's checkpoint verifier key, from the roster",
       {{"roster", "FILE", "signed roster (env CORRIDOR_ROSTER)"}, {"org", "ORG", "the org"}},
       RunAuditKey},
      {{"audit", "prove"},
       "INDEX --roster FILE --org ORG",
       "fetch and check an inclusion proof for a ledger entry",
       With(ConnectionOptions(),
            {{"roster", "FILE", "signed roster to take the key from (env CORRIDOR_ROSTER)"},
             {"org", "ORG", "whose ledger"},
             {"vkey", "VKEY", "verifier key (name+id+key) instead of the roster"}}),
       RunAuditProve},
      {{"audit", "export"},
       "--out FILE [--begin N] [--end N]",
       "export ledger entries with their checkpoint",
       With(ConnectionOptions(), {{"out", "FILE", "where to write"},
                                  {"begin", "N", "first entry (default 0)"},
                                  {"end", "N", "end (default: all)"}}),
       RunAuditExport},
      {{"audit", "verify"},
       "FILE --roster FILE --org ORG",
       "check an export offline",
       {{"roster", "FILE", "signed roster (env CORRIDOR_ROSTER)"},
        {"org", "ORG", "whose ledger"},
        {"vkey", "VKEY", "verifier key (name+id+key) instead of the roster"}},
       RunAuditVerify},
  };
  return *commands;
}

void PrintHelp(std::ostream& out) {
  out << "corridorctl: talk to your Corridor node, and manage federation keys and rosters.\n\n"
         "commands:\n";
  for (const Command& cmd : Commands()) {
    std::string words = absl::StrJoin(cmd.words, " ");
    words.resize(std::max<size_t>(words.size() + 2, 22), ' ');
    out << "  " << words << cmd.summary << "\n";
  }
  out << "\nrun `corridorctl COMMAND --help` for a command's options.\n";
}

}  // namespace

std::vector<std::string> NodeCommands() {
  std::vector<std::string> names;
  for (const Command& cmd : Commands()) {
    for (const OptionSpec& o : cmd.options) {
      if (o.name == "node") names.push_back(absl::StrJoin(cmd.words, " "));
    }
  }
  return names;
}

int Main(const std::vector<std::string>& argv, std::ostream& out, std::ostream& err) {
  if (argv.empty() || argv[0] == "help" || argv[0] == "--help" || argv[0] == "-h") {
    PrintHelp(argv.empty() ? err : out);
    return argv.empty() ? 2 : 0;
  }
  const Command* match = nullptr;
  for (const Command& cmd : Commands()) {
    if (argv.size() >= cmd.words.size() &&
        std::equal(cmd.words.begin(), cmd.words.end(), argv.begin()) &&
        (match == nullptr || cmd.words.size() > match->words.size())) {
      match = &cmd;
    }
  }
  if (match == nullptr) {
    err << "corridorctl: unknown command \""
        << Printable(
               absl::StrJoin(argv.begin(), argv.begin() + std::min<size_t>(2, argv.size()), " "))
        << "\"\n\n";
    PrintHelp(err);
    return 2;
  }
  const std::string name = absl::StrJoin(match->words, " ");
  std::vector<std::string> rest(argv.begin() + match->words.size(), argv.end());
  for (const std::string& a : rest) {
    if (a == "--help" || a == "-h") {
      out << "usage: corridorctl " << name << " " << match->usage << "\n"
          << match->summary << "\n\noptions:\n"
          << OptionsHelp(match->options);
      return 0;
    }
  }
  auto args = Args::Parse(rest, match->options);
  if (!args.ok()) {
    err << "corridorctl " << name << ": " << Printable(args.status().message()) << "\n"
        << "see `corridorctl " << name << " --help`\n";
    return 2;
  }
  Context ctx{*args, out, err};
  absl::Status st = match->run(ctx);
  if (!st.ok()) {
    // The message may quote a node's words (Explain()); shown like any value.
    err << "corridorctl " << name << ": " << Printable(st.message()) << "\n";
    return 1;
  }
  return 0;
}

}  // namespace corridor::ctl
