#include "server/common/rate_limit.h"

#include <atomic>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"

namespace corridor {
namespace {

// Where the test's clock starts; it moves only by hand.
constexpr absl::Time kStart = absl::FromUnixSeconds(1'700'000'000);

TEST(CallLimiterTest, BurstThenRefillAtTheRate) {
  FakeClock clock(kStart);
  CallLimiter limiter(2, 5, &clock);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(limiter.Take("a/user/x"), absl::ZeroDuration()) << i;
  const absl::Duration wait = limiter.Take("a/user/x");
  EXPECT_GT(wait, absl::ZeroDuration());
  EXPECT_LE(wait, absl::Milliseconds(500));
  // Another identity has its own bucket.
  EXPECT_EQ(limiter.Take("a/user/y"), absl::ZeroDuration());
  clock.Advance(absl::Seconds(1));  // two tokens back
  EXPECT_EQ(limiter.Take("a/user/x"), absl::ZeroDuration());
  EXPECT_EQ(limiter.Take("a/user/x"), absl::ZeroDuration());
  EXPECT_GT(limiter.Take("a/user/x"), absl::ZeroDuration());
  EXPECT_EQ(TooManyRequests("a/user/x", absl::Milliseconds(1200)),
            "too many requests from a/user/x; try again in 2 s");
}

TEST(CallLimiterTest, MemoryStaysBounded) {
  FakeClock clock(kStart);
  CallLimiter limiter(1, 1, &clock, /*max_identities=*/100);
  for (int i = 0; i < 10000; ++i) {
    limiter.Take(absl::StrCat("org/user/", i));
    if (i % 7 == 0) clock.Advance(absl::Milliseconds(1));
  }
  EXPECT_LE(limiter.size(), 100u);
}

TEST(CallLimiterTest, ConcurrentTakesNeverExceedTheBurst) {
  FakeClock clock(kStart);  // frozen: no refill
  CallLimiter limiter(1, 50, &clock);
  std::atomic<int> allowed{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 100; ++i) {
        if (limiter.Take("one") == absl::ZeroDuration()) ++allowed;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(allowed.load(), 50);
}

v1::AccessEvent Refusal(const std::string& subject, const std::string& action,
                        v1::AccessOutcome outcome = v1::ACCESS_OUTCOME_DENIED) {
  v1::AccessEvent e;
  e.set_actor_org("union-sg");
  e.set_actor_subject(subject);
  e.set_action(action);
  e.set_outcome(outcome);
  return e;
}

TEST(RefusalBudgetTest, BudgetThenFirstOverThenCountedPerInterval) {
  FakeClock clock(kStart);
  RefusalBudget budget(3, absl::Seconds(10), &clock);
  using V = RefusalBudget::Verdict;
  for (int i = 0; i < 3; ++i) EXPECT_EQ(budget.Charge(Refusal("user/x", "case.get")), V::kRecord);
  EXPECT_EQ(budget.Charge(Refusal("user/x", "case.get")), V::kRecordFirstOver);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(budget.Charge(Refusal("user/x", "case.get")), V::kCount);
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ(budget.Charge(Refusal("user/x", "audit.query", v1::ACCESS_OUTCOME_ERROR)), V::kCount);
  }
  // Another identity has its own budget.
  EXPECT_EQ(budget.Charge(Refusal("user/y", "case.get")), V::kRecord);
  EXPECT_TRUE(budget.TakeAggregates(false).empty());  // the interval is still open
  clock.Advance(absl::Seconds(10));
  auto closed = budget.TakeAggregates(false);
  ASSERT_EQ(closed.size(), 1u);
  EXPECT_EQ(closed[0].action(), "access.refusals");
  EXPECT_EQ(closed[0].actor_subject(), "user/x");
  EXPECT_EQ(RefusalBudget::CountOf(closed[0]), 7u);
  EXPECT_NE(closed[0].reason().find("case.get denied x5"), std::string::npos) << closed[0].reason();
  EXPECT_NE(closed[0].reason().find("audit.query error x2"), std::string::npos);
  EXPECT_TRUE(budget.TakeAggregates(true).empty());  // taken once
  // A new interval, a new budget.
  EXPECT_EQ(budget.Charge(Refusal("user/x", "case.get")), V::kRecord);
}

// A refused certificate's name is only a claim: a member that mints a new name
// for each call gets no new budget; the budget is its CA's.
TEST(RefusalBudgetTest, ClaimedNamesShareTheBudgetOfTheirVerifiedIssuer) {
  FakeClock clock(kStart);
  RefusalBudget budget(2, absl::Seconds(10), &clock);
  using V = RefusalBudget::Verdict;
  auto claimed = [](int i, const std::string& issuer, const std::string& org) {
    v1::AccessEvent e = Refusal(absl::StrCat("unverified:user/made-up-", i), "auth.refused");
    e.set_actor_org(org);  // what the certificate claims, any org
    e.set_actor_issuer(issuer);
    return e;
  };
  EXPECT_EQ(budget.Charge(claimed(0, "ministry-id", "union-sg")), V::kRecord);
  EXPECT_EQ(budget.Charge(claimed(1, "ministry-id", "inspectorate-sg")), V::kRecord);
  EXPECT_EQ(budget.Charge(claimed(2, "ministry-id", "union-sg")), V::kRecordFirstOver);
  for (int i = 3; i < 100; ++i) {
    EXPECT_EQ(budget.Charge(claimed(i, "ministry-id", absl::StrCat("org-", i))), V::kCount);
  }
  // Another issuer, and certificates no member issued, have budgets of their own.
  EXPECT_EQ(budget.Charge(claimed(0, "union-sg", "union-sg")), V::kRecord);
  EXPECT_EQ(budget.Charge(claimed(0, "", "union-sg")), V::kRecord);
  // A verified identity is not charged to its issuer's unverified budget.
  EXPECT_EQ(budget.Charge(Refusal("user/x", "case.get")), V::kRecord);
  clock.Advance(absl::Seconds(10));
  auto closed = budget.TakeAggregates(false);
  ASSERT_EQ(closed.size(), 1u);
  EXPECT_EQ(RefusalBudget::CountOf(closed[0]), 97u);
  EXPECT_EQ(closed[0].actor_org(), "ministry-id");
  EXPECT_EQ(closed[0].actor_subject(), "unverified:*");
  EXPECT_NE(closed[0].reason().find("unverified identities issued by ministry-id's CA"),
            std::string::npos)
      << closed[0].reason();
}

TEST(RefusalBudgetTest, ShutdownTakesOpenIntervalsAndChargingClosesOldOnes) {
  FakeClock clock(kStart);
  RefusalBudget budget(0, absl::Seconds(10), &clock);
  using V = RefusalBudget::Verdict;
  EXPECT_EQ(budget.Charge(Refusal("user/x", "case.get")), V::kRecordFirstOver);
  EXPECT_EQ(budget.Charge(Refusal("user/x", "case.get")), V::kCount);
  clock.Advance(absl::Seconds(11));
  // Charging after the interval closes keeps the old count for the next take.
  EXPECT_EQ(budget.Charge(Refusal("user/x", "case.get")), V::kRecordFirstOver);
  EXPECT_EQ(budget.Charge(Refusal("user/x", "case.get")), V::kCount);
  EXPECT_EQ(budget.Charge(Refusal("user/x", "case.get")), V::kCount);
  auto all = budget.TakeAggregates(true);
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(RefusalBudget::CountOf(all[0]) + RefusalBudget::CountOf(all[1]), 3u);
}

TEST(RefusalBudgetTest, ConcurrentChargesAreAllAccountedFor) {
  FakeClock clock(kStart);
  RefusalBudget budget(10, absl::Seconds(60), &clock, /*max_identities=*/4);
  std::atomic<uint64_t> recorded{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 500; ++i) {
        if (budget.Charge(Refusal(absl::StrCat("user/", t), "case.get")) !=
            RefusalBudget::Verdict::kCount) {
          ++recorded;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  uint64_t counted = 0;
  for (const auto& e : budget.TakeAggregates(true)) counted += RefusalBudget::CountOf(e);
  EXPECT_EQ(recorded.load() + counted, 8u * 500u);
  EXPECT_LE(recorded.load(), 5u * 11u);  // 4 identities + the overflow bucket
}

TEST(TransferSlotsTest, AtMostMax) {
  TransferSlots slots(2);
  auto a = slots.TryAcquire(), b = slots.TryAcquire();
  EXPECT_NE(a, nullptr);
  EXPECT_NE(b, nullptr);
  EXPECT_EQ(slots.TryAcquire(), nullptr);
  a.reset();
  EXPECT_NE(slots.TryAcquire(), nullptr);
}

TEST(StreamWatchdogTest, ExpiresSilentStreamsOnly) {
  FakeClock clock(kStart);
  StreamWatchdog watchdog(absl::Seconds(5), &clock);
  absl::Notification silent_expired;
  std::atomic<int> busy_expired{0};
  auto* silent = watchdog.Register([&] { silent_expired.Notify(); });
  auto* busy = watchdog.Register([&] { ++busy_expired; });
  for (int i = 0; i < 4; ++i) {
    clock.Advance(absl::Seconds(2));
    busy->Touch();
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_TRUE(silent_expired.WaitForNotificationWithTimeout(absl::Seconds(10)));
  EXPECT_EQ(busy_expired.load(), 0);
  watchdog.Unregister(silent);
  watchdog.Unregister(busy);
}

}  // namespace
}  // namespace corridor
