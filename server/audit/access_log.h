// AccessLog: how the node writes AccessEvents to its ledger and finds them
// again. Every event is filed under index keys so audit queries are prefix
// scans: "case/<id>", "actor/<org>/<subject>", "org/<org>", "action/<action>",
// "outcome/<allowed|denied|error>".
// Completions of Record() run on the executor given at construction (never
// on the ledger's sequencer thread), so they may do real work: answer the
// call, build a proof or an export, sign, compact.
// Refusals may be budgeted (LimitRefusals; docs/access-control.md, "Rate
// limits and aggregated refusals"): RecordRefusal records each within the
// identity's budget, and past it counts them into one aggregated entry per
// identity and interval, written by a background thread when the interval
// closes and by FlushRefusals at shutdown.
// Thread-safe (the ledger and the executor are).
#ifndef CORRIDOR_SERVER_AUDIT_ACCESS_LOG_H_
#define CORRIDOR_SERVER_AUDIT_ACCESS_LOG_H_

#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "corridor/v1/case.pb.h"
#include "ledger/ledger.h"
#include "ledger/mutation.h"
#include "server/auth/identity.h"
#include "server/auth/refusal_sink.h"
#include "server/common/executor.h"
#include "server/common/metrics.h"
#include "server/common/rate_limit.h"

namespace corridor {

class AccessLog : public RefusalSink {
 public:
  // `completions` runs every Record() completion; it must outlive the ledger's
  // last completion (destroy it after the ledger). Events are stamped with
  // `clock`'s time (not owned; it must outlive this log).
  AccessLog(ledger::Ledger* ledger, const Clock* clock, Executor* completions)
      : ledger_(ledger), clock_(clock), completions_(completions) {}
  ~AccessLog();

  // From now on, refusals past `budget` per identity and `interval` are
  // counted, not recorded one by one. Starts the thread that records the
  // aggregated entries as intervals close. Call once, before serving.
  void LimitRefusals(uint32_t budget, absl::Duration interval);
  // Records every aggregated count not yet recorded (also those of intervals
  // still open) and stops that thread. Call at shutdown while the ledger is
  // still open; later refusals are recorded one by one.
  void FlushRefusals();

  // Stamps the time, serializes and appends `events` together with `change`
  // (may be null) in one synced batch; `done` gets the first event's index
  // once durable, or the error (the change did not happen then either). `done`
  // runs on the completions executor.
  void Record(std::vector<v1::AccessEvent> events, std::unique_ptr<ledger::Mutation> change,
              std::function<void(absl::StatusOr<uint64_t>)> done);
  // Records the refusal `event` (outcome denied or error) as Record does, or,
  // past its identity's refusal budget, counts it into the aggregated entry;
  // `done` gets OK once it is durable or counted, or the error (on the
  // completions executor).
  void RecordRefusal(v1::AccessEvent event, std::function<void(absl::Status)> done) override;
  // Records that the node ended a stream whose access `allowed` recorded
  // (export, download) because its client read nothing for `timeout`, after
  // `sent` `units` ("pieces", "chunks"). Does not wait for it to be durable.
  void RecordIdleCutOff(v1::AccessEvent allowed, absl::Duration timeout, absl::string_view what,
                        uint64_t sent, absl::string_view units);
  absl::StatusOr<uint64_t> RecordSync(std::vector<v1::AccessEvent> events,
                                      std::unique_ptr<ledger::Mutation> change = nullptr);
  // RecordRefusal, waiting for `done`: OK once recorded or counted. Never call
  // it on the completions executor (it would wait for itself).
  absl::Status RecordRefusalSync(v1::AccessEvent event);

  struct Query {
    std::string case_id, actor, org, action;
    v1::AccessOutcome outcome = v1::ACCESS_OUTCOME_UNSPECIFIED;
    absl::Time after = absl::InfinitePast();
    absl::Time before = absl::InfiniteFuture();
    uint64_t before_index = ledger::Ledger::kFromNewest;
    size_t limit = 50;
  };
  struct Hit {
    uint64_t index;
    v1::AccessEvent event;
    std::string entry;
  };
  // Events matching every given field, newest first.
  absl::StatusOr<std::vector<Hit>> Find(const Query& q) const;
  // Parses a ledger entry as an AccessEvent.
  static absl::StatusOr<v1::AccessEvent> Decode(absl::string_view entry);
  // The index keys an event is filed under.
  static std::vector<std::string> IndexKeys(const v1::AccessEvent& e);
  // Checks that every access event among the entries [0, size) is filed under
  // each of its index keys: the index is not covered by the tree, so keys
  // deleted behind the node's back would hide entries from audit queries (and
  // from the trail links of later entries). DataLoss naming the first entry
  // missing from the index and the kind of key; read errors as they come.
  // Only reads; safe while appends run. The background ledger check.
  absl::Status CheckIndex(uint64_t size) const;

  ledger::Ledger* ledger() const { return ledger_; }
  // Observes, in seconds, how long each append took from Record/RecordSync to
  // durable (the ledger's group commit and fsync included). Set once, before
  // the node serves; not owned (it must outlive this log).
  void set_append_latency(metrics::Histogram* histogram) { append_latency_ = histogram; }

 private:
  // Stamps the time on `events` and turns them into ledger entries with their index keys.
  std::vector<ledger::AppendEntry> ToEntries(std::vector<v1::AccessEvent>& events) const;

  void RunAggregator();

  ledger::Ledger* ledger_;
  const Clock* const clock_;
  Executor* completions_;
  metrics::Histogram* append_latency_ = nullptr;  // set once before serving
  std::unique_ptr<RefusalBudget> budget_;         // set once before serving
  // Readers charge refusals; FlushRefusals writes, so no count comes after the last flush.
  absl::Mutex budget_mu_;
  bool flushed_ ABSL_GUARDED_BY(budget_mu_) = false;
  absl::Mutex aggregator_mu_;
  bool aggregator_stop_ ABSL_GUARDED_BY(aggregator_mu_) = false;
  std::thread aggregator_;
};

}  // namespace corridor

#endif  // CORRIDOR_SERVER_AUDIT_ACCESS_LOG_H_
