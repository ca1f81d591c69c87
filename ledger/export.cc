#include "ledger/export.h"

#include "absl/numeric/bits.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "ledger/crypto/crypto.h"

namespace corridor::ledger {
namespace {

// Hashes of the maximal subtrees of [lo, hi) that lie outside [a, b), in the
// order RFC 9162's recursive split visits them (left before right).
absl::Status ConnectingHashes(uint64_t lo, uint64_t hi, uint64_t a, uint64_t b,
                              const merkle::NodeSource& nodes, std::vector<merkle::Hash>* out) {
  if (hi <= a || lo >= b) {
    auto h = merkle::RangeHash(lo, hi, nodes);
    if (!h.ok()) return h.status();
    out->push_back(*h);
    return absl::OkStatus();
  }
  if (hi - lo == 1) return absl::OkStatus();
  const uint64_t k = absl::bit_floor(hi - lo - 1);
  if (auto st = ConnectingHashes(lo, lo + k, a, b, nodes, out); !st.ok()) return st;
  return ConnectingHashes(lo + k, hi, a, b, nodes, out);
}

// The verifier's side: MTH(D[lo:hi]) from the leaf hashes of [a, b) and the
// connecting hashes, consumed in the same order.
absl::StatusOr<merkle::Hash> RootFromRange(uint64_t lo, uint64_t hi, uint64_t a, uint64_t b,
                                           const std::vector<merkle::Hash>& leaves,
                                           const std::vector<merkle::Hash>& hashes, size_t* next) {
  if (hi <= a || lo >= b) {
    if (*next >= hashes.size()) {
      return absl::InvalidArgumentError("export: too few connecting hashes");
    }
    return hashes[(*next)++];
  }
  if (hi - lo == 1) return leaves[lo - a];
  const uint64_t k = absl::bit_floor(hi - lo - 1);
  auto left = RootFromRange(lo, lo + k, a, b, leaves, hashes, next);
  if (!left.ok()) return left;
  auto right = RootFromRange(lo + k, hi, a, b, leaves, hashes, next);
  if (!right.ok()) return right;
  return merkle::HashChildren(*left, *right);
}

absl::Status Malformed(size_t line, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("export line ", line, ": ", what));
}

// "entry <base64 bytes>[ <base64 stored leaf hash>]" (line `line_no`, entry
// `index`): appends the bytes to `entries` and returns their leaf hash. An
// entry whose bytes do not hash to the leaf hash listed with it is named.
absl::StatusOr<merkle::Hash> ParseEntryLine(absl::string_view line, size_t line_no, uint64_t index,
                                            std::vector<std::string>* entries) {
  if (!absl::ConsumePrefix(&line, "entry ")) return Malformed(line_no, "expected an entry line");
  std::vector<absl::string_view> fields = absl::StrSplit(line, ' ');
  if (fields.size() > 2) return Malformed(line_no, "an entry line has at most two fields");
  auto e = Base64Decode(fields[0]);
  if (!e.ok()) return Malformed(line_no, "entry is not base64");
  const merkle::Hash leaf = merkle::HashLeaf(*e);
  if (fields.size() == 2) {
    auto listed = Base64Decode(fields[1]);
    if (!listed.ok() || listed->size() != 32) {
      return Malformed(line_no, "the entry's leaf hash is not base64 of 32 bytes");
    }
    if (*listed != merkle::ToBytes(leaf)) {
      return absl::DataLossError(absl::StrCat(
          "entry ", index, " (export line ", line_no,
          ") does not match the leaf hash listed with it: its bytes were changed after the "
          "ledger hashed them (at the node, or in this file)"));
    }
  }
  entries->push_back(*std::move(e));
  return leaf;
}

}  // namespace

absl::StatusOr<ExportFrame> BuildExportFrame(uint64_t first, uint64_t count, uint64_t size,
                                             absl::string_view checkpoint_note,
                                             const merkle::NodeSource& nodes) {
  const uint64_t end = first + count;
  if (count == 0 || end > size || end < first) {
    return absl::InvalidArgumentError("export: the range must be non-empty and within the tree");
  }
  std::vector<merkle::Hash> hashes;
  if (auto st = ConnectingHashes(0, size, first, end, nodes, &hashes); !st.ok()) return st;
  ExportFrame out;
  out.head = absl::StrCat(kExportMagic, "\nfirst ", first, "\ncount ", count, "\nhashes ",
                          hashes.size(), "\n");
  for (const merkle::Hash& h : hashes) {
    absl::StrAppend(&out.tail, "hash ", Base64Encode(merkle::ToBytes(h)), "\n");
  }
  absl::StrAppend(&out.tail, "checkpoint\n", checkpoint_note);
  return out;
}

