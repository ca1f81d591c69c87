#include "client/ctl/audit_state.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "client/ctl/command.h"
#include "client/ctl/display.h"
#include "ledger/base/file.h"

namespace corridor::ctl {
namespace {

std::string Env(const char* name) {
  const char* v = std::getenv(name);
  return v == nullptr ? "" : v;
}

// Origins name files: every byte outside [A-Za-z0-9._-] as %XX, so two
// origins never share a file and none escapes the directory.
std::string EscapeOrigin(const std::string& origin) {
  std::string out;
  for (unsigned char ch : origin) {
    if (absl::ascii_isalnum(ch) || ch == '.' || ch == '_' || ch == '-') {
      out.push_back(static_cast<char>(ch));
    } else {
      absl::StrAppendFormat(&out, "%%%02X", ch);
    }
  }
  if (!out.empty() && out[0] == '.') out = "%2E" + out.substr(1);
  return out;
}

absl::Status MakeDirs(const std::string& dir) {
  for (size_t slash = dir.find('/', 1);; slash = dir.find('/', slash + 1)) {
    const std::string part = dir.substr(0, slash);
    if (mkdir(part.c_str(), 0700) != 0 && errno != EEXIST) {
      return absl::FailedPreconditionError(
          absl::StrCat("the auditor's state directory ", dir, " cannot be created (", part, ": ",
                       strerror(errno), "); give a directory you can write with --state DIR"));
    }
    if (slash == std::string::npos) return absl::OkStatus();
  }
}

std::string Describe(CheckpointRelation r) {
  return r == CheckpointRelation::kRollback ? "ROLLBACK" : "FORK";
}

// What a conflict means, for an auditor who is not a programmer.
std::string Explanation(CheckpointRelation r, const note::Checkpoint& saved,
                        const note::Checkpoint& current) {
  const std::string origin = Printable(current.origin);
  if (r == CheckpointRelation::kRollback) {
    return absl::StrCat("ROLLBACK: the ledger of ", origin, " now holds ", current.size,
                        " entries, but this auditor earlier verified a checkpoint of it holding ",
                        saved.size,
                        " entries, signed with the org's key. A ledger only ever grows: entries "
                        "were removed, or the node's data was restored from an older copy.");
  }
  if (current.size == saved.size) {
    return absl::StrCat("FORK: the ledger of ", origin, " holds ", current.size,
                        " entries, as in the checkpoint this auditor verified earlier, but its "
                        "contents differ: entries already recorded were changed, or the ledger "
                        "was rebuilt and signed again with the org's key.");
  }
  return absl::StrCat("FORK: the ledger of ", origin, " (now ", current.size,
                      " entries) does not contain the ledger this auditor verified earlier (",
                      saved.size,
                      " entries): the node cannot prove it only added entries since. Entries "
                      "already recorded were changed, or the ledger was rebuilt and signed again "
                      "with the org's key.");
}

}  // namespace

std::vector<OptionSpec> AuditStateOptions() {
  return {{"state", "DIR",
           "where the last verified checkpoint of each ledger is kept (env CORRIDOR_AUDIT_STATE; "
           "default $XDG_STATE_HOME/corridor/audit)"}};
}

std::string AuditStateDirFromOptions(const Args& args) {
  std::string dir = OptionOrEnv(args, "state", "CORRIDOR_AUDIT_STATE");
  if (!dir.empty()) return dir;
  if (dir = Env("XDG_STATE_HOME"); !dir.empty()) return dir + "/corridor/audit";
  if (dir = Env("HOME"); !dir.empty()) return dir + "/.local/state/corridor/audit";
  return "";
}

absl::StatusOr<CheckpointRelation> CompareCheckpoints(const note::Checkpoint& saved,
                                                      const note::Checkpoint& current,
                                                      const ConsistencyProofSource& prove) {
  if (current.size < saved.size) return CheckpointRelation::kRollback;
  if (current.size == saved.size) {
    return current.root == saved.root ? CheckpointRelation::kSame : CheckpointRelation::kFork;
  }
  // Every tree extends the empty one, whose root is fixed.
  if (saved.size == 0) {
    return saved.root == merkle::EmptyRoot() ? CheckpointRelation::kExtends
                                             : CheckpointRelation::kFork;
  }
  auto proof = prove(saved.size, current.size);
  if (!proof.ok()) return proof.status();
  // Against the roots both signed checkpoints commit to, never the node's word.
  return merkle::VerifyConsistency(saved.size, current.size, saved.root, current.root, *proof).ok()
             ? CheckpointRelation::kExtends
             : CheckpointRelation::kFork;
}

absl::StatusOr<AuditState> AuditState::Open(const std::string& dir) {
  if (dir.empty()) {
    return absl::FailedPreconditionError(
        "there is no place to keep the auditor's saved checkpoints: give --state DIR or set "
        "CORRIDOR_AUDIT_STATE (HOME is not set)");
  }
  struct stat st {};
  if (stat(dir.c_str(), &st) != 0) {
    if (auto made = MakeDirs(dir); !made.ok()) return made;
  } else if (!S_ISDIR(st.st_mode)) {
    return absl::FailedPreconditionError(
        absl::StrCat("the auditor's state directory ", dir, " is not a directory"));
  }
  if (access(dir.c_str(), R_OK | W_OK | X_OK) != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("the auditor's state directory ", dir, " cannot be read and written (",
                     strerror(errno), "); give a directory you can write with --state DIR"));
  }
  return AuditState(dir);
}

