// Verifiable trails (issue 12): every access event about a case names the
// previous one about the same case, and every event by an actor the actor's
// previous one, in bytes the ledger's tree covers; `corridorctl audit log
// --verify` proves each entry the node returned and follows the links, so an
// entry hidden from an audit query shows. Against a real node in process;
// the hiding done the way an operator with the data directory could, by
// deleting the entry's index keys from the stopped node's database.
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gtest/gtest.h"
#include "ledger/rocksdb/rocksdb_ledger.h"
#include "rocksdb/db.h"
#include "server/node/config.h"
#include "server/node/node.h"
#include "tests/testing/ctl_run.h"
#include "tests/testing/federation.h"
#include "tests/testing/nodes.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/stopped_db.h"

namespace corridor {
namespace {

using testing::Ctl;
using testing::CtlRun;

// Deletes every index key of ledger entry `index` in the stopped node's
// database: the entry stays (and still verifies), but no audit query finds it.
void DeleteIndexKeysOf(const std::string& data_dir, uint64_t index) {
  testing::StoppedDb stopped(data_dir);
  ASSERT_TRUE(stopped.ok());
  rocksdb::ColumnFamilyHandle* index_cf = stopped.family(ledger::kIndexFamily);
  ASSERT_NE(index_cf, nullptr);
  const std::string suffix = std::string(1, '\0') + testing::LedgerIndexKey(index);
  int deleted = 0;
  std::unique_ptr<rocksdb::Iterator> it(
      stopped.db()->NewIterator(rocksdb::ReadOptions(), index_cf));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    const std::string key = it->key().ToString();
    if (absl::EndsWith(key, suffix)) {
      ASSERT_TRUE(stopped.db()->Delete(rocksdb::WriteOptions(), index_cf, key).ok());
      ++deleted;
    }
  }
  EXPECT_GE(deleted, 4) << "case, actor, org, action and outcome keys";
}

// The indexes an `audit log --json` answer lists, newest first.
std::vector<uint64_t> Indexes(const std::string& json) {
  std::vector<uint64_t> out;
  for (const std::string& v : testing::JsonValues(json, "index")) {
    uint64_t i = 0;
    if (absl::SimpleAtoi(v, &i)) out.push_back(i);
  }
  return out;
}

class TrailTest : public ::testing::Test {
 protected:
  void SetUp() override {
    testing::ClearCtlEnvironment();
    fed_.AddOrg("union-sg");
    fed_.AddOrg("ministry-id", v1::ORG_KIND_MINISTRY);
    ASSERT_OK_AND_ASSIGN(config_, LoadNodeConfig(fed_.WriteNodeConfig(
                                      "union-sg", {{"cw", {"caseworker"}}, {"aud", {"auditor"}}})));
    ASSERT_OK_AND_ASSIGN(node_, Node::Start(config_));
    for (const char* user : {"cw", "aud"}) fed_.IssueUser("union-sg", user);
    stewards_ = fed_.WriteStewardsFile();
  }
  void TearDown() override {
    if (node_) node_->Shutdown(absl::Seconds(1));
  }

  CtlRun As(const std::string& user, std::vector<std::string> argv) {
    const testing::TestOrg& o = fed_.org("union-sg");
    for (const std::string& a :
         {std::string("--node"), o.endpoint(), std::string("--cert"), o.dir + "/" + user + ".crt",
          std::string("--key"), o.dir + "/" + user + ".key", std::string("--ca"),
          o.dir + "/ca.crt"}) {
      argv.push_back(a);
    }
    return Ctl(argv);
  }
  // `audit log ARGS --verify` as the auditor, with the roster and the stewards' keys.
  CtlRun Verify(std::vector<std::string> argv) {
    argv.insert(argv.begin(), {"audit", "log"});
    for (const std::string& a :
         {std::string("--verify"), std::string("--roster"),
          fed_.org("union-sg").dir + "/roster.json", std::string("--stewards"), stewards_,
          std::string("--state"), fed_.root() + "/audit-state"}) {
      argv.push_back(a);
    }
    return As("aud", argv);
  }
  std::string CreateCase() {
    CtlRun r = As("cw", {"case", "create", "--category", "wage-theft", "--origin", "id",
                         "--destination", "sg", "--worker-name", "Siti Rahayu"});
    EXPECT_EQ(r.code, 0) << r;
    const size_t at = r.out.find("created case ");
    return at == std::string::npos
               ? ""
               : r.out.substr(at + 13, r.out.find_first_of(" \n", at + 13) - at - 13);
  }
  void Read(const std::string& user, const std::string& id) {
    As(user, {"case", "show", id, "--purpose", "case-handling"});
  }

