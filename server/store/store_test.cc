// NodeStore on a disk that fills up (a file system with a byte quota): the
// store reports the database's write error, gives back its space reserve at
// once, and the node's database and ledger reopen on the full disk thanks to
// it (and do not without it); in place, the ledger recovers once space is
// freed and the reserve comes back.
#include "server/store/store.h"

#include <map>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "gtest/gtest.h"
#include "ledger/crypto/crypto.h"
#include "ledger/rocksdb/rocksdb_ledger.h"
#include "ledger/testing/ledger_test_util.h"
#include "rocksdb/env.h"
#include "rocksdb/file_system.h"
#include "tests/testing/status_matchers.h"

namespace corridor {
namespace {

using ::corridor::ledger::testing::ReferenceRoot;
using ::corridor::ledger::testing::TempDir;

// A file system holding at most `quota` bytes in the files written through
// it (preallocation aside): appends beyond it fail with NoSpace, deleting a
// file gives its bytes back. Thread-safe.
class QuotaFileSystem : public rocksdb::FileSystemWrapper {
 public:
  explicit QuotaFileSystem(uint64_t quota)
      : FileSystemWrapper(rocksdb::FileSystem::Default()), quota_(quota) {}
  const char* Name() const override { return "QuotaFileSystem"; }

  void set_quota(uint64_t q) {
    absl::MutexLock lock(&mu_);
    quota_ = q;
  }
  uint64_t used() {
    absl::MutexLock lock(&mu_);
    return used_;
  }

  rocksdb::IOStatus NewWritableFile(const std::string& f, const rocksdb::FileOptions& o,
                                    std::unique_ptr<rocksdb::FSWritableFile>* r,
                                    rocksdb::IODebugContext* dbg) override {
    rocksdb::IOStatus s = target()->NewWritableFile(f, o, r, dbg);
    if (!s.ok()) return s;
    Forget(f);
    *r = std::make_unique<File>(std::move(*r), this, f);
    return s;
  }
  rocksdb::IOStatus ReopenWritableFile(const std::string& f, const rocksdb::FileOptions& o,
                                       std::unique_ptr<rocksdb::FSWritableFile>* r,
                                       rocksdb::IODebugContext* dbg) override {
    rocksdb::IOStatus s = target()->ReopenWritableFile(f, o, r, dbg);
    if (s.ok()) *r = std::make_unique<File>(std::move(*r), this, f);
    return s;
  }
  rocksdb::IOStatus DeleteFile(const std::string& f, const rocksdb::IOOptions& o,
                               rocksdb::IODebugContext* dbg) override {
    rocksdb::IOStatus s = target()->DeleteFile(f, o, dbg);
    if (s.ok()) Forget(f);
    return s;
  }
  rocksdb::IOStatus RenameFile(const std::string& from, const std::string& to,
                               const rocksdb::IOOptions& o, rocksdb::IODebugContext* dbg) override {
    rocksdb::IOStatus s = target()->RenameFile(from, to, o, dbg);
    if (!s.ok()) return s;
    absl::MutexLock lock(&mu_);
    auto it = sizes_.find(to);
    if (it != sizes_.end()) {
      used_ -= it->second;
      sizes_.erase(it);
    }
    it = sizes_.find(from);
    if (it != sizes_.end()) {
      sizes_[to] = it->second;
      sizes_.erase(from);
    }
    return s;
  }
  rocksdb::IOStatus GetFreeSpace(const std::string&, const rocksdb::IOOptions&, uint64_t* free,
                                 rocksdb::IODebugContext*) override {
    absl::MutexLock lock(&mu_);
    *free = quota_ > used_ ? quota_ - used_ : 0;
    return rocksdb::IOStatus::OK();
  }

