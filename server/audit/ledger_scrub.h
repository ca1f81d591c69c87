// LedgerScrubber: the node's background check of its whole ledger.
//
// Soon after the node starts, and then every `interval`, it re-reads every
// committed entry and stored hash and recomputes the tree up to the signed
// checkpoint (Ledger::VerifyCommitted), then runs the caller's further check
// (the node's: every access event is in the ledger's index). It only reads, on its own thread: it
// never delays start-up and never blocks an append. A run that finds damage
// hands the DataLoss status (which names the first bad entry or hash) to
// `on_damage`, on the scrubber's thread, once per distinct finding (the same
// damage found again on the next run is not reported again); the node logs it, records it in the
// ledger and reports it in health. last() says what the latest run found.
//
// Thread-safe. The ledger must outlive the scrubber; the destructor (or
// Stop) waits for a run in progress to end.
#ifndef CORRIDOR_SERVER_AUDIT_LEDGER_SCRUB_H_
#define CORRIDOR_SERVER_AUDIT_LEDGER_SCRUB_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "ledger/ledger.h"

namespace corridor {

// One run of the check.
struct LedgerCheck {
  absl::Time finished;  // when the run ended (real time)
  uint64_t size = 0;    // it verified at least the entries [0, size)
  absl::Duration took;  // how long it read
  absl::Status status;  // OK, or DataLoss naming the damage (or a read error)
};

class LedgerScrubber {
 public:
  // `interval` > 0 between the end of one run and the start of the next.
  // `also` (may be null) runs after the tree verified, with the size checked,
  // for what the tree does not cover (the node: AccessLog::CheckIndex); its
  // error is reported as damage like the tree's.
  LedgerScrubber(const ledger::Ledger* ledger, absl::Duration interval,
                 std::function<void(const LedgerCheck&)> on_damage,
                 std::function<absl::Status(uint64_t size)> also = nullptr);
  ~LedgerScrubber();
  LedgerScrubber(const LedgerScrubber&) = delete;
  LedgerScrubber& operator=(const LedgerScrubber&) = delete;

  // Starts the first run now, on the scrubber's thread. Once.
  void Start();
  // Stops the schedule and waits for a run in progress. Idempotent.
  void Stop();
  // The latest finished run; nullopt before the first ends.
  std::optional<LedgerCheck> last() const;
  // The first run that found damage since start (damage stays reported even if
  // a later run, e.g. after a repair by hand, finds none); nullopt if none did.
  std::optional<LedgerCheck> first_damage() const;

 private:
  void Loop();

  const ledger::Ledger* const ledger_;
  const absl::Duration interval_;
  const std::function<void(const LedgerCheck&)> on_damage_;
  const std::function<absl::Status(uint64_t)> also_;
  mutable absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<LedgerCheck> last_ ABSL_GUARDED_BY(mu_);
  std::optional<LedgerCheck> first_damage_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

}  // namespace corridor

#endif  // CORRIDOR_SERVER_AUDIT_LEDGER_SCRUB_H_
