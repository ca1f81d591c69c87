#include "ledger/ledger.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"

namespace corridor::ledger {

absl::Status ValidateOptions(LedgerOptions& options) {
  if (options.origin.empty() || options.origin.find('\n') != std::string::npos) {
    return absl::InvalidArgumentError("ledger: origin is required and must be one line");
  }
  if (options.signing_key == nullptr) {
    return absl::InvalidArgumentError("ledger: a checkpoint signing key is required");
  }
  if (options.key_name.empty()) options.key_name = options.origin;
  if (options.key_name.find_first_of(" +\n") != std::string::npos) {
    return absl::InvalidArgumentError("ledger: key name must not contain spaces, '+' or newlines");
  }
  for (const CheckpointSigner& s : options.additional_signers) {
    if (s.key == nullptr || s.key_name.empty() ||
        s.key_name.find_first_of(" +\n") != std::string::npos) {
      return absl::InvalidArgumentError(
          "ledger: every additional signer needs a key and a key name without spaces or '+'");
    }
  }
  if (!options.clock) options.clock = [] { return absl::Now(); };
  return absl::OkStatus();
}

absl::Status ValidateEntries(const std::vector<AppendEntry>& entries) {
  if (entries.empty()) return absl::InvalidArgumentError("nothing to append");
  for (const AppendEntry& e : entries) {
    for (const std::string& k : e.index_keys) {
      if (k.empty() || k.find('\0') != std::string::npos) {
        return absl::InvalidArgumentError("index keys must be non-empty and contain no NUL");
      }
    }
    if (!e.chain_keys.empty() && !e.link) {
      return absl::InvalidArgumentError("chain keys need a link function");
    }
    for (const std::string& k : e.chain_keys) {
      if (std::find(e.index_keys.begin(), e.index_keys.end(), k) == e.index_keys.end()) {
        return absl::InvalidArgumentError("every chain key must also be an index key");
      }
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> SignHead(const LedgerOptions& options, uint64_t size,
                                     const merkle::Hash& root) {
  const note::Checkpoint cp{options.origin, size, root, {}};
  note::Note n{cp.Body(), {}};
  if (auto st = note::SignNoteWith(n, options.key_name, *options.signing_key); !st.ok()) {
    return st;
  }
  for (const CheckpointSigner& s : options.additional_signers) {
    if (auto st = note::SignNoteWith(n, s.key_name, *s.key); !st.ok()) return st;
  }
  return note::FormatNote(n);
}

absl::StatusOr<note::Checkpoint> OpenStoredCheckpoint(const LedgerOptions& options,
                                                      absl::string_view note_text) {
  const note::Verifier primary{options.key_name, 0x01, options.signing_key->public_key()};
  auto cp = note::OpenCheckpoint(note_text, primary);
  if (cp.ok() || absl::IsInvalidArgument(cp.status())) return cp;
  for (const note::Verifier& v : options.previous_verifiers) {
    auto prev = note::OpenCheckpoint(note_text, v);
    if (prev.ok()) return prev;
  }
  return absl::PermissionDeniedError(
      absl::StrCat("not signed by the ledger's key ", primary.ToString(),
                   options.previous_verifiers.empty() ? "" : " or any previous key", ": ",
                   cp.status().message()));
}

absl::StatusOr<uint64_t> Ledger::Append(std::vector<AppendEntry> entries,
                                        std::unique_ptr<Mutation> change) {
  absl::Mutex mu;
  bool finished = false;
  absl::StatusOr<uint64_t> result;
  AppendAsync(std::move(entries), std::move(change), [&](absl::StatusOr<uint64_t> r) {
    absl::MutexLock lock(&mu);
    result = std::move(r);
    finished = true;
  });
  absl::MutexLock lock(&mu);
  mu.Await(absl::Condition(&finished));
  return result;
}

absl::StatusOr<merkle::Hash> Ledger::RootAt(uint64_t size) const {
  const uint64_t have = head().size;
  if (size > have) {
    return absl::OutOfRangeError(absl::StrCat("no tree of size ", size, ": the ledger has ", have));
  }
  return merkle::RootAt(size, Nodes());
}

absl::StatusOr<std::vector<merkle::Hash>> Ledger::InclusionProof(uint64_t index,
                                                                 uint64_t size) const {
  const uint64_t have = head().size;
  if (size > have) {
    return absl::OutOfRangeError(absl::StrCat("no tree of size ", size, ": the ledger has ", have));
  }
  return merkle::InclusionProof(index, size, Nodes());
}

absl::StatusOr<std::vector<merkle::Hash>> Ledger::ConsistencyProof(uint64_t old_size,
                                                                   uint64_t new_size) const {
  const uint64_t have = head().size;
  if (new_size > have) {
    return absl::OutOfRangeError(
        absl::StrCat("no tree of size ", new_size, ": the ledger has ", have));
  }
  return merkle::ConsistencyProof(old_size, new_size, Nodes());
}

absl::StatusOr<std::string> Ledger::Export(uint64_t begin, uint64_t end) const {
  auto frame = ExportFrameOf(begin, end);
  if (!frame.ok()) return frame.status();
  auto lines = ExportEntryLines(begin, end);
  if (!lines.ok()) return lines.status();
  return absl::StrCat(frame->head, *lines, frame->tail);
}

absl::StatusOr<std::string> Ledger::ExportEntryLines(uint64_t begin, uint64_t end) const {
  auto entries = Entries(begin, end);
  if (!entries.ok()) return entries.status();
  std::string out;
  for (uint64_t i = begin; i < end; ++i) {
    auto leaf = SubtreeHash(0, i);
    if (!leaf.ok()) return leaf.status();
    out += ExportEntryLine((*entries)[i - begin], *leaf);
  }
  return out;
}

absl::StatusOr<ExportFrame> Ledger::ExportFrameOf(uint64_t begin, uint64_t end) const {
  const Head h = head();
  if (begin >= end || end > h.size) {
    return absl::OutOfRangeError(absl::StrCat("cannot export [", begin, ", ", end,
                                              "): the ledger has ", h.size, " entries"));
  }
  return BuildExportFrame(begin, end - begin, h.size, h.checkpoint, Nodes());
}

}  // namespace corridor::ledger
