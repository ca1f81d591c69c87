// Executor, and AccessLog completions running off the ledger's sequencer.
#include "server/common/executor.h"

#include <atomic>

#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"
#include "ledger/rocksdb/rocksdb_ledger.h"
#include "server/audit/access_log.h"
#include "tests/testing/federation.h"
#include "tests/testing/status_matchers.h"

namespace corridor {
namespace {

TEST(ExecutorTest, RunsEveryTaskAndDrainsOnDestruction) {
  std::atomic<int> ran{0};
  {
    Executor executor("test", 3);
    for (int i = 0; i < 1000; ++i) executor.Post([&] { ++ran; });
  }
  EXPECT_EQ(ran.load(), 1000);
}

TEST(ExecutorTest, TaskPostedWhileStoppingStillRuns) {
  std::atomic<int> ran{0};
  auto executor = std::make_unique<Executor>("test", 1);
  absl::Notification release;
  executor->Post([&] {
    release.WaitForNotification();
    ++ran;
  });
  std::thread stopper([&] { executor.reset(); });
  // The destructor waits for the running task; nothing posted is lost.
  release.Notify();
  stopper.join();
  EXPECT_EQ(ran.load(), 1);
}

class AccessLogCompletionTest : public ::testing::Test {
 protected:
  AccessLogCompletionTest() {
    db_ = ledger::OpenLedgerDb(testing::MakeTempDir("corridor-exec") + "/db").value();
    ledger::RocksDbLedgerOptions o;
    o.origin = "corridor.test/union-sg";
    o.signing_key = &key_;
    ledger_ = ledger::RocksDbLedger::Open(db_->db.get(), db_->families, std::move(o)).value();
    log_ = std::make_unique<AccessLog>(ledger_.get(), &Clock::Real(), &completions_);
  }
  ~AccessLogCompletionTest() override {
    ledger_.reset();
    db_.reset();
  }

  static v1::AccessEvent Event(const std::string& action) {
    v1::AccessEvent e;
    e.set_actor_org("union-sg");
    e.set_actor_subject("user/cw");
    e.set_action(action);
    e.set_outcome(v1::ACCESS_OUTCOME_ALLOWED);
    return e;
  }

  Ed25519PrivateKey key_ = Ed25519PrivateKey::Generate();
  Executor completions_{"completions", 2};
  std::unique_ptr<ledger::LedgerDb> db_;
  std::unique_ptr<ledger::RocksDbLedger> ledger_;
  std::unique_ptr<AccessLog> log_;
};

// A slow completion (an export, a proof) neither stops the sequencer from
// committing later appends nor holds up their completions.
TEST_F(AccessLogCompletionTest, SlowCompletionDoesNotStallLaterAppends) {
  absl::Notification slow_started, release_slow, slow_done;
  log_->Record({Event("audit.export")}, nullptr, [&](absl::StatusOr<uint64_t> index) {
    ASSERT_OK(index);
    slow_started.Notify();
    release_slow.WaitForNotification();
    slow_done.Notify();
  });
  slow_started.WaitForNotification();
  // The sequencer commits while the slow completion still runs...
  for (int i = 0; i < 20; ++i) ASSERT_OK(log_->RecordSync({Event("case.get")}));
  // ...and other completions run too.
  std::atomic<int> completed{0};
  absl::Notification all_done;
  for (int i = 0; i < 50; ++i) {
    log_->Record({Event("case.get")}, nullptr, [&](absl::StatusOr<uint64_t> index) {
      ASSERT_OK(index);
      if (++completed == 50) all_done.Notify();
    });
  }
  all_done.WaitForNotification();
  EXPECT_FALSE(slow_done.HasBeenNotified());
  release_slow.Notify();
  slow_done.WaitForNotification();
  EXPECT_EQ(ledger_->head().size, 71u);
}

}  // namespace
}  // namespace corridor
