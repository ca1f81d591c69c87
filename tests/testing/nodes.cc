#include "tests/testing/nodes.h"

#include <signal.h>

#include <algorithm>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "google/protobuf/util/json_util.h"
#include "ledger/crypto/crypto.h"
#include "tests/testing/deadline.h"

namespace corridor::testing {
namespace {

template <typename Message>
Message ParseJson(const std::string& json) {
  Message m;
  google::protobuf::util::JsonParseOptions o;
  o.ignore_unknown_fields = true;
  if (!google::protobuf::util::JsonStringToMessage(json, &m, o).ok()) m.Clear();
  return m;
}

}  // namespace

std::vector<std::string> JsonValues(const std::string& json, const std::string& key) {
  std::vector<std::string> out;
  const std::string needle = "\"" + key + "\": \"";
  for (size_t p = json.find(needle); p != std::string::npos; p = json.find(needle, p + 1)) {
    const size_t b = p + needle.size();
    out.push_back(json.substr(b, json.find('"', b) - b));
  }
  return out;
}

bool Eventually(const std::function<bool()>& done, absl::Duration limit) {
  const absl::Time give_up = absl::Now() + ScaledDeadline(limit);
  while (!done()) {
    if (absl::Now() >= give_up) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return true;
}

NodeProcesses::~NodeProcesses() {
  for (auto& [org, node] : nodes_) {
    if (node) node->Stop(SIGTERM);
  }
}

std::vector<std::string> NodeProcesses::Launched(const std::string& org,
                                                 std::vector<std::string> argv) const {
  auto it = launchers_.find(org);
  if (it == launchers_.end()) return argv;
  std::vector<std::string> launched = it->second;
  launched.insert(launched.end(), argv.begin(), argv.end());
  return launched;
}

std::string NodeProcesses::Configure(const std::string& org, uint64_t roster_version) {
  configs_[org] = fed_.WriteNodeConfig(
      org, {{"cw", {"caseworker"}}, {"adm", {"admin"}}, {"aud", {"auditor"}}}, roster_version);
  users_[org] = fed_.IssueUser(org, "cw");
  auditors_[org] = fed_.IssueUser(org, "aud");
  admins_[org] = fed_.IssueUser(org, "adm");
  return configs_[org];
}

::testing::AssertionResult NodeProcesses::Start(const std::string& org) {
  nodes_[org] = std::make_unique<Subprocess>(
      Launched(org, {BinaryPath("corridord"), "--config", configs_.at(org)}),
      fed_.org(org).dir + "/corridord.log");
  CommandResult r = Ctl(org, {"health", "--wait", "60"});
  if (r.exit_code == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << org << " did not start: " << r.err << "\nits log:\n"
                                       << nodes_[org]->Log();
}

int NodeProcesses::Stop(const std::string& org, int sig) {
  const int code = nodes_.at(org)->Stop(sig);
  nodes_.erase(org);
  return code;
}

CommandResult NodeProcesses::CtlAs(const std::string& org, const std::string& prefix,
                                   const std::vector<std::string>& args) const {
  std::vector<std::string> argv = {BinaryPath("corridorctl")};
  argv.insert(argv.end(), args.begin(), args.end());
  if (std::find(args.begin(), args.end(), "--timeout") == args.end()) {
    argv.push_back("--timeout");
    argv.push_back(absl::StrCat(absl::ToInt64Seconds(ScaledDeadline(kCtlCallTimeout))));
  }
  for (const std::string& a :
       {std::string("--node"), fed_.org(org).endpoint(), std::string("--cert"), prefix + ".crt",
        std::string("--key"), prefix + ".key", std::string("--ca"),
        fed_.org(org).dir + "/ca.crt"}) {
    argv.push_back(a);
  }
  // Longer than any --wait a test gives (60 s), so the command reports rather than is killed.
  return RunCommand(Launched(org, std::move(argv)), ScaledDeadline(absl::Seconds(150)));
}

CommandResult NodeProcesses::Ctl(const std::string& org,
                                 const std::vector<std::string>& args) const {
  return CtlAs(org, users_.at(org), args);
}

CommandResult NodeProcesses::CtlAsAdmin(const std::string& org,
                                        const std::vector<std::string>& args) const {
  return CtlAs(org, admins_.at(org), args);
}

CommandResult NodeProcesses::PushRoster(const std::string& org, const std::string& signed_roster) {
  const std::string file = absl::StrCat(fed_.root(), "/push-", ++pushes_, ".json");
  if (!WriteFileAtomically(file, signed_roster, 0644).ok()) {
    return CommandResult{-1, "", "cannot write " + file};
  }
  return CtlAsAdmin(org, {"roster", "push", "--in", file});
}

v1::StatusResponse NodeProcesses::Health(const std::string& org) const {
  return ParseJson<v1::StatusResponse>(Ctl(org, {"health", "--json"}).out);
}

v1::ListOutboxResponse NodeProcesses::Outbox(const std::string& org) const {
  return ParseJson<v1::ListOutboxResponse>(Ctl(org, {"outbox", "--json"}).out);
}

v1::PeerState NodeProcesses::PeerState(const std::string& org, const std::string& peer) const {
  const v1::StatusResponse health = Health(org);
  for (const v1::PeerStatus& p : health.peers()) {
    if (p.org() == peer) return p.state();
  }
  return v1::PEER_STATE_UNSPECIFIED;
}

bool NodeProcesses::AwaitRosterVersion(const std::string& org, uint64_t version) {
  return Eventually([&] { return Health(org).roster_version() == version; });
}

v1::ListOutboxResponse NodeProcesses::AwaitOutboxSettled(const std::string& org) {
  v1::ListOutboxResponse outbox;
  const bool settled = Eventually(
      [&] {
        outbox = Outbox(org);
        for (const auto& e : outbox.entries()) {
          if (e.state() == "pending") return false;
        }
        return true;
      },
      absl::Seconds(90));
  EXPECT_TRUE(settled) << org << "'s outbox still has pending envelopes: " << outbox.DebugString();
  return outbox;
}

std::string NodeProcesses::AwaitLogLine(const std::string& org,
                                        const std::vector<std::string>& parts) {
  std::string found;
  Eventually([&] {
    for (absl::string_view line : absl::StrSplit(nodes_.at(org)->Log(), '\n')) {
      bool all = true;
      for (const std::string& p : parts) all = all && absl::StrContains(line, p);
      if (all) {
        found = std::string(line);
        return true;
      }
    }
    return false;
  });
  return found;
}

}  // namespace corridor::testing