  // Waits for the node's first ledger check since start and expects it to name
  // `index` as missing from the index.
  void ExpectIndexDamageFound(uint64_t index) {
    const absl::Time deadline = absl::Now() + absl::Seconds(30);
    while (!node_->LastLedgerCheck() && absl::Now() < deadline) {
      absl::SleepFor(absl::Milliseconds(50));
    }
    ASSERT_TRUE(node_->LastLedgerCheck());
    EXPECT_TRUE(absl::StrContains(node_->LastLedgerCheck()->status.message(),
                                  absl::StrCat("entry ", index,
                                               " is missing from the ledger's index under its "
                                               "case key")))
        << node_->LastLedgerCheck()->status;
  }

  testing::TestFederation fed_;
  v1::NodeConfig config_;
  std::unique_ptr<Node> node_;
  std::string stewards_;
};

TEST_F(TrailTest, AnUntouchedTrailVerifiesBackToItsFirstEntry) {
  const std::string id = CreateCase();
  for (int i = 0; i < 3; ++i) Read("cw", id);
  Read("aud", id);  // refused: an auditor may not read a case; recorded on its trail
  CtlRun r = Verify({"--case", id});
  ASSERT_EQ(r.code, 0) << r;
  EXPECT_TRUE(absl::StrContains(r.out, "verified: the 5 entries shown are in the ledger")) << r;
  EXPECT_TRUE(absl::StrContains(r.out, absl::StrCat("complete: the case ", id, " trail"))) << r;
  EXPECT_TRUE(absl::StrContains(r.out, "(4 links, each proved)")) << r;
  EXPECT_TRUE(absl::StrContains(r.out, "(the trail's first)")) << r;
  // The checkpoint is kept as this auditor's saved state, and checked against it next time.
  EXPECT_TRUE(absl::StrContains(r.out, "first checkpoint of this ledger seen by this auditor"))
      << r;
  // Filtered: entries on the trail that do not match are passed over, not missed.
  r = Verify({"--case", id, "--outcome", "denied"});
  ASSERT_EQ(r.code, 0) << r;
  EXPECT_TRUE(absl::StrContains(r.out, "verified: the 1 entries shown")) << r;
  EXPECT_TRUE(absl::StrContains(r.out, "consistent with the checkpoint this auditor saved")) << r;
  // An actor's trail: the caseworker's create and reads.
  r = Verify({"--actor", "union-sg/user/cw"});
  ASSERT_EQ(r.code, 0) << r;
  EXPECT_TRUE(absl::StrContains(r.out, "complete: the actor union-sg/user/cw trail")) << r;
  // A query that follows no trail is proved entry by entry, and says what it did not check.
  r = Verify({"--action", "case.get"});
  ASSERT_EQ(r.code, 0) << r;
  EXPECT_TRUE(absl::StrContains(r.out, "completeness not checked")) << r;
}

TEST_F(TrailTest, AnEntryHiddenByDeletingItsIndexKeysIsCaught) {
  const std::string id = CreateCase();
  Read("cw", id);
  Read("aud", id);  // the denied read someone wants hidden
  CtlRun denied = As("aud", {"audit", "log", "--case", id, "--outcome", "denied", "--json"});
  ASSERT_EQ(denied.code, 0) << denied;
  const std::vector<uint64_t> hidden = Indexes(denied.out);
  ASSERT_EQ(hidden.size(), 1u) << denied;
  Read("cw", id);                     // a later event on the trail names the hidden one
  node_->Shutdown(absl::Seconds(1));  // (stopped while its database is edited)
  node_.reset();
  DeleteIndexKeysOf(config_.data_dir(), hidden[0]);
  ASSERT_OK_AND_ASSIGN(node_, Node::Start(config_));

  // The plain query no longer shows it, and the ledger still verifies.
  CtlRun plain = As("aud", {"audit", "log", "--case", id, "--json"});
  ASSERT_EQ(plain.code, 0) << plain;
  for (uint64_t i : Indexes(plain.out)) EXPECT_NE(i, hidden[0]);
  for (const std::vector<std::string>& q :
       {std::vector<std::string>{"--case", id},
        std::vector<std::string>{"--case", id, "--action", "case.get"},
        std::vector<std::string>{"--actor", "union-sg/user/aud"}}) {
    SCOPED_TRACE(absl::StrJoin(q, " "));
    CtlRun r = Verify(q);
    EXPECT_EQ(r.code, 1) << r;
    EXPECT_TRUE(absl::StrContains(r.err, absl::StrCat("the audit trail does NOT verify: entry ",
                                                      hidden[0], " (case.get, denied)")))
        << r;
    EXPECT_TRUE(absl::StrContains(r.err, "but the node did not return it")) << r;
  }
  // The node's own check of its ledger finds the change too, soon after start.
  ExpectIndexDamageFound(hidden[0]);
  // Asked only for denied reads, the node answers nothing, and nothing is an
  // answer no trail can check (docs/audit.md says so): the check says it proved nothing.
  CtlRun empty = Verify({"--case", id, "--outcome", "denied"});
  EXPECT_EQ(empty.code, 0) << empty;
  EXPECT_TRUE(absl::StrContains(empty.out, "nothing returned, nothing to follow")) << empty;
}

// The newest entry of a trail, hidden before any later entry names it, is
// linked around by the next one (the ledger finds the predecessor through the
// index): the links cannot show it, and the auditor's check says so. The
// node's own check of its index, soon after start, finds it.
TEST_F(TrailTest, ANewestEntryHiddenBeforeTheNextIsFoundByTheNodesOwnCheck) {
  const std::string id = CreateCase();
  Read("cw", id);
  Read("aud", id);
  // Found without naming the case, so that no later entry is on the case's trail.
  CtlRun denied = As("aud", {"audit", "log", "--outcome", "denied", "--json"});
  const std::vector<uint64_t> hidden = Indexes(denied.out);
  ASSERT_EQ(hidden.size(), 1u) << denied;
  node_->Shutdown(absl::Seconds(1));
  node_.reset();
  DeleteIndexKeysOf(config_.data_dir(), hidden[0]);
  ASSERT_OK_AND_ASSIGN(node_, Node::Start(config_));
  ExpectIndexDamageFound(hidden[0]);
  Read("cw", id);  // links around the hidden entry
  CtlRun r = Verify({"--case", id});
  EXPECT_EQ(r.code, 0) << r;
  EXPECT_TRUE(absl::StrContains(r.out, "one hidden before any later entry on the trail")) << r;
}

TEST_F(TrailTest, PagesVerifyOneAfterAnotherAndTheKeyIsRequired) {
  const std::string id = CreateCase();
  for (int i = 0; i < 7; ++i) Read("cw", id);
  CtlRun first = Verify({"--case", id, "--limit", "3"});
  ASSERT_EQ(first.code, 0) << first;
  EXPECT_TRUE(absl::StrContains(first.out, "it continues on the next page")) << first;
  const size_t at = first.out.find("more: --page-token ");
  ASSERT_NE(at, std::string::npos) << first;
  const std::string token = first.out.substr(at + 19, first.out.find('\n', at) - at - 19);
  CtlRun last = Verify({"--case", id, "--limit", "10", "--page-token", token});
  ASSERT_EQ(last.code, 0) << last;
  EXPECT_TRUE(absl::StrContains(last.out, "(the trail's first)")) << last;
  // No steward keys: no key, no verification (the plain query still answers).
  CtlRun unchecked = As("aud", {"audit", "log", "--case", id, "--verify", "--roster",
                                fed_.org("union-sg").dir + "/roster.json"});
  EXPECT_EQ(unchecked.code, 1) << unchecked;
  EXPECT_TRUE(absl::StrContains(unchecked.err, "give the federation's steward keys")) << unchecked;
}

// Trails stay single lines under concurrent callers: 24 callers reading one
// case at once, the trail verified after.
TEST_F(TrailTest, ConcurrentReadsLeaveOneUnbrokenTrail) {
  const std::string id = CreateCase();
  std::vector<std::thread> callers;
  for (int t = 0; t < 24; ++t) {
    callers.emplace_back([&] {
      for (int i = 0; i < 3; ++i) Read("cw", id);
    });
  }
  for (auto& t : callers) t.join();
  CtlRun r = Verify({"--case", id, "--limit", "100"});
  ASSERT_EQ(r.code, 0) << r;
  EXPECT_TRUE(absl::StrContains(r.out, "verified: the 73 entries shown")) << r;
  EXPECT_TRUE(absl::StrContains(r.out, "(72 links, each proved)")) << r;
}

}  // namespace
}  // namespace corridor
