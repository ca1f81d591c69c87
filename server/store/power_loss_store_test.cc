// The node's stores under power loss (ledger/testing/power_loss_fs.h): the
// main database (NodeStore, with the ledger in it) and the key store
// (CaseStore) on a file system whose power is cut at seeded random points
// while cases are created and erased from several threads. After each
// reboot: every acknowledged case creation (its key slot, its sealed record
// and its ledger entry) is there and opens; every acknowledged erasure is
// still an erasure and its data key is gone from the key store; the ledger
// verifies and holds every acknowledged entry; committed evidence (staged
// unsynced, made durable by the commit) reads back whole; acknowledged meta
// values (NodeStore::PutMeta) are there.
#include <algorithm>
#include <filesystem>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "google/protobuf/unknown_field_set.h"
#include "gtest/gtest.h"
#include "ledger/crypto/crypto.h"
#include "ledger/rocksdb/rocksdb_ledger.h"
#include "ledger/testing/ledger_test_util.h"
#include "ledger/testing/power_loss_fs.h"
#include "rocksdb/env.h"
#include "server/store/case_store.h"
#include "server/store/store.h"
#include "tests/testing/status_matchers.h"

namespace corridor {
namespace {

using ::corridor::ledger::testing::kSanitizedBuild;
using ::corridor::ledger::testing::PowerLossFileSystem;
using ::corridor::ledger::testing::TempDir;

constexpr int kRounds = kSanitizedBuild ? 3 : 5;
constexpr int kWriters = 3;

// What the stores acknowledged, across rounds.
struct Acknowledged {
  absl::Mutex mu;
  std::map<std::string, std::string> created ABSL_GUARDED_BY(mu);  // id -> worker name
  std::set<std::string> erasing ABSL_GUARDED_BY(mu);  // erase sent, maybe not acknowledged
  std::set<std::string> erased ABSL_GUARDED_BY(mu);   // erase acknowledged
  std::map<std::string, std::string> evidence ABSL_GUARDED_BY(mu);  // case id -> item "E1"
  uint64_t ledger_end ABSL_GUARDED_BY(mu) = 0;
  int64_t meta_round ABSL_GUARDED_BY(mu) = -1;  // acknowledged "round" meta value
  uint64_t operations ABSL_GUARDED_BY(mu) = 0;
  int writers_done ABSL_GUARDED_BY(mu) = 0;
};

class PowerLossStoreTest : public ::testing::Test {
 protected:
  PowerLossStoreTest() : env_(rocksdb::NewCompositeEnv(fs_)), master_(RandomBytes(32)) {
    // Protobuf's lazily made empty UnknownFieldSet (first read by
    // ParseProtoStrict) is made here, on one thread: Debian's protobuf is not
    // instrumented, so ThreadSanitizer does not see the acquire load of its
    // static's guard and reports the writers' first concurrent parses.
    google::protobuf::UnknownFieldSet::default_instance();
  }
  ~PowerLossStoreTest() override { Close(); }

  absl::Status Open() {
    NodeStoreOptions o;
    o.reserve_bytes = 0;  // no 32 MiB file per round
    o.check_interval = absl::InfiniteDuration();
    o.env = env_.get();
    auto store = NodeStore::Open(base_ + "/db", {kCasesFamily, kEvidenceFamily}, o);
    if (!store.ok()) return store.status();
    store_ = *std::move(store);
    ledger::RocksDbLedgerOptions lo;
    lo.origin = "corridor.test/union-sg";
    lo.signing_key = &key_;
    lo.recovery_backoff_min = absl::InfiniteDuration();  // the test reopens instead
    lo.recovery_backoff_max = absl::InfiniteDuration();
    auto ledger = ledger::RocksDbLedger::Open(store_->db(), store_->families(), std::move(lo));
    if (!ledger.ok()) return ledger.status();
    ledger_ = *std::move(ledger);
    auto cases =
        CaseStore::Open(store_->db(), store_->family(kCasesFamily), store_->family(kEvidenceFamily),
                        store_->family(NodeStore::kMetaFamily), KeystoreDir(), master_, env_.get());
    if (!cases.ok()) return cases.status();
    cases_ = *std::move(cases);
    return absl::OkStatus();
  }
  void Close() {
    ledger_.reset();
    cases_.reset();
    store_.reset();
  }
  std::string KeystoreDir() { return base_ + "/keystore"; }

