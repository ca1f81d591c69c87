// The one place a RocksDB status becomes an absl::Status, for the ledger and
// for every server component that reads or writes the node's database.
//
// What RocksDB says (file names, internal state, "IO error: While appending
// to file: /var/lib/.../000123.log: No space left on device") is for the
// operator's log, not for the caseworker or the peer node an error may reach:
// the returned message is plain ("<what>: no space left on the node's disk"), and
// RocksDB's own text is logged once, as "store.error" with `what`, the code
// and the detail (NotFound, an expected answer, is not logged).
//
// Codes (abseil's guide): NotFound; Corruption -> DataLoss; a lock held by
// another process -> FailedPrecondition; a full disk -> ResourceExhausted;
// Busy, TryAgain, TimedOut, Incomplete, ShutdownInProgress -> Unavailable;
// anything else (I/O errors; invalid arguments, which are the program's own)
// -> Internal.
// Thread-safe.
#ifndef CORRIDOR_LEDGER_ROCKSDB_ROCKSDB_STATUS_H_
#define CORRIDOR_LEDGER_ROCKSDB_ROCKSDB_STATUS_H_

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "rocksdb/status.h"

namespace corridor::ledger {

// `what` says what was being done ("reading a case"); it starts the message.
absl::Status FromRocksStatus(const rocksdb::Status& s, absl::string_view what);

}  // namespace corridor::ledger

#endif  // CORRIDOR_LEDGER_ROCKSDB_ROCKSDB_STATUS_H_