 private:
  class File : public rocksdb::FSWritableFileOwnerWrapper {
   public:
    File(std::unique_ptr<rocksdb::FSWritableFile> f, QuotaFileSystem* fs, std::string path)
        : FSWritableFileOwnerWrapper(std::move(f)), fs_(fs), path_(std::move(path)) {}
    rocksdb::IOStatus Append(const rocksdb::Slice& d, const rocksdb::IOOptions& o,
                             rocksdb::IODebugContext* dbg) override {
      if (!fs_->Take(path_, d.size())) return NoSpace();
      return FSWritableFileOwnerWrapper::Append(d, o, dbg);
    }
    rocksdb::IOStatus Append(const rocksdb::Slice& d, const rocksdb::IOOptions& o,
                             const rocksdb::DataVerificationInfo& v,
                             rocksdb::IODebugContext* dbg) override {
      if (!fs_->Take(path_, d.size())) return NoSpace();
      return FSWritableFileOwnerWrapper::Append(d, o, v, dbg);
    }
    // Explicit allocations (the reserve) take space; RocksDB's own
    // preallocation goes through PrepareWrite and is not counted.
    rocksdb::IOStatus Allocate(uint64_t offset, uint64_t len, const rocksdb::IOOptions& o,
                               rocksdb::IODebugContext* dbg) override {
      if (!fs_->Take(path_, len)) return NoSpace();
      return FSWritableFileOwnerWrapper::Allocate(offset, len, o, dbg);
    }

   private:
    static rocksdb::IOStatus NoSpace() {
      return rocksdb::IOStatus::NoSpace("injected: no space left on device");
    }
    QuotaFileSystem* fs_;
    const std::string path_;
  };

  bool Take(const std::string& path, uint64_t n) {
    absl::MutexLock lock(&mu_);
    if (used_ + n > quota_) return false;
    used_ += n;
    sizes_[path] += n;
    return true;
  }
  void Forget(const std::string& path) {
    absl::MutexLock lock(&mu_);
    auto it = sizes_.find(path);
    if (it == sizes_.end()) return;
    used_ -= it->second;
    sizes_.erase(it);
  }

  absl::Mutex mu_;
  uint64_t quota_ ABSL_GUARDED_BY(mu_);
  uint64_t used_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<std::string, uint64_t> sizes_ ABSL_GUARDED_BY(mu_);
};

constexpr uint64_t kReserve = 4 << 20;

class DiskFullStoreTest : public ::testing::Test {
 protected:
  absl::StatusOr<std::unique_ptr<NodeStore>> OpenStore(uint64_t reserve_bytes) {
    NodeStoreOptions o;
    o.reserve_bytes = reserve_bytes;
    o.check_interval = absl::InfiniteDuration();  // RestoreReserve by hand
    o.env = env_.get();
    return NodeStore::Open(dir_.path(), ledger::LedgerColumnFamilyNames(), o);
  }
  absl::StatusOr<std::unique_ptr<ledger::RocksDbLedger>> OpenLedger(NodeStore& store) {
    ledger::RocksDbLedgerOptions o;
    o.origin = "corridor.test/union-sg";
    o.signing_key = &key_;
    o.recovery_backoff_min = o.recovery_backoff_max = absl::InfiniteDuration();  // by hand
    return ledger::RocksDbLedger::Open(store.db(), store.families(), o);
  }
  std::string ReservePath() const { return dir_.path() + "/" + NodeStore::kReserveFile; }
  bool ReserveExists() const { return std::filesystem::exists(ReservePath()); }

  // Appends 64 KiB entries until the disk is full, keeping those acknowledged.
  void FillUntilFull(ledger::RocksDbLedger& ledger) {
    for (int i = 0;; ++i) {
      std::string e = absl::StrCat("entry ", i, " ", std::string(64 << 10, 'x'));
      absl::StatusOr<uint64_t> index = ledger.Append({{e, {"k"}}});
      if (!index.ok()) {
        ASSERT_EQ(index.status().code(), absl::StatusCode::kUnavailable) << index.status();
        ASSERT_NE(index.status().message().find("space"), absl::string_view::npos)
            << index.status();
        return;
      }
      acknowledged_.push_back(std::move(e));
    }
  }
  void ExpectAllAcknowledged(ledger::RocksDbLedger& ledger) {
    const ledger::Head h = ledger.head();
    ASSERT_GE(h.size, acknowledged_.size());  // at-least-once: never fewer
    ASSERT_OK_AND_ASSIGN(auto stored, ledger.Entries(0, acknowledged_.size()));
    EXPECT_EQ(stored, acknowledged_);
    EXPECT_OK(ledger.VerifyAll());
  }

