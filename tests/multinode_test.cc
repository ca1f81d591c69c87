// Real corridord processes on loopback: three nodes find each other through
// the roster, authenticate each other over mutual TLS and report healthy;
// corridorctl health/whoami work against them; they stop cleanly on SIGTERM.
#include <signal.h>

#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "gtest/gtest.h"
#include "ledger/crypto/crypto.h"
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
    for (const std::string& a :
         {std::string("--node"), fed_.org(org).endpoint(), std::string("--cert"),
          users_[org] + ".crt", std::string("--key"), users_[org] + ".key", std::string("--ca"),
          fed_.org(org).dir + "/ca.crt"}) {
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

TEST_F(MultiNodeTest, CorridorctlCaseEvidenceAndAuditCommandsWorkAgainstARunningNode) {
  configs_["union-sg"] = fed_.WriteNodeConfig(
      "union-sg", {{"alice", {"caseworker"}}, {"audrey", {"auditor"}}, {"ann", {"approver"}}});
  auto node = StartNode("union-sg");
  auto as = [&](const std::string& user, std::vector<std::string> args) {
    users_["union-sg"] = fed_.IssueUser("union-sg", user);
    return Ctl("union-sg", std::move(args));
  };
  ASSERT_EQ(as("alice", {"health", "--wait", "60"}).exit_code, 0) << node->Log();
  CommandResult created =
      as("alice", {"case", "create", "--json", "--category", "wage-theft", "--origin", "ID",
                   "--destination", "SG", "--worker-name", "Ani", "--sector", "construction"});
  ASSERT_EQ(created.exit_code, 0) << created.err;
  const size_t at = created.out.find("\"id\": \"");
  ASSERT_NE(at, std::string::npos) << created.out;
  const std::string id = created.out.substr(at + 7, 14);
  CommandResult show = as("alice", {"case", "show", id, "--purpose", "case-handling"});
  EXPECT_EQ(show.exit_code, 0) << show.err;
  EXPECT_NE(show.out.find("Ani"), std::string::npos) << show.out;
  CommandResult no_purpose = as("alice", {"case", "show", id});
  EXPECT_NE(no_purpose.exit_code, 0);
  EXPECT_NE(no_purpose.err.find("--purpose"), std::string::npos) << no_purpose.err;
  EXPECT_EQ(as("alice", {"case", "update", id, "--status", "in-progress"}).exit_code, 0);
  CommandResult list = as("alice", {"case", "list", "--status", "in-progress"});
  EXPECT_NE(list.out.find(id), std::string::npos) << list.out << list.err;

  const std::string file = fed_.root() + "/payslip.txt";
  ASSERT_OK(WriteFileAtomically(file, "payslip: 0 SGD paid for March"));
  CommandResult added =
      as("alice", {"evidence", "add", id, file, "--media-type", "text/plain", "--json"});
  ASSERT_EQ(added.exit_code, 0) << added.err;
  const size_t e = added.out.find("\"id\": \"E-");
  ASSERT_NE(e, std::string::npos) << added.out;
  const std::string evidence = added.out.substr(e + 7, 14);
  CommandResult got = as("alice", {"evidence", "get", id, evidence, "--out", file + ".copy",
                                   "--purpose", "case-handling"});
  EXPECT_EQ(got.exit_code, 0) << got.err;
  EXPECT_EQ(ReadFileToString(file + ".copy").value_or(""), "payslip: 0 SGD paid for March");

  // The auditor sees the trail, proves an entry against the roster's key, exports and verifies.
  const std::string roster = fed_.org("union-sg").dir + "/roster.json";
  const std::string stewards = fed_.WriteStewardsFile();
  CommandResult log = as("audrey", {"audit", "log", "--case", id});
  EXPECT_EQ(log.exit_code, 0) << log.err;
  for (const char* action :
       {"case.create", "case.get", "case.update", "evidence.add", "evidence.get"}) {
    EXPECT_NE(log.out.find(action), std::string::npos) << action << "\n" << log.out;
  }
  CommandResult denied = as("audrey", {"case", "show", id, "--purpose", "curiosity"});
  EXPECT_EQ(denied.exit_code, 1);
  CommandResult denials = as("audrey", {"audit", "log", "--outcome", "denied", "--json"});
  // Refused (an auditor may not read cases) and recorded, without the purpose typed: it is
  // not a code of the node's vocabulary, so no entry keeps it.
  EXPECT_NE(denials.out.find("may not call /corridor.v1.CaseService/GetCase"), std::string::npos)
      << denials.out;
  EXPECT_EQ(denials.out.find("curiosity"), std::string::npos) << denials.out;
  // The roster's signatures checked with the stewards' keys; the auditor's saved
  // checkpoint kept in the test's directory.
  const std::string state = fed_.root() + "/audit-state";
  CommandResult prove =
      as("audrey", {"audit", "prove", "1", "--roster", roster, "--org", "union-sg", "--stewards",
                    stewards, "--state", state, "--json"});
  EXPECT_EQ(prove.exit_code, 0) << prove.err;
  EXPECT_NE(prove.out.find("\"verified\": true"), std::string::npos) << prove.out;
  EXPECT_NE(prove.out.find("\"leaf_index\": 1"), std::string::npos) << prove.out;
  const std::string exported = fed_.root() + "/ledger.export";
  CommandResult exp = as("audrey", {"audit", "export", "--out", exported, "--roster", roster,
                                    "--org", "union-sg", "--stewards", stewards, "--state", state});
  EXPECT_EQ(exp.exit_code, 0) << exp.err;
  EXPECT_NE(exp.out.find("consistent with the checkpoint this auditor saved"), std::string::npos)
      << exp.out;
  CommandResult verified =
      RunCommand({BinaryPath("corridorctl"), "audit", "verify", exported, "--roster", roster,
                  "--org", "union-sg", "--stewards", stewards});
  EXPECT_EQ(verified.exit_code, 0) << verified.err;
  // Another org's key does not verify this node's export.
  CommandResult wrong =
      RunCommand({BinaryPath("corridorctl"), "audit", "verify", exported, "--roster", roster,
                  "--org", "ministry-id", "--stewards", stewards});
  EXPECT_EQ(wrong.exit_code, 1);
  EXPECT_NE(wrong.err.find("does NOT verify"), std::string::npos) << wrong.err;
  // The approver erases; the content is gone, the trail stays.
  EXPECT_EQ(as("ann", {"case", "erase", id, "--reason", "consent withdrawn"}).exit_code, 0);
  CommandResult after = as("alice", {"case", "show", id, "--purpose", "case-handling"});
  EXPECT_EQ(after.exit_code, 1);
  EXPECT_NE(after.err.find("erased"), std::string::npos) << after.err;
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
