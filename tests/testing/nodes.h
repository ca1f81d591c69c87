// Real corridord processes for the orgs of a TestFederation, and corridorctl
// run against them as a caseworker ("cw") or an admin ("adm") of each org:
// starting and stopping nodes, pushing rosters, reading health and the outbox,
// and waiting for something to become true. Test-only. Ctl, CtlAsAdmin and the
// readers may be called from several threads at once; everything else from
// the test's thread only.
#ifndef CORRIDOR_TESTS_TESTING_NODES_H_
#define CORRIDOR_TESTS_TESTING_NODES_H_

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "corridor/v1/federation.pb.h"
#include "corridor/v1/node.pb.h"
#include "gtest/gtest.h"
#include "tests/testing/federation.h"
#include "tests/testing/process.h"

namespace corridor::testing {

// Every value of "key": "value" in a JSON text (as corridorctl --json prints it).
std::vector<std::string> JsonValues(const std::string& json, const std::string& key);

// Calls `done` every 100 ms until it returns true or `limit` (scaled by
// ScaledDeadline) has passed; returns its last answer. For waiting on other
// processes, never for asserting how long something takes.
bool Eventually(const std::function<bool()>& done, absl::Duration limit = absl::Seconds(60));

class NodeProcesses {
 public:
  // `fed` must outlive this object (declare it first).
  explicit NodeProcesses(TestFederation& fed) : fed_(fed) {}
  // Stops every running node (SIGTERM).
  ~NodeProcesses();
  NodeProcesses(const NodeProcesses&) = delete;
  NodeProcesses& operator=(const NodeProcesses&) = delete;

  // Writes `org`'s node config with roster `roster_version` (TestFederation::
  // WriteNodeConfig: every org added so far) and users cw (caseworker) and adm
  // (admin), and issues their certificates. Returns the config's path.
  std::string Configure(const std::string& org, uint64_t roster_version = 1);
  // Runs `org`'s corridord, and every corridorctl aimed at it, under
  // `prefix` (e.g. {"ip", "netns", "exec", NS}: the node in a network
  // namespace of the test's own, netns_test). Set before Start.
  void SetLauncher(const std::string& org, std::vector<std::string> prefix) {
    launchers_[org] = std::move(prefix);
  }
  // Starts corridord for a configured org and waits until `health` answers.
  ::testing::AssertionResult Start(const std::string& org);
  // The running process of `org` (Start first).
  Subprocess& process(const std::string& org) { return *nodes_.at(org); }
  // Stops `org`'s node with `sig`; returns its exit code (Subprocess::Stop).
  int Stop(const std::string& org, int sig);

  const std::string& config(const std::string& org) const { return configs_.at(org); }
  // <dir>/cw and <dir>/adm: the users' certificate path prefixes (.crt/.key).
  const std::string& user(const std::string& org) const { return users_.at(org); }
  const std::string& admin(const std::string& org) const { return admins_.at(org); }
  const std::string& auditor(const std::string& org) const { return auditors_.at(org); }

  // corridorctl ARGS --node <org's endpoint> as `org`'s caseworker or admin,
  // with a generous --timeout for each call (unless ARGS give one): a test
  // machine under load may take longer than a person's default of 10 s.
  CommandResult Ctl(const std::string& org, const std::vector<std::string>& args) const;
  CommandResult CtlAsAdmin(const std::string& org, const std::vector<std::string>& args) const;
  // corridorctl ARGS as the user whose certificate files are <prefix>.crt/.key.
  CommandResult CtlAs(const std::string& org, const std::string& prefix,
                      const std::vector<std::string>& args) const;

  // Writes `signed_roster` (DSSE JSON) to a file and pushes it to `org`'s node
  // as its admin (`corridorctl roster push`).
  CommandResult PushRoster(const std::string& org, const std::string& signed_roster);
  // `health --json` at `org`, parsed; an empty response if it did not answer.
  v1::StatusResponse Health(const std::string& org) const;
  // `outbox --json` at `org`, parsed.
  v1::ListOutboxResponse Outbox(const std::string& org) const;
  // The state `org`'s node shows for `peer`, PEER_STATE_UNSPECIFIED if it
  // does not list it.
  v1::PeerState PeerState(const std::string& org, const std::string& peer) const;
  // Waits until `org`'s node has roster `version` in force.
  bool AwaitRosterVersion(const std::string& org, uint64_t version);
  // Waits until `org`'s outbox has nothing pending; returns the outbox.
  v1::ListOutboxResponse AwaitOutboxSettled(const std::string& org);
  // Waits until the node's log has a line containing every one of `parts`;
  // returns that line, or "" (the log is in the failure message then).
  std::string AwaitLogLine(const std::string& org, const std::vector<std::string>& parts);

 private:
  // Each call's deadline of corridorctl run by Ctl/CtlAs (scaled).
  static constexpr absl::Duration kCtlCallTimeout = absl::Seconds(60);
  // `argv` under `org`'s launcher prefix, if it has one.
  std::vector<std::string> Launched(const std::string& org, std::vector<std::string> argv) const;

  TestFederation& fed_;
  std::map<std::string, std::string> configs_, users_, admins_, auditors_;
  std::map<std::string, std::unique_ptr<Subprocess>> nodes_;
  std::map<std::string, std::vector<std::string>> launchers_;
  int pushes_ = 0;
};

}  // namespace corridor::testing

#endif  // CORRIDOR_TESTS_TESTING_NODES_H_
