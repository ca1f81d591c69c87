#include "ledger/testing/memory_ledger.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace corridor::ledger {

absl::StatusOr<std::unique_ptr<MemoryLedger>> MemoryLedger::Create(
    LedgerOptions options, const std::vector<std::string>& key_spaces) {
  if (auto st = ValidateOptions(options); !st.ok()) return st;
  return std::unique_ptr<MemoryLedger>(new MemoryLedger(std::move(options), key_spaces));
}

void MemoryLedger::AppendAsync(std::vector<AppendEntry> entries, std::unique_ptr<Mutation> change,
                               AppendCallback done) {
  if (absl::Status st = ValidateEntries(entries); !st.ok()) return done(st);
  if (change) {
    if (absl::Status st = spaces_.Check(*change); !st.ok()) return done(st);
  }
  absl::StatusOr<uint64_t> result;
  {
    absl::MutexLock lock(&mu_);
    if (broken_.ok() && options_.before_commit) {
      if (absl::Status st = options_.before_commit(); !st.ok()) {
        broken_ = absl::UnavailableError(absl::StrCat(
            "the ledger could not commit and refuses all writes until it is reopened: ",
            st.message()));
      }
    }
    // The key spaces are fixed at Create, so a change that passed the check
    // above applies in full.
    absl::Status applied = broken_.ok() && change ? spaces_.Apply(*change) : absl::OkStatus();
    if (!broken_.ok()) {
      result = broken_;
    } else if (!applied.ok()) {
      result = applied;
    } else {
      const uint64_t first = entries_.size();
      absl::Time now = options_.clock();
      if (!times_.empty()) now = std::max(now, times_.back());
      edge_.set_on_node([this](int level, uint64_t index, const merkle::Hash& h)
                            ABSL_NO_THREAD_SAFETY_ANALYSIS {
                              if (nodes_.size() <= static_cast<size_t>(level)) {
                                nodes_.resize(level + 1);
                              }
                              nodes_[level].push_back(h);
                            });
      for (AppendEntry& e : entries) {
        if (e.link) {
          std::vector<uint64_t> previous;
          for (const std::string& k : e.chain_keys) {
            auto it = index_.find(k);
            previous.push_back(it == index_.end() ? kNoPrevious : it->second.back());
          }
          e.data = e.link(previous);
        }
        for (const std::string& k : e.index_keys) index_[k].push_back(entries_.size());
        edge_.Push(merkle::HashLeaf(e.data));
        entries_.push_back(std::move(e.data));
        times_.push_back(now);
      }
      head_.size = entries_.size();
      head_.root = edge_.Root();
      auto signed_head = SignHead(options_, head_.size, head_.root);
      if (signed_head.ok()) {
        head_.checkpoint = *std::move(signed_head);
        result = first;
      } else {
        // The entries are in; the head is not signed: refuse from here on,
        // as after a failed commit.
        broken_ = absl::UnavailableError(absl::StrCat(
            "the ledger could not sign its checkpoint and refuses all writes until it is "
            "reopened: ",
            signed_head.status().message()));
        result = broken_;
      }
    }
  }
  done(std::move(result));
}

Head MemoryLedger::head() const {
  absl::MutexLock lock(&mu_);
  return head_;
}

absl::Status MemoryLedger::health() const {
  absl::MutexLock lock(&mu_);
  return broken_;
}

note::Verifier MemoryLedger::verifier() const {
  return note::Verifier{options_.key_name, 0x01, options_.signing_key->public_key()};
}

absl::StatusOr<std::string> MemoryLedger::Entry(uint64_t index) const {
  absl::MutexLock lock(&mu_);
  if (index >= entries_.size()) {
    return absl::OutOfRangeError(
        absl::StrCat("entry ", index, " does not exist (the ledger has ", entries_.size(), ")"));
  }
  return entries_[index];
}

absl::StatusOr<std::vector<std::string>> MemoryLedger::Entries(uint64_t begin, uint64_t end) const {
  absl::MutexLock lock(&mu_);
  if (begin > end || end > entries_.size()) {
    return absl::OutOfRangeError(absl::StrCat(
        "range [", begin, ", ", end, ") is not within the ledger's ", entries_.size(), " entries"));
  }
  return std::vector<std::string>(entries_.begin() + begin, entries_.begin() + end);
}

absl::StatusOr<absl::Time> MemoryLedger::EntryTime(uint64_t index) const {
  absl::MutexLock lock(&mu_);
  if (index >= times_.size()) {
    return absl::OutOfRangeError(
        absl::StrCat("entry ", index, " does not exist (the ledger has ", times_.size(), ")"));
  }
  return times_[index];
}

absl::StatusOr<uint64_t> MemoryLedger::FirstIndexAtOrAfter(absl::Time t) const {
  absl::MutexLock lock(&mu_);
  return std::lower_bound(times_.begin(), times_.end(), t) - times_.begin();
}

absl::StatusOr<merkle::Hash> MemoryLedger::SubtreeHash(int level, uint64_t index) const {
  absl::MutexLock lock(&mu_);
  if (level < 0 || static_cast<size_t>(level) >= nodes_.size() || index >= nodes_[level].size()) {
    return absl::OutOfRangeError(absl::StrCat("the subtree at level ", level, ", index ", index,
                                              " is not complete in the tree of size ",
                                              entries_.size()));
  }
  return nodes_[level][index];
}

absl::StatusOr<std::vector<uint64_t>> MemoryLedger::Lookup(absl::string_view index_key,
                                                           uint64_t before, size_t limit) const {
  absl::MutexLock lock(&mu_);
  std::vector<uint64_t> out;
  auto it = index_.find(std::string(index_key));
  if (it == index_.end()) return out;
  const auto& v = it->second;
  auto end = std::lower_bound(v.begin(), v.end(), before);
  while (end != v.begin() && out.size() < limit) out.push_back(*--end);
  return out;
}

absl::Status MemoryLedger::VerifyAll() const {
  absl::MutexLock lock(&mu_);
  merkle::CompactRange range;
  for (const std::string& e : entries_) range.Push(merkle::HashLeaf(e));
  if (range.Root() != head_.root) {
    return absl::DataLossError("the root recomputed from the entries does not match the head");
  }
  if (head_.size == 0) return absl::OkStatus();
  auto cp = note::OpenCheckpoint(head_.checkpoint, verifier());
  if (!cp.ok()) return absl::DataLossError(cp.status().message());
  if (cp->root != head_.root || cp->size != head_.size) {
    return absl::DataLossError(
        "the root recomputed from the entries does not match the signed checkpoint");
  }
  return absl::OkStatus();
}

}  // namespace corridor::ledger
