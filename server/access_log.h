// AccessLog: how the node writes AccessEvents to its ledger and finds them
// again. Every event is filed under index keys so audit queries are prefix
// scans: "case/<id>", "actor/<org>/<subject>", "org/<org>", "action/<action>",
// "outcome/<allowed|denied|error>".
// Completions of Record() run on the executor given at construction (never
// on the ledger's sequencer thread), so they may do real work: answer the
// call, build a proof or an export, sign, compact.
// Thread-safe (the ledger and the executor are).
#ifndef CORRIDOR_SERVER_ACCESS_LOG_H_
#define CORRIDOR_SERVER_ACCESS_LOG_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "corridor/v1/case.pb.h"
#include "ledger/ledger.h"
#include "rocksdb/write_batch.h"
#include "server/executor.h"
#include "server/identity.h"

namespace corridor {

// Fills the actor fields of an event from a principal.
void SetActor(const Principal& who, v1::AccessEvent* event);

class AccessLog {
 public:
  // `completions` runs every Record() completion; it must outlive the ledger's
  // last completion (destroy it after the ledger).
  AccessLog(ledger::Ledger* ledger, std::function<absl::Time()> clock, Executor* completions)
      : ledger_(ledger), clock_(std::move(clock)), completions_(completions) {}

  // Stamps the time, serializes and appends `events` together with `change`
  // (may be null) in one synced batch; `done` gets the first event's index
  // once durable, or the error (the change did not happen then either). `done`
  // runs on the completions executor.
  void Record(std::vector<v1::AccessEvent> events, std::unique_ptr<rocksdb::WriteBatch> change,
              std::function<void(absl::StatusOr<uint64_t>)> done);
  absl::StatusOr<uint64_t> RecordSync(std::vector<v1::AccessEvent> events,
                                      std::unique_ptr<rocksdb::WriteBatch> change = nullptr);

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

  ledger::Ledger* ledger() const { return ledger_; }

 private:
  // Stamps the time on `events` and turns them into ledger entries with their index keys.
  std::vector<ledger::AppendEntry> ToEntries(std::vector<v1::AccessEvent>& events) const;

  ledger::Ledger* ledger_;
  std::function<absl::Time()> clock_;
  Executor* completions_;
};

}  // namespace corridor

#endif  // CORRIDOR_SERVER_ACCESS_LOG_H_
