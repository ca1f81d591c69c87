// RocksDbLedger beyond the conformance suite: reopening without replay, the
// caller's WriteBatch in the same commit, group commit, fail-closed commits
// that heal in place (also on a file system that runs out of space),
// Tessera interoperability, and tamper tests that edit RocksDB directly.
#include "ledger/rocksdb/rocksdb_ledger.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <random>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "ledger/testing/ledger_test_util.h"
#include "rocksdb/env.h"
#include "rocksdb/file_system.h"
#include "tests/testing/status_matchers.h"

namespace corridor::ledger {
namespace {

using ::corridor::ledger::testing::FakeClock;
using ::corridor::ledger::testing::ReferenceRoot;
using ::corridor::ledger::testing::TempDir;

// Options for a database on `env` (file-system faults).
LedgerDbOptions OnEnv(rocksdb::Env* env) {
  LedgerDbOptions o;
  o.options.env = env;
  return o;
}

std::string Be64(uint64_t v) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>(v >> (56 - 8 * i));
  return s;
}
std::string TileKey(int level, uint64_t index) { return std::string(1, char(level)) + Be64(index); }

class RocksDbLedgerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto db = OpenLedgerDb(dir_.path() + "/db");
    ASSERT_OK(db);
    db_ = std::move(*db);
  }
  void TearDown() override {
    ledger_.reset();
    db_.reset();
  }

  RocksDbLedgerOptions Options() {
    RocksDbLedgerOptions o;
    o.origin = "corridor.test/union-sg";
    o.signing_key = &key_;
    o.clock = clock_.AsFunction();
    return o;
  }
  absl::StatusOr<std::unique_ptr<RocksDbLedger>> Open(RocksDbLedgerOptions o) {
    return RocksDbLedger::Open(db_->db.get(), db_->families, std::move(o));
  }
  void Reopen(RocksDbLedgerOptions o) {
    ledger_.reset();
    auto l = Open(std::move(o));
    ASSERT_OK(l);
    ledger_ = std::move(*l);
  }
  void Reopen() { Reopen(Options()); }

  // Appends `n` entries, one group per random-sized request.
  void Fill(size_t n) {
    while (entries_.size() < n) {
      const size_t batch = std::min<size_t>(n - entries_.size(), 1 + rng_() % 37);
      std::vector<AppendEntry> req;
      for (size_t i = 0; i < batch; ++i)
        req.push_back({absl::StrCat("event-", entries_.size() + i), {}});
      ASSERT_OK(ledger_->Append(req));
      for (auto& e : req) entries_.push_back(e.data);
    }
  }

  rocksdb::DB* db() { return db_->db.get(); }
  rocksdb::ColumnFamilyHandle* cf(const char* name) { return db_->families.at(name); }
  std::string Get(const char* family, const std::string& key) {
    std::string v;
    EXPECT_TRUE(db()->Get(rocksdb::ReadOptions(), cf(family), key, &v).ok());
    return v;
  }
  void Put(const char* family, const std::string& key, const std::string& value) {
    ASSERT_TRUE(db()->Put(rocksdb::WriteOptions(), cf(family), key, value).ok());
  }
  void Delete(const char* family, const std::string& key) {
    ASSERT_TRUE(db()->Delete(rocksdb::WriteOptions(), cf(family), key).ok());
  }

  TempDir dir_;
  Ed25519PrivateKey key_ = Ed25519PrivateKey::Generate();
  FakeClock clock_;
  std::mt19937_64 rng_{42};
  std::unique_ptr<LedgerDb> db_;
  std::unique_ptr<RocksDbLedger> ledger_;
  std::vector<std::string> entries_;
};

TEST_F(RocksDbLedgerTest, ColumnFamilyNamesArePrefixed) {
  for (const std::string& n : LedgerColumnFamilyNames())
    EXPECT_TRUE(absl::StartsWith(n, "ledger_")) << n;
  auto families = db_->families;
  families.erase(kTilesFamily);
  EXPECT_STATUS(RocksDbLedger::Open(db(), families, Options()), absl::StatusCode::kInvalidArgument,
                "ledger_tiles");
}

TEST_F(RocksDbLedgerTest, ReopenContinuesTheTreeWithoutReplay) {
  Reopen();
  Fill(300);
  const Head at300 = ledger_->head();
  Reopen();
  EXPECT_EQ(ledger_->head().size, 300u);
  EXPECT_EQ(ledger_->head().root, at300.root);
  EXPECT_EQ(ledger_->head().checkpoint, at300.checkpoint);
  Fill(700);  // continues partial tiles written before the reopen
  EXPECT_EQ(ledger_->head().root, ReferenceRoot(entries_, 0, 700));
  ASSERT_OK_AND_ASSIGN(auto proof, ledger_->ConsistencyProof(300, 700));
  ASSERT_OK(merkle::VerifyConsistency(300, 700, at300.root, ledger_->head().root, proof));
  // The old checkpoint still verifies with the same key.
  EXPECT_OK(note::OpenCheckpoint(at300.checkpoint, ledger_->verifier()));
  EXPECT_OK(ledger_->VerifyAll());
}

