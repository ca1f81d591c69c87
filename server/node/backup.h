// Online backup and restore of a node's data directory (docs/operations.md,
// "Back up" and "Restore").
//
// A backup is a directory written by the node on its own machine:
//   db/              a RocksDB checkpoint of the main database (sealed cases
//                    and evidence, the ledger, outbox, witness state): a
//                    consistent point in time, taken while the node serves
//   keystore/        a RocksDB checkpoint of the key store (the wrapped case
//                    data keys), taken after db/ so every case in db/ has its
//                    key; a separate directory so it can be stored apart
//   checkpoint.note  the ledger's latest signed checkpoint in db/
//   manifest.txt     written last (its presence marks a complete backup):
//                    the format below, with the SHA-256 of every other file
//
// manifest.txt (UTF-8 lines, "\n"-terminated, fields separated by one space):
//   corridor-backup 1
//   data-format <the data format version of db/>
//   created-unix <Unix seconds>
//   federation <name>
//   org <org id>
//   ledger-size <N>
//   ledger-root <64 hex>
//   file <64 hex SHA-256> <size in bytes> <path relative to the backup, '/'-separated>
//   ... one file line per file, sorted by path; nothing else in the directory
//
// Thread-safe: the functions keep no state (BackupGate serialises backups).
#ifndef CORRIDOR_SERVER_NODE_BACKUP_H_
#define CORRIDOR_SERVER_NODE_BACKUP_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "corridor/v1/config.pb.h"
#include "rocksdb/db.h"

namespace corridor {

// The longest backup directory path accepted (bytes).
inline constexpr size_t kMaxBackupPathBytes = 1024;
inline constexpr char kManifestFile[] = "manifest.txt";
inline constexpr char kCheckpointNoteFile[] = "checkpoint.note";
// In a data directory: a copy of the manifest of the backup it was restored
// from, until the node's next start has verified the ledger and recorded
// `node.restored` (Node::Start).
inline constexpr char kRestorePendingFile[] = "restore-pending.txt";
// The meta key holding the latest restore (a serialized v1::RestoreInfo).
inline constexpr char kRestoreInfoKey[] = "restore/last";

struct BackupManifest {
  struct File {
    std::string path;  // relative, '/'-separated
    uint64_t size = 0;
    std::string sha256_hex;
  };
  uint64_t data_format = 0;
  int64_t created_unix = 0;
  std::string federation;
  std::string org;
  uint64_t ledger_size = 0;
  std::string ledger_root_hex;
  std::vector<File> files;
};

std::string FormatManifest(const BackupManifest& manifest);
// InvalidArgument naming the line that does not follow the format.
absl::StatusOr<BackupManifest> ParseManifest(const std::string& text);

// Whether `out_dir` may receive a backup of `data_dir`: InvalidArgument if it
// is empty, longer than kMaxBackupPathBytes, not absolute, holds "." or ".."
// components or control characters, or is (or is inside, or contains) the
// data directory; FailedPrecondition if its parent does not exist or it
// exists and is not an empty directory. Messages do not repeat the path (they
// are recorded in the ledger).
absl::Status CheckBackupTarget(const std::string& out_dir, const std::string& data_dir);

// One backup at a time: TryEnter fails with FailedPrecondition while another
// holds the gate. Thread-safe.
class BackupGate {
 public:
  absl::Status TryEnter();
  void Leave();
  // Returns once no backup holds the gate (shutdown: a backup records its
  // outcome in the ledger before it leaves, so the ledger must outlive it).
  void AwaitIdle();

 private:
  absl::Mutex mu_;
  bool busy_ ABSL_GUARDED_BY(mu_) = false;
};

// Writes the backup of `db` and `keystore` to `out_dir` (checked with
// CheckBackupTarget first) and returns its manifest; `checkpoint_note` gets
// the backup's signed checkpoint. On failure whatever was written under
// `out_dir` is removed. Internal / Unavailable naming the step that failed.
absl::StatusOr<BackupManifest> WriteBackup(rocksdb::DB* db, rocksdb::DB* keystore,
                                           const std::string& out_dir, const v1::NodeConfig& config,
                                           absl::Time now, std::string* checkpoint_note);

// A backup directory checked against its manifest: every listed file present
// with its size and SHA-256, no other file, a data format this corridord
// reads. `manifest_text` is manifest.txt as read.
struct VerifiedBackup {
  BackupManifest manifest;
  std::string manifest_text;
  std::string checkpoint_note;
};
absl::StatusOr<VerifiedBackup> VerifyBackup(const std::string& dir);

// corridord --restore: verifies the backup, refuses a data directory that
// exists and is not empty, copies db/ into config.data_dir() and keystore/
// into its keystore/, each file synced, and leaves kRestorePendingFile for
// the next start. Returns what was restored, in words.
absl::StatusOr<std::string> RestoreBackup(const std::string& backup_dir,
                                          const v1::NodeConfig& config);

}  // namespace corridor

#endif  // CORRIDOR_SERVER_NODE_BACKUP_H_
