// Time and randomness as injected dependencies, so that expiry, retention,
// backoff and rate limits can be tested by moving a fake clock instead of
// sleeping (docs/testing.md, "In-process tests on a fake clock").
//
// Clock says what time it is. Business time — when an envelope, agreement or
// key expires, when a case passes retention, when a retry is due, what time a
// record carries — is read from the Clock a component is given. Deadlines
// handed to gRPC and waits on real threads stay on absl::Now(): they measure
// the transport, and a fake clock that never moves would hang them.
//
// Clock::Real() is the process-wide real clock; FakeClock is a settable clock
// for tests and the in-process federation harness. Components hold a
// `const Clock*` that must outlive them. Thread-safe.
#ifndef CORRIDOR_LEDGER_BASE_CLOCK_H_
#define CORRIDOR_LEDGER_BASE_CLOCK_H_

#include <cstdint>
#include <random>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace corridor {

class Clock {
 public:
  virtual ~Clock() = default;
  // The current time. Never goes backwards for the real clock; a FakeClock
  // returns what it was last set to.
  virtual absl::Time Now() const = 0;

  // The process-wide real clock (absl::Now). Never destroyed.
  static const Clock& Real();
};

// A clock that moves only when told to. Thread-safe: tests advance it while
// the nodes under test read it.
class FakeClock final : public Clock {
 public:
  explicit FakeClock(absl::Time start) : now_(start) {}
  absl::Time Now() const override {
    absl::MutexLock lock(&mu_);
    return now_;
  }
  // Moves the clock forward by `d` (a negative `d` moves it back: for tests
  // of a clock that jumps).
  void Advance(absl::Duration d) {
    absl::MutexLock lock(&mu_);
    now_ += d;
  }
  void Set(absl::Time t) {
    absl::MutexLock lock(&mu_);
    now_ = t;
  }

 private:
  mutable absl::Mutex mu_;
  absl::Time now_ ABSL_GUARDED_BY(mu_);
};

// A seedable source of uniform random numbers for jitter (not for keys or
// ids: those come from the crypto library). The same seed gives the same
// sequence, so a test can predict a backoff schedule. Thread-safe.
class Jitter {
 public:
  // `seed` 0 means a seed from std::random_device.
  explicit Jitter(uint64_t seed = 0) : rng_(seed != 0 ? seed : std::random_device{}()) {}
  // A number drawn uniformly from [lo, hi).
  double Uniform(double lo, double hi) {
    absl::MutexLock lock(&mu_);
    return std::uniform_real_distribution<double>(lo, hi)(rng_);
  }

 private:
  absl::Mutex mu_;
  std::mt19937_64 rng_ ABSL_GUARDED_BY(mu_);
};

}  // namespace corridor

#endif  // CORRIDOR_LEDGER_BASE_CLOCK_H_