// Crosses the first level-1 tile boundary (65,536 leaves, a node stored in
// tile level 2) with a reopen just before it; every stored hash is checked.
TEST_F(RocksDbLedgerTest, TilesStayRightAcrossTheSecondTileLevel) {
  Reopen();
  std::vector<merkle::Hash> leaves;
  auto append_until = [&](uint64_t n) {
    while (leaves.size() < n) {
      const size_t count = std::min<size_t>(n - leaves.size(), 1 + rng_() % 2000);
      std::vector<AppendEntry> req(count);
      for (size_t i = 0; i < count; ++i) {
        req[i].data = absl::StrCat("e", leaves.size() + i);
        leaves.push_back(merkle::HashLeaf(req[i].data));
      }
      ASSERT_OK(ledger_->Append(std::move(req)));
    }
  };
  append_until(65530);
  Reopen();
  append_until(70001);
  ASSERT_OK(ledger_->VerifyAll());
  for (uint64_t size : {65535u, 65536u, 65537u, 70001u}) {
    merkle::CompactRange ref;
    for (uint64_t i = 0; i < size; ++i) ref.Push(leaves[i]);
    ASSERT_OK_AND_ASSIGN(merkle::Hash root, ledger_->RootAt(size));
    ASSERT_EQ(root, ref.Root()) << size;
    for (uint64_t index : {uint64_t{0}, uint64_t{65535}, size - 1}) {
      if (index >= size) continue;
      ASSERT_OK_AND_ASSIGN(auto proof, ledger_->InclusionProof(index, size));
      ASSERT_OK(merkle::VerifyInclusion(index, size, leaves[index], proof, root));
    }
    ASSERT_OK_AND_ASSIGN(auto cons, ledger_->ConsistencyProof(65530, size));
    merkle::CompactRange old;
    for (uint64_t i = 0; i < 65530; ++i) old.Push(leaves[i]);
    ASSERT_OK(merkle::VerifyConsistency(65530, size, old.Root(), root, cons));
  }
  ASSERT_OK_AND_ASSIGN(merkle::Hash level16, ledger_->SubtreeHash(16, 0));
  merkle::CompactRange first;
  for (uint64_t i = 0; i < 65536; ++i) first.Push(leaves[i]);
  EXPECT_EQ(level16, first.Root());
}

TEST_F(RocksDbLedgerTest, ProofsStayRightWithATinyTileCache) {
  RocksDbLedgerOptions o = Options();
  o.tile_cache_tiles = 1;
  Reopen(o);
  Fill(1100);
  for (int i = 0; i < 200; ++i) {
    const uint64_t size = 1 + rng_() % 1100, index = rng_() % size;
    ASSERT_OK_AND_ASSIGN(auto proof, ledger_->InclusionProof(index, size));
    ASSERT_OK(merkle::VerifyInclusion(index, size, merkle::HashLeaf(entries_[index]), proof,
                                      ReferenceRoot(entries_, 0, size)));
  }
}

TEST_F(RocksDbLedgerTest, ReadersSeeOnlyCommittedConsistentHeadsWhileAppending) {
  Reopen();
  std::atomic<bool> done{false};
  std::atomic<int> checks{0};
  std::thread reader([&] {
    std::mt19937_64 rng(5);
    while (!done.load()) {
      const Head h = ledger_->head();
      if (h.size == 0) continue;
      const uint64_t index = rng() % h.size;
      auto entry = ledger_->Entry(index);
      auto proof = ledger_->InclusionProof(index, h.size);
      ASSERT_OK(entry);
      ASSERT_OK(proof);
      ASSERT_OK(merkle::VerifyInclusion(index, h.size, merkle::HashLeaf(*entry), *proof, h.root));
      ++checks;
    }
  });
  Fill(2000);
  done = true;
  reader.join();
  EXPECT_GT(checks.load(), 0);
  EXPECT_OK(ledger_->VerifyAll());
}

// The node's background scrub runs VerifyCommitted while callers append: it
// must never take an append in flight (an entry written before the head moves)
// for damage, and must check what was committed when it began.
TEST_F(RocksDbLedgerTest, VerifyCommittedFindsNoDamageWhileAppendsRun) {
  Reopen();
  Fill(300);
  std::atomic<bool> done{false};
  std::atomic<int> runs{0};
  std::thread scrub([&] {
    while (!done.load()) {
      const uint64_t size_before = ledger_->head().size;
      ASSERT_OK(ledger_->VerifyCommitted());
      EXPECT_GE(ledger_->head().size, size_before);
      ++runs;
    }
  });
  for (size_t n = 350; n <= 2300; n += 50) Fill(n);
  done = true;
  scrub.join();
  EXPECT_GT(runs.load(), 1);
  EXPECT_OK(ledger_->VerifyAll());
}

TEST_F(RocksDbLedgerTest, TheCallersChangeCommitsInTheSameBatchOrNotAtAll) {
  bool fail = false;
  RocksDbLedgerOptions o = Options();
  o.before_commit = [&] { return fail ? absl::InternalError("injected") : absl::OkStatus(); };
  Reopen(o);
  auto change = std::make_unique<Mutation>();
  change->Put("default", "case/1", "opened");
  ASSERT_OK(ledger_->Append({{"case 1 created", {"case/1"}}}, std::move(change)));
  std::string v;
  ASSERT_TRUE(db()->Get(rocksdb::ReadOptions(), "case/1", &v).ok());
  EXPECT_EQ(v, "opened");

  fail = true;
  change = std::make_unique<Mutation>();
  change->Put("default", "case/2", "opened");
  change->Delete("default", "case/1");
  EXPECT_STATUS(ledger_->Append({{"case 2 created", {"case/2"}}}, std::move(change)),
                absl::StatusCode::kUnavailable, "injected");
  EXPECT_TRUE(db()->Get(rocksdb::ReadOptions(), "case/2", &v).IsNotFound());
  EXPECT_TRUE(db()->Get(rocksdb::ReadOptions(), "case/1", &v).ok());
  EXPECT_TRUE(db()->Get(rocksdb::ReadOptions(), cf(kEntriesFamily), Be64(1), &v).IsNotFound());
  // Reopening clears the refusing state; the failed group left no trace.
  Reopen();
  EXPECT_EQ(ledger_->head().size, 1u);
  EXPECT_OK(ledger_->Append({{"case 2 created", {"case/2"}}}));
  EXPECT_OK(ledger_->VerifyAll());
}