std::string AuditState::PathFor(const std::string& origin) const {
  return absl::StrCat(dir_, "/", EscapeOrigin(origin), ".checkpoint");
}

absl::StatusOr<TrackedCheckpoint> AuditState::Track(const std::vector<note::Verifier>& verifiers,
                                                    const OpenedCheckpoint& current,
                                                    const std::string& current_text,
                                                    const ConsistencyProofSource& prove,
                                                    absl::Time now, std::ostream& err) const {
  TrackedCheckpoint tracked;
  tracked.path = PathFor(current.checkpoint.origin);
  auto saved_text = ReadFileToString(tracked.path);
  if (!saved_text.ok() && !absl::IsNotFound(saved_text.status())) return saved_text.status();
  if (saved_text.ok()) {
    absl::StatusOr<note::Checkpoint> saved = absl::NotFoundError("no key");
    for (const auto& v : verifiers) {
      if (saved = note::OpenCheckpoint(*saved_text, v); saved.ok()) break;
    }
    if (!saved.ok() || saved->origin != current.checkpoint.origin) {
      return absl::DataLossError(absl::StrCat(
          "the saved checkpoint ", tracked.path,
          " does not verify with the roster's keys for this ledger: it was changed, or the org's "
          "keys were replaced. Keep the file as evidence and move it away to start afresh"));
    }
    auto relation = CompareCheckpoints(*saved, current.checkpoint, prove);
    if (!relation.ok()) return relation.status();
    tracked.relation = *relation;
    tracked.saved_size = saved->size;
    if (*relation == CheckpointRelation::kRollback || *relation == CheckpointRelation::kFork) {
      return ReportConflict(*relation, *saved, *saved_text, current.checkpoint, current_text, now,
                            err);
    }
    if (*relation == CheckpointRelation::kSame) return tracked;
  }
  if (auto st = WriteFileAtomically(tracked.path, current_text, 0600); !st.ok()) return st;
  return tracked;
}

absl::Status AuditState::ReportConflict(CheckpointRelation relation, const note::Checkpoint& saved,
                                        const std::string& saved_text,
                                        const note::Checkpoint& current,
                                        const std::string& current_text, absl::Time now,
                                        std::ostream& err) const {
  const std::string stem =
      absl::StrCat(dir_, "/", EscapeOrigin(current.origin), "-conflict-",
                   absl::FormatTime("%Y%m%dT%H%M%E6SZ", now, absl::UTCTimeZone()));
  const std::string old_path = stem + ".old.checkpoint", new_path = stem + ".new.checkpoint";
  absl::Status kept = WriteFileAtomically(old_path, saved_text, 0600);
  if (kept.ok()) kept = WriteFileAtomically(new_path, current_text, 0600);
  const std::string what = Explanation(relation, saved, current);
  err << "\n*** " << Describe(relation) << " DETECTED ***\n"
      << what << "\n"
      << "Both signed checkpoints are kept as evidence:\n"
      << "  before: " << old_path << " (" << saved.size << " entries)\n"
      << "  now:    " << new_path << " (" << current.size << " entries)\n"
      << "Keep both files and report this to the federation's stewards. The checkpoint saved\n"
      << "earlier was not replaced.\n\n";
  if (!kept.ok()) {
    err << "warning: the evidence files could not be written: " << Printable(kept.message())
        << "\n";
  }
  return absl::DataLossError(absl::StrCat(what, " Evidence: ", old_path, " and ", new_path, "."));
}

}  // namespace corridor::ctl
