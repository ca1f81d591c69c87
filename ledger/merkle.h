// RFC 9162 §2.1 Merkle tree math: leaf and node hashing, tree heads,
// inclusion and consistency proofs, and their verification from the proof
// alone. Storage-agnostic: proofs are built from a NodeSource that returns the
// hash of any complete subtree. Stateless; thread-safe.
#ifndef CORRIDOR_LEDGER_MERKLE_H_
#define CORRIDOR_LEDGER_MERKLE_H_

#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace corridor::merkle {

using Hash = std::array<uint8_t, 32>;

// SHA-256(0x00 ‖ entry).
Hash HashLeaf(absl::string_view entry);
// SHA-256(0x01 ‖ left ‖ right).
Hash HashChildren(const Hash& left, const Hash& right);
// SHA-256 of the empty string: the root of the empty tree.
Hash EmptyRoot();

std::string ToBytes(const Hash& h);
absl::StatusOr<Hash> FromBytes(absl::string_view bytes);

// The hash of the complete subtree at `level` (0 = leaves) and `index`, i.e.
// over leaves [index << level, (index + 1) << level). Must only be asked for
// subtrees that are complete in the tree being proven.
using NodeSource = std::function<absl::StatusOr<Hash>(int level, uint64_t index)>;

// MTH over leaves [begin, end) of a tree, built from complete subtrees.
absl::StatusOr<Hash> RangeHash(uint64_t begin, uint64_t end, const NodeSource& nodes);
// The root of the tree of `size` leaves.
absl::StatusOr<Hash> RootAt(uint64_t size, const NodeSource& nodes);

// PATH(index, D[0:size]) per RFC 9162 §2.1.3.1. InvalidArgument if index >= size.
absl::StatusOr<std::vector<Hash>> InclusionProof(uint64_t index, uint64_t size,
                                                 const NodeSource& nodes);
// PROOF(old_size, D[0:new_size]) per RFC 9162 §2.1.4.1.
// InvalidArgument unless 0 < old_size <= new_size.
absl::StatusOr<std::vector<Hash>> ConsistencyProof(uint64_t old_size, uint64_t new_size,
                                                   const NodeSource& nodes);

// RFC 9162 §2.1.3.2. OK iff `proof` proves `leaf_hash` at `index` in the tree
// of `size` with root `root`; otherwise InvalidArgument / FailedPrecondition
// saying what does not hold.
absl::Status VerifyInclusion(uint64_t index, uint64_t size, const Hash& leaf_hash,
                             const std::vector<Hash>& proof, const Hash& root);
// RFC 9162 §2.1.4.2.
absl::Status VerifyConsistency(uint64_t old_size, uint64_t new_size, const Hash& old_root,
                               const Hash& new_root, const std::vector<Hash>& proof);

// Streaming root computation: push leaf hashes in order, ask for the root of
// what was pushed. O(log n) memory. Not thread-safe.
class CompactRange {
 public:
  void Push(const Hash& leaf_hash);
  Hash Root() const;
  uint64_t size() const { return size_; }
  // Resets to a tree of `size` leaves whose complete subtrees (one per set bit
  // of size, largest first) have hashes `edge`.
  void Restore(uint64_t size, std::vector<Hash> edge) {
    size_ = size;
    stack_ = std::move(edge);
  }
  // Called with (level, index, hash) for every complete subtree as it is formed.
  void set_on_node(std::function<void(int, uint64_t, const Hash&)> f) { on_node_ = std::move(f); }

 private:
  uint64_t size_ = 0;
  std::vector<Hash> stack_;  // complete subtrees, largest first
  std::function<void(int, uint64_t, const Hash&)> on_node_;
};

}  // namespace corridor::merkle

#endif  // CORRIDOR_LEDGER_MERKLE_H_