TEST_F(RocksDbLedgerTest, AChangeToAFamilyTheLedgerWasNotGivenIsRefused) {
  rocksdb::ColumnFamilyHandle* other = nullptr;
  ASSERT_TRUE(db()->CreateColumnFamily(rocksdb::ColumnFamilyOptions(), "cases", &other).ok());
  Reopen();
  auto change = std::make_unique<Mutation>();
  change->Put("cases", "case/1", "x");
  EXPECT_STATUS(ledger_->Append({{"e", {}}}, std::move(change)), absl::StatusCode::kInvalidArgument,
                "which this ledger was not given");
  EXPECT_OK(ledger_->health());
  // Given to Open, the same change commits.
  auto families = db_->families;
  families["cases"] = other;
  ledger_.reset();
  ASSERT_OK_AND_ASSIGN(ledger_, RocksDbLedger::Open(db(), families, Options()));
  change = std::make_unique<Mutation>();
  change->Put("cases", "case/1", "x");
  EXPECT_OK(ledger_->Append({{"e", {}}}, std::move(change)));
  std::string v;
  EXPECT_TRUE(db()->Get(rocksdb::ReadOptions(), other, "case/1", &v).ok());
  EXPECT_EQ(v, "x");
  ledger_.reset();
  ASSERT_TRUE(db()->DestroyColumnFamilyHandle(other).ok());
}

TEST_F(RocksDbLedgerTest, AChangeCannotWriteTheLedgersOwnFamilies) {
  Reopen();
  ASSERT_OK(ledger_->Append({{"genuine", {}}}));
  for (const std::string& name : LedgerColumnFamilyNames()) {
    auto change = std::make_unique<Mutation>();
    change->Put(name, "head", "forged");
    EXPECT_STATUS(ledger_->Append({{"e", {}}}, std::move(change)),
                  absl::StatusCode::kInvalidArgument, "one of the ledger's own");
  }
  EXPECT_OK(ledger_->health());
  EXPECT_EQ(ledger_->head().size, 1u);
  Reopen();
  EXPECT_OK(ledger_->VerifyAll());
}

// Holds the sequencer inside its first commit until released.
class Gate {
 public:
  absl::Status Enter() {
    absl::MutexLock lock(&mu_);
    ++commits_;
    if (commits_ == 1) {
      entered_ = true;
      mu_.Await(absl::Condition(&open_));
    }
    return fail_after_first_ && commits_ == 1 ? absl::InternalError("disk full") : absl::OkStatus();
  }
  void AwaitEntered() {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(&entered_));
  }
  void Open() {
    absl::MutexLock lock(&mu_);
    open_ = true;
  }
  int commits() {
    absl::MutexLock lock(&mu_);
    return commits_;
  }
  bool fail_after_first_ = false;

 private:
  absl::Mutex mu_;
  int commits_ ABSL_GUARDED_BY(mu_) = 0;
  bool entered_ ABSL_GUARDED_BY(mu_) = false;
  bool open_ ABSL_GUARDED_BY(mu_) = false;
};

struct Completions {
  absl::Mutex mu;
  std::vector<absl::StatusOr<uint64_t>> results ABSL_GUARDED_BY(mu);
  AppendCallback Callback() {
    return [this](absl::StatusOr<uint64_t> r) {
      absl::MutexLock lock(&mu);
      results.push_back(std::move(r));
    };
  }
  void AwaitCount(size_t n) {
    absl::MutexLock lock(&mu);
    auto ready = [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return results.size() >= n; };
    mu.Await(absl::Condition(&ready));
  }
};

TEST_F(RocksDbLedgerTest, WaitingRequestsAreCommittedAsOneGroup) {
  Gate gate;
  RocksDbLedgerOptions o = Options();
  o.before_commit = [&] { return gate.Enter(); };
  Reopen(o);
  Completions done;
  ledger_->AppendAsync({{"first", {}}}, nullptr, done.Callback());
  gate.AwaitEntered();
  for (int i = 0; i < 100; ++i) {
    ledger_->AppendAsync({{absl::StrCat("queued ", i), {}}, {"two", {}}}, nullptr, done.Callback());
  }
  gate.Open();
  done.AwaitCount(101);
  EXPECT_EQ(gate.commits(), 2);  // one for "first", one for all 100 waiting
  absl::MutexLock lock(&done.mu);
  EXPECT_EQ(*done.results[0], 0u);
  for (int i = 1; i <= 100; ++i) EXPECT_EQ(*done.results[i], uint64_t(1 + 2 * (i - 1)));
  EXPECT_EQ(ledger_->head().size, 201u);
}

TEST_F(RocksDbLedgerTest, AFailedCommitAlsoFailsEverythingQueuedBehindIt) {
  Gate gate;
  gate.fail_after_first_ = true;
  RocksDbLedgerOptions o = Options();
  o.before_commit = [&] { return gate.Enter(); };
  o.recovery_backoff_min = o.recovery_backoff_max = absl::InfiniteDuration();
  Reopen(o);
  Completions done;
  ledger_->AppendAsync({{"first", {}}}, nullptr, done.Callback());
  gate.AwaitEntered();
  for (int i = 0; i < 20; ++i) ledger_->AppendAsync({{"queued", {}}}, nullptr, done.Callback());
  gate.Open();
  done.AwaitCount(21);
  {
    absl::MutexLock lock(&done.mu);
    for (const auto& r : done.results) {
      EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable) << r.status();
    }
  }
  EXPECT_EQ(gate.commits(), 1);  // nothing was attempted after the failure
  EXPECT_EQ(ledger_->head().size, 0u);
}

TEST_F(RocksDbLedgerTest, ClosingCommitsWhatIsQueued) {
  Reopen();
  Completions done;
  for (int i = 0; i < 50; ++i) ledger_->AppendAsync({{"e", {}}}, nullptr, done.Callback());
  ledger_.reset();
  done.AwaitCount(50);
  Reopen();
  EXPECT_EQ(ledger_->head().size, 50u);
}

