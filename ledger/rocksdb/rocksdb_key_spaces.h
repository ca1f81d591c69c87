// The RocksDB implementation of ledger::Mutation (ledger/mutation.h): key
// space "x" is the column family named "x" of one database. RocksDbLedger
// copies a request's mutation into its group's one synced WriteBatch with
// AddTo; code that writes without a ledger entry (housekeeping, never a
// change that must be recorded) uses WriteMutation.
//
// Immutable after construction; thread-safe. The column family handles are
// not owned and must outlive it.
#ifndef CORRIDOR_LEDGER_ROCKSDB_ROCKSDB_KEY_SPACES_H_
#define CORRIDOR_LEDGER_ROCKSDB_ROCKSDB_KEY_SPACES_H_

#include <map>
#include <set>
#include <string>

#include "absl/status/status.h"
#include "ledger/mutation.h"
#include "rocksdb/db.h"
#include "rocksdb/write_batch.h"

namespace corridor::ledger {

class RocksDbKeySpaces {
 public:
  // `families`: the column families mutations may write, by name. `reserved`:
  // names a mutation may never write (the ledger's own families), even if
  // they are in `families`.
  explicit RocksDbKeySpaces(std::map<std::string, rocksdb::ColumnFamilyHandle*> families,
                            std::set<std::string> reserved = {});

  // OK if every key space `m` writes may be written; otherwise
  // InvalidArgument naming the first that may not (one of the reserved, or
  // one not given).
  absl::Status Check(const Mutation& m) const;
  // Adds `m`'s operations, in order, to `batch`. Errors as Check; on error
  // `batch` may hold some of them: discard it.
  absl::Status AddTo(const Mutation& m, rocksdb::WriteBatch* batch) const;

 private:
  std::map<std::string, rocksdb::ColumnFamilyHandle*, std::less<>> families_;
  std::set<std::string, std::less<>> reserved_;
};

// Writes `m` alone in one atomic RocksDB write (synced if `sync`) to `db`,
// whose column families `families` names. InvalidArgument for a key space
// not in `families`; RocksDB errors through FromRocksStatus.
absl::Status WriteMutation(rocksdb::DB* db,
                           const std::map<std::string, rocksdb::ColumnFamilyHandle*>& families,
                           const Mutation& m, bool sync);

}  // namespace corridor::ledger

#endif  // CORRIDOR_LEDGER_ROCKSDB_ROCKSDB_KEY_SPACES_H_
