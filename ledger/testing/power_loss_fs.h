// PowerLossFileSystem: a test-only RocksDB FileSystem that can lose power.
//
// It passes every call to a real file system and keeps, for each file written
// through it, what a sudden power loss would leave of it. PowerCut() stops the
// "disk" at that instant; Reboot() then rewrites the files on the real disk to
// what survived, as a machine that lost power finds them when it boots.
//
// What counts as durable (the model; conservative on purpose):
//   - File contents: the bytes a file held when a Sync or Fsync on it began,
//     once that call returned OK before the cut. Nothing else makes bytes
//     durable: not Append, Flush, Close, RangeSync (sync_file_range does not
//     persist metadata), nor a Sync still running at the cut (its caller is
//     told it failed). Reboot truncates every file written through this file
//     system to its durable length.
//   - Names: a file created (NewWritableFile, ReopenWritableFile on a missing
//     file) or renamed (RenameFile, ReuseWritableFile) is in its directory only
//     once an FSDirectory::Fsync or FsyncWithDirOptions of that directory,
//     obtained through NewDirectory, began after the creation or rename and
//     returned OK before the cut. Reboot removes created files whose name never became
//     durable, renames files back to their old name when the rename never
//     became durable (and restores the durable contents a rename replaced,
//     e.g. the previous CURRENT), then truncates.
//   - Simplifications (durable at once, never undone): deleting a file (a file
//     deleted before the cut stays deleted, though its directory was not
//     synced), Truncate of a whole file by name, creating or deleting
//     directories, LinkFile, files written through NewRandomRWFile, and
//     RocksDB's info log (NewLogger writes around this wrapper). A file that
//     existed before it was first opened through this file system is durable
//     as found. A pending rename whose target is then deleted or renamed over
//     does not bring the source name back.
// Not simulated: torn or reordered writes inside a file (a file's durable
// bytes are always a prefix), sectors that read back as garbage, reordering
// between files beyond the sync rules above, and lying disks (except with
// `syncs_lie`, below).
//
// After PowerCut() every call that would change the disk (writing, syncing,
// creating, renaming, deleting) fails with IOError "power is off", so RocksDB
// can be closed or destroyed without writing anything more; reads still work.
// Reboot() must be called once nothing writes through the file system (every
// DB using it closed); afterwards every file on disk counts as durable and the
// power is on again.
//
// Thread-safe: one mutex guards the bookkeeping; appends and renames run
// under it, syncs outside it.
#ifndef CORRIDOR_LEDGER_TESTING_POWER_LOSS_FS_H_
#define CORRIDOR_LEDGER_TESTING_POWER_LOSS_FS_H_

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "rocksdb/file_system.h"

namespace corridor::ledger::testing {

// True in an ASan or TSan build, with clang (__has_feature) or gcc
// (__SANITIZE_ADDRESS__, __SANITIZE_THREAD__): the power-loss tests cut fewer
// times there, as each step is several times slower.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
inline constexpr bool kSanitizedBuild = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
inline constexpr bool kSanitizedBuild = true;
#else
inline constexpr bool kSanitizedBuild = false;
#endif
#else
inline constexpr bool kSanitizedBuild = false;
#endif

class PowerLossFileSystem : public rocksdb::FileSystemWrapper {
 public:
  // What the last Reboot() undid.
  struct RebootStats {
    uint64_t bytes_dropped = 0;  // file bytes past their durable length
    int files_truncated = 0;     // files that lost bytes
    int files_removed = 0;       // created files whose name was not durable
    int renames_undone = 0;      // renames moved back to the old name
  };

  explicit PowerLossFileSystem(
      std::shared_ptr<rocksdb::FileSystem> base = rocksdb::FileSystem::Default());
  const char* Name() const override { return "PowerLossFileSystem"; }

  // Testing the tests: when set, Sync and Fsync of files (not directories)
  // return OK but make nothing durable, as a disk whose volatile write cache
  // ignores flushes. A durability test must fail on such a disk.
  void set_syncs_lie(bool lie);