// A commit failed by the hook: the ledger refuses while the fault lasts
// (recovery attempts fail too), then recovers in place once it clears.
TEST_F(RocksDbLedgerTest, AFailedCommitHealsInPlaceOnceTheFaultClears) {
  std::atomic<bool> fail{false};
  RocksDbLedgerOptions o = Options();
  o.before_commit = [&] { return fail ? absl::InternalError("injected") : absl::OkStatus(); };
  o.recovery_backoff_min = o.recovery_backoff_max = absl::InfiniteDuration();  // by hand
  Reopen(o);
  Fill(40);
  const Head before = ledger_->head();
  fail = true;
  EXPECT_STATUS(ledger_->Append({{"lost", {"case/9"}}}), absl::StatusCode::kUnavailable,
                "injected");
  EXPECT_STATUS(ledger_->health(), absl::StatusCode::kUnavailable, "refuses writes");
  EXPECT_STATUS(ledger_->Append({{"later", {}}}), absl::StatusCode::kUnavailable, "refuses");
  EXPECT_STATUS(ledger_->TryRecover(), absl::StatusCode::kUnavailable, "injected");
  EXPECT_STATUS(ledger_->health(), absl::StatusCode::kUnavailable, "retrying");
  EXPECT_EQ(ledger_->head().checkpoint, before.checkpoint);
  fail = false;
  EXPECT_OK(ledger_->TryRecover());
  EXPECT_OK(ledger_->health());
  EXPECT_EQ(ledger_->head().size, before.size);  // the failed group never reached the disk
  EXPECT_EQ(ledger_->head().checkpoint, before.checkpoint);
  ASSERT_OK_AND_ASSIGN(uint64_t index, ledger_->Append({{"after", {"case/9"}}}));
  EXPECT_EQ(index, before.size);
  entries_.push_back("after");
  Fill(100);
  EXPECT_EQ(ledger_->head().root, ReferenceRoot(entries_, 0, entries_.size()));
  ASSERT_OK_AND_ASSIGN(std::vector<uint64_t> hits,
                       ledger_->Lookup("case/9", Ledger::kFromNewest, 9));
  EXPECT_EQ(hits, std::vector<uint64_t>{before.size});
  EXPECT_OK(ledger_->VerifyAll());
  Reopen();
  EXPECT_EQ(ledger_->head().root, ReferenceRoot(entries_, 0, entries_.size()));
  EXPECT_OK(ledger_->VerifyAll());
}

// Recovery re-derives the state from the disk and refuses for good if the
// disk lost what was acknowledged, rather than writing over it.
TEST_F(RocksDbLedgerTest, RecoveryRefusesForGoodIfTheDiskLostAcknowledgedEntries) {
  std::atomic<bool> fail{false};
  RocksDbLedgerOptions o = Options();
  o.before_commit = [&] { return fail ? absl::InternalError("injected") : absl::OkStatus(); };
  o.recovery_backoff_min = o.recovery_backoff_max = absl::InfiniteDuration();
  Reopen(o);
  Fill(10);
  const std::string head10 = Get(kStateFamily, "head");
  const std::string checkpoint10 = Get(kStateFamily, "checkpoint");
  Fill(20);
  fail = true;
  EXPECT_STATUS(ledger_->Append({{"lost", {}}}), absl::StatusCode::kUnavailable, "injected");
  // A rollback to an older, self-consistent state.
  Put(kStateFamily, "head", head10);
  Put(kStateFamily, "checkpoint", checkpoint10);
  for (uint64_t i = 10; i < 20; ++i) Delete(kEntriesFamily, Be64(i));
  fail = false;
  EXPECT_STATUS(ledger_->TryRecover(), absl::StatusCode::kUnavailable, "until it is reopened");
  EXPECT_STATUS(ledger_->TryRecover(), absl::StatusCode::kUnavailable, "behind the last committed");
  EXPECT_STATUS(ledger_->Append({{"later", {}}}), absl::StatusCode::kUnavailable, "reopened");
}

// A file system that says "no space left on device" to every write while
// `full` is set, as a full disk does.
class FullDiskFileSystem : public rocksdb::FileSystemWrapper {
 public:
  FullDiskFileSystem() : FileSystemWrapper(rocksdb::FileSystem::Default()) {}
  const char* Name() const override { return "FullDiskFileSystem"; }
  std::atomic<bool> full{false};

  rocksdb::IOStatus NewWritableFile(const std::string& f, const rocksdb::FileOptions& o,
                                    std::unique_ptr<rocksdb::FSWritableFile>* r,
                                    rocksdb::IODebugContext* dbg) override {
    if (full) return NoSpace();
    rocksdb::IOStatus s = target()->NewWritableFile(f, o, r, dbg);
    if (s.ok()) *r = std::make_unique<File>(std::move(*r), this);
    return s;
  }
  rocksdb::IOStatus ReopenWritableFile(const std::string& f, const rocksdb::FileOptions& o,
                                       std::unique_ptr<rocksdb::FSWritableFile>* r,
                                       rocksdb::IODebugContext* dbg) override {
    if (full) return NoSpace();
    rocksdb::IOStatus s = target()->ReopenWritableFile(f, o, r, dbg);
    if (s.ok()) *r = std::make_unique<File>(std::move(*r), this);
    return s;
  }
  rocksdb::IOStatus GetFreeSpace(const std::string& path, const rocksdb::IOOptions& o,
                                 uint64_t* free, rocksdb::IODebugContext* dbg) override {
    if (full) {
      *free = 0;
      return rocksdb::IOStatus::OK();
    }
    return target()->GetFreeSpace(path, o, free, dbg);
  }
  static rocksdb::IOStatus NoSpace() { return rocksdb::IOStatus::NoSpace("injected: disk full"); }

