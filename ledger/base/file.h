// Whole-file reads and crash-safe whole-file writes.
//
// WriteFileAtomically is the one way the project replaces a file (keys,
// certificates, the roster, configuration, exports): after a crash at any
// point the path holds either the old bytes or the new ones, never a mix,
// and once it returns OK the new bytes survive a power cut (the file is
// fsynced before the rename, and the directory after it: without the
// directory's fsync the rename itself may be lost).
//
// Thread-safe: concurrent writers to one path each write their own
// temporary file; the last rename wins.
#ifndef CORRIDOR_LEDGER_BASE_FILE_H_
#define CORRIDOR_LEDGER_BASE_FILE_H_

#include <functional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace corridor {

// Reads a whole file. NotFound if it does not exist, PermissionDenied /
// Internal otherwise; the message names the path.
absl::StatusOr<std::string> ReadFileToString(const std::string& path);

// Replaces `path` with `data` (file mode `mode`, before the umask): writes a
// temporary file beside it, fsyncs it, renames it over `path`, fsyncs the
// directory. Errors (the message names the path): NotFound if the directory
// does not exist; PermissionDenied; Internal for any other failed step. On an
// error before the rename the temporary file is removed and `path` is
// untouched; if only the directory's fsync fails, `path` has the new bytes
// but they may not survive a power cut (Internal says so).
absl::Status WriteFileAtomically(const std::string& path, absl::string_view data, int mode = 0644);

// Test hook: called with each path WriteFileAtomically fsyncs (the temporary
// file, then the directory), after the fsync succeeded. Empty (the default)
// to stop. Not for concurrent use with writers.
void SetSyncObserverForTesting(std::function<void(const std::string& synced)> observer);

}  // namespace corridor

#endif  // CORRIDOR_LEDGER_BASE_FILE_H_
