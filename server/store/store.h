// The node's one RocksDB database: opens it with every column family the node
// and its ledger use, keeps small node state ("meta" column family), tracks
// whether RocksDB can write (health()), and keeps a space reserve.
//
// The space reserve is a file, `<data_dir>/space-reserve` (reserve_bytes,
// allocated with fallocate where the file system can, else zeros). It exists
// so that a full disk never stops the node for good:
//   - Open deletes it before opening RocksDB if the disk has less than twice
//     reserve_bytes free, so that opening always finds room;
//   - when RocksDB reports "no space left", the file is deleted at once, so
//     RocksDB's recovery (DB::Resume, see ledger/rocksdb/rocksdb_ledger.h) can flush;
//   - a background thread writes it (first thing after Open, then again
//     whenever it is missing) once the database is healthy and the disk has
//     at least twice reserve_bytes free.
// RocksDB's own recovery from a full disk is turned off: the ledger's
// recovery and the background thread resume the database with
// ledger::ResumeWhenRoom instead (see docs/configuration.md).
// The node runs without the reserve when the disk is too full to keep it
// (reserve_ok() then says why).
//
// Thread-safe (RocksDB is; the rest is guarded).
#ifndef CORRIDOR_SERVER_STORE_STORE_H_
#define CORRIDOR_SERVER_STORE_STORE_H_

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "ledger/rocksdb/rocksdb_ledger.h"
#include "ledger/rocksdb/rocksdb_status.h"
#include "rocksdb/db.h"

namespace corridor {

// RocksDB status -> absl status: the ledger's one conversion
// (ledger/rocksdb/rocksdb_status.h), which keeps RocksDB's own text out of
// what reaches users and peers.
using ledger::FromRocksStatus;

struct NodeStoreOptions {
  // Size of the space reserve file. 0 keeps no reserve. Default 32 MiB:
  // more than one memtable flush plus a WAL (see docs/configuration.md).
  uint64_t reserve_bytes = uint64_t{32} << 20;
  // How often the background thread checks whether the database must be
  // resumed (ledger::ResumeWhenRoom) or the reserve written again. Default
  // 5 s; infinite: never (tests).
  absl::Duration check_interval = absl::Seconds(5);
  // The RocksDB environment for the database and the reserve file (tests
  // inject file-system faults). Default: rocksdb::Env::Default(). Must
  // outlive the store.
  rocksdb::Env* env = nullptr;
};

// The on-disk format of a data directory (docs/architecture.md, "Data
// format version"): the meta key kFormatVersionKey holds it as a decimal
// number, written when the directory is created. A directory without it was
// written before format versions existed and is format version 1.
inline constexpr uint64_t kDataFormatVersion = 1;
inline constexpr char kFormatVersionKey[] = "format/version";

// Reads `keys` of column family `family` of the RocksDB database in `dir`
// without changing any file there (opened read-only, no info log written).
// Keys (or a family) that are absent are left out of the result. NotFound if
// `dir` holds no database; DataLoss / Internal if it cannot be read.
absl::StatusOr<std::map<std::string, std::string>> PeekDatabase(
    const std::string& dir, const std::string& family, const std::vector<std::string>& keys);

// The format version of the data directory `dir`, read without changing
// anything: nullopt if `dir` holds no database yet, 1 if it has none stored.
// FailedPrecondition, naming both versions and what to do, if it is newer
// than kDataFormatVersion; DataLoss if what is stored is not a number.
absl::StatusOr<std::optional<uint64_t>> CheckDataFormat(const std::string& dir);

class NodeStore {
 public:
  static constexpr char kMetaFamily[] = "meta";
  static constexpr char kReserveFile[] = "space-reserve";

  // Opens (creating if needed) the database in `dir` with the default, meta
  // and ledger column families plus `extra_families` (ledger::OpenLedgerDb).
  // Checks the format version first (CheckDataFormat), so a newer directory is
  // refused before any of its files changes; a new directory gets
  // kDataFormatVersion stored. FailedPrecondition if another process holds
  // the database; Internal / DataLoss for RocksDB errors, naming the
  // directory. The reserve is written in the background (see reserve_ok()).
  static absl::StatusOr<std::unique_ptr<NodeStore>> Open(
      const std::string& dir, const std::vector<std::string>& extra_families,
      NodeStoreOptions options = {});
  ~NodeStore();

  rocksdb::DB* db() const { return db_->db.get(); }
  // True if the directory was written before format versions (no
  // kFormatVersionKey at open): the caller records the upgrade and stores the
  // version in the same commit (Node does, with a `store.format` entry).
  bool unversioned() const { return unversioned_; }
  // The handle for `name`; nullptr if it was not opened.
  rocksdb::ColumnFamilyHandle* family(const std::string& name) const;
  // Every open family by name (the default one included).
  const std::map<std::string, rocksdb::ColumnFamilyHandle*>& families() const {
    return db_->families;
  }

  // Meta values; NotFound if absent.
  absl::StatusOr<std::string> GetMeta(const std::string& key) const;
  // A meta value that holds a decimal number (e.g. the roster version in
  // force): NotFound if absent; DataLoss naming `key` if what is stored is
  // not a number in [0, 2^64) (damaged node state is never read as 0).
  absl::StatusOr<uint64_t> GetMetaNumber(const std::string& key) const;
  // Writes meta values in one synced batch.
  absl::Status PutMeta(const std::map<std::string, std::string>& values);

  // OK, or Unavailable with RocksDB's background error while the database
  // is read-only after a failed write, flush or compaction (until it has
  // recovered: DB::Resume or RocksDB's own retries).
  absl::Status health() const;
  // OK while the reserve file is in place (or none is configured);
  // otherwise why it is missing.
  absl::Status reserve_ok() const;
  // Writes the reserve file now if it is missing and there is room (twice
  // its size free). FailedPrecondition if there is not; Internal on I/O
  // errors (a partial file is removed).
  absl::Status RestoreReserve();

 private:
  class Listener;
  explicit NodeStore(std::string dir, NodeStoreOptions options);
  // Stores kDataFormatVersion in a database just created; marks one that
  // `existed` without a version as unversioned().
  absl::Status StampFormat(bool existed);
  void ReleaseReserve(absl::string_view why);
  void KeepReserve();

  const std::string dir_;
  const NodeStoreOptions options_;
  std::shared_ptr<rocksdb::FileSystem> fs_;
  std::unique_ptr<ledger::LedgerDb> db_;
  bool unversioned_ = false;

  mutable absl::Mutex mu_;
  absl::Status background_error_ ABSL_GUARDED_BY(mu_);
  absl::Status reserve_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  // Serializes writing and deleting the reserve file.
  absl::Mutex reserve_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  std::thread keeper_;
};

}  // namespace corridor

#endif  // CORRIDOR_SERVER_STORE_STORE_H_