 private:
  class File : public rocksdb::FSWritableFileOwnerWrapper {
   public:
    File(std::unique_ptr<rocksdb::FSWritableFile> f, FullDiskFileSystem* fs)
        : FSWritableFileOwnerWrapper(std::move(f)), fs_(fs) {}
    rocksdb::IOStatus Append(const rocksdb::Slice& d, const rocksdb::IOOptions& o,
                             rocksdb::IODebugContext* dbg) override {
      return fs_->full ? NoSpace() : FSWritableFileOwnerWrapper::Append(d, o, dbg);
    }
    rocksdb::IOStatus Append(const rocksdb::Slice& d, const rocksdb::IOOptions& o,
                             const rocksdb::DataVerificationInfo& v,
                             rocksdb::IODebugContext* dbg) override {
      return fs_->full ? NoSpace() : FSWritableFileOwnerWrapper::Append(d, o, v, dbg);
    }
    rocksdb::IOStatus Flush(const rocksdb::IOOptions& o, rocksdb::IODebugContext* dbg) override {
      return fs_->full ? NoSpace() : FSWritableFileOwnerWrapper::Flush(o, dbg);
    }
    rocksdb::IOStatus Sync(const rocksdb::IOOptions& o, rocksdb::IODebugContext* dbg) override {
      return fs_->full ? NoSpace() : FSWritableFileOwnerWrapper::Sync(o, dbg);
    }
    rocksdb::IOStatus Fsync(const rocksdb::IOOptions& o, rocksdb::IODebugContext* dbg) override {
      return fs_->full ? NoSpace() : FSWritableFileOwnerWrapper::Fsync(o, dbg);
    }

   private:
    FullDiskFileSystem* fs_;
  };
};

// Health changes reported by the ledger, to wait on without sleeping.
struct HealthChanges {
  absl::Mutex mu;
  std::vector<absl::Status> seen ABSL_GUARDED_BY(mu);
  std::function<void(const absl::Status&)> Callback() {
    return [this](const absl::Status& st) {
      absl::MutexLock lock(&mu);
      seen.push_back(st);
    };
  }
  // Waits for the n-th change and returns it.
  absl::Status Await(size_t n) {
    absl::MutexLock lock(&mu);
    auto ready = [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return seen.size() >= n; };
    mu.Await(absl::Condition(&ready));
    return seen[n - 1];
  }
};

// The disk fills up under the database itself: appends fail with
// Unavailable and health() says so while it lasts; once space is back the
// sequencer recovers on its own (RocksDB resumed, state re-derived), appends
// are accepted, the tree verifies and nothing acknowledged is lost, also
// after a reopen.
TEST(DiskFullTest, TheLedgerRecoversByItselfOnceSpaceIsFreed) {
  TempDir dir;
  const Ed25519PrivateKey key = Ed25519PrivateKey::Generate();
  auto fs = std::make_shared<FullDiskFileSystem>();
  std::unique_ptr<rocksdb::Env> env = rocksdb::NewCompositeEnv(fs);
  HealthChanges changes;
  auto options = [&] {
    RocksDbLedgerOptions o;
    o.origin = "corridor.test/union-sg";
    o.signing_key = &key;
    o.recovery_backoff_min = absl::Milliseconds(5);
    o.recovery_backoff_max = absl::Milliseconds(50);
    o.on_health_change = changes.Callback();
    return o;
  };
  std::vector<std::string> acknowledged;
  {
    ASSERT_OK_AND_ASSIGN(auto db, OpenLedgerDb(dir.path() + "/db", OnEnv(env.get())));
    ASSERT_OK_AND_ASSIGN(auto ledger, RocksDbLedger::Open(db->db.get(), db->families, options()));
    for (int i = 0; i < 50; ++i) {
      const std::string e = absl::StrCat("before ", i);
      ASSERT_OK(ledger->Append({{e, {"k"}}}));
      acknowledged.push_back(e);
    }
    fs->full = true;
    const absl::Status full = ledger->Append({{"while full", {"k"}}}).status();
    EXPECT_EQ(full.code(), absl::StatusCode::kUnavailable) << full;
    EXPECT_NE(full.message().find("no space left on the node's disk"), absl::string_view::npos)
        << full;
    // RocksDB's own text (file names under the data directory) stays in the log.
    EXPECT_EQ(full.message().find(dir.path()), absl::string_view::npos) << full;
    const absl::Status broken = changes.Await(1);
    EXPECT_EQ(broken.code(), absl::StatusCode::kUnavailable) << broken;
    EXPECT_STATUS(ledger->health(), absl::StatusCode::kUnavailable, "refuses writes");
    EXPECT_STATUS(ledger->Append({{"still full", {"k"}}}), absl::StatusCode::kUnavailable,
                  "refuses");
    // Recovery waits while the disk is full.
    EXPECT_STATUS(ledger->TryRecover(), absl::StatusCode::kUnavailable, "waiting for");
    fs->full = false;
    EXPECT_OK(changes.Await(2));  // recovered by the sequencer, no call from here
    EXPECT_OK(ledger->health());
    for (int i = 0; i < 50; ++i) {
      const std::string e = absl::StrCat("after ", i);
      ASSERT_OK(ledger->Append({{e, {"k"}}}));
      acknowledged.push_back(e);
    }
    const Head h = ledger->head();
    ASSERT_EQ(h.size, acknowledged.size());
    EXPECT_EQ(h.root, ReferenceRoot(acknowledged, 0, acknowledged.size()));
    EXPECT_OK(ledger->VerifyAll());
  }
  // The database and the ledger reopen after the episode with everything.
  ASSERT_OK_AND_ASSIGN(auto db, OpenLedgerDb(dir.path() + "/db", OnEnv(env.get())));
  ASSERT_OK_AND_ASSIGN(auto ledger, RocksDbLedger::Open(db->db.get(), db->families, options()));
  EXPECT_EQ(ledger->head().root, ReferenceRoot(acknowledged, 0, acknowledged.size()));
  ASSERT_OK_AND_ASSIGN(auto all, ledger->Entries(0, acknowledged.size()));
  EXPECT_EQ(all, acknowledged);
  EXPECT_OK(ledger->VerifyAll());
}

