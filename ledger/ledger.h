// What a Corridor ledger promises: an append-only RFC 9162 Merkle log of
// opaque entries, with signed checkpoints (C2SP tlog-checkpoint), inclusion
// and consistency proofs, secondary-index lookups and a self-contained export.
//
// Implementations: RocksDbLedger (ledger/rocksdb/rocksdb_ledger.h, production) and
// MemoryLedger (ledger/testing/memory_ledger.h, test double). Both pass the same
// conformance suite (ledger/testing/ledger_conformance_test.cc).
//
// Every implementation is thread-safe: appends from any thread; reads see
// committed state only. The bytes stored are exactly the bytes hashed.
#ifndef CORRIDOR_LEDGER_LEDGER_H_
#define CORRIDOR_LEDGER_LEDGER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "ledger/crypto/crypto.h"
#include "ledger/export.h"
#include "ledger/merkle.h"
#include "ledger/mutation.h"
#include "ledger/note.h"

namespace corridor::ledger {

// A key that signs checkpoints, under its signed-note key name.
struct CheckpointSigner {
  std::string key_name;
  const Signer* key = nullptr;  // must outlive the ledger
};

// Settings every implementation takes. Validated once by Open/Create.
struct LedgerOptions {
  // Checkpoint origin line, e.g. "corridor.example/union-sg". Required; must
  // be non-empty and contain no newline.
  std::string origin;
  // Signed-note key name of the checkpoint signature. Default: `origin`.
  std::string key_name;
  // Signs checkpoints: a key in memory or in a PKCS#11 token. Required; must
  // outlive the ledger. A group whose checkpoint the signer fails to sign fails
  // like a failed commit (nothing of it is durable).
  const Signer* signing_key = nullptr;
  // Further keys that also sign every checkpoint, for key rotation without a
  // flag day: add the next key here, publish its verifier key, then make it
  // the primary `signing_key`. Default: none.
  std::vector<CheckpointSigner> additional_signers;
  // Keys whose signature on the stored latest checkpoint is accepted when
  // opening, besides the primary one (e.g. the previous primary key right
  // after a rotation). Default: none.
  std::vector<note::Verifier> previous_verifiers;
  // Time source: each committed group is stamped with it (EntryTime,
  // FirstIndexAtOrAfter). Default: absl::Now. Tests inject a fake clock.
  std::function<absl::Time()> clock = [] { return absl::Now(); };
  // Test hook, default empty: called for every group just before its durable
  // write; a non-OK status is treated exactly like a failed commit (the group
  // fails and the ledger refuses all later appends until reopened).
  std::function<absl::Status()> before_commit;
};

// One entry to append: its bytes, and secondary index keys (opaque strings
// chosen by the caller, e.g. "case/<id>", "actor/<org>/<subject>"; non-empty,
// no NUL byte) under which Lookup() finds it.
struct AppendEntry {
  std::string data;
  std::vector<std::string> index_keys;
  // Trail links (optional). If `link` is set, the ledger calls it as it
  // assigns the entry's index, in index order (on RocksDbLedger's sequencer,
  // under MemoryLedger's lock: keep it short; again if a failed group is
  // retried after recovery, never for a request refused before that),
  // with the index of the newest earlier entry filed under each of
  // `chain_keys`, in their order (kNoPrevious if there is none), and stores
  // and hashes the bytes it returns instead of `data`. Each chain key must also
  // be one of `index_keys`, so that the next entry chained under it links to
  // this one. Entries of one trail thus name their predecessor in bytes the
  // tree covers: a trail missing a link shows (docs/ledger.md, "Trails").
  std::vector<std::string> chain_keys = {};
  std::function<std::string(const std::vector<uint64_t>& previous)> link = nullptr;
};
inline constexpr uint64_t kNoPrevious = ~uint64_t{0};

// Called exactly once with the index of the request's first entry (its
// entries get consecutive indexes) once they are durable, or with the error
// that failed them. Runs on the ledger's sequencer thread (RocksDbLedger) or
// the calling thread (MemoryLedger): keep it short and never call Append
// synchronously from inside it.
using AppendCallback = std::function<void(absl::StatusOr<uint64_t>)>;

// A committed tree head.
struct Head {
  uint64_t size = 0;
  merkle::Hash root = merkle::EmptyRoot();
  // The signed checkpoint note for (size, root); empty for the empty ledger.
  std::string checkpoint;
};

class Ledger {
 public:
  virtual ~Ledger() = default;

  // Queues `entries` (and `change`, the caller's own writes to the store the
  // ledger lives in, see mutation.h; may be null) to be committed atomically
  // together: all become durable, or none. `done` is called exactly once.
  // Errors passed to `done` (and then nothing of the request was applied):
  //   InvalidArgument   no entries, a bad index key, or a `change` that
  //                     writes a key space the ledger was not given or one
  //                     of the ledger's own;
  //   Unavailable       the ledger is refusing writes after a failed commit
  //                     (until it recovers or is reopened).
  virtual void AppendAsync(std::vector<AppendEntry> entries, std::unique_ptr<Mutation> change,
                           AppendCallback done) = 0;
  // Blocking form of AppendAsync: the first entry's index once durable.
  absl::StatusOr<uint64_t> Append(std::vector<AppendEntry> entries,
                                  std::unique_ptr<Mutation> change = nullptr);

