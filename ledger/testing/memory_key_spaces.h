// The in-memory implementation of ledger::Mutation (ledger/mutation.h): each
// key space is an ordered map of key -> value. MemoryLedger applies a
// request's mutation with Apply under its own lock, together with the
// request's entries, so a test sees both or neither; tests read what was
// written with Get and Contents.
//
// Thread-safe.
#ifndef CORRIDOR_LEDGER_TESTING_MEMORY_KEY_SPACES_H_
#define CORRIDOR_LEDGER_TESTING_MEMORY_KEY_SPACES_H_

#include <map>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "ledger/mutation.h"

namespace corridor::ledger {

class MemoryKeySpaces {
 public:
  // Key spaces `names`, empty.
  explicit MemoryKeySpaces(const std::vector<std::string>& names);

  // OK if every key space `m` writes exists; otherwise InvalidArgument
  // naming the first that does not.
  absl::Status Check(const Mutation& m) const;
  // Applies `m`'s operations in order, all of them or (on the error of
  // Check) none.
  absl::Status Apply(const Mutation& m);

  // The value of `key`: NotFound if absent; InvalidArgument for an unknown space.
  absl::StatusOr<std::string> Get(absl::string_view space, absl::string_view key) const;
  // Everything in `space`, in key order (empty for an unknown space).
  std::map<std::string, std::string> Contents(absl::string_view space) const;

 private:
  using Space = std::map<std::string, std::string, std::less<>>;
  mutable absl::Mutex mu_;
  std::map<std::string, Space, std::less<>> spaces_ ABSL_GUARDED_BY(mu_);
};

}  // namespace corridor::ledger

#endif  // CORRIDOR_LEDGER_TESTING_MEMORY_KEY_SPACES_H_
