// RocksDbLedger under power loss (ledger/testing/power_loss_fs.h): unlike
// killing the process (rocksdb_ledger_test.cc, CrashTest), cutting the power
// loses whatever the ledger wrote but did not sync. Many appends run
// concurrently; the power is cut at seeded random points, with appends in
// flight; after each reboot the ledger must open, verify, and hold every
// acknowledged entry at its index. The same check fails on a disk whose syncs
// lie, so it can fail.
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "gtest/gtest.h"
#include "ledger/rocksdb/rocksdb_ledger.h"
#include "ledger/testing/ledger_test_util.h"
#include "ledger/testing/power_loss_fs.h"
#include "rocksdb/env.h"
#include "tests/testing/status_matchers.h"

namespace corridor::ledger {
namespace {

using ::corridor::ledger::testing::kSanitizedBuild;
using ::corridor::ledger::testing::PowerLossFileSystem;
using ::corridor::ledger::testing::TempDir;

constexpr int kRounds = kSanitizedBuild ? 4 : 12;
constexpr int kWriters = 4;

// What the ledger acknowledged: each entry by index.
struct Acknowledged {
  absl::Mutex mu;
  std::map<uint64_t, std::string> entries ABSL_GUARDED_BY(mu);
  uint64_t end ABSL_GUARDED_BY(mu) = 0;  // highest acknowledged index + 1
  int writers_done ABSL_GUARDED_BY(mu) = 0;
};

class PowerLossTest : public ::testing::Test {
 protected:
  PowerLossTest() : env_(rocksdb::NewCompositeEnv(fs_)) {}

  RocksDbLedgerOptions Options() {
    RocksDbLedgerOptions o;
    o.origin = "corridor.test/union-sg";
    o.signing_key = &key_;
    // After the cut nothing can recover; the test reopens instead.
    o.recovery_backoff_min = absl::InfiniteDuration();
    o.recovery_backoff_max = absl::InfiniteDuration();
    return o;
  }
  LedgerDbOptions DbOptions() {
    LedgerDbOptions o;
    o.options.env = env_.get();
    return o;
  }

  // Appends two entries per request (one with an index key) until the
  // ledger refuses, recording every acknowledged entry.
  void Write(RocksDbLedger* ledger, int writer, int round) {
    for (uint64_t i = 0;; ++i) {
      std::vector<AppendEntry> req = {{absl::StrCat("r", round, " w", writer, " ", i), {"k"}},
                                      {absl::StrCat("r", round, " w", writer, " ", i, "b"), {}}};
      absl::StatusOr<uint64_t> first = ledger->Append(req);
      absl::MutexLock lock(&acked_.mu);
      if (!first.ok()) {
        ++acked_.writers_done;
        return;
      }
      for (size_t j = 0; j < req.size(); ++j) acked_.entries[*first + j] = req[j].data;
      acked_.end = std::max(acked_.end, *first + req.size());
    }
  }

  // Waits until `n` entries are acknowledged (or every writer stopped).
  void AwaitAcknowledged(uint64_t n) {
    absl::MutexLock lock(&acked_.mu);
    auto ready = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(acked_.mu) {
      return acked_.end >= n || acked_.writers_done == kWriters;
    };
    acked_.mu.Await(absl::Condition(&ready));
  }

  // One round: open, append from kWriters threads, cut the power once
  // `cut_after` entries are acknowledged (a manual memtable flush on the
  // way when `flush`), stop everything, reboot.
  void RunRound(int round, uint64_t cut_after, bool flush) {
    ASSERT_OK_AND_ASSIGN(auto db, OpenLedgerDb(db_path_, DbOptions()));
    ASSERT_OK_AND_ASSIGN(auto ledger, RocksDbLedger::Open(db->db.get(), db->families, Options()));
    {
      absl::MutexLock lock(&acked_.mu);
      acked_.writers_done = 0;
    }
    const uint64_t start = ledger->head().size;
    std::vector<std::thread> writers;
    for (int w = 0; w < kWriters; ++w) {
      writers.emplace_back([&, w] { Write(ledger.get(), w, round); });
    }
    if (flush) {
      AwaitAcknowledged(start + (cut_after - start) / 2);
      rocksdb::FlushOptions fo;
      EXPECT_TRUE(db->db->Flush(fo, db->handles).ok());
    }
    AwaitAcknowledged(cut_after);
    fs_->PowerCut();  // appends in flight fail from here on
    for (auto& w : writers) w.join();
    ledger.reset();
    db.reset();
    ASSERT_OK(fs_->Reboot());
  }

  // A first start on a new database: open it, open the ledger, append three
  // requests one at a time, until the power goes.
  void FirstStart() {
    auto db = OpenLedgerDb(db_path_, DbOptions());
    if (!db.ok()) return;
    auto ledger = RocksDbLedger::Open((*db)->db.get(), (*db)->families, Options());
    if (!ledger.ok()) return;
    for (int i = 0; i < 3; ++i) {
      const std::string data = absl::StrCat("first ", i);
      absl::StatusOr<uint64_t> index = (*ledger)->Append({{data, {"k"}}});
      if (!index.ok()) return;
      absl::MutexLock lock(&acked_.mu);
      acked_.entries[*index] = data;
      acked_.end = *index + 1;
    }
  }