  // The latest committed head (size, root, signed checkpoint).
  virtual Head head() const = 0;
  // OK while appends are accepted; otherwise the Unavailable error that
  // stopped them.
  virtual absl::Status health() const = 0;
  // The key that verifies this ledger's checkpoints ("name+hexid+base64" via
  // ToString()).
  virtual note::Verifier verifier() const = 0;

  // Entry bytes. OutOfRange beyond the head; DataLoss if storage lost it.
  virtual absl::StatusOr<std::string> Entry(uint64_t index) const = 0;
  // Entries [begin, end). OutOfRange unless begin <= end <= size.
  virtual absl::StatusOr<std::vector<std::string>> Entries(uint64_t begin, uint64_t end) const = 0;
  // When the entry's group was committed (ledger clock, monotonic).
  virtual absl::StatusOr<absl::Time> EntryTime(uint64_t index) const = 0;
  // The first index committed at or after `t`; size() if none.
  virtual absl::StatusOr<uint64_t> FirstIndexAtOrAfter(absl::Time t) const = 0;

  // The hash of the complete subtree at `level` (0 = leaf hashes) and
  // `index`, for subtrees complete in the committed tree. OutOfRange else.
  virtual absl::StatusOr<merkle::Hash> SubtreeHash(int level, uint64_t index) const = 0;

  // Root of the tree of the first `size` entries; OutOfRange beyond the head.
  absl::StatusOr<merkle::Hash> RootAt(uint64_t size) const;
  // RFC 9162 §2.1.3 inclusion proof of `index` in the tree of `size`
  // (index < size <= head size; InvalidArgument / OutOfRange otherwise).
  absl::StatusOr<std::vector<merkle::Hash>> InclusionProof(uint64_t index, uint64_t size) const;
  // RFC 9162 §2.1.4 consistency proof (0 < old_size <= new_size <= head size).
  absl::StatusOr<std::vector<merkle::Hash>> ConsistencyProof(uint64_t old_size,
                                                             uint64_t new_size) const;

  // Indexes of entries filed under `index_key`, newest first, strictly below
  // `before` (kFromNewest: no bound), at most `limit`. A prefix scan: the
  // cost is proportional to the result, not to the ledger. Page by passing
  // the last index returned as the next `before`.
  static constexpr uint64_t kFromNewest = ~uint64_t{0};
  virtual absl::StatusOr<std::vector<uint64_t>> Lookup(absl::string_view index_key, uint64_t before,
                                                       size_t limit) const = 0;

  // Re-reads every entry, recomputes every subtree hash and the root, and
  // compares them with what is stored and with the latest signed
  // checkpoint. DataLoss naming the first entry or node that does not match.
  virtual absl::Status VerifyAll() const = 0;
  // VerifyAll's checks of the entries [0, size) of the head read when it
  // starts, safe while appends run (it only reads; what is appended meanwhile
  // is left to the next call). It does not look for entries stored beyond
  // that head, which only a quiescent VerifyAll can tell from an append in
  // flight. The node's background scrub (server/audit/ledger_scrub.h).
  virtual absl::Status VerifyCommitted() const = 0;

  // A self-contained export of entries [begin, end) with the latest
  // checkpoint and the hashes that connect them to it (format:
  // docs/ledger.md; verify with VerifyExport). OutOfRange unless
  // begin < end <= size.
  absl::StatusOr<std::string> Export(uint64_t begin, uint64_t end) const;
  // The same export in parts (ExportFrame), at the latest checkpoint, for a
  // caller that reads the entries [begin, end) itself, page by page, between
  // `head` and `tail`: entries below the checkpoint's size never change.
  // OutOfRange as Export.
  absl::StatusOr<ExportFrame> ExportFrameOf(uint64_t begin, uint64_t end) const;
  // The export lines of the entries [begin, end), each with its stored leaf
  // hash (ExportEntryLine). OutOfRange unless begin <= end <= size.
  absl::StatusOr<std::string> ExportEntryLines(uint64_t begin, uint64_t end) const;

 protected:
  merkle::NodeSource Nodes() const {
    return [this](int level, uint64_t index) { return SubtreeHash(level, index); };
  }
};

// Checks options shared by every implementation and fills defaults.
absl::Status ValidateOptions(LedgerOptions& options);
// Checks what AppendAsync is given, as every implementation must: at least one
// entry, index keys non-empty without NUL, chain keys among the index keys.
absl::Status ValidateEntries(const std::vector<AppendEntry>& entries);
// The checkpoint note for (size, root), signed by the primary key and every
// additional signer; a signer's error (a token that failed) if one fails.
absl::StatusOr<std::string> SignHead(const LedgerOptions& options, uint64_t size,
                                     const merkle::Hash& root);
// Opens a stored checkpoint with the primary key or any previous verifier.
absl::StatusOr<note::Checkpoint> OpenStoredCheckpoint(const LedgerOptions& options,
                                                      absl::string_view note_text);

}  // namespace corridor::ledger

#endif  // CORRIDOR_LEDGER_LEDGER_H_