  // Stops the disk now: what is durable at this instant is what Reboot keeps.
  void PowerCut();
  // Stops the disk at the `step`-th step from now (1: the next one), instead
  // of performing it: a deterministic cut point, to walk every step of a
  // sequence. Steps are the calls that change the disk: appending to or
  // truncating a file, Sync/Fsync of a file or directory, creating, reopening,
  // renaming or deleting a file. Reboot() clears it.
  void PowerCutAt(uint64_t step);
  // False from the cut to Reboot().
  bool powered() const;
  // Steps taken so far (see PowerCutAt).
  uint64_t steps() const;
  // Rewrites the disk to what survived the cut and powers on. Call with
  // nothing writing through this file system. FailedPrecondition without a
  // PowerCut() first; Internal if the real file system fails.
  absl::Status Reboot();
  const RebootStats& last_reboot() const { return last_reboot_; }

  rocksdb::IOStatus NewWritableFile(const std::string& f, const rocksdb::FileOptions& o,
                                    std::unique_ptr<rocksdb::FSWritableFile>* r,
                                    rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus ReopenWritableFile(const std::string& f, const rocksdb::FileOptions& o,
                                       std::unique_ptr<rocksdb::FSWritableFile>* r,
                                       rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus ReuseWritableFile(const std::string& f, const std::string& old_f,
                                      const rocksdb::FileOptions& o,
                                      std::unique_ptr<rocksdb::FSWritableFile>* r,
                                      rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus NewRandomRWFile(const std::string& f, const rocksdb::FileOptions& o,
                                    std::unique_ptr<rocksdb::FSRandomRWFile>* r,
                                    rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus NewDirectory(const std::string& name, const rocksdb::IOOptions& o,
                                 std::unique_ptr<rocksdb::FSDirectory>* r,
                                 rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus RenameFile(const std::string& src, const std::string& dst,
                               const rocksdb::IOOptions& o, rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus DeleteFile(const std::string& f, const rocksdb::IOOptions& o,
                               rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus Truncate(const std::string& f, size_t size, const rocksdb::IOOptions& o,
                             rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus CreateDir(const std::string& d, const rocksdb::IOOptions& o,
                              rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus CreateDirIfMissing(const std::string& d, const rocksdb::IOOptions& o,
                                       rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus DeleteDir(const std::string& d, const rocksdb::IOOptions& o,
                              rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus LinkFile(const std::string& src, const std::string& dst,
                             const rocksdb::IOOptions& o, rocksdb::IODebugContext* dbg) override;

 private:
  class File;
  class Directory;
  // One file written through this file system. Guarded by mu_.
  struct FileState {
    uint64_t size = 0;     // bytes written so far
    uint64_t durable = 0;  // bytes a power cut keeps
  };
  // A name not yet made durable by a directory fsync.
  struct PendingName {
    uint64_t seq = 0;  // when it was created or renamed
    // The durable name the file had before a rename; empty: newly created.
    std::string restore_from;
    // The durable contents a rename replaced at this name, to put back.
    std::optional<std::string> replaced;
  };

  static rocksdb::IOStatus Off();
  // Counts one step; true (power off) if it must not happen.
  bool StepLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Tracks `f` as opened for writing (`created`: the name is new).
  std::shared_ptr<FileState> TrackLocked(const std::string& f, bool created, uint64_t size)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Records the rename of `src` to `dst`, which replaced durable contents
  // `replaced` (if any).
  void RenameLocked(const std::string& src, const std::string& dst,
                    std::optional<std::string> replaced) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The durable contents of `f` (nullopt if it has no durable name or is absent).
  std::optional<std::string> DurableContentsLocked(const std::string& f)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Sync of a file: `sync` runs outside the lock.
  template <typename SyncFn>
  rocksdb::IOStatus SyncFile(const std::shared_ptr<FileState>& state, SyncFn sync);
  // Fsync of directory `dir`.
  template <typename SyncFn>
  rocksdb::IOStatus SyncDir(const std::string& dir, SyncFn sync);
  absl::Status UndoNamesLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status TruncateLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  mutable absl::Mutex mu_;
  bool off_ ABSL_GUARDED_BY(mu_) = false;
  bool syncs_lie_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t seq_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t steps_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t cut_at_ ABSL_GUARDED_BY(mu_) = 0;  // 0: none
  std::map<std::string, std::shared_ptr<FileState>> files_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, PendingName> pending_ ABSL_GUARDED_BY(mu_);
  RebootStats last_reboot_;
};

}  // namespace corridor::ledger::testing

#endif  // CORRIDOR_LEDGER_TESTING_POWER_LOSS_FS_H_
