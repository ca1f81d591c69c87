// FromRocksStatus: every kind of RocksDB error becomes its absl code with a
// plain message; RocksDB's own text (file names, internal state) never
// reaches the message that goes on to users and peers.
#include "ledger/rocksdb/rocksdb_status.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "rocksdb/io_status.h"

namespace corridor::ledger {
namespace {

// A detail no message may carry: a path inside the node's data directory.
constexpr char kSecretPath[] = "/var/lib/corridor/union-sg/000123.log";

struct Case {
  std::string name;
  rocksdb::Status status;
  absl::StatusCode code;
  std::string plain;  // what the message says instead
};

std::vector<Case> Cases() {
  using rocksdb::Status;
  return {
      {"Corruption", Status::Corruption("block checksum mismatch", kSecretPath),
       absl::StatusCode::kDataLoss, "the stored data is damaged"},
      {"NoSpace", rocksdb::IOStatus::NoSpace("While appending to file", kSecretPath),
       absl::StatusCode::kResourceExhausted, "no space left on the node's disk"},
      {"Lock",
       Status::IOError(std::string("lock hold by current process: ") + kSecretPath + "/LOCK",
                       "No locks available"),
       absl::StatusCode::kFailedPrecondition, "is another corridord using this data_dir?"},
      {"IOError", Status::IOError("While fsync", kSecretPath), absl::StatusCode::kInternal,
       "could not read or write its files"},
      {"Busy", Status::Busy(kSecretPath), absl::StatusCode::kUnavailable, "busy; try again"},
      {"TryAgain", Status::TryAgain(kSecretPath), absl::StatusCode::kUnavailable,
       "busy; try again"},
      {"TimedOut", Status::TimedOut(kSecretPath), absl::StatusCode::kUnavailable,
       "busy; try again"},
      {"Incomplete", Status::Incomplete(kSecretPath), absl::StatusCode::kUnavailable,
       "shutting down"},
      {"ShutdownInProgress", Status::ShutdownInProgress(kSecretPath),
       absl::StatusCode::kUnavailable, "shutting down"},
      {"InvalidArgument", Status::InvalidArgument("Column family not found", kSecretPath),
       absl::StatusCode::kInternal, "internal database error"},
      {"NotSupported", Status::NotSupported(kSecretPath), absl::StatusCode::kInternal,
       "internal database error"},
      {"Aborted", Status::Aborted(kSecretPath), absl::StatusCode::kInternal,
       "internal database error"},
      {"NotFound", Status::NotFound(kSecretPath), absl::StatusCode::kNotFound, "not found"},
  };
}

TEST(FromRocksStatus, OkIsOk) { EXPECT_TRUE(FromRocksStatus(rocksdb::Status::OK(), "x").ok()); }

TEST(FromRocksStatus, EveryErrorHasItsCodeAndAPlainMessageWithoutRocksDbsText) {
  for (const Case& c : Cases()) {
    SCOPED_TRACE(c.name);
    const absl::Status st = FromRocksStatus(c.status, "reading a case");
    EXPECT_EQ(st.code(), c.code) << st;
    const std::string msg(st.message());
    EXPECT_EQ(msg.rfind("reading a case: ", 0), 0u) << msg;  // says what was being done
    EXPECT_NE(msg.find(c.plain), std::string::npos) << msg;
    // Nothing of RocksDB's own message: not the path, not its wording.
    EXPECT_EQ(msg.find(kSecretPath), std::string::npos) << msg;
    EXPECT_EQ(msg.find("000123"), std::string::npos) << msg;
    EXPECT_EQ(msg.find(c.status.ToString()), std::string::npos) << msg;
    for (const char* rocksdb_words : {"IO error", "Corruption:", "checksum", "Resource busy",
                                      "Operation timed out", "Invalid argument", "lock hold"}) {
      EXPECT_EQ(msg.find(rocksdb_words), std::string::npos) << msg;
    }
  }
}

}  // namespace
}  // namespace corridor::ledger
