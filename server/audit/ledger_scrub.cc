#include "server/audit/ledger_scrub.h"

#include <utility>

#include "absl/time/clock.h"

namespace corridor {

LedgerScrubber::LedgerScrubber(const ledger::Ledger* ledger, absl::Duration interval,
                               std::function<void(const LedgerCheck&)> on_damage,
                               std::function<absl::Status(uint64_t size)> also)
    : ledger_(ledger),
      interval_(interval),
      on_damage_(std::move(on_damage)),
      also_(std::move(also)) {}

LedgerScrubber::~LedgerScrubber() { Stop(); }

void LedgerScrubber::Start() {
  if (thread_.joinable()) return;
  thread_ = std::thread([this] { Loop(); });
}

void LedgerScrubber::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

std::optional<LedgerCheck> LedgerScrubber::last() const {
  absl::MutexLock lock(&mu_);
  return last_;
}

std::optional<LedgerCheck> LedgerScrubber::first_damage() const {
  absl::MutexLock lock(&mu_);
  return first_damage_;
}

void LedgerScrubber::Loop() {
  while (true) {
    LedgerCheck run;
    const absl::Time began = absl::Now();
    run.size = ledger_->head().size;
    run.status = ledger_->VerifyCommitted();
    if (run.status.ok() && also_) run.status = also_(run.size);
    run.finished = absl::Now();
    run.took = run.finished - began;
    bool report = false;
    {
      absl::MutexLock lock(&mu_);
      report = !run.status.ok() && (!last_ || last_->status != run.status);
      last_ = run;
      if (!run.status.ok() && !first_damage_) first_damage_ = run;
    }
    if (report) on_damage_(run);
    absl::MutexLock lock(&mu_);
    auto stopping = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stop_; };
    if (mu_.AwaitWithTimeout(absl::Condition(&stopping), interval_)) return;
  }
}

}  // namespace corridor
