// The auditor's saved checkpoints: for each ledger it has checked (each
// checkpoint origin, "<federation>/<org>"), the last signed checkpoint this
// auditor verified, so that the next check can prove the ledger only grew
// since. Without it a node whose data directory was restored from an older
// copy, or whose ledger was rewritten and re-signed by whoever holds its
// signing key, answers every later question consistently with itself and is
// never caught; with it, corridorctl asks the node for a consistency proof
// from the saved checkpoint to the new one (RFC 9162 §2.1.4) and refuses to
// go on if the ledger shrank (ROLLBACK) or no longer contains what was seen
// (FORK).
//
// On disk (docs/audit.md, "The auditor's saved checkpoint"): one directory,
// mode 0700, holding <origin, escaped>.checkpoint files, mode 0600, each the
// exact signed note text the node sent (no personal data), replaced
// atomically; and, after a conflict, the two checkpoints that disagree as
// <origin, escaped>-conflict-<UTC time>.old.checkpoint / .new.checkpoint.
// A saved checkpoint is re-verified with the roster's keys every time it is
// read: the file is evidence, not trust.
//
// Internal to client/ctl. Not thread-safe; two corridorctl processes sharing
// a directory each replace the file whole (the last one wins).
#ifndef CORRIDOR_CLIENT_CTL_AUDIT_STATE_H_
#define CORRIDOR_CLIENT_CTL_AUDIT_STATE_H_

#include <cstdint>
#include <functional>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "client/ctl/args.h"
#include "client/ctl/ledger_keys.h"
#include "ledger/merkle.h"
#include "ledger/note.h"

namespace corridor::ctl {

// --state DIR.
std::vector<OptionSpec> AuditStateOptions();

// Where the saved checkpoints live: --state, else $CORRIDOR_AUDIT_STATE, else
// $XDG_STATE_HOME/corridor/audit, else $HOME/.local/state/corridor/audit;
// "" if none of them is set.
std::string AuditStateDirFromOptions(const Args& args);

// How a newer checkpoint of a ledger relates to the one saved before.
enum class CheckpointRelation {
  kFirst,     // nothing was saved for this origin
  kSame,      // same size, same root
  kExtends,   // larger, and the consistency proof verifies
  kRollback,  // smaller than the saved one
  kFork,      // same size with another root, or the proof does not verify
};

// The node's consistency proof from `old_size` to `new_size` (the hashes
// only: the roots it claims are never used).
using ConsistencyProofSource =
    std::function<absl::StatusOr<std::vector<merkle::Hash>>(uint64_t old_size, uint64_t new_size)>;

// Compares two checkpoints of one ledger, both already verified. Asks `prove`
// only when `current` is larger than `saved`; its error (the node did not
// answer) is returned as is. Never returns kFirst.
absl::StatusOr<CheckpointRelation> CompareCheckpoints(const note::Checkpoint& saved,
                                                      const note::Checkpoint& current,
                                                      const ConsistencyProofSource& prove);

// A checkpoint that was accepted, and what it was compared with.
struct TrackedCheckpoint {
  CheckpointRelation relation = CheckpointRelation::kFirst;
  uint64_t saved_size = 0;  // the saved checkpoint's size (0 for kFirst)
  std::string path;         // the file that now holds `current`
};

// The saved checkpoints in one directory.
class AuditState {
 public:
  // The directory `dir`, created (with its parents, mode 0700) if missing.
  // FailedPrecondition naming the directory, in words, if `dir` is empty, is
  // not a directory, cannot be created, or cannot be read and written.
  static absl::StatusOr<AuditState> Open(const std::string& dir);

  // Checks `current` (verified by the caller) against the saved checkpoint of
  // its origin and, if it is the same ledger grown or unchanged, saves it in
  // its place. On a ROLLBACK or FORK: writes both checkpoints as evidence
  // files, prints a report naming them on `err`, leaves the saved checkpoint
  // as it was and returns DataLoss whose message starts "ROLLBACK" or "FORK".
  // DataLoss too if the saved file does not verify with any of `verifiers`
  // (it was changed, or the org's keys were replaced); the node's error if
  // `prove` fails; the file's error if it cannot be read or written.
  absl::StatusOr<TrackedCheckpoint> Track(const std::vector<note::Verifier>& verifiers,
                                          const OpenedCheckpoint& current,
                                          const std::string& current_text,
                                          const ConsistencyProofSource& prove, absl::Time now,
                                          std::ostream& err) const;

  // For a kRollback or kFork `relation` between `saved` and `current`: writes
  // both note texts as evidence files in the directory (named for the origin
  // and `now`), prints what happened and where the files are on `err`, and
  // returns DataLoss whose message starts "ROLLBACK" or "FORK" and names them.
  absl::Status ReportConflict(CheckpointRelation relation, const note::Checkpoint& saved,
                              const std::string& saved_text, const note::Checkpoint& current,
                              const std::string& current_text, absl::Time now,
                              std::ostream& err) const;

  // The file that holds the saved checkpoint of `origin` (it may not exist).
  std::string PathFor(const std::string& origin) const;
  const std::string& dir() const { return dir_; }

 private:
  explicit AuditState(std::string dir) : dir_(std::move(dir)) {}

  std::string dir_;
};

}  // namespace corridor::ctl

#endif  // CORRIDOR_CLIENT_CTL_AUDIT_STATE_H_
