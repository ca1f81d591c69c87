// RocksDbLedger: the production Ledger, stored in column families of the
// node's one RocksDB database (layout: docs/ledger.md).
//
// One sequencer thread owns appends and group-commits: it takes every waiting
// request (up to max_group_entries entries), assigns consecutive indexes,
// extends the tree, signs a checkpoint for the new head, and writes entries,
// subtree-hash tiles, secondary index keys, the group's time stamp, the new
// head, the checkpoint and every caller's own Mutation in ONE synced
// RocksDB write; then it completes every caller. A failed commit fails the
// whole group (and everything still queued) and leaves the ledger refusing
// all later appends with Unavailable: nothing half-written is ever visible to
// readers, whose view moves only after a successful write.
//
// Recovery without a restart: while refusing, the sequencer retries
// TryRecover() with a backoff. It resumes the database (DB::Resume), then
// re-derives the head and the tree's right edge from what is durable exactly
// as Open does (with the same cross-checks against the latest signed
// checkpoint), then proves the database takes a synced write; only then are
// appends accepted again. A failed group was failed to its callers; if it did
// reach the disk after all, the re-derived head includes it (at-least-once
// recording: the caller saw an error for an entry that is in the ledger, and
// nothing acknowledged is ever lost). If the re-derived state does not
// verify, the ledger refuses writes until it is reopened and stops retrying.
//
// Opening does not replay the log: it checks the stored head against the
// stored subtree hashes, the last entry and the latest signed checkpoint.
//
// Thread-safe. The DB and the column family handles are owned by the caller
// and must outlive the ledger.
#ifndef CORRIDOR_LEDGER_ROCKSDB_ROCKSDB_LEDGER_H_
#define CORRIDOR_LEDGER_ROCKSDB_ROCKSDB_LEDGER_H_

#include <deque>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "ledger/ledger.h"
#include "ledger/rocksdb/rocksdb_key_spaces.h"
#include "ledger/rocksdb/rocksdb_status.h"
#include "rocksdb/db.h"
#include "rocksdb/listener.h"

namespace corridor::ledger {

// Column families the ledger keeps in the node's database.
inline constexpr char kEntriesFamily[] = "ledger_entries";
inline constexpr char kTilesFamily[] = "ledger_tiles";
inline constexpr char kStateFamily[] = "ledger_state";
inline constexpr char kIndexFamily[] = "ledger_index";
inline constexpr char kTimesFamily[] = "ledger_times";
// The names above; the node creates them when it opens its database.
std::vector<std::string> LedgerColumnFamilyNames();
// Recommended options for the ledger's column families (bounded memtables;
// entries and tiles are written in index order and read by point lookups and
// forward scans). Any options work; these keep memory flat.
rocksdb::ColumnFamilyOptions LedgerColumnFamilyOptions(const std::string& name);

struct RocksDbLedgerOptions : LedgerOptions {
  // Most entries one group commit takes (a single request larger than this
  // is committed alone). Default 8192.
  size_t max_group_entries = 8192;
  // Decoded tiles kept in memory (at most ~16 KiB each). Default 2048.
  size_t tile_cache_tiles = 2048;
  // While refusing writes after a failed commit, the sequencer calls
  // TryRecover() first after `recovery_backoff_min`, then doubling the wait
  // up to `recovery_backoff_max`. Defaults 1 s and 5 s. An infinite
  // `recovery_backoff_min` turns automatic recovery off (tests call
  // TryRecover themselves). Must satisfy 0 < min <= max.
  absl::Duration recovery_backoff_min = absl::Seconds(1);
  absl::Duration recovery_backoff_max = absl::Seconds(5);
  // Called on the sequencer thread whenever health() changes: with the error
  // when the ledger starts refusing writes, with OK once it has recovered.
  // Keep it short; never call Append from it. Default: none.
  std::function<void(const absl::Status&)> on_health_change;
};

class RocksDbLedger final : public Ledger {
 public:
  // Opens the ledger on `db`. `families` maps names to handles: it must hold
  // every LedgerColumnFamilyNames() family, plus every other column family
  // (besides the default one) that callers' `change` mutations write to: a
  // mutation's key space "x" is the family named "x" (rocksdb_key_spaces.h).
  // A change may never write the ledger's own families.
  // Errors: InvalidArgument for missing families or bad options; DataLoss
  // naming the mismatch if the stored head, subtree hashes, last entry and
  // latest signed checkpoint do not agree; Internal for RocksDB read errors.
  static absl::StatusOr<std::unique_ptr<RocksDbLedger>> Open(
      rocksdb::DB* db, const std::map<std::string, rocksdb::ColumnFamilyHandle*>& families,
      RocksDbLedgerOptions options);
  // Commits what is queued, then stops the sequencer.
  ~RocksDbLedger() override;

