#include "client/ctl/command.h"

#include <algorithm>
#include <cstdlib>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "client/ctl/display.h"
#include "client/lib/grpc_util.h"
#include "google/protobuf/util/json_util.h"

namespace corridor::ctl {

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

std::unique_ptr<grpc::ClientContext> Connection::NewContext() const {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  return ctx;
}

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

absl::Status Require(const Args& args, std::initializer_list<const char*> names) {
  std::vector<std::string> missing;
  for (const char* n : names) {
    if (args.Get(n).empty()) missing.push_back(absl::StrCat("--", n));
  }
  if (missing.empty()) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat("missing ", absl::StrJoin(missing, ", ")));
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

}  // namespace corridor::ctl
