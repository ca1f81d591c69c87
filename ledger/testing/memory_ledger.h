// MemoryLedger: a Ledger held in memory, for tests of code that uses a
// ledger (not for production: nothing is durable). Appends commit
// synchronously on the calling thread and call `done` before AppendAsync
// returns. A request's `change` is applied to the ledger's in-memory key
// spaces (memory_key_spaces.h) under the same lock as its entries: both or
// neither. The before_commit hook works as in RocksDbLedger: a failure puts
// the ledger in the refusing state for good (and applies nothing).
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
#include "ledger/testing/memory_key_spaces.h"

namespace corridor::ledger {

class MemoryLedger final : public Ledger {
 public:
  // A ledger whose changes may write the key spaces `key_spaces` (empty at
  // first). InvalidArgument for bad options.
  static absl::StatusOr<std::unique_ptr<MemoryLedger>> Create(
      LedgerOptions options, const std::vector<std::string>& key_spaces = {});

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
  absl::Status VerifyAll() const override;
  absl::Status VerifyCommitted() const override { return VerifyAll(); }

  // What committed changes wrote.
  const MemoryKeySpaces& key_spaces() const { return spaces_; }

 private:
  MemoryLedger(LedgerOptions options, const std::vector<std::string>& key_spaces)
      : options_(std::move(options)), spaces_(key_spaces) {}

  const LedgerOptions options_;
  MemoryKeySpaces spaces_;  // applied to under mu_
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
