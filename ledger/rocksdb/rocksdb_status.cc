#include "ledger/rocksdb/rocksdb_status.h"

#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "ledger/base/log.h"

namespace corridor::ledger {

absl::Status FromRocksStatus(const rocksdb::Status& s, absl::string_view what) {
  if (s.ok()) return absl::OkStatus();
  if (s.IsNotFound()) return absl::NotFoundError(absl::StrCat(what, ": not found"));
  const std::string detail = s.ToString();
  log::Warn("store.error",
            {{"what", what}, {"code", static_cast<int>(s.code())}, {"detail", detail}});
  if (s.IsCorruption()) {
    return absl::DataLossError(
        absl::StrCat(what, ": the stored data is damaged (the node's log has the details)"));
  }
  if (s.IsNoSpace()) {
    return absl::ResourceExhaustedError(absl::StrCat(what, ": no space left on the node's disk"));
  }
  if (s.IsIOError() && absl::StrContains(detail, "lock")) {
    return absl::FailedPreconditionError(
        absl::StrCat(what,
                     ": the database is locked by another process (is another corridord using this "
                     "data_dir?)"));
  }
  if (s.IsBusy() || s.IsTryAgain() || s.IsTimedOut()) {
    return absl::UnavailableError(absl::StrCat(what, ": the database is busy; try again"));
  }
  if (s.IsIncomplete() || s.IsShutdownInProgress()) {
    return absl::UnavailableError(absl::StrCat(what, ": the database is shutting down"));
  }
  if (s.IsIOError()) {
    return absl::InternalError(absl::StrCat(
        what, ": the database could not read or write its files (the node's log has the details)"));
  }
  return absl::InternalError(
      absl::StrCat(what, ": internal database error (the node's log has the details)"));
}

}  // namespace corridor::ledger