TEST_F(RocksDbLedgerTest, TheCheckpointKeyRotatesWithoutAFlagDay) {
  const Ed25519PrivateKey next_key = Ed25519PrivateKey::Generate();
  const note::Verifier old_v{"corridor.test/union-sg", 0x01, key_.public_key()};
  const note::Verifier new_v{"corridor.test/union-sg/2", 0x01, next_key.public_key()};
  Reopen();
  Fill(10);
  const std::string signed_by_old = ledger_->head().checkpoint;
  // Step 1: the next key co-signs every checkpoint.
  RocksDbLedgerOptions both = Options();
  both.additional_signers.push_back({"corridor.test/union-sg/2", &next_key});
  Reopen(both);
  Fill(20);
  EXPECT_OK(note::OpenCheckpoint(ledger_->head().checkpoint, old_v));
  EXPECT_OK(note::OpenCheckpoint(ledger_->head().checkpoint, new_v));
  // Step 2: the next key becomes primary; the stored checkpoint carries its
  // signature already, so the ledger opens without naming the old key.
  RocksDbLedgerOptions rotated = Options();
  rotated.key_name = "corridor.test/union-sg/2";
  rotated.signing_key = &next_key;
  Reopen(rotated);
  Fill(30);
  EXPECT_OK(note::OpenCheckpoint(ledger_->head().checkpoint, new_v));
  EXPECT_FALSE(note::OpenCheckpoint(ledger_->head().checkpoint, old_v).ok());
  EXPECT_OK(note::OpenCheckpoint(signed_by_old, old_v));  // old ones stay verifiable
  EXPECT_OK(ledger_->VerifyAll());
}

TEST_F(RocksDbLedgerTest, AnAbruptKeyChangeNeedsThePreviousKeyNamed) {
  Reopen();
  Fill(10);
  const Ed25519PrivateKey next_key = Ed25519PrivateKey::Generate();
  RocksDbLedgerOptions abrupt = Options();
  abrupt.signing_key = &next_key;
  ledger_.reset();
  EXPECT_STATUS(Open(abrupt).status(), absl::StatusCode::kDataLoss,
                "the latest signed checkpoint does not verify");
  abrupt.previous_verifiers.push_back(
      note::Verifier{"corridor.test/union-sg", 0x01, key_.public_key()});
  Reopen(abrupt);
  Fill(11);
  EXPECT_OK(note::OpenCheckpoint(ledger_->head().checkpoint, ledger_->verifier()));
}

// Tessera's test log, appended one at a time: our checkpoints for the same
// 15 entries have byte-identical bodies, and our leaf hashes and entries
// match its tiles byte for byte.
TEST_F(RocksDbLedgerTest, CheckpointBodiesMatchTheTesseraTestLog) {
  RocksDbLedgerOptions o = Options();
  o.origin = "example.com/log/testdata";
  Reopen(o);
  const std::vector<std::string> words = {"one",    "two",   "three",    "four",    "five",
                                          "six",    "seven", "eit",      "nain",    "ten",
                                          "ileven", "twelf", "threeten", "fourten", "fivten"};
  ASSERT_OK_AND_ASSIGN(note::Verifier tessera,
                       note::ParseVerifier("example.com/log/testdata+33d7b496+"
                                           "AeHTu4Q3hEIMHNqc6fASMsq3rKNx280NI+oO5xCFkkSx"));
  for (size_t n = 1; n <= words.size(); ++n) {
    ASSERT_OK(ledger_->Append({{words[n - 1], {}}}));
    ASSERT_OK_AND_ASSIGN(std::string theirs,
                         ReadFileToString(absl::StrCat(CORRIDOR_SOURCE_DIR,
                                                       "/tests/data/tessera-log/checkpoint.", n)));
    ASSERT_OK(note::OpenCheckpoint(theirs, tessera));
    ASSERT_OK_AND_ASSIGN(note::Note their_note, note::ParseNote(theirs));
    ASSERT_OK_AND_ASSIGN(note::Note our_note, note::ParseNote(ledger_->head().checkpoint));
    EXPECT_EQ(our_note.body, their_note.body) << "size " << n;
    // Their partial level-0 tile (C2SP tlog-tiles) holds exactly our leaf
    // hashes, and their entry bundle exactly our stored entry bytes.
    ASSERT_OK_AND_ASSIGN(std::string tile,
                         ReadFileToString(absl::StrCat(
                             CORRIDOR_SOURCE_DIR, "/tests/data/tessera-log/tile/0/000.p/", n)));
    std::string ours;
    for (uint64_t i = 0; i < n; ++i) {
      ASSERT_OK_AND_ASSIGN(merkle::Hash h, ledger_->SubtreeHash(0, i));
      ours += merkle::ToBytes(h);
    }
    EXPECT_EQ(ours, tile) << "size " << n;
    ASSERT_OK_AND_ASSIGN(
        std::string bundle,
        ReadFileToString(
            absl::StrCat(CORRIDOR_SOURCE_DIR, "/tests/data/tessera-log/tile/entries/000.p/", n)));
    ASSERT_OK_AND_ASSIGN(std::vector<std::string> entries, ledger_->Entries(0, n));
    std::string our_bundle;
    for (const std::string& e : entries) {
      our_bundle.push_back(static_cast<char>(e.size() >> 8));
      our_bundle.push_back(static_cast<char>(e.size() & 0xff));
      our_bundle += e;
    }
    EXPECT_EQ(our_bundle, bundle) << "size " << n;
  }
}