  void AppendAsync(std::vector<AppendEntry> entries, std::unique_ptr<Mutation> change,
                   AppendCallback done) override;
  Head head() const override;
  absl::Status health() const override;
  note::Verifier verifier() const override;
  absl::StatusOr<std::string> Entry(uint64_t index) const override;
  absl::StatusOr<std::vector<std::string>> Entries(uint64_t begin, uint64_t end) const override;
  absl::StatusOr<absl::Time> EntryTime(uint64_t index) const override;
  absl::StatusOr<uint64_t> FirstIndexAtOrAfter(absl::Time t) const override;
  absl::StatusOr<merkle::Hash> SubtreeHash(int level, uint64_t index) const override;
  absl::StatusOr<std::vector<uint64_t>> Lookup(absl::string_view index_key, uint64_t before,
                                               size_t limit) const override;
  // Streams the entries on one extra thread while this one hashes and
  // compares; memory stays flat whatever the size.
  absl::Status VerifyAll() const override { return Verify(/*quiescent=*/true); }
  absl::Status VerifyCommitted() const override { return Verify(/*quiescent=*/false); }

  // Tries once, now, to leave the refusing state (see the file comment).
  // OK if appends are accepted (also when nothing was wrong); Unavailable
  // while the database still cannot be resumed or written (try again later);
  // Unavailable saying "until it is reopened" if the re-derived state does
  // not verify (no later attempt will succeed). Any thread; serialized with
  // commits.
  absl::Status TryRecover();

  struct Tile;  // decoded tile, see rocksdb_ledger.cc

 private:
  // VerifyAll (`quiescent`: no append in flight, so an entry stored beyond the
  // head is damage) or VerifyCommitted.
  absl::Status Verify(bool quiescent) const;
  struct Request {
    std::vector<AppendEntry> entries;
    std::unique_ptr<Mutation> change;
    AppendCallback done;
  };

  RocksDbLedger(rocksdb::DB* db,
                const std::map<std::string, rocksdb::ColumnFamilyHandle*>& families,
                RocksDbLedgerOptions options);
  // Reads the head and the tree's right edge from the database and checks
  // them (see Open).
  absl::Status Load() ABSL_EXCLUSIVE_LOCKS_REQUIRED(commit_mu_);
  void Run();
  void CommitGroup(std::vector<Request>& group) ABSL_EXCLUSIVE_LOCKS_REQUIRED(commit_mu_);
  // The bytes `e.link` makes of its trail links: the newest entry under each
  // chain key among `filed_here` (this group's entries so far), else among the
  // committed ones.
  absl::StatusOr<std::string> Link(const AppendEntry& e,
                                   const std::map<std::string, uint64_t>& filed_here) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(commit_mu_);
  // Enters the refusing state with `st`, fails everything queued.
  void FailQueued(const absl::Status& st);
  // Resume, re-derive, prove a synced write (TryRecover's steps).
  absl::Status Recover() ABSL_EXCLUSIVE_LOCKS_REQUIRED(commit_mu_);
  // A tile through the cache (may be a stale, shorter copy of a partial tile).
  absl::StatusOr<std::shared_ptr<const Tile>> GetTile(int tile_level, uint64_t tile_index) const;
  // A stored subtree hash, without checking it against the head.
  absl::StatusOr<merkle::Hash> StoredNode(int level, uint64_t index) const;
  // A tile straight from RocksDB; NotFound if absent.
  absl::StatusOr<std::shared_ptr<const Tile>> ReadTile(int tile_level, uint64_t tile_index) const;

