// MemoryLedger: a Ledger held in memory, for tests of code that uses a
// ledger (not for production: nothing is durable). Appends commit
// synchronously on the calling thread and call `done` before AppendAsync
// returns. It has no RocksDB, so an append with a `change` batch fails with
// Unimplemented. The before_commit hook works as in RocksDbLedger: a failure
// puts the ledger in the refusing state for good.
//
// Thread-safe.
#ifndef CORRIDOR_LEDGER_TESTING_MEMORY_LEDGER_H_
#define CORRIDOR_LEDGER_TESTING_MEMORY_LEDGER_H_

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "ledger/ledger.h"

namespace corridor::ledger {

class MemoryLedger final : public Ledger {
 public:
  // InvalidArgument for bad options.
  static absl::StatusOr<std::unique_ptr<MemoryLedger>> Create(LedgerOptions options);

  void AppendAsync(std::vector<AppendEntry> entries, std::unique_ptr<rocksdb::WriteBatch> change,
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
  absl::Status VerifyAll() const override;

 private:
  explicit MemoryLedger(LedgerOptions options) : options_(std::move(options)) {}

  const LedgerOptions options_;
  mutable absl::Mutex mu_;
  std::vector<std::string> entries_ ABSL_GUARDED_BY(mu_);
  std::vector<absl::Time> times_ ABSL_GUARDED_BY(mu_);
  // nodes_[level][index]: every complete subtree hash.
  std::vector<std::vector<merkle::Hash>> nodes_ ABSL_GUARDED_BY(mu_);
  merkle::CompactRange edge_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::vector<uint64_t>> index_ ABSL_GUARDED_BY(mu_);
  Head head_ ABSL_GUARDED_BY(mu_);
  absl::Status broken_ ABSL_GUARDED_BY(mu_);
};

}  // namespace corridor::ledger

#endif  // CORRIDOR_LEDGER_TESTING_MEMORY_LEDGER_H_
