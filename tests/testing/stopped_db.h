// A stopped node's RocksDB database opened with every column family it has,
// for tests that change what is stored the way anyone holding the data
// directory could (a flipped entry byte, deleted index keys), then start the
// node again. Test-only; not thread-safe.
#ifndef CORRIDOR_TESTS_TESTING_STOPPED_DB_H_
#define CORRIDOR_TESTS_TESTING_STOPPED_DB_H_

#include <string>
#include <vector>

#include "rocksdb/db.h"

namespace corridor::testing {

class StoppedDb {
 public:
  // Opens `data_dir`; ok() says whether it opened.
  explicit StoppedDb(const std::string& data_dir) {
    if (!rocksdb::DB::ListColumnFamilies(rocksdb::Options(), data_dir, &names_).ok()) return;
    std::vector<rocksdb::ColumnFamilyDescriptor> families;
    for (const std::string& n : names_) families.emplace_back(n, rocksdb::ColumnFamilyOptions());
    if (!rocksdb::DB::Open(rocksdb::Options(), data_dir, families, &handles_, &db_).ok()) {
      db_ = nullptr;
    }
  }
  ~StoppedDb() {
    for (rocksdb::ColumnFamilyHandle* h : handles_) {
      if (db_ != nullptr) db_->DestroyColumnFamilyHandle(h);
    }
    delete db_;
  }
  StoppedDb(const StoppedDb&) = delete;
  StoppedDb& operator=(const StoppedDb&) = delete;

  bool ok() const { return db_ != nullptr; }
  rocksdb::DB* db() const { return db_; }
  // The column family `name` (e.g. ledger::kEntriesFamily); null if there is none.
  rocksdb::ColumnFamilyHandle* family(const std::string& name) const {
    for (size_t i = 0; i < names_.size() && i < handles_.size(); ++i) {
      if (names_[i] == name) return handles_[i];
    }
    return nullptr;
  }

 private:
  std::vector<std::string> names_;
  std::vector<rocksdb::ColumnFamilyHandle*> handles_;
  rocksdb::DB* db_ = nullptr;
};

// The 8-byte big-endian key under which the ledger stores entry `index`.
inline std::string LedgerIndexKey(uint64_t index) {
  std::string key(8, '\0');
  for (int i = 0; i < 8; ++i) key[i] = static_cast<char>(index >> (56 - 8 * i));
  return key;
}

}  // namespace corridor::testing

#endif  // CORRIDOR_TESTS_TESTING_STOPPED_DB_H_