  rocksdb::DB* const db_;
  rocksdb::ColumnFamilyHandle* entries_cf_;
  rocksdb::ColumnFamilyHandle* tiles_cf_;
  rocksdb::ColumnFamilyHandle* state_cf_;
  rocksdb::ColumnFamilyHandle* index_cf_;
  rocksdb::ColumnFamilyHandle* times_cf_;
  const RocksDbKeySpaces spaces_;  // what callers' changes may write
  const RocksDbLedgerOptions options_;

  // Held for a whole commit or recovery attempt; acquired before mu_.
  absl::Mutex commit_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  // The tree's right edge and the last group's time stamp: set by Load(),
  // extended by each successful commit.
  merkle::CompactRange edge_ ABSL_GUARDED_BY(commit_mu_);
  int64_t last_micros_ ABSL_GUARDED_BY(commit_mu_) = 0;

  mutable absl::Mutex mu_;
  Head head_ ABSL_GUARDED_BY(mu_);
  // OK, or the Unavailable error appends are refused with.
  absl::Status broken_ ABSL_GUARDED_BY(mu_);
  // The commit failure that started the current refusal.
  absl::Status failure_ ABSL_GUARDED_BY(mu_);
  // False once recovery found state that does not verify: only reopening helps.
  bool recoverable_ ABSL_GUARDED_BY(mu_) = true;
  std::deque<Request> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;

  // Tile cache (LRU), keyed by (tile level << 56 | tile index).
  mutable absl::Mutex cache_mu_;
  mutable std::list<uint64_t> lru_ ABSL_GUARDED_BY(cache_mu_);
  mutable std::unordered_map<uint64_t,
                             std::pair<std::shared_ptr<const Tile>, std::list<uint64_t>::iterator>>
      cache_ ABSL_GUARDED_BY(cache_mu_);

  std::thread sequencer_;
};

// Resumes `db` (DB::Resume) if RocksDB stopped writing after an error, but
// only once its disk has room for all memtables plus 4 MiB (the flush a
// resume does; a resume that fails for want of room makes RocksDB's error
// fatal). OK if the database can write (also when nothing was wrong);
// Unavailable saying why not (waiting for room, busy, or "restart the
// node" once RocksDB's error is fatal). Thread-safe.
absl::Status ResumeWhenRoom(rocksdb::DB* db);
// A listener that turns off RocksDB's own recovery from "no space" errors
// (which retries on its own estimate of the room needed and turns the error
// fatal if the flush still does not fit): ResumeWhenRoom, called by the
// ledger's recovery, takes its place. Add it to the options of every
// database a RocksDbLedger writes to.
std::shared_ptr<rocksdb::EventListener> NewManualRecoveryListener();

// A RocksDB database holding the default column family, the ledger's
// families and the caller's: the node's one database, or a standalone one
// (tests, benchmarks, tools). Closes the database when destroyed.
struct LedgerDb {
  std::unique_ptr<rocksdb::DB> db;
  // Every open family by name, the default one ("default") included.
  std::map<std::string, rocksdb::ColumnFamilyHandle*> families;
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  ~LedgerDb();
};

struct LedgerDbOptions {
  // Column families besides the default one and LedgerColumnFamilyNames(),
  // created if missing. Families already in the database are opened too
  // (RocksDB refuses to open without them). Default: none.
  std::vector<std::string> families;
  // The database's options. OpenLedgerDb sets create_if_missing and
  // create_missing_column_families, and adds NewManualRecoveryListener().
  // Default: RocksDB's, with all memtables together capped at 64 MiB.
  rocksdb::Options options = DefaultOptions();
  // The options of a family that is not the ledger's (those get
  // LedgerColumnFamilyOptions). Default (empty): ColumnFamilyOptions(options).
  std::function<rocksdb::ColumnFamilyOptions(const std::string& name)> family_options;

  static rocksdb::Options DefaultOptions();
};

// Opens (creating if missing) the database at `path` with the default
// family, LedgerColumnFamilyNames() and `options.families`, the ledger's
// families tuned with LedgerColumnFamilyOptions. RocksDB errors through
// FromRocksStatus (FailedPrecondition if another process holds it), naming
// `path`.
absl::StatusOr<std::unique_ptr<LedgerDb>> OpenLedgerDb(const std::string& path,
                                                       LedgerDbOptions options = {});

}  // namespace corridor::ledger

#endif  // CORRIDOR_LEDGER_ROCKSDB_ROCKSDB_LEDGER_H_
