#include "server/audit/access_log.h"

#include <algorithm>
#include <chrono>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/notification.h"
#include "client/lib/yaml_proto.h"
#include "ledger/base/log.h"
#include "server/common/edge.h"

namespace corridor {
namespace {

std::string OutcomeKey(v1::AccessOutcome o) {
  return absl::StrCat("outcome/", absl::AsciiStrToLower(absl::StripPrefix(v1::AccessOutcome_Name(o),
                                                                          "ACCESS_OUTCOME_")));
}

// Every text field within its bound, without control characters or invalid
// UTF-8: no caller or peer can make an entry that breaks the audit trail
// (too large to read back, or forging rows in a terminal).
void Bound(v1::AccessEvent* e) {
  // A refused call may name a case, evidence, referral or envelope that does not
  // exist, with whatever was typed: only a minted id's shape is kept as it is, in
  // the id fields and in the reason (which quotes the id it did not find).
  if (e->outcome() != v1::ACCESS_OUTCOME_ALLOWED) {
    auto digest = [e](std::string* id) {
      const std::string kept = IdForLedger(*id);
      if (kept == *id) return;
      if (id->size() >= 3) {
        e->set_reason(absl::StrReplaceAll(e->reason(), {{*id, kept.substr(0, 19) + "…"}}));
      }
      *id = kept;
    };
    // (An audit query's resource id is the case it asked about.)
    const std::string& kind = e->resource_kind();
    if (kind == "case" || kind == "evidence" || kind == "referral" || kind == "envelope" ||
        e->action() == "audit.query") {
      digest(e->mutable_resource_id());
    }
    digest(e->mutable_case_id());
  }
  auto bound = [](std::string* field, size_t max) {
    if (field->size() > max || ForLedger(*field, max) != *field) *field = ForLedger(*field, max);
  };
  bound(e->mutable_actor_org(), kMaxLedgerFieldBytes);
  bound(e->mutable_actor_subject(), kMaxLedgerFieldBytes);
  bound(e->mutable_action(), kMaxLedgerFieldBytes);
  bound(e->mutable_resource_kind(), kMaxLedgerFieldBytes);
  bound(e->mutable_resource_id(), kMaxLedgerFieldBytes);
  bound(e->mutable_purpose(), kMaxLedgerFieldBytes);
  bound(e->mutable_agreement(), kMaxLedgerFieldBytes);
  bound(e->mutable_reason(), kMaxLedgerTextBytes);
  bound(e->mutable_peer_org(), kMaxLedgerFieldBytes);
  bound(e->mutable_request_id(), kMaxLedgerFieldBytes);
  bound(e->mutable_case_id(), kMaxLedgerFieldBytes);
  if (e->payload_sha256().size() > 64) e->mutable_payload_sha256()->resize(64);
}

}  // namespace

std::vector<ledger::AppendEntry> AccessLog::ToEntries(std::vector<v1::AccessEvent>& events) const {
  const int64_t now = absl::ToUnixMicros(clock_->Now());
  std::vector<ledger::AppendEntry> entries;
  for (v1::AccessEvent& e : events) {
    e.set_time_unix_micros(now);
    Bound(&e);
    ledger::AppendEntry entry;
    entry.index_keys = IndexKeys(e);
    // The case's and the actor's trails (the first one or two keys): links
    // filled in as the index is assigned.
    entry.chain_keys.assign(entry.index_keys.begin(),
                            entry.index_keys.begin() + (e.case_id().empty() ? 1 : 2));
    entry.link = [e, has_case = !e.case_id().empty()](const std::vector<uint64_t>& previous) {
      v1::AccessEvent linked = e;
      linked.set_trail_linked(true);
      size_t next = 0;
      if (has_case && previous[next++] != ledger::kNoPrevious) {
        linked.set_prev_case_entry(previous[0]);
      }
      if (previous[next] != ledger::kNoPrevious) linked.set_prev_actor_entry(previous[next]);
      return linked.SerializeAsString();
    };
    entries.push_back(std::move(entry));
  }
  return entries;
}

std::vector<std::string> AccessLog::IndexKeys(const v1::AccessEvent& e) {
  std::vector<std::string> keys;
  if (!e.case_id().empty()) keys.push_back("case/" + e.case_id());
  keys.push_back(absl::StrCat("actor/", e.actor_org(), "/", e.actor_subject()));
  keys.push_back("org/" + e.actor_org());
  keys.push_back("action/" + e.action());
  keys.push_back(OutcomeKey(e.outcome()));
  // A received envelope is found again by its id (redelivery returns its receipt).
  if (e.action() == "envelope.receive" && e.outcome() == v1::ACCESS_OUTCOME_ALLOWED) {
    keys.push_back("envelope/" + e.resource_id());
  }
  return keys;
}

absl::Status AccessLog::CheckIndex(uint64_t size) const {
  constexpr uint64_t kPage = 256;
  for (uint64_t begin = 0; begin < size; begin += kPage) {
    const uint64_t end = std::min(size, begin + kPage);
    auto entries = ledger_->Entries(begin, end);
    if (!entries.ok()) return entries.status();
    for (uint64_t i = begin; i < end; ++i) {
      auto e = Decode((*entries)[i - begin]);
      if (!e.ok()) continue;  // not an access event
      for (const std::string& key : IndexKeys(*e)) {
        auto found = ledger_->Lookup(key, i + 1, 1);
        if (!found.ok()) return found.status();
        if (found->empty() || found->front() != i) {
          // The key's kind only: its value may be an id the log keeps as a digest elsewhere.
          return absl::DataLossError(absl::StrCat(
              "entry ", i, " is missing from the ledger's index under its ",
              key.substr(0, key.find('/')),
              " key: the index was changed behind the node's back, and audit queries would not "
              "find the entry"));
        }
      }
    }
  }
  return absl::OkStatus();
}

void AccessLog::Record(std::vector<v1::AccessEvent> events,
                       std::unique_ptr<ledger::Mutation> change,
                       std::function<void(absl::StatusOr<uint64_t>)> done) {
  // The sequencer only hands the result over; `done` runs on the executor.
  const auto start = std::chrono::steady_clock::now();
  ledger_->AppendAsync(
      ToEntries(events), std::move(change),
      [executor = completions_, latency = append_latency_, start,
       done = std::move(done)](absl::StatusOr<uint64_t> index) mutable {
        if (latency != nullptr && index.ok()) {
          latency->Observe(
              std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
        }
        executor->Post([done = std::move(done), index = std::move(index)]() mutable {
          done(std::move(index));
        });
      });
}

AccessLog::~AccessLog() {
  {
    absl::MutexLock lock(&aggregator_mu_);
    aggregator_stop_ = true;
  }
  if (aggregator_.joinable()) aggregator_.join();
}

void AccessLog::LimitRefusals(uint32_t budget, absl::Duration interval) {
  budget_ = std::make_unique<RefusalBudget>(budget, interval, clock_);
  aggregator_ = std::thread([this] { RunAggregator(); });
}

void AccessLog::RunAggregator() {
  const absl::Duration tick =
      std::clamp(budget_->interval() / 10, absl::Milliseconds(10), absl::Seconds(1));
  absl::MutexLock lock(&aggregator_mu_);
  while (!aggregator_stop_) {
    aggregator_mu_.AwaitWithTimeout(absl::Condition(&aggregator_stop_), tick);
    if (aggregator_stop_) break;
    std::vector<v1::AccessEvent> closed = budget_->TakeAggregates(/*all=*/false);
    if (closed.empty()) continue;
    aggregator_mu_.Unlock();
    const size_t n = closed.size();
    if (auto index = RecordSync(std::move(closed)); !index.ok()) {
      log::Error(
          "access.unrecorded",
          {{"action", "access.refusals"}, {"entries", n}, {"error", index.status().message()}});
    }
    aggregator_mu_.Lock();
  }
}

void AccessLog::FlushRefusals() {
  if (budget_ == nullptr) return;
  {
    absl::MutexLock lock(&aggregator_mu_);
    aggregator_stop_ = true;
  }
  if (aggregator_.joinable()) aggregator_.join();
  std::vector<v1::AccessEvent> all;
  {
    absl::WriterMutexLock lock(&budget_mu_);
    if (flushed_) return;
    flushed_ = true;
    all = budget_->TakeAggregates(/*all=*/true);
  }
  if (all.empty()) return;
  const size_t n = all.size();
  if (auto index = RecordSync(std::move(all)); !index.ok()) {
    log::Error(
        "access.unrecorded",
        {{"action", "access.refusals"}, {"entries", n}, {"error", index.status().message()}});
  }
}

void AccessLog::RecordIdleCutOff(v1::AccessEvent allowed, absl::Duration timeout,
                                 absl::string_view what, uint64_t sent, absl::string_view units) {
  allowed.set_outcome(v1::ACCESS_OUTCOME_ERROR);
  allowed.set_reason(absl::StrCat("the client read nothing for ", absl::FormatDuration(timeout),
                                  " (limits.stream_idle_timeout_seconds), so the node ended the ",
                                  what, " after ", sent, " ", units));
  RecordRefusal(std::move(allowed), [](absl::Status) {});
}

void AccessLog::RecordRefusal(v1::AccessEvent event, std::function<void(absl::Status)> done) {
  RefusalBudget::Verdict verdict = RefusalBudget::Verdict::kRecord;
  {
    absl::ReaderMutexLock lock(&budget_mu_);
    if (budget_ != nullptr && !flushed_) verdict = budget_->Charge(event);
  }
  if (verdict == RefusalBudget::Verdict::kCount) {
    completions_->Post([done = std::move(done)] { done(absl::OkStatus()); });
    return;
  }
  if (verdict == RefusalBudget::Verdict::kRecordFirstOver) {
    event.set_reason(
        absl::StrCat(ForLedger(event.reason(), kMaxLedgerTextBytes / 2), " [refusal budget of ",
                     budget_->budget(), " per ", absl::FormatDuration(budget_->interval()),
                     " reached: further refusals of ", RefusalBudget::IdentityOf(event),
                     " are counted in one access.refusals entry when the interval closes]"));
  }
  Record({std::move(event)}, nullptr,
         [done = std::move(done)](absl::StatusOr<uint64_t> index) { done(index.status()); });
}

absl::Status AccessLog::RecordRefusalSync(v1::AccessEvent event) {
  absl::Notification done;
  absl::Status recorded;
  RecordRefusal(std::move(event), [&](absl::Status st) {
    recorded = std::move(st);
    done.Notify();
  });
  done.WaitForNotification();
  return recorded;
}

absl::StatusOr<uint64_t> AccessLog::RecordSync(std::vector<v1::AccessEvent> events,
                                               std::unique_ptr<ledger::Mutation> change) {
  const auto start = std::chrono::steady_clock::now();
  auto index = ledger_->Append(ToEntries(events), std::move(change));
  if (append_latency_ != nullptr && index.ok()) {
    append_latency_->Observe(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  return index;
}

absl::StatusOr<v1::AccessEvent> AccessLog::Decode(absl::string_view entry) {
  v1::AccessEvent e;
  if (auto st = ParseProtoStrict(entry, "ledger entry", &e); !st.ok()) return st;
  return e;
}

absl::StatusOr<std::vector<AccessLog::Hit>> AccessLog::Find(const Query& q) const {
  // Scan the most selective index; filter the rest.
  std::string key;
  if (!q.case_id.empty()) {
    key = "case/" + q.case_id;
  } else if (!q.actor.empty()) {
    key = "actor/" + q.actor;
  } else if (!q.action.empty()) {
    key = "action/" + q.action;
  } else if (!q.org.empty()) {
    key = "org/" + q.org;
  } else if (q.outcome != v1::ACCESS_OUTCOME_UNSPECIFIED) {
    key = OutcomeKey(q.outcome);
  }
  std::vector<Hit> out;
  uint64_t before = q.before_index;
  const int64_t after_us =
      q.after == absl::InfinitePast() ? INT64_MIN : absl::ToUnixMicros(q.after);
  const int64_t before_us =
      q.before == absl::InfiniteFuture() ? INT64_MAX : absl::ToUnixMicros(q.before);
  while (out.size() < q.limit) {
    std::vector<uint64_t> batch;
    if (key.empty()) {
      uint64_t top = std::min<uint64_t>(before, ledger_->head().size);
      for (uint64_t i = top; i > 0 && batch.size() < 256; --i) batch.push_back(i - 1);
    } else {
      auto found = ledger_->Lookup(key, before, 256);
      if (!found.ok()) return found.status();
      batch = *std::move(found);
    }
    if (batch.empty()) break;
    for (uint64_t index : batch) {
      before = index;
      auto entry = ledger_->Entry(index);
      if (!entry.ok()) return entry.status();
      auto e = Decode(*entry);
      if (!e.ok()) continue;  // not an access event (e.g. another record type)
      // Entries are in time order up to clock jitter between callers: stop a second past the range.
      if (after_us != INT64_MIN && e->time_unix_micros() < after_us - 1000000) return out;
      if (e->time_unix_micros() < after_us) continue;
      if (e->time_unix_micros() >= before_us) continue;
      if (!q.case_id.empty() && e->case_id() != q.case_id) continue;
      if (!q.actor.empty() && absl::StrCat(e->actor_org(), "/", e->actor_subject()) != q.actor)
        continue;
      if (!q.org.empty() && e->actor_org() != q.org) continue;
      if (!q.action.empty() && e->action() != q.action) continue;
      if (q.outcome != v1::ACCESS_OUTCOME_UNSPECIFIED && e->outcome() != q.outcome) continue;
      out.push_back({index, *std::move(e), *std::move(entry)});
      if (out.size() >= q.limit) break;
    }
  }
  return out;
}

}  // namespace corridor