std::string ExportEntryLine(absl::string_view entry, const merkle::Hash& stored_leaf) {
  return absl::StrCat("entry ", Base64Encode(entry), " ",
                      Base64Encode(merkle::ToBytes(stored_leaf)), "\n");
}

absl::StatusOr<VerifiedExport> VerifyExport(absl::string_view text,
                                            const note::Verifier& verifier) {
  // Verify before parsing the rest: the signed checkpoint comes first.
  const std::string marker = "\ncheckpoint\n";
  const size_t cut = text.find(marker);
  if (!absl::StartsWith(text, absl::StrCat(kExportMagic, "\n")) || cut == absl::string_view::npos) {
    return absl::InvalidArgumentError(
        "not a Corridor ledger export (expected first line \"corridor-ledger-export v1\")");
  }
  VerifiedExport out;
  out.checkpoint_note = std::string(text.substr(cut + marker.size()));
  auto cp = note::OpenCheckpoint(out.checkpoint_note, verifier);
  if (!cp.ok()) {
    if (absl::IsInvalidArgument(cp.status())) {
      return absl::InvalidArgumentError(
          absl::StrCat("export checkpoint is malformed: ", cp.status().message()));
    }
    return absl::PermissionDeniedError(absl::StrCat(
        "export checkpoint is not signed by ", verifier.ToString(), ": ", cp.status().message()));
  }
  out.checkpoint = *cp;

  std::vector<absl::string_view> lines = absl::StrSplit(text.substr(0, cut), '\n');
  // lines[0] is the magic; then first, count, hashes, entries, hashes.
  if (lines.size() < 4) return Malformed(lines.size(), "header is truncated");
  uint64_t count = 0, hash_count = 0;
  absl::string_view v = lines[1];
  if (!absl::ConsumePrefix(&v, "first ") || !absl::SimpleAtoi(v, &out.first_index)) {
    return Malformed(2, "expected \"first <index>\"");
  }
  v = lines[2];
  if (!absl::ConsumePrefix(&v, "count ") || !absl::SimpleAtoi(v, &count) || count == 0) {
    return Malformed(3, "expected \"count <n>\" with n > 0");
  }
  v = lines[3];
  if (!absl::ConsumePrefix(&v, "hashes ") || !absl::SimpleAtoi(v, &hash_count)) {
    return Malformed(4, "expected \"hashes <n>\"");
  }
  if (lines.size() != 4 + count + hash_count) {
    return absl::InvalidArgumentError(absl::StrCat("export has ", lines.size() - 4,
                                                   " entry and hash lines, its header says ",
                                                   count + hash_count));
  }
  const uint64_t a = out.first_index;
  const uint64_t b = a + count;
  if (b < a || b > cp->size) {
    return absl::InvalidArgumentError(absl::StrCat(
        "export range [", a, ", ", b, ") is not within the checkpoint's ", cp->size, " entries"));
  }
  std::vector<merkle::Hash> leaves;
  leaves.reserve(count);
  for (uint64_t i = 0; i < count; ++i) {
    auto leaf = ParseEntryLine(lines[4 + i], 5 + i, a + i, &out.entries);
    if (!leaf.ok()) return leaf.status();
    leaves.push_back(*leaf);
  }
  std::vector<merkle::Hash> hashes;
  for (uint64_t i = 0; i < hash_count; ++i) {
    absl::string_view line = lines[4 + count + i];
    auto raw =
        absl::ConsumePrefix(&line, "hash ") ? Base64Decode(line) : absl::StatusOr<std::string>("");
    if (!raw.ok() || raw->size() != 32) {
      return Malformed(5 + count + i, "expected \"hash <base64 of 32 bytes>\"");
    }
    hashes.push_back(*merkle::FromBytes(*raw));
  }
  size_t next = 0;
  auto root = RootFromRange(0, cp->size, a, b, leaves, hashes, &next);
  if (!root.ok()) return root.status();
  if (next != hashes.size())
    return absl::InvalidArgumentError("export: too many connecting hashes");
  if (*root != cp->root) {
    return absl::DataLossError(absl::StrCat("the exported entries [", a, ", ", b,
                                            ") and connecting hashes do not lead to the root "
                                            "signed in the checkpoint (size ",
                                            cp->size,
                                            "): an entry or hash was changed, dropped "
                                            "or reordered"));
  }
  return out;
}

absl::StatusOr<VerifiedExport> VerifyExport(absl::string_view export_bytes,
                                            absl::string_view verifier_key) {
  auto verifier = note::ParseVerifier(verifier_key);
  if (!verifier.ok()) return verifier.status();
  return VerifyExport(export_bytes, *verifier);
}

}  // namespace corridor::ledger
