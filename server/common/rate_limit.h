// What keeps one caller from flooding a node (docs/access-control.md, "Rate
// limits and aggregated refusals"):
//
//  - CallLimiter: a token bucket per verified identity. Each call takes a
//    token; tokens come back at a steady rate up to a burst. The auth
//    processor asks it before any handler runs (server/auth/auth.cc).
//  - RefusalBudget: how many refusals per identity and interval are recorded
//    one ledger entry each. Past the budget the refusals are counted, and one
//    aggregated "access.refusals" entry per identity and interval carries the
//    count and what was counted (server/audit/access_log.h writes it).
//  - TransferSlots: how many evidence transfers run at once.
//  - StreamWatchdog: ends streams that have moved nothing for too long.
//
// Memory is bounded: idle identities are forgotten (a bucket that has filled
// up again is the same as a new one), and past `max_identities` the least
// recently seen is dropped. All classes are thread-safe; time comes from the
// Clock they are given (not owned; it must outlive them), so tests need not sleep.
#ifndef CORRIDOR_SERVER_COMMON_RATE_LIMIT_H_
#define CORRIDOR_SERVER_COMMON_RATE_LIMIT_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "corridor/v1/case.pb.h"
#include "ledger/base/clock.h"

namespace corridor {

class CallLimiter {
 public:
  // `per_second` tokens come back each second, up to `burst` (>= 1).
  CallLimiter(double per_second, double burst, const Clock* clock, size_t max_identities = 10000);

  // Takes a token for `identity`. Zero if the call may go ahead; otherwise
  // how long until a token is back (nothing is taken then).
  absl::Duration Take(const std::string& identity);

  // Identities currently remembered (for tests).
  size_t size() const;

 private:
  struct Bucket {
    double tokens;
    absl::Time updated;
  };
  void EvictLocked(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const double per_second_, burst_;
  const Clock* const clock_;
  const size_t max_identities_;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, Bucket> buckets_ ABSL_GUARDED_BY(mu_);
};

// "too many requests from <identity>; try again in N s" (N rounded up).
std::string TooManyRequests(const std::string& identity, absl::Duration wait);

class RefusalBudget {
 public:
  // Up to `budget` refusals per identity and `interval` are recorded one by one.
  RefusalBudget(uint32_t budget, absl::Duration interval, const Clock* clock,
                size_t max_identities = 10000);

  enum class Verdict {
    kRecord,           // within the budget: record it on its own
    kRecordFirstOver,  // the first past the budget: record it on its own, saying counting starts
    kCount,            // counted into the identity's aggregated entry
  };
  // Charges the refusal `event` (actor fields set) to its identity.
  Verdict Charge(const v1::AccessEvent& event);

  // One aggregated "access.refusals" event per identity whose interval has
  // closed with refusals counted (every interval with a count if `all`, as at
  // shutdown). Each is taken once. Identities with nothing left are forgotten.
  std::vector<v1::AccessEvent> TakeAggregates(bool all);

  uint32_t budget() const { return budget_; }
  absl::Duration interval() const { return interval_; }

  // The identity an event is charged to: "<org>/<subject>".
  static std::string IdentityOf(const v1::AccessEvent& event);
  // The count an aggregated "access.refusals" event carries (0 if it is not one).
  static uint64_t CountOf(const v1::AccessEvent& event);

 private:
  struct Window {
    absl::Time start;
    uint64_t recorded = 0;
    uint64_t counted = 0;
    std::map<std::string, uint64_t> by_kind;  // "<action> <outcome>" → count
    v1::AccessEvent actor;                    // actor fields of the identity
  };
  static v1::AccessEvent Aggregate(const Window& w, absl::Time end, uint32_t budget);

  const uint32_t budget_;
  const absl::Duration interval_;
  const Clock* const clock_;
  const size_t max_identities_;
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, Window> windows_ ABSL_GUARDED_BY(mu_);
  // Aggregates of windows that closed when their identity was charged again.
  std::vector<v1::AccessEvent> closed_ ABSL_GUARDED_BY(mu_);
};

// Counts evidence transfers in progress. A Slot holds one while alive.
class TransferSlots {
 public:
  explicit TransferSlots(uint32_t max) : max_(max) {}
  class Slot {
   public:
    explicit Slot(TransferSlots* owner) : owner_(owner) {}
    ~Slot() { owner_->in_use_.fetch_sub(1); }
    Slot(const Slot&) = delete;
    Slot& operator=(const Slot&) = delete;

   private:
    TransferSlots* owner_;
  };
  // A slot, or null if `max` transfers are already in progress.
  std::unique_ptr<Slot> TryAcquire();
  uint32_t max() const { return max_; }

 private:
  const uint32_t max_;
  std::atomic<uint32_t> in_use_{0};
};

// Ends streams that go silent: each registered stream says when it last
// moved (Touch, lock-free), and a thread checking every tenth of the timeout
// calls its `expire` callback once when it has been silent for `timeout`.
// `expire` runs on the watchdog's thread without its lock (it may cancel the
// call, and the call may unregister on that same thread). Unregister from any
// other thread waits for a running `expire` of that stream, so after it
// returns the stream may go.
class StreamWatchdog {
 public:
  StreamWatchdog(absl::Duration timeout, const Clock* clock);
  ~StreamWatchdog();

  class Registration {
   public:
    void Touch();

   private:
    friend class StreamWatchdog;
    std::atomic<int64_t> last_us_{0};
    std::function<void()> expire_;
    const Clock* clock_ = nullptr;
    bool fired_ = false;   // guarded by the watchdog's mu_
    bool firing_ = false;  // guarded by the watchdog's mu_: `expire` is running
  };
  Registration* Register(std::function<void()> expire);
  void Unregister(Registration* r);
  absl::Duration timeout() const { return timeout_; }

 private:
  void Run();

  const absl::Duration timeout_;
  const Clock* const clock_;
  absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::unique_ptr<Registration>> streams_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

}  // namespace corridor

#endif  // CORRIDOR_SERVER_COMMON_RATE_LIMIT_H_
