#include "client/ctl/ctl.h"

#include <algorithm>

#include "absl/strings/str_join.h"
#include "client/ctl/args.h"
#include "client/ctl/command.h"
#include "client/ctl/display.h"

namespace corridor::ctl {

const std::vector<Command>& Commands() {
  static const auto* commands = [] {
    auto* all = new std::vector<Command>;
    for (auto group :
         {NodeStatusCommands, PkiCommands, RosterCommands, CaseCommands, EvidenceCommands,
          EvidenceRequestCommands, ReferralCommands, AuditCommands}) {
      for (Command& cmd : group()) all->push_back(std::move(cmd));
    }
    return all;
  }();
  return *commands;
}

namespace {

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