// A process killed with SIGKILL in the middle of group commits leaves a
// ledger that opens, verifies, and holds every acknowledged entry. The writer
// is a forked child; it writes far less than a memtable, so it never needs
// RocksDB's background threads (which a fork does not carry over).
TEST(CrashTest, SigkillDuringAppendsLosesNothingAcknowledged) {
#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
  // The child is forked from a multi-threaded process and then starts threads, which
  // ThreadSanitizer does not support (it crashes or kills the child). Runs in every other build.
  GTEST_SKIP() << "fork of a multi-threaded process is not supported under ThreadSanitizer";
#endif
#endif
  TempDir dir;
  const Ed25519PrivateKey key = Ed25519PrivateKey::Generate();
  auto options = [&] {
    RocksDbLedgerOptions o;
    o.origin = "corridor.test/union-sg";
    o.signing_key = &key;
    return o;
  };
  std::mt19937_64 rng(77);
  uint64_t acknowledged_before = 0;
  for (int round = 0; round < 4; ++round) {
    int fds[2];
    ASSERT_EQ(pipe(fds), 0);
    const pid_t child = fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      close(fds[0]);
      auto db = OpenLedgerDb(dir.path() + "/db");
      if (!db.ok()) _exit(2);
      auto l = RocksDbLedger::Open((*db)->db.get(), (*db)->families, options());
      if (!l.ok()) _exit(3);
      // Many concurrent requests; report each acknowledged end index.
      std::vector<std::thread> writers;
      for (int t = 0; t < 4; ++t) {
        writers.emplace_back([&, t] {
          for (uint64_t i = 0;; ++i) {
            auto first = (*l)->Append({{absl::StrCat("t", t, " ", i), {"k"}}, {"x", {}}});
            if (!first.ok()) _exit(4);
            const uint64_t end = *first + 2;
            if (write(fds[1], &end, sizeof(end)) != sizeof(end)) _exit(5);
          }
        });
      }
      for (auto& w : writers) w.join();
      _exit(0);
    }
    close(fds[1]);
    // Let it run until it has acknowledged a random number of entries.
    const uint64_t stop_after = acknowledged_before + 50 + rng() % 400;
    uint64_t acknowledged = 0, end = 0;
    while (acknowledged < stop_after && read(fds[0], &end, sizeof(end)) == sizeof(end)) {
      acknowledged = std::max(acknowledged, end);
    }
    kill(child, SIGKILL);
    int status = 0;
    waitpid(child, &status, 0);
    // Drain what was acknowledged before the kill landed.
    while (read(fds[0], &end, sizeof(end)) == sizeof(end))
      acknowledged = std::max(acknowledged, end);
    close(fds[0]);
    ASSERT_TRUE(WIFSIGNALED(status)) << "child exited on its own: " << status;

    ASSERT_OK_AND_ASSIGN(auto db, OpenLedgerDb(dir.path() + "/db"));
    ASSERT_OK_AND_ASSIGN(auto l, RocksDbLedger::Open(db->db.get(), db->families, options()));
    EXPECT_GE(l->head().size, acknowledged) << "round " << round;
    ASSERT_OK(l->VerifyAll());
    acknowledged_before = l->head().size;
  }
}

// ---- Tamper tests: edit RocksDB under a closed ledger, then open/verify. ----

class TamperTest : public RocksDbLedgerTest {
 protected:
  void SetUp() override {
    RocksDbLedgerTest::SetUp();
    Reopen();
    Fill(200);
    older_checkpoint_ = ledger_->head().checkpoint;
    Fill(300);
    ledger_.reset();
  }
  absl::Status OpenStatus() { return Open(Options()).status(); }
  absl::Status VerifyStatus() {
    auto l = Open(Options());
    if (!l.ok()) return l.status();
    return (*l)->VerifyAll();
  }
  std::string older_checkpoint_;
};

TEST_F(TamperTest, UntouchedLedgerOpensAndVerifies) {
  EXPECT_OK(OpenStatus());
  EXPECT_OK(VerifyStatus());
}

TEST_F(TamperTest, AChangedEntryIsFoundAndNamed) {
  Put(kEntriesFamily, Be64(100), "event-100 (edited)");
  EXPECT_OK(OpenStatus());  // opening does not read the whole log...
  EXPECT_STATUS(VerifyStatus(), absl::StatusCode::kDataLoss,
                "entry 100 does not match its stored leaf hash");  // ...verification does
}

// The node exports what it holds, each entry with the leaf hash it stored: an
// export of a ledger changed at rest does not verify, and names the entry.
TEST_F(TamperTest, AnExportOfAChangedEntryNamesIt) {
  Put(kEntriesFamily, Be64(100), "event-100 (edited)");
  auto l = Open(Options());
  ASSERT_OK(l);
  ASSERT_OK_AND_ASSIGN(std::string file, (*l)->Export(90, 110));
  EXPECT_STATUS(VerifyExport(file, (*l)->verifier()), absl::StatusCode::kDataLoss,
                "entry 100 (export line 15) does not match the leaf hash listed with it");
}

TEST_F(TamperTest, VerifyCommittedFindsAndNamesWhatVerifyAllFinds) {
  Put(kEntriesFamily, Be64(100), "event-100 (edited)");
  auto l = Open(Options());
  ASSERT_OK(l);
  EXPECT_STATUS((*l)->VerifyCommitted(), absl::StatusCode::kDataLoss,
                "entry 100 does not match its stored leaf hash");
}

TEST_F(TamperTest, VerifyCommittedFindsAChangedInnerHash) {
  std::string tile = Get(kTilesFamily, TileKey(0, 0));
  tile[2 + 32 * 256 + 32 * 3] ^= 1;  // row 1 (level 1), index 3
  Put(kTilesFamily, TileKey(0, 0), tile);
  auto l = Open(Options());
  ASSERT_OK(l);
  EXPECT_STATUS((*l)->VerifyCommitted(), absl::StatusCode::kDataLoss,
                "the stored subtree hash at level 1, index 3 does not match the entries below it");
}

