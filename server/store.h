// The node's one RocksDB database: opens it with every column family the node
// and its ledger use, and keeps small node state ("meta" column family).
// Thread-safe (RocksDB is).
#ifndef CORRIDOR_SERVER_STORE_H_
#define CORRIDOR_SERVER_STORE_H_

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "rocksdb/db.h"

namespace corridor {

// RocksDB status → absl status, in one place. `what` says what was being done.
absl::Status FromRocksStatus(const rocksdb::Status& s, absl::string_view what);

class NodeStore {
 public:
  static constexpr char kMetaFamily[] = "meta";

  // Opens (creating if needed) the database in `dir` with the default and meta
  // column families plus `extra_families`. FailedPrecondition if another process
  // holds the database; Internal/DataLoss for RocksDB errors, naming the directory.
  static absl::StatusOr<std::unique_ptr<NodeStore>> Open(
      const std::string& dir, const std::vector<std::string>& extra_families);
  ~NodeStore();

  rocksdb::DB* db() const { return db_.get(); }
  // The handle for `name`; nullptr if it was not opened.
  rocksdb::ColumnFamilyHandle* family(const std::string& name) const;
  const std::map<std::string, rocksdb::ColumnFamilyHandle*>& families() const { return families_; }

  // Meta values; NotFound if absent.
  absl::StatusOr<std::string> GetMeta(const std::string& key) const;
  // Writes meta values in one synced batch.
  absl::Status PutMeta(const std::map<std::string, std::string>& values);

 private:
  NodeStore() = default;
  std::unique_ptr<rocksdb::DB> db_;
  std::map<std::string, rocksdb::ColumnFamilyHandle*> families_;
  std::vector<rocksdb::ColumnFamilyHandle*> handles_;
};

}  // namespace corridor

#endif  // CORRIDOR_SERVER_STORE_H_
