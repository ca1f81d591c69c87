// Mutation: a caller's own change to the store a ledger lives in (a case
// written, an outbox item moved), to be committed atomically with the ledger
// entries that record it: both become durable, or neither (Ledger::AppendAsync).
//
// A mutation is storage-neutral: an ordered list of puts and deletes on named
// key spaces. Each Ledger implementation applies it in its own storage, once
// per backend (as Trillian implements its storage transactions): RocksDbLedger
// maps every key space to the column family of that name and copies the
// operations into its group's one synced WriteBatch
// (ledger/rocksdb/rocksdb_key_spaces.h); MemoryLedger applies them to maps in
// memory under its lock (ledger/testing/memory_key_spaces.h). A key space the
// ledger was not given, or one of the ledger's own, fails the append with
// InvalidArgument and applies nothing.
//
// Operations apply in the order they were added (a later put to the same key
// wins). Keys and values are bytes. A value type: cheap to move, not
// thread-safe (build it on one thread, then hand it to the ledger).
#ifndef CORRIDOR_LEDGER_MUTATION_H_
#define CORRIDOR_LEDGER_MUTATION_H_

#include <cstddef>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace corridor::ledger {

class Mutation {
 public:
  struct Op {
    enum class Kind { kPut, kDelete, kDeleteRange };
    Kind kind;
    std::string space;
    // kPut, kDelete: the key. kDeleteRange: the first key deleted.
    std::string key;
    // kPut: the value. kDeleteRange: the end of the range (not deleted).
    std::string value;
  };

  Mutation() = default;
  Mutation(Mutation&&) = default;
  Mutation& operator=(Mutation&&) = default;
  // Copying a change (possibly megabytes of sealed evidence) is never meant.
  Mutation(const Mutation&) = delete;
  Mutation& operator=(const Mutation&) = delete;

  // Sets `key` in `space` to `value`.
  void Put(absl::string_view space, absl::string_view key, absl::string_view value);
  // Removes `key` from `space` (nothing if absent).
  void Delete(absl::string_view space, absl::string_view key);
  // Removes every key k of `space` with begin <= k < end (bytewise order).
  void DeleteRange(absl::string_view space, absl::string_view begin, absl::string_view end);
  // Appends `other`'s operations after this one's.
  void Append(Mutation other);

  const std::vector<Op>& ops() const { return ops_; }
  bool empty() const { return ops_.empty(); }
  // Number of operations.
  size_t size() const { return ops_.size(); }
  // Bytes of keys and values held (for limits and metrics).
  size_t ByteSize() const { return bytes_; }

 private:
  std::vector<Op> ops_;
  size_t bytes_ = 0;
};

}  // namespace corridor::ledger

#endif  // CORRIDOR_LEDGER_MUTATION_H_
