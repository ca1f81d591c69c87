// Real corridord processes on loopback: three nodes find each other through
// the roster, authenticate each other over mutual TLS and report healthy;
// corridorctl health/whoami work against them; they stop cleanly on SIGTERM.
#include <signal.h>

#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "gtest/gtest.h"
#include "ledger/crypto.h"
#include "tests/testing/federation.h"
#include "tests/testing/process.h"
#include "tests/testing/status_matchers.h"

namespace corridor {
namespace {

using testing::BinaryPath;
using testing::CommandResult;
using testing::RunCommand;
using testing::Subprocess;

class MultiNodeTest : public ::testing::Test {
 protected:
  const std::vector<std::string> kOrgs = {"union-sg", "ministry-id", "inspectorate-sg"};

  void SetUp() override {
    fed_.AddOrg("union-sg", v1::ORG_KIND_UNION);
    fed_.AddOrg("ministry-id", v1::ORG_KIND_MINISTRY);
    fed_.AddOrg("inspectorate-sg", v1::ORG_KIND_INSPECTORATE);
    for (const auto& org : kOrgs) {
      configs_[org] = fed_.WriteNodeConfig(org, {{"alice", {"caseworker"}}});
      users_[org] = fed_.IssueUser(org, "alice");
    }
  }

  std::unique_ptr<Subprocess> StartNode(const std::string& org) {
    return std::make_unique<Subprocess>(
        std::vector<std::string>{BinaryPath("corridord"), "--config", configs_[org]},
        fed_.org(org).dir + "/corridord.log");
  }

  CommandResult Ctl(const std::string& org, std::vector<std::string> args) {
    std::vector<std::string> argv = {BinaryPath("corridorctl")};
    argv.insert(argv.end(), args.begin(), args.end());
    for (const std::string& a : {std::string("--node"), fed_.org(org).endpoint(),
                                 std::string("--cert"), users_[org] + ".crt",
                                 std::string("--key"), users_[org] + ".key",
                                 std::string("--ca"), fed_.org(org).dir + "/ca.crt"}) {
      argv.push_back(a);
    }
    return RunCommand(argv);
  }

  testing::TestFederation fed_;
  std::map<std::string, std::string> configs_;
  std::map<std::string, std::string> users_;
};

TEST_F(MultiNodeTest, ThreeNodesAuthenticateEachOtherAndStopCleanly) {
  std::map<std::string, std::unique_ptr<Subprocess>> nodes;
  for (const auto& org : kOrgs) nodes[org] = StartNode(org);

  for (const auto& org : kOrgs) {
    CommandResult r = Ctl(org, {"health", "--wait", "60", "--require-peers"});
    EXPECT_EQ(r.exit_code, 0) << r.out << r.err << nodes[org]->Log();
    EXPECT_NE(r.out.find("serving"), std::string::npos) << r.out;
    for (const auto& other : kOrgs) {
      if (other == org) continue;
      EXPECT_NE(r.out.find(other), std::string::npos) << r.out;
    }
    // Both peers healthy, in JSON too.
    CommandResult j = Ctl(org, {"health", "--json"});
    ASSERT_EQ(j.exit_code, 0) << j.err;
    size_t healthy = 0, pos = 0;
    while ((pos = j.out.find("PEER_STATE_HEALTHY", pos)) != std::string::npos) {
      ++healthy;
      ++pos;
    }
    EXPECT_EQ(healthy, 2u) << j.out;
  }

  CommandResult who = Ctl("ministry-id", {"whoami"});
  EXPECT_EQ(who.exit_code, 0) << who.err;
  EXPECT_NE(who.out.find("user/alice"), std::string::npos) << who.out;
  EXPECT_NE(who.out.find("caseworker"), std::string::npos) << who.out;

  for (const auto& org : kOrgs) {
    EXPECT_EQ(nodes[org]->Stop(SIGTERM), 0) << nodes[org]->Log();
    const std::string log = nodes[org]->Log();
    EXPECT_NE(log.find("\"event\":\"node.stopped\""), std::string::npos) << log;
    EXPECT_NE(log.find("\"event\":\"peer.state\""), std::string::npos) << log;
  }
}

TEST_F(MultiNodeTest, PeerDownIsReportedThenRecovers) {
  auto a = StartNode("union-sg");
  auto b = StartNode("ministry-id");
  CommandResult r = Ctl("union-sg", {"health", "--wait", "60"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // inspectorate-sg was never started: health --require-peers fails and names it.
  r = Ctl("union-sg", {"health", "--require-peers"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("inspectorate-sg"), std::string::npos) << r.out << r.err;
  auto c = StartNode("inspectorate-sg");
  r = Ctl("union-sg", {"health", "--wait", "60", "--require-peers"});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
}

TEST_F(MultiNodeTest, BadConfigStopsStartWithNamedKey) {
  const std::string path = configs_["union-sg"];
  std::string yaml = ReadFileToString(path).value();
  ASSERT_OK(WriteFileAtomically(path, yaml + "surprise: 1\n"));
  CommandResult r = RunCommand({BinaryPath("corridord"), "--config", path});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("surprise: unknown key"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(path), std::string::npos) << r.err;

  r = RunCommand({BinaryPath("corridord"), "--config", path + ".missing"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("no such file"), std::string::npos) << r.err;

  r = RunCommand({BinaryPath("corridord"), "--bogus"});
  EXPECT_EQ(r.exit_code, 2);
}

TEST_F(MultiNodeTest, OlderRosterIsRefusedAfterNewerWasInForce) {
  const std::string path = fed_.WriteNodeConfig("union-sg", {}, /*roster_version=*/5);
  {
    auto node = StartNode("union-sg");
    CommandResult r = Ctl("union-sg", {"health", "--wait", "60"});
    // alice is not configured any more, but the node came up: health is refused
    // for her, which still proves the node is serving.
    EXPECT_NE(r.err.find("not listed"), std::string::npos) << r.out << r.err << node->Log();
    EXPECT_EQ(node->Stop(SIGTERM), 0);
  }
  fed_.WriteNodeConfig("union-sg", {}, /*roster_version=*/4);
  CommandResult r = RunCommand({BinaryPath("corridord"), "--config", path});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("roster version 4 is older than version 5 already in force"),
            std::string::npos)
      << r.err;
}

TEST_F(MultiNodeTest, SecondNodeOnSameDataDirIsRefused) {
  auto node = StartNode("union-sg");
  ASSERT_EQ(Ctl("union-sg", {"health", "--wait", "60"}).exit_code, 0) << node->Log();
  CommandResult r = RunCommand({BinaryPath("corridord"), "--config", configs_["union-sg"]});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("another corridord"), std::string::npos) << r.err;
  EXPECT_EQ(node->Stop(SIGTERM), 0);
}

TEST_F(MultiNodeTest, UnderSignedRosterStopsStart) {
  const std::string path = configs_["union-sg"];
  ASSERT_OK(WriteFileAtomically(fed_.org("union-sg").dir + "/roster.json",
                                fed_.Sign(fed_.MakeRoster(), 1)));
  CommandResult r = RunCommand({BinaryPath("corridord"), "--config", path});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("requires 2"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace corridor