  // Commits `change` with one ledger entry; records the entry's end.
  absl::Status Commit(const std::string& event, std::unique_ptr<ledger::Mutation> change) {
    auto first = ledger_->Append({{event, {}}}, std::move(change));
    if (!first.ok()) return first.status();
    absl::MutexLock lock(&acked_.mu);
    acked_.ledger_end = std::max(acked_.ledger_end, *first + 1);
    ++acked_.operations;
    return absl::OkStatus();
  }

  // The new case's id once its creation is acknowledged.
  absl::StatusOr<std::string> CreateCase(const std::string& name) {
    v1::Case c;
    c.set_id(CaseStore::NewCaseId());
    c.mutable_worker()->set_name(name);
    auto change = cases_->PrepareCreate(c);
    if (!change.ok()) return change.status();
    if (auto st = Commit("case.create " + c.id(), *std::move(change)); !st.ok()) return st;
    absl::MutexLock lock(&acked_.mu);
    acked_.created[c.id()] = name;
    return c.id();
  }

  absl::Status EraseCase(const std::string& id) {
    auto change = cases_->PrepareErase(id);
    if (!change.ok()) return change.status();
    {
      absl::MutexLock lock(&acked_.mu);
      acked_.erasing.insert(id);
    }
    if (auto st = Commit("case.erase " + id, *std::move(change)); !st.ok()) return st;
    {
      absl::MutexLock lock(&acked_.mu);
      acked_.erased.insert(id);
    }
    return cases_->DestroyKey(id);  // if the power goes first, the next Open finishes it
  }

  // Stages two chunks of evidence item "E1" (unsynced writes, as uploads do)
  // and commits the item with its ledger entry: the commit's synced write,
  // later in the same log, must make the chunks durable too.
  absl::Status AddEvidence(const std::string& id, int n) {
    const std::string data =
        absl::StrCat(id, std::string(kEvidenceChunkSize + 100, static_cast<char>('a' + n % 26)));
    if (auto st = cases_->BeginStaging(id, "E1"); !st.ok()) return st;
    for (uint32_t chunk = 0; chunk * kEvidenceChunkSize < data.size(); ++chunk) {
      auto st = cases_->StageEvidenceChunk(
          id, "E1", chunk,
          absl::string_view(data).substr(chunk * kEvidenceChunkSize, kEvidenceChunkSize));
      if (!st.ok()) return st;
    }
    auto change = std::make_unique<ledger::Mutation>();
    cases_->EndStaging(change.get(), id, "E1");
    if (auto st = Commit("evidence.add " + id, std::move(change)); !st.ok()) return st;
    absl::MutexLock lock(&acked_.mu);
    acked_.evidence[id] = data;
    return absl::OkStatus();
  }

  // Creates cases until a store refuses, adding evidence to every third; in odd rounds erases every
  // third one right after creating it (even rounds create only, so that nothing else syncs the key
  // store's log after its pool refill).
  void Write(int writer, int round) {
    const bool erase = round % 2 == 1;
    for (int i = 0;; ++i) {
      absl::StatusOr<std::string> id =
          CreateCase(absl::StrCat("Worker ", round, "-", writer, "-", i));
      absl::Status st = id.status();
      if (st.ok() && i % 3 == 1) st = AddEvidence(*id, i);
      if (st.ok() && erase && i % 3 == 2) st = EraseCase(*id);
      if (!st.ok()) break;
    }
    absl::MutexLock lock(&acked_.mu);
    ++acked_.writers_done;
  }

