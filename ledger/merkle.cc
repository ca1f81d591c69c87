#include "ledger/merkle.h"

#include <openssl/evp.h>

#include <cstdlib>
#include <cstring>

#include "absl/numeric/bits.h"
#include "absl/strings/str_cat.h"
#include "ledger/crypto/crypto.h"
#include "ledger/crypto/openssl_ptr.h"

namespace corridor::merkle {
namespace {

// Largest power of two strictly less than n (n >= 2).
uint64_t SplitPoint(uint64_t n) { return absl::bit_floor(n - 1); }

// RFC 9162 PATH(m, D[lo:hi]) appended to `out`.
absl::Status Path(uint64_t m, uint64_t lo, uint64_t hi, const NodeSource& nodes,
                  std::vector<Hash>* out) {
  const uint64_t n = hi - lo;
  if (n == 1) return absl::OkStatus();
  const uint64_t k = SplitPoint(n);
  if (m < k) {
    if (auto st = Path(m, lo, lo + k, nodes, out); !st.ok()) return st;
    auto h = RangeHash(lo + k, hi, nodes);
    if (!h.ok()) return h.status();
    out->push_back(*h);
  } else {
    if (auto st = Path(m - k, lo + k, hi, nodes, out); !st.ok()) return st;
    auto h = RangeHash(lo, lo + k, nodes);
    if (!h.ok()) return h.status();
    out->push_back(*h);
  }
  return absl::OkStatus();
}

// RFC 9162 SUBPROOF(m, D[lo:hi], b) appended to `out`.
absl::Status Subproof(uint64_t m, uint64_t lo, uint64_t hi, bool b, const NodeSource& nodes,
                      std::vector<Hash>* out) {
  const uint64_t n = hi - lo;
  if (m == n) {
    if (b) return absl::OkStatus();
    auto h = RangeHash(lo, hi, nodes);
    if (!h.ok()) return h.status();
    out->push_back(*h);
    return absl::OkStatus();
  }
  const uint64_t k = SplitPoint(n);
  if (m <= k) {
    if (auto st = Subproof(m, lo, lo + k, b, nodes, out); !st.ok()) return st;
    auto h = RangeHash(lo + k, hi, nodes);
    if (!h.ok()) return h.status();
    out->push_back(*h);
  } else {
    if (auto st = Subproof(m - k, lo + k, hi, false, nodes, out); !st.ok()) return st;
    auto h = RangeHash(lo, lo + k, nodes);
    if (!h.ok()) return h.status();
    out->push_back(*h);
  }
  return absl::OkStatus();
}

}  // namespace

// SHA-256 of a ‖ b with a per-thread reused context and a digest fetched
// once: the tree hashes millions of short inputs, where OpenSSL's per-call
// context allocation and implicit fetch would cost as much as the hashing.
Hash Sha256Of(const void* a, size_t a_len, const void* b, size_t b_len) {
  static EVP_MD* const md = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  thread_local const EvpMdCtxPtr ctx(EVP_MD_CTX_new());
  Hash out;
  unsigned int len = 0;
  if (md == nullptr || ctx == nullptr || EVP_DigestInit_ex2(ctx.get(), md, nullptr) != 1 ||
      EVP_DigestUpdate(ctx.get(), a, a_len) != 1 || EVP_DigestUpdate(ctx.get(), b, b_len) != 1 ||
      EVP_DigestFinal_ex(ctx.get(), out.data(), &len) != 1) {
    abort();  // OpenSSL without SHA-256 is not a state to continue in
  }
  return out;
}

Hash HashLeaf(absl::string_view entry) {
  static const uint8_t kLeafPrefix = 0x00;
  return Sha256Of(&kLeafPrefix, 1, entry.data(), entry.size());
}

Hash HashChildren(const Hash& left, const Hash& right) {
  uint8_t buf[65];
  buf[0] = 0x01;
  memcpy(buf + 1, left.data(), 32);
  memcpy(buf + 33, right.data(), 32);
  return Sha256Of(buf, sizeof(buf), nullptr, 0);
}

Hash EmptyRoot() { return Sha256(""); }

std::string ToBytes(const Hash& h) {
  return std::string(reinterpret_cast<const char*>(h.data()), 32);
}

absl::StatusOr<Hash> FromBytes(absl::string_view bytes) {
  if (bytes.size() != 32) {
    return absl::InvalidArgumentError(absl::StrCat("a hash is 32 bytes, got ", bytes.size()));
  }
  Hash h;
  memcpy(h.data(), bytes.data(), 32);
  return h;
}

absl::StatusOr<Hash> RangeHash(uint64_t begin, uint64_t end, const NodeSource& nodes) {
  const uint64_t n = end - begin;
  if (n == 0) return EmptyRoot();
  // An aligned power-of-two range is one stored subtree.
  if (absl::has_single_bit(n) && begin % n == 0) {
    return nodes(absl::countr_zero(n), begin / n);
  }
  const uint64_t k = SplitPoint(n);
  auto left = RangeHash(begin, begin + k, nodes);
  if (!left.ok()) return left.status();
  auto right = RangeHash(begin + k, end, nodes);
  if (!right.ok()) return right.status();
  return HashChildren(*left, *right);
}

absl::StatusOr<Hash> RootAt(uint64_t size, const NodeSource& nodes) {
  return RangeHash(0, size, nodes);
}

absl::StatusOr<std::vector<Hash>> InclusionProof(uint64_t index, uint64_t size,
                                                 const NodeSource& nodes) {
  if (index >= size) {
    return absl::InvalidArgumentError(
        absl::StrCat("entry ", index, " is not in a tree of size ", size));
  }
  std::vector<Hash> proof;
  if (auto st = Path(index, 0, size, nodes, &proof); !st.ok()) return st;
  return proof;
}

absl::StatusOr<std::vector<Hash>> ConsistencyProof(uint64_t old_size, uint64_t new_size,
                                                   const NodeSource& nodes) {
  if (old_size == 0 || old_size > new_size) {
    return absl::InvalidArgumentError(absl::StrCat(
        "a consistency proof needs 0 < old size <= new size, got ", old_size, " and ", new_size));
  }
  std::vector<Hash> proof;
  if (old_size == new_size) return proof;
  if (auto st = Subproof(old_size, 0, new_size, true, nodes, &proof); !st.ok()) return st;
  return proof;
}

absl::Status VerifyInclusion(uint64_t index, uint64_t size, const Hash& leaf_hash,
                             const std::vector<Hash>& proof, const Hash& root) {
  if (index >= size) {
    return absl::InvalidArgumentError(absl::StrCat("index ", index, " is not below size ", size));
  }
  uint64_t fn = index;
  uint64_t sn = size - 1;
  Hash r = leaf_hash;
  for (const Hash& p : proof) {
    if (sn == 0)
      return absl::InvalidArgumentError("inclusion proof is longer than the tree is deep");
    if ((fn & 1) == 1 || fn == sn) {
      r = HashChildren(p, r);
      if ((fn & 1) == 0) {
        while ((fn & 1) == 0 && fn != 0) {
          fn >>= 1;
          sn >>= 1;
        }
      }
    } else {
      r = HashChildren(r, p);
    }
    fn >>= 1;
    sn >>= 1;
  }
  if (sn != 0) return absl::InvalidArgumentError("inclusion proof is too short");
  if (r != root) {
    return absl::FailedPreconditionError("inclusion proof does not lead to the expected root");
  }
  return absl::OkStatus();
}

absl::Status VerifyConsistency(uint64_t old_size, uint64_t new_size, const Hash& old_root,
                               const Hash& new_root, const std::vector<Hash>& proof) {
  if (old_size > new_size) {
    return absl::InvalidArgumentError("old size is larger than new size");
  }
  if (old_size == 0) return absl::InvalidArgumentError("no consistency proof from the empty tree");
  if (old_size == new_size) {
    if (!proof.empty())
      return absl::InvalidArgumentError("proof between equal sizes must be empty");
    if (old_root != new_root) return absl::FailedPreconditionError("roots differ at the same size");
    return absl::OkStatus();
  }
  if (proof.empty()) return absl::InvalidArgumentError("consistency proof is empty");
  std::vector<Hash> path = proof;
  // If old_size is a power of two, the old root is the first node.
  if (absl::has_single_bit(old_size)) path.insert(path.begin(), old_root);
  uint64_t fn = old_size - 1;
  uint64_t sn = new_size - 1;
  while ((fn & 1) == 1) {
    fn >>= 1;
    sn >>= 1;
  }
  Hash fr = path[0];
  Hash sr = path[0];
  for (size_t i = 1; i < path.size(); ++i) {
    const Hash& c = path[i];
    if (sn == 0) return absl::InvalidArgumentError("consistency proof is too long");
    if ((fn & 1) == 1 || fn == sn) {
      fr = HashChildren(c, fr);
      sr = HashChildren(c, sr);
      if ((fn & 1) == 0) {
        while ((fn & 1) == 0 && fn != 0) {
          fn >>= 1;
          sn >>= 1;
        }
      }
    } else {
      sr = HashChildren(sr, c);
    }
    fn >>= 1;
    sn >>= 1;
  }
  if (sn != 0) return absl::InvalidArgumentError("consistency proof is too short");
  if (fr != old_root)
    return absl::FailedPreconditionError("consistency proof does not match the old root");
  if (sr != new_root)
    return absl::FailedPreconditionError("consistency proof does not match the new root");
  return absl::OkStatus();
}

void CompactRange::Push(const Hash& leaf_hash) {
  Hash h = leaf_hash;
  uint64_t index = size_;
  int level = 0;
  if (on_node_) on_node_(0, index, h);
  // Merge while the new subtree completes a pair.
  uint64_t s = size_;
  while (s & 1) {
    h = HashChildren(stack_.back(), h);
    stack_.pop_back();
    s >>= 1;
    ++level;
    index >>= 1;
    if (on_node_) on_node_(level, index, h);
  }
  stack_.push_back(h);
  ++size_;
}

Hash CompactRange::Root() const {
  if (stack_.empty()) return EmptyRoot();
  Hash r = stack_.back();
  for (size_t i = stack_.size() - 1; i-- > 0;) r = HashChildren(stack_[i], r);
  return r;
}

}  // namespace corridor::merkle