  // The ledger after a reboot: opens, verifies, holds every acknowledged
  // entry at its index. Returns the size it reopened with.
  absl::StatusOr<uint64_t> CheckAfterReboot() {
    auto db = OpenLedgerDb(db_path_, DbOptions());
    if (!db.ok()) return db.status();
    auto ledger = RocksDbLedger::Open((*db)->db.get(), (*db)->families, Options());
    if (!ledger.ok()) return ledger.status();
    if (absl::Status st = (*ledger)->VerifyAll(); !st.ok()) return st;
    absl::MutexLock lock(&acked_.mu);
    const uint64_t size = (*ledger)->head().size;
    if (size < acked_.end) {
      return absl::DataLossError(
          absl::StrCat("reopened with ", size, " entries; ", acked_.end, " were acknowledged"));
    }
    auto all = (*ledger)->Entries(0, acked_.end);
    if (!all.ok()) return all.status();
    for (const auto& [index, data] : acked_.entries) {
      if ((*all)[index] != data) {
        return absl::DataLossError(absl::StrCat("entry ", index, " is not the acknowledged one"));
      }
    }
    return size;
  }

  TempDir dir_;
  std::string db_path_ = dir_.path() + "/db";
  Ed25519PrivateKey key_ = Ed25519PrivateKey::Generate();
  std::shared_ptr<PowerLossFileSystem> fs_ = std::make_shared<PowerLossFileSystem>();
  std::unique_ptr<rocksdb::Env> env_;
  Acknowledged acked_;
};

TEST_F(PowerLossTest, EveryAcknowledgedAppendSurvivesAPowerCut) {
  std::mt19937_64 rng(20261130);
  uint64_t size = 0;
  uint64_t dropped = 0;
  int names_undone = 0;
  for (int round = 0; round < kRounds; ++round) {
    const uint64_t cut_after = size + 20 + rng() % 600;
    RunRound(round, cut_after, /*flush=*/round % 3 == 2);
    if (HasFatalFailure()) return;
    dropped += fs_->last_reboot().bytes_dropped;
    names_undone += fs_->last_reboot().files_removed + fs_->last_reboot().renames_undone;
    absl::StatusOr<uint64_t> reopened = CheckAfterReboot();
    ASSERT_TRUE(reopened.ok()) << "round " << round << ": " << reopened.status();
    size = *reopened;
  }
  // How much each cut took away (unsynced tails: in flight, never acknowledged).
  RecordProperty("bytes_dropped_by_power_cuts", static_cast<int64_t>(dropped));
  RecordProperty("names_undone_by_power_cuts", names_undone);
  RecordProperty("entries_at_end", static_cast<int64_t>(size));
}

// The power goes at each step (append, sync, create, rename, delete) of a
// first start in turn, in a new database each time: after the reboot the
// database and the ledger open (a node whose power failed while it was
// being set up can start), verify, and hold what was acknowledged.
TEST_F(PowerLossTest, ACutAtAnyStepOfTheFirstStartLeavesALedgerThatOpens) {
  const uint64_t stride = kSanitizedBuild ? 12 : 1;
  uint64_t steps = 0;
  for (uint64_t step = 1;; step += stride) {
    db_path_ = absl::StrCat(dir_.path(), "/db-", step);
    {
      absl::MutexLock lock(&acked_.mu);
      acked_.entries.clear();
      acked_.end = 0;
    }
    const uint64_t before = fs_->steps();
    fs_->PowerCutAt(step);
    FirstStart();
    const bool cut = !fs_->powered();
    if (!cut) {
      steps = fs_->steps() - before;
      fs_->PowerCut();
    }
    ASSERT_OK(fs_->Reboot());
    absl::StatusOr<uint64_t> reopened = CheckAfterReboot();
    ASSERT_TRUE(reopened.ok()) << "power cut at step " << step << ": " << reopened.status();
    if (!cut) break;
  }
  EXPECT_GT(steps, 10u);  // the walk went through the whole start
  RecordProperty("first_start_steps", static_cast<int64_t>(steps));
}

// The check above can fail: on a disk that acknowledges syncs without making
// anything durable, acknowledged entries are lost and the check says so.
TEST_F(PowerLossTest, TheCheckFailsOnADiskWhoseSyncsLie) {
  fs_->set_syncs_lie(true);
  RunRound(0, /*cut_after=*/200, /*flush=*/false);
  if (HasFatalFailure()) return;
  fs_->set_syncs_lie(false);
  EXPECT_GT(fs_->last_reboot().bytes_dropped, 0u);
  EXPECT_FALSE(CheckAfterReboot().ok());
}

}  // namespace
}  // namespace corridor::ledger
