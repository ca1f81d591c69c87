// What a corridorctl command is, and what every command group uses: the
// connection options and how a failed call is explained, the table printer,
// enum options. Each group file (node.cc, pki.cc, roster.cc, cases.cc,
// evidence.cc, evidence_requests.cc, referrals.cc, audit.cc) owns its rows of the command table and
// exports them below; ctl.cc assembles the table and dispatches.
// Internal to client/ctl. Not thread-safe (one command per process, or per
// ctl::Main call).
#ifndef CORRIDOR_CLIENT_CTL_COMMAND_H_
#define CORRIDOR_CLIENT_CTL_COMMAND_H_

#include <functional>
#include <initializer_list>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "client/ctl/args.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/message.h"
#include "grpcpp/grpcpp.h"

namespace corridor::ctl {

// Everything a command needs: its options and where to write.
struct Context {
  const Args& args;
  std::ostream& out;
  std::ostream& err;
  bool json() const { return args.Has("json"); }
};

// Runs a command. OK: exit 0; InvalidArgument for what the user must fix in
// the command line; any other error is an operation that failed. The message
// is shown to the user as is (Printable()).
using Handler = std::function<absl::Status(Context&)>;

// One row of the command table.
struct Command {
  std::vector<std::string> words;  // e.g. {"case", "show"}
  std::string usage;               // after the words, e.g. "--in FILE"
  std::string summary;
  std::vector<OptionSpec> options;
  Handler run;
};

// The whole command table, every group's rows in the order `corridorctl help`
// lists them (assembled once by ctl.cc).
const std::vector<Command>& Commands();

// Each group's rows, in the order `corridorctl help` lists them.
std::vector<Command> NodeStatusCommands();  // node.cc: health, whoami, admin backup
std::vector<Command> PkiCommands();         // pki.cc: pki federation|org|user|signing-key|revoke
std::vector<Command>
RosterCommands();  // roster.cc: roster
                   // init|new-version|add-*|remove-*|retire-key|revoke-*|end-agreement|diff|sign|verify|push|show
std::vector<Command> CaseCommands();      // cases.cc: case create|show|list|update|close|erase
std::vector<Command> EvidenceCommands();  // evidence.cc: evidence add|list|get
// evidence_requests.cc: evidence request|fetch|custody, requests [show], decide
std::vector<Command> EvidenceRequestCommands();
std::vector<Command> ReferralCommands();  // referrals.cc: refer, inbox, accept, ..., outbox
// audit.cc: audit log|checkpoint|consistency|key|prove|export|verify
std::vector<Command> AuditCommands();

// Options shared by every command that talks to a node (--node, --cert, ...).
std::vector<OptionSpec> ConnectionOptions();
// `a` followed by `b`.
std::vector<OptionSpec> With(std::vector<OptionSpec> a, const std::vector<OptionSpec>& b);
// The option's value if given, else the environment variable's, else "".
std::string OptionOrEnv(const Args& args, const std::string& name, const char* env);

// A connection to the user's node, as the options and environment describe it.
struct Connection {
  std::shared_ptr<grpc::Channel> channel;
  absl::Duration timeout;
  std::string target;

  // A context whose deadline is `timeout` from now.
  std::unique_ptr<grpc::ClientContext> NewContext() const;
};

// InvalidArgument naming every connection option that is missing or bad;
// the TLS files' own errors if they do not load.
absl::StatusOr<Connection> Connect(const Args& args);

// Explains a failed call in words a person can act on.
absl::Status Explain(const grpc::Status& s, const Connection& c);

// Indented JSON with proto field names, safe to show on a terminal.
std::string ToJson(const google::protobuf::Message& m);

// Prints rows as an aligned table; every cell through Printable().
void PrintTable(std::ostream& out, std::vector<std::vector<std::string>> rows);

// InvalidArgument "missing --a, --b" for each named option that is empty.
absl::Status Require(const Args& args, std::initializer_list<const char*> names);

// Parses an enum option written the short way ("wage-theft" for
// CASE_CATEGORY_WAGE_THEFT); InvalidArgument listing the choices otherwise.
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

// The short form of an enum value ("wage-theft"); "?" for an unknown number.
std::string EnumShort(const google::protobuf::EnumDescriptor* desc, int value);

// The case a command names: its first positional argument, or --id.
std::string CaseIdArg(const Args& args);
// InvalidArgument with an example if the command names no case.
absl::Status NeedCaseId(const Args& args);

}  // namespace corridor::ctl

#endif  // CORRIDOR_CLIENT_CTL_COMMAND_H_
