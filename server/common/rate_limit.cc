#include "server/common/rate_limit.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace corridor {

// ---- CallLimiter ---------------------------------------------------------------

CallLimiter::CallLimiter(double per_second, double burst, const Clock* clock, size_t max_identities)
    : per_second_(std::max(per_second, 1e-9)),
      burst_(std::max(burst, 1.0)),
      clock_(clock),
      max_identities_(std::max<size_t>(max_identities, 1)) {}

absl::Duration CallLimiter::Take(const std::string& identity) {
  const absl::Time now = clock_->Now();
  absl::MutexLock lock(&mu_);
  auto it = buckets_.find(identity);
  if (it == buckets_.end()) {
    if (buckets_.size() >= max_identities_) EvictLocked(now);
    it = buckets_.emplace(identity, Bucket{burst_, now}).first;
  }
  Bucket& b = it->second;
  const double elapsed = std::max(0.0, absl::ToDoubleSeconds(now - b.updated));
  b.tokens = std::min(burst_, b.tokens + elapsed * per_second_);
  b.updated = std::max(b.updated, now);
  if (b.tokens >= 1.0) {
    b.tokens -= 1.0;
    return absl::ZeroDuration();
  }
  return absl::Seconds((1.0 - b.tokens) / per_second_);
}

void CallLimiter::EvictLocked(absl::Time now) {
  // A bucket that has filled up again holds nothing a new one would not.
  const absl::Duration refill = absl::Seconds(burst_ / per_second_);
  for (auto it = buckets_.begin(); it != buckets_.end();) {
    if (now - it->second.updated >= refill) {
      buckets_.erase(it++);
    } else {
      ++it;
    }
  }
  if (buckets_.size() < max_identities_) return;
  auto oldest = std::min_element(
      buckets_.begin(), buckets_.end(),
      [](const auto& a, const auto& b) { return a.second.updated < b.second.updated; });
  buckets_.erase(oldest);
}

size_t CallLimiter::size() const {
  absl::MutexLock lock(&mu_);
  return buckets_.size();
}

std::string TooManyRequests(const std::string& identity, absl::Duration wait) {
  const int64_t seconds =
      std::max<int64_t>(1, static_cast<int64_t>(std::ceil(absl::ToDoubleSeconds(wait))));
  return absl::StrCat("too many requests from ", identity, "; try again in ", seconds, " s");
}

// ---- RefusalBudget ---------------------------------------------------------------

namespace {

constexpr char kOverflowIdentity[] = "(more identities than the node keeps apart)";

std::string OutcomeName(v1::AccessOutcome o) {
  switch (o) {
    case v1::ACCESS_OUTCOME_ALLOWED:
      return "allowed";
    case v1::ACCESS_OUTCOME_DENIED:
      return "denied";
    case v1::ACCESS_OUTCOME_ERROR:
      return "error";
    default:
      return "unspecified";
  }
}

std::string Rfc3339(absl::Time t) {
  return absl::FormatTime(absl::RFC3339_sec, t, absl::UTCTimeZone());
}

}  // namespace

RefusalBudget::RefusalBudget(uint32_t budget, absl::Duration interval, const Clock* clock,
                             size_t max_identities)
    : budget_(budget),
      interval_(std::max(interval, absl::Milliseconds(1))),
      clock_(clock),
      max_identities_(std::max<size_t>(max_identities, 1)) {}

std::string RefusalBudget::IdentityOf(const v1::AccessEvent& event) {
  // A refused certificate's name is only claimed: whoever holds a member's CA
  // can put any name in one. Such refusals share one budget per verified issuer.
  if (absl::StartsWith(event.actor_subject(), "unverified:")) {
    return event.actor_issuer().empty()
               ? std::string("unverified identities not issued by a member's CA")
               : absl::StrCat("unverified identities issued by ", event.actor_issuer(), "'s CA");
  }
  return absl::StrCat(event.actor_org(), "/", event.actor_subject());
}

uint64_t RefusalBudget::CountOf(const v1::AccessEvent& event) {
  uint64_t n = 0;
  if (event.action() != "access.refusals" || !absl::SimpleAtoi(event.resource_id(), &n)) return 0;
  return n;
}

v1::AccessEvent RefusalBudget::Aggregate(const Window& w, absl::Time end, uint32_t budget) {
  v1::AccessEvent e = w.actor;
  if (absl::StartsWith(e.actor_subject(), "unverified:")) {
    // Counted over every name claimed under this issuer, not only the first.
    e.set_actor_org(e.actor_issuer());
    e.set_actor_subject("unverified:*");
  }
  e.set_action("access.refusals");
  e.set_resource_kind("count");
  e.set_resource_id(absl::StrCat(w.counted));
  bool all_errors = true;
  std::vector<std::string> kinds;
  for (const auto& [kind, n] : w.by_kind) {
    kinds.push_back(absl::StrCat(kind, " x", n));
    all_errors = all_errors && absl::EndsWith(kind, " error");
  }
  e.set_outcome(all_errors ? v1::ACCESS_OUTCOME_ERROR : v1::ACCESS_OUTCOME_DENIED);
  e.set_reason(absl::StrCat(w.counted, " more refusals of ", IdentityOf(w.actor), " from ",
                            Rfc3339(w.start), " to ", Rfc3339(end), ", past the ", budget,
                            " recorded one by one: ", absl::StrJoin(kinds, ", ")));
  return e;
}