  void AwaitOperations(uint64_t n) {
    absl::MutexLock lock(&acked_.mu);
    auto ready = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(acked_.mu) {
      return acked_.operations >= n || acked_.writers_done == kWriters;
    };
    acked_.mu.Await(absl::Condition(&ready));
  }

  void RunRound(int round, uint64_t cut_after) {
    ASSERT_OK(Open());
    ASSERT_OK(store_->PutMeta({{"round", absl::StrCat(round)}}));
    {
      absl::MutexLock lock(&acked_.mu);
      acked_.meta_round = round;
    }
    {
      absl::MutexLock lock(&acked_.mu);
      acked_.writers_done = 0;
    }
    std::vector<std::thread> writers;
    for (int w = 0; w < kWriters; ++w) writers.emplace_back([this, w, round] { Write(w, round); });
    AwaitOperations(cut_after);
    fs_->PowerCut();
    for (auto& w : writers) w.join();
    Close();
    ASSERT_OK(fs_->Reboot());
  }

  // Whether the key store (read directly) still holds `key`.
  bool KeystoreHolds(const std::string& key) {
    rocksdb::DB* raw = nullptr;
    rocksdb::Status s = rocksdb::DB::OpenForReadOnly(rocksdb::Options(), KeystoreDir(), &raw);
    EXPECT_TRUE(s.ok()) << s.ToString();
    if (!s.ok()) return true;
    std::unique_ptr<rocksdb::DB> ks(raw);
    std::string v;
    return ks->Get(rocksdb::ReadOptions(), key, &v).ok();
  }

  void CheckAfterReboot(const std::string& when);

  // A node's first start on a new data directory, until the power goes: the
  // stores and the ledger opened (key store created, key pool filled), a
  // meta value put, a case created with evidence, another created and erased.
  void FirstStart() {
    if (Open().ok() && store_->PutMeta({{"round", "0"}}).ok()) {
      {
        absl::MutexLock lock(&acked_.mu);
        acked_.meta_round = 0;
      }
      absl::StatusOr<std::string> id = CreateCase("Worker First-1");
      absl::Status st = id.ok() ? AddEvidence(*id, 0) : id.status();
      if (st.ok()) id = CreateCase("Worker First-2");
      if (st.ok() && id.ok()) (void)EraseCase(*id);
    }
    Close();
  }
  void ForgetAcknowledged() {
    absl::MutexLock lock(&acked_.mu);
    acked_.created.clear();
    acked_.erasing.clear();
    acked_.erased.clear();
    acked_.evidence.clear();
    acked_.ledger_end = 0;
    acked_.meta_round = -1;
  }

