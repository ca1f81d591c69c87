// Node state the node trusts at start-up must be what it wrote: a stored
// roster version that is not a number (a damaged or tampered data
// directory) stops the start with a clear error instead of reading as 0,
// which would let an older roster back in (the rollback check compares with
// it).
#include <memory>
#include <string>

#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "server/node/config.h"
#include "server/node/node.h"
#include "server/store/store.h"
#include "tests/testing/federation.h"
#include "tests/testing/status_matchers.h"

namespace corridor {
namespace {

constexpr char kRosterVersionKey[] = "roster/version";

class StoredRosterVersionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fed_.AddOrg("union-sg");
    ASSERT_OK_AND_ASSIGN(
        config_, LoadNodeConfig(fed_.WriteNodeConfig("union-sg", {{"cw", {"caseworker"}}})));
  }
  // Writes `value` as the stored roster version (the node must be stopped).
  void StoreVersion(const std::string& value) {
    ASSERT_OK_AND_ASSIGN(auto store, NodeStore::Open(config_.data_dir(), {}));
    ASSERT_OK(store->PutMeta({{kRosterVersionKey, value}}));
  }

  testing::TestFederation fed_;
  v1::NodeConfig config_;
};

TEST_F(StoredRosterVersionTest, AVersionThatIsNotANumberStopsTheStart) {
  {  // A first start stores version 1.
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<Node> node, Node::Start(config_));
    node->Shutdown(absl::Seconds(1));
  }
  for (const std::string& garbage : std::initializer_list<std::string>{
           "", "garbage", "-1", "+1", " 1", "1 ", "1.0", "0x10", "1e3", "18446744073709551616",
           "99999999999999999999999", std::string("1\0", 2), "\xef\xbc\x91" /* fullwidth 1 */}) {
    SCOPED_TRACE(garbage);
    StoreVersion(garbage);
    auto node = Node::Start(config_);
    ASSERT_FALSE(node.ok());
    EXPECT_EQ(node.status().code(), absl::StatusCode::kDataLoss) << node.status();
    const std::string msg(node.status().message());
    EXPECT_NE(msg.find("roster/version"), std::string::npos) << msg;
    EXPECT_NE(msg.find("is damaged"), std::string::npos) << msg;
    EXPECT_NE(msg.find("backup"), std::string::npos) << msg;
  }
  // The number it should be: the node starts again.
  StoreVersion("1");
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Node> node, Node::Start(config_));
  node->Shutdown(absl::Seconds(1));
}

TEST_F(StoredRosterVersionTest, ANewerStoredVersionStillRefusesAnOlderRoster) {
  // What the number guards: the roster file (version 1) is older.
  StoreVersion("2");
  auto node = Node::Start(config_);
  ASSERT_FALSE(node.ok());
  EXPECT_EQ(node.status().code(), absl::StatusCode::kFailedPrecondition) << node.status();
  EXPECT_NE(node.status().message().find("older than version 2"), absl::string_view::npos)
      << node.status();
}

TEST_F(StoredRosterVersionTest, AStartCutOffBeforeTheRosterEntryLeavesNoVersionInForce) {
  // The version in force and its roster.in_force entry commit together: a
  // start whose ledger cannot commit stores no version, so the next start
  // records the entry (storing the version first would skip it for good).
  NodeTestHooks hooks;
  hooks.ledger_before_commit = [] { return absl::UnavailableError("the disk failed (test)"); };
  auto failed = Node::Start(config_, std::move(hooks));
  ASSERT_FALSE(failed.ok());
  {
    ASSERT_OK_AND_ASSIGN(auto store, NodeStore::Open(config_.data_dir(), {}));
    EXPECT_EQ(store->GetMetaNumber(kRosterVersionKey).status().code(), absl::StatusCode::kNotFound);
  }
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Node> node, Node::Start(config_));
  node->Shutdown(absl::Seconds(1));
  node.reset();
  ASSERT_OK_AND_ASSIGN(auto store, NodeStore::Open(config_.data_dir(), {}));
  ASSERT_OK_AND_ASSIGN(uint64_t version, store->GetMetaNumber(kRosterVersionKey));
  EXPECT_EQ(version, 1u);
}

TEST(NodeStoreMetaNumber, ReadsEveryDecimalNumberAndRefusesAnythingElse) {
  const std::string dir = testing::MakeTempDir("corridor-meta-number");
  ASSERT_OK_AND_ASSIGN(auto store, NodeStore::Open(dir, {}));
  EXPECT_EQ(store->GetMetaNumber("absent").status().code(), absl::StatusCode::kNotFound);
  for (const auto& [text, value] : std::initializer_list<std::pair<std::string, uint64_t>>{
           {"0", 0}, {"1", 1}, {"007", 7}, {"18446744073709551615", ~uint64_t{0}}}) {
    ASSERT_OK(store->PutMeta({{"n", text}}));
    ASSERT_OK_AND_ASSIGN(uint64_t got, store->GetMetaNumber("n"));
    EXPECT_EQ(got, value) << text;
  }
  for (const std::string& bad :
       std::initializer_list<std::string>{"", "x", "-0", "18446744073709551616", "1 2"}) {
    ASSERT_OK(store->PutMeta({{"n", bad}}));
    EXPECT_EQ(store->GetMetaNumber("n").status().code(), absl::StatusCode::kDataLoss) << bad;
  }
}

}  // namespace
}  // namespace corridor