RefusalBudget::Verdict RefusalBudget::Charge(const v1::AccessEvent& event) {
  const absl::Time now = clock_->Now();
  std::string identity = IdentityOf(event);
  absl::MutexLock lock(&mu_);
  auto it = windows_.find(identity);
  if (it != windows_.end() && now - it->second.start >= interval_) {
    if (it->second.counted > 0) {
      closed_.push_back(Aggregate(it->second, it->second.start + interval_, budget_));
    }
    windows_.erase(it);
    it = windows_.end();
  }
  if (it == windows_.end()) {
    if (windows_.size() >= max_identities_) identity = kOverflowIdentity;
    it = windows_.find(identity);
    if (it == windows_.end()) {
      Window w;
      w.start = now;
      w.actor.set_actor_org(event.actor_org());
      w.actor.set_actor_subject(event.actor_subject());
      *w.actor.mutable_actor_roles() = event.actor_roles();
      w.actor.set_actor_issuer(event.actor_issuer());
      if (identity == kOverflowIdentity) {
        w.actor.set_actor_org("");
        w.actor.set_actor_subject(kOverflowIdentity);
      }
      it = windows_.emplace(identity, std::move(w)).first;
    }
  }
  Window& w = it->second;
  if (w.recorded < budget_) {
    ++w.recorded;
    return Verdict::kRecord;
  }
  if (w.recorded == budget_) {
    ++w.recorded;
    return Verdict::kRecordFirstOver;
  }
  ++w.counted;
  ++w.by_kind[absl::StrCat(event.action(), " ", OutcomeName(event.outcome()))];
  return Verdict::kCount;
}

std::vector<v1::AccessEvent> RefusalBudget::TakeAggregates(bool all) {
  const absl::Time now = clock_->Now();
  absl::MutexLock lock(&mu_);
  std::vector<v1::AccessEvent> out = std::move(closed_);
  closed_.clear();
  for (auto it = windows_.begin(); it != windows_.end();) {
    const Window& w = it->second;
    const bool over = now - w.start >= interval_;
    if (!over && !all) {
      ++it;
      continue;
    }
    if (w.counted > 0) out.push_back(Aggregate(w, over ? w.start + interval_ : now, budget_));
    windows_.erase(it++);
  }
  return out;
}

// ---- TransferSlots ---------------------------------------------------------------

std::unique_ptr<TransferSlots::Slot> TransferSlots::TryAcquire() {
  uint32_t n = in_use_.load();
  do {
    if (n >= max_) return nullptr;
  } while (!in_use_.compare_exchange_weak(n, n + 1));
  return std::make_unique<Slot>(this);
}

// ---- StreamWatchdog ---------------------------------------------------------------

void StreamWatchdog::Registration::Touch() {
  last_us_.store(absl::ToUnixMicros(clock_->Now()), std::memory_order_relaxed);
}

StreamWatchdog::StreamWatchdog(absl::Duration timeout, const Clock* clock)
    : timeout_(timeout), clock_(clock) {
  thread_ = std::thread([this] { Run(); });
}

StreamWatchdog::~StreamWatchdog() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  thread_.join();
}

StreamWatchdog::Registration* StreamWatchdog::Register(std::function<void()> expire) {
  auto r = std::make_unique<Registration>();
  r->expire_ = std::move(expire);
  r->clock_ = clock_;
  r->Touch();
  Registration* out = r.get();
  absl::MutexLock lock(&mu_);
  streams_.push_back(std::move(r));
  return out;
}

void StreamWatchdog::Unregister(Registration* r) {
  absl::MutexLock lock(&mu_);
  // From another thread, wait for a running `expire` of this stream to return.
  // From inside it (gRPC may finish a cancelled call inline), Run no longer
  // touches `r` once it is gone from `streams_`.
  if (std::this_thread::get_id() != thread_.get_id()) {
    mu_.Await(absl::Condition(
        +[](Registration* r) { return !r->firing_; }, r));
  }
  auto it = std::find_if(streams_.begin(), streams_.end(),
                         [r](const std::unique_ptr<Registration>& p) { return p.get() == r; });
  if (it != streams_.end()) streams_.erase(it);
}

void StreamWatchdog::Run() {
  const absl::Duration tick =
      std::clamp(timeout_ / 10, absl::Milliseconds(10), absl::Milliseconds(500));
  absl::MutexLock lock(&mu_);
  while (!stop_) {
    mu_.AwaitWithTimeout(absl::Condition(&stop_), tick);
    if (stop_) break;
    const int64_t now_us = absl::ToUnixMicros(clock_->Now());
    const int64_t timeout_us = absl::ToInt64Microseconds(timeout_);
    std::vector<Registration*> expired;
    for (auto& r : streams_) {
      if (r->fired_) continue;
      if (now_us - r->last_us_.load(std::memory_order_relaxed) < timeout_us) continue;
      r->fired_ = true;
      r->firing_ = true;
      expired.push_back(r.get());
    }
    // Each `expire` runs without the lock: it may cancel a call, and gRPC may
    // run that call's last reactions (and its Unregister) on this thread.
    for (Registration* r : expired) {
      std::function<void()> expire = r->expire_;
      mu_.Unlock();
      expire();
      mu_.Lock();
      for (auto& p : streams_) {
        if (p.get() == r) p->firing_ = false;
      }
    }
  }
}

}  // namespace corridor
