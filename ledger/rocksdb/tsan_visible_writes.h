#ifndef CORRIDOR_LEDGER_ROCKSDB_TSAN_VISIBLE_WRITES_H_
#define CORRIDOR_LEDGER_ROCKSDB_TSAN_VISIBLE_WRITES_H_

// WithTsanVisibleWrites: in a ThreadSanitizer build, wraps a freshly opened
// rocksdb::DB so that every write to it (Put, Delete, DeleteRange, Merge, Write,
// Flush, FlushWAL, SyncWAL, CompactRange, CreateColumnFamily, Resume) runs under one
// mutex that ThreadSanitizer sees; in every other build, returns the DB unchanged
// (the wrapper is not compiled in).
//
// Why: RocksDB (Debian's librocksdb.a, linked statically, not instrumented) groups
// concurrent writers: the first becomes the write-group leader and writes the WAL and
// the memtable for the others, reading their batches and setting the state of their
// WriteThread::Writer (which lives on the joining thread's stack). The joining
// thread links itself in with an atomic compare-and-swap in that uninstrumented
// code, so TSan sees the leader touch another thread's stack and heap with no order
// between them, and reports races that are not there (docs/testing.md). With all of
// the node's writes behind one visible lock, each writer is alone in its group, the
// leader never touches another thread's memory, and the order between writers is
// the lock's, which TSan follows.
//
// What it changes, in TSan builds only: writes no longer share a RocksDB write
// group, so concurrent synced writes each pay their own fsync instead of one for
// the group. Each write is still atomic and durable exactly as before, and the
// order of writes is one RocksDB could have chosen; only throughput under
// concurrent writes differs. Normal and ASan builds keep RocksDB's group commit.
//
// Thread-safety: the returned DB is as thread-safe as RocksDB's. It owns `db`;
// column-family handles created with `db` work with it unchanged.

#include <memory>
#include <vector>

#include "rocksdb/db.h"

#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define CORRIDOR_TSAN_VISIBLE_WRITES 1
#endif
#endif

#ifdef CORRIDOR_TSAN_VISIBLE_WRITES
#include "absl/synchronization/mutex.h"
#include "rocksdb/utilities/stackable_db.h"
#endif

namespace corridor::ledger {

#ifdef CORRIDOR_TSAN_VISIBLE_WRITES

class TsanVisibleWritesDb : public rocksdb::StackableDB {
 public:
  explicit TsanVisibleWritesDb(rocksdb::DB* db) : rocksdb::StackableDB(db) {}

  using rocksdb::StackableDB::Put;
  rocksdb::Status Put(const rocksdb::WriteOptions& o, rocksdb::ColumnFamilyHandle* cf,
                      const rocksdb::Slice& key, const rocksdb::Slice& value) override {
    absl::MutexLock lock(&mu_);
    return db_->Put(o, cf, key, value);
  }
  rocksdb::Status Put(const rocksdb::WriteOptions& o, rocksdb::ColumnFamilyHandle* cf,
                      const rocksdb::Slice& key, const rocksdb::Slice& ts,
                      const rocksdb::Slice& value) override {
    absl::MutexLock lock(&mu_);
    return db_->Put(o, cf, key, ts, value);
  }
  using rocksdb::StackableDB::Delete;
  rocksdb::Status Delete(const rocksdb::WriteOptions& o, rocksdb::ColumnFamilyHandle* cf,
                         const rocksdb::Slice& key) override {
    absl::MutexLock lock(&mu_);
    return db_->Delete(o, cf, key);
  }
  rocksdb::Status Delete(const rocksdb::WriteOptions& o, rocksdb::ColumnFamilyHandle* cf,
                         const rocksdb::Slice& key, const rocksdb::Slice& ts) override {
    absl::MutexLock lock(&mu_);
    return db_->Delete(o, cf, key, ts);
  }
  using rocksdb::StackableDB::SingleDelete;
  rocksdb::Status SingleDelete(const rocksdb::WriteOptions& o, rocksdb::ColumnFamilyHandle* cf,
                               const rocksdb::Slice& key) override {
    absl::MutexLock lock(&mu_);
    return db_->SingleDelete(o, cf, key);
  }
  using rocksdb::StackableDB::DeleteRange;
  rocksdb::Status DeleteRange(const rocksdb::WriteOptions& o, rocksdb::ColumnFamilyHandle* cf,
                              const rocksdb::Slice& begin, const rocksdb::Slice& end) override {
    absl::MutexLock lock(&mu_);
    return db_->DeleteRange(o, cf, begin, end);
  }
  using rocksdb::StackableDB::Merge;
  rocksdb::Status Merge(const rocksdb::WriteOptions& o, rocksdb::ColumnFamilyHandle* cf,
                        const rocksdb::Slice& key, const rocksdb::Slice& value) override {
    absl::MutexLock lock(&mu_);
    return db_->Merge(o, cf, key, value);
  }
  rocksdb::Status Write(const rocksdb::WriteOptions& o, rocksdb::WriteBatch* batch) override {
    absl::MutexLock lock(&mu_);
    return db_->Write(o, batch);
  }
  using rocksdb::StackableDB::Flush;
  rocksdb::Status Flush(const rocksdb::FlushOptions& o, rocksdb::ColumnFamilyHandle* cf) override {
    absl::MutexLock lock(&mu_);
    return db_->Flush(o, cf);
  }
  rocksdb::Status Flush(const rocksdb::FlushOptions& o,
                        const std::vector<rocksdb::ColumnFamilyHandle*>& cfs) override {
    absl::MutexLock lock(&mu_);
    return db_->Flush(o, cfs);
  }
  rocksdb::Status FlushWAL(bool sync) override {
    absl::MutexLock lock(&mu_);
    return db_->FlushWAL(sync);
  }
  rocksdb::Status SyncWAL() override {
    absl::MutexLock lock(&mu_);
    return db_->SyncWAL();
  }
  using rocksdb::StackableDB::CompactRange;
  rocksdb::Status CompactRange(const rocksdb::CompactRangeOptions& o,
                               rocksdb::ColumnFamilyHandle* cf, const rocksdb::Slice* begin,
                               const rocksdb::Slice* end) override {
    absl::MutexLock lock(&mu_);
    return db_->CompactRange(o, cf, begin, end);
  }
  rocksdb::Status CreateColumnFamily(const rocksdb::ColumnFamilyOptions& o, const std::string& name,
                                     rocksdb::ColumnFamilyHandle** handle) override {
    absl::MutexLock lock(&mu_);
    return db_->CreateColumnFamily(o, name, handle);
  }
  // Not forwarded by StackableDB (DB's default answers NotSupported).
  rocksdb::Status Resume() override {
    absl::MutexLock lock(&mu_);
    return db_->Resume();
  }

 private:
  absl::Mutex mu_;
};

inline rocksdb::DB* WithTsanVisibleWrites(rocksdb::DB* db) {
  return db == nullptr ? nullptr : new TsanVisibleWritesDb(db);
}

#else

inline rocksdb::DB* WithTsanVisibleWrites(rocksdb::DB* db) { return db; }

#endif

}  // namespace corridor::ledger

#endif  // CORRIDOR_LEDGER_ROCKSDB_TSAN_VISIBLE_WRITES_H_