  TempDir dir_;
  Ed25519PrivateKey key_ = Ed25519PrivateKey::Generate();
  std::shared_ptr<QuotaFileSystem> fs_ = std::make_shared<QuotaFileSystem>(24 << 20);
  std::unique_ptr<rocksdb::Env> env_ = rocksdb::NewCompositeEnv(fs_);
  std::vector<std::string> acknowledged_;
};

TEST_F(DiskFullStoreTest, TheReserveIsGivenBackOnDiskFullAndTheNodeReopensOnTheFullDisk) {
  {
    ASSERT_OK_AND_ASSIGN(auto store, OpenStore(kReserve));
    EXPECT_OK(store->RestoreReserve());  // done in the background too
    EXPECT_OK(store->reserve_ok());
    EXPECT_TRUE(ReserveExists());
    ASSERT_OK_AND_ASSIGN(auto ledger, OpenLedger(*store));
    FillUntilFull(*ledger);
    ASSERT_FALSE(acknowledged_.empty());
    // RocksDB stopped writing; the store says so and gave its reserve back.
    EXPECT_STATUS(store->health(), absl::StatusCode::kUnavailable, "space");
    EXPECT_FALSE(ReserveExists());
    EXPECT_STATUS(store->reserve_ok(), absl::StatusCode::kFailedPrecondition, "disk is full");
    EXPECT_STATUS(ledger->health(), absl::StatusCode::kUnavailable, "refuses writes");
  }
  // The operator restarts without freeing anything: the disk is as full as
  // before, but for the reserve released.
  fs_->set_quota(fs_->used() + kReserve);
  ASSERT_OK_AND_ASSIGN(auto store, OpenStore(kReserve));
  EXPECT_OK(store->health());
  // Not enough room to keep a reserve now; the node runs without it.
  EXPECT_STATUS(store->RestoreReserve(), absl::StatusCode::kFailedPrecondition, "twice");
  EXPECT_STATUS(store->reserve_ok(), absl::StatusCode::kFailedPrecondition, "twice");
  ASSERT_OK_AND_ASSIGN(auto ledger, OpenLedger(*store));
  ExpectAllAcknowledged(*ledger);
}

// The same episode with no reserve: the restart on the full disk fails
// (what the reserve is for; this also shows the test above can fail).
TEST_F(DiskFullStoreTest, WithoutAReserveTheNodeCannotReopenOnAFullDisk) {
  {
    ASSERT_OK_AND_ASSIGN(auto store, OpenStore(0));
    ASSERT_OK_AND_ASSIGN(auto ledger, OpenLedger(*store));
    FillUntilFull(*ledger);
  }
  fs_->set_quota(fs_->used());  // not a byte free
  EXPECT_STATUS(OpenStore(0), absl::StatusCode::kResourceExhausted, "no space left");
  // Freeing space lets it open with everything.
  fs_->set_quota(fs_->used() + (8 << 20));
  ASSERT_OK_AND_ASSIGN(auto store, OpenStore(0));
  ASSERT_OK_AND_ASSIGN(auto ledger, OpenLedger(*store));
  ExpectAllAcknowledged(*ledger);
}

// In place: once space is freed the ledger recovers (RocksDB resumed, state
// re-derived), accepts appends, the store is healthy and the reserve returns.
TEST_F(DiskFullStoreTest, FreeingSpaceHealsTheRunningNodeAndRestoresTheReserve) {
  ASSERT_OK_AND_ASSIGN(auto store, OpenStore(kReserve));
  ASSERT_OK(store->RestoreReserve());
  ASSERT_OK_AND_ASSIGN(auto ledger, OpenLedger(*store));
  FillUntilFull(*ledger);
  EXPECT_STATUS(ledger->Append({{"refused", {}}}), absl::StatusCode::kUnavailable, "refuses");
  fs_->set_quota(fs_->used() + (64 << 20));  // the operator frees space
  EXPECT_OK(ledger->TryRecover());
  EXPECT_OK(store->health());
  for (int i = 0; i < 10; ++i) {
    std::string e = absl::StrCat("after ", i);
    ASSERT_OK(ledger->Append({{e, {}}}));
    acknowledged_.push_back(e);
  }
  ExpectAllAcknowledged(*ledger);
  EXPECT_EQ(ledger->head().root, ReferenceRoot(acknowledged_, 0, acknowledged_.size()));
  EXPECT_FALSE(ReserveExists());  // given back during the episode
  EXPECT_OK(store->RestoreReserve());
  EXPECT_TRUE(ReserveExists());
  EXPECT_OK(store->reserve_ok());
}

}  // namespace
}  // namespace corridor