  TempDir dir_;
  std::string base_ = dir_.path();  // the node's data directory
  std::shared_ptr<PowerLossFileSystem> fs_ = std::make_shared<PowerLossFileSystem>();
  std::unique_ptr<rocksdb::Env> env_;
  const Ed25519PrivateKey key_ = Ed25519PrivateKey::Generate();
  const std::string master_;
  std::unique_ptr<NodeStore> store_;
  std::unique_ptr<ledger::RocksDbLedger> ledger_;
  std::unique_ptr<CaseStore> cases_;
  Acknowledged acked_;
};

void PowerLossStoreTest::CheckAfterReboot(const std::string& when) {
  SCOPED_TRACE(absl::StrCat("after the power cut ", when));
  ASSERT_OK(Open());  // finishes the destruction of keys whose erasure committed
  ASSERT_OK(ledger_->VerifyAll());
  absl::MutexLock lock(&acked_.mu);
  if (acked_.meta_round >= 0) {
    ASSERT_OK_AND_ASSIGN(uint64_t meta_round, store_->GetMetaNumber("round"));
    EXPECT_EQ(meta_round, static_cast<uint64_t>(acked_.meta_round));
  }
  EXPECT_GE(ledger_->head().size, acked_.ledger_end);
  std::vector<std::string> slots_of_erased;
  for (const auto& [id, name] : acked_.created) {
    if (acked_.erased.count(id) > 0) {
      EXPECT_TRUE(cases_->IsErased(id)) << id;
      EXPECT_STATUS(cases_->Get(id), absl::StatusCode::kFailedPrecondition, "");
      ASSERT_OK_AND_ASSIGN(v1::StoredCase stored, cases_->GetStored(id));
      slots_of_erased.push_back(stored.key_slot());
    } else if (acked_.erasing.count(id) == 0) {
      ASSERT_OK_AND_ASSIGN(v1::Case c, cases_->Get(id));
      EXPECT_EQ(c.worker().name(), name) << id;
      auto evidence = acked_.evidence.find(id);
      if (evidence == acked_.evidence.end()) continue;
      ASSERT_OK_AND_ASSIGN(std::string data, cases_->ReadEvidence(id, "E1"));
      EXPECT_TRUE(data == evidence->second) << "evidence of " << id << " is not what was committed";
    }
  }
  for (const std::string& slot : slots_of_erased) {
    EXPECT_FALSE(KeystoreHolds(slot)) << "the data key of an erased case survived: " << slot;
  }
}

TEST_F(PowerLossStoreTest, AcknowledgedCreationsAndErasuresSurviveAPowerCut) {
  std::mt19937_64 rng(1130);
  uint64_t dropped = 0;
  int names_undone = 0;
  for (int round = 0; round < kRounds; ++round) {
    uint64_t done;
    {
      absl::MutexLock lock(&acked_.mu);
      done = acked_.operations;
    }
    RunRound(round, done + 5 + rng() % 80);
    if (HasFatalFailure()) return;
    dropped += fs_->last_reboot().bytes_dropped;
    names_undone += fs_->last_reboot().files_removed + fs_->last_reboot().renames_undone;
    CheckAfterReboot(absl::StrCat("of round ", round));
    if (HasFatalFailure()) return;
    Close();
  }
  absl::MutexLock lock(&acked_.mu);
  EXPECT_GT(acked_.erased.size(), 0u);
  RecordProperty("bytes_dropped_by_power_cuts", static_cast<int64_t>(dropped));
  RecordProperty("names_undone_by_power_cuts", names_undone);
  RecordProperty("cases_created", static_cast<int64_t>(acked_.created.size()));
  RecordProperty("cases_erased", static_cast<int64_t>(acked_.erased.size()));
  RecordProperty("evidence_items", static_cast<int64_t>(acked_.evidence.size()));
}

// The power goes at one step of a node's first start after another (about
// 20 seeded steps spread over all of them, 4 under sanitizers), in a new
// data directory each time: after the reboot the stores open (a node whose
// power failed while it was being set up can start) and hold what was
// acknowledged.
TEST_F(PowerLossStoreTest, ACutDuringTheFirstStartLeavesStoresThatOpen) {
  constexpr uint64_t kCuts = kSanitizedBuild ? 4 : 20;
  base_ = dir_.path() + "/uncut";
  std::filesystem::create_directories(base_);
  uint64_t before = fs_->steps();
  FirstStart();
  const uint64_t steps = fs_->steps() - before;
  ASSERT_GT(steps, 10u);
  const uint64_t stride = std::max<uint64_t>(1, steps / kCuts);
  std::mt19937_64 rng(7);
  for (uint64_t first = 1; first <= steps; first += stride) {
    const uint64_t step = first + rng() % stride;
    base_ = absl::StrCat(dir_.path(), "/cut-", step);
    std::filesystem::create_directories(base_);
    ForgetAcknowledged();
    fs_->PowerCutAt(step);
    FirstStart();
    if (fs_->powered()) fs_->PowerCut();  // past the last step: cut at the end
    ASSERT_OK(fs_->Reboot());
    CheckAfterReboot(absl::StrCat("at step ", step, " of ", steps, " of the first start"));
    if (HasFatalFailure()) return;
    Close();
  }
  RecordProperty("first_start_steps", static_cast<int64_t>(steps));
}

}  // namespace
}  // namespace corridor