TEST_F(TamperTest, AChangedLastEntryStopsOpen) {
  Put(kEntriesFamily, Be64(299), "event-299 (edited)");
  EXPECT_STATUS(OpenStatus(), absl::StatusCode::kDataLoss,
                "entry 299 (the last one) does not match its stored leaf hash");
}

TEST_F(TamperTest, ADroppedEntryIsFoundAndNamed) {
  Delete(kEntriesFamily, Be64(150));
  EXPECT_STATUS(VerifyStatus(), absl::StatusCode::kDataLoss, "entry 150 is missing");
  Delete(kEntriesFamily, Be64(299));
  EXPECT_STATUS(OpenStatus(), absl::StatusCode::kDataLoss, "entry 299 (the last one) is missing");
}

TEST_F(TamperTest, ReorderedEntriesAreFoundAndNamed) {
  const std::string a = Get(kEntriesFamily, Be64(10)), b = Get(kEntriesFamily, Be64(11));
  Put(kEntriesFamily, Be64(10), b);
  Put(kEntriesFamily, Be64(11), a);
  EXPECT_STATUS(VerifyStatus(), absl::StatusCode::kDataLoss,
                "entry 10 does not match its stored leaf hash");
}

TEST_F(TamperTest, AnEntryBeyondTheHeadStopsOpen) {
  Put(kEntriesFamily, Be64(300), "smuggled");
  EXPECT_STATUS(OpenStatus(), absl::StatusCode::kDataLoss,
                "an entry exists beyond the stored tree head (size 300)");
}

TEST_F(TamperTest, AChangedLeafHashIsFoundAndNamed) {
  std::string tile = Get(kTilesFamily, TileKey(0, 0));
  tile[2 + 32 * 5] ^= 1;  // row 0, leaf 5
  Put(kTilesFamily, TileKey(0, 0), tile);
  EXPECT_STATUS(VerifyStatus(), absl::StatusCode::kDataLoss,
                "entry 5 does not match its stored leaf hash");
}

TEST_F(TamperTest, AChangedInnerHashIsFoundAndNamed) {
  std::string tile = Get(kTilesFamily, TileKey(0, 0));
  tile[2 + 32 * 256 + 32 * 3] ^= 1;  // row 1 (level 1), index 3
  Put(kTilesFamily, TileKey(0, 0), tile);
  EXPECT_STATUS(VerifyStatus(), absl::StatusCode::kDataLoss,
                "the stored subtree hash at level 1, index 3 does not match the entries below it");
}

TEST_F(TamperTest, AChangedHashOnTheRootPathStopsOpen) {
  std::string tile = Get(kTilesFamily, TileKey(1, 0));
  tile[2] ^= 1;  // level 8, index 0: the left half of the root
  Put(kTilesFamily, TileKey(1, 0), tile);
  EXPECT_STATUS(OpenStatus(), absl::StatusCode::kDataLoss,
                "does not match the root computed from the stored subtree hashes");
}

TEST_F(TamperTest, ATruncatedTileStopsOpen) {
  std::string tile = Get(kTilesFamily, TileKey(1, 0));
  Put(kTilesFamily, TileKey(1, 0), tile.substr(0, tile.size() - 1));
  EXPECT_STATUS(OpenStatus(), absl::StatusCode::kDataLoss, "tile 1/0: tile is truncated");
}

TEST_F(TamperTest, AChangedHeadStopsOpen) {
  std::string head = Get(kStateFamily, "head");
  head[20] ^= 1;
  Put(kStateFamily, "head", head);
  EXPECT_STATUS(OpenStatus(), absl::StatusCode::kDataLoss, "stored tree head (size 300, root");
}

TEST_F(TamperTest, AnOlderCheckpointStopsOpen) {
  Put(kStateFamily, "checkpoint", older_checkpoint_);
  EXPECT_STATUS(OpenStatus(), absl::StatusCode::kDataLoss,
                "the latest signed checkpoint (size 200");
}

TEST_F(TamperTest, ACheckpointByAnotherKeyStopsOpen) {
  Ed25519PrivateKey mallory = Ed25519PrivateKey::Generate();
  ASSERT_OK_AND_ASSIGN(note::Note n, note::ParseNote(Get(kStateFamily, "checkpoint")));
  ASSERT_OK_AND_ASSIGN(note::Checkpoint cp, note::ParseCheckpointBody(n.body));
  Put(kStateFamily, "checkpoint", note::SignCheckpoint(cp, "corridor.test/union-sg", mallory));
  EXPECT_STATUS(OpenStatus(), absl::StatusCode::kDataLoss,
                "the latest signed checkpoint does not verify");
}

TEST_F(TamperTest, ARolledBackHeadStopsOpen) {
  // Someone rewinds the head to size 200 (a consistent older state) but the
  // entries after it are still there.
  ASSERT_OK_AND_ASSIGN(note::Note n, note::ParseNote(older_checkpoint_));
  ASSERT_OK_AND_ASSIGN(note::Checkpoint cp, note::ParseCheckpointBody(n.body));
  Put(kStateFamily, "head", Be64(200) + merkle::ToBytes(cp.root));
  Put(kStateFamily, "checkpoint", older_checkpoint_);
  EXPECT_STATUS(OpenStatus(), absl::StatusCode::kDataLoss,
                "an entry exists beyond the stored tree head");
}

TEST_F(TamperTest, AMissingHeadWithEntriesStopsOpen) {
  Delete(kStateFamily, "head");
  EXPECT_STATUS(OpenStatus(), absl::StatusCode::kDataLoss, "entries but no stored tree head");
}

}  // namespace
}  // namespace corridor::ledger
