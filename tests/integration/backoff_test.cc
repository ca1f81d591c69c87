// Delivery to a peer that is down, in process on a fake clock: each retry is
// due exactly when the seeded backoff schedule says (docs/federation.md:
// min(base · 2^n, max) · uniform(0.5, 1.5) after the n-th failure in a row),
// nothing is sent a millisecond before that, advancing the clock to it makes
// the retry happen, and once the peer is back the envelope is delivered.
#include <algorithm>
#include <string>

#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "ledger/base/clock.h"
#include "tests/integration/calls.h"
#include "tests/testing/inproc_federation.h"

namespace corridor::testing {
namespace {

constexpr char kUnion[] = "union-sg";
constexpr char kMinistry[] = "ministry-id";
constexpr uint64_t kSeed = 20261130;
// ExchangeOptions' defaults, which a node uses.
constexpr absl::Duration kBaseBackoff = absl::Milliseconds(250);
constexpr absl::Duration kMaxBackoff = absl::Seconds(30);

std::string Rfc3339(absl::Time t) {
  return absl::FormatTime(absl::RFC3339_sec, t, absl::UTCTimeZone());
}

class BackoffTest : public ::testing::Test {
 protected:
  static InProcessFederationOptions Options() {
    InProcessFederationOptions o;
    o.jitter_seed = kSeed;  // the union's node (the first org) gets kSeed
    o.limits = {{"peer_call_timeout_seconds", "1"}};
    return o;
  }
  BackoffTest() : fed_(Options()) {}
  void SetUp() override { ASSERT_TRUE(fed_.StartAll().ok()); }

  uint32_t Attempts(const std::string& envelope_id) {
    return OutboxEntryOf(fed_, kUnion, envelope_id).attempts();
  }

  InProcessFederation fed_;
};

TEST_F(BackoffTest, RetriesFollowTheSeededScheduleAndAdvancingTheClockMakesThemHappen) {
  fed_.Stop(kMinistry);
  v1::ReferCaseResponse sent;
  ASSERT_TRUE(Refer(fed_, kUnion, ReferralOf(CreateCase(fed_, kUnion, {}), kMinistry), &sent).ok());
  const std::string id = sent.envelope_id();
  Jitter expected_jitter(kSeed);  // the same draws as the union's exchange
  for (uint32_t failures = 1; failures <= 4; ++failures) {
    SCOPED_TRACE(failures);
    // The attempt is recorded and its call done (the retry scheduled).
    ASSERT_TRUE(EventuallySettled(fed_, kUnion, id, failures));
    ASSERT_EQ(Attempts(id), failures);
    const absl::Time failed_at = fed_.clock().Now();
    const absl::Duration delay =
        std::min(kBaseBackoff * (1 << failures), kMaxBackoff) * expected_jitter.Uniform(0.5, 1.5);
    const v1::OutboxEntry entry = OutboxEntryOf(fed_, kUnion, id);
    EXPECT_EQ(entry.state(), "pending");
    EXPECT_EQ(entry.next_attempt(),
              Rfc3339(absl::FromUnixMillis(absl::ToUnixMillis(failed_at + delay))));
    // A millisecond before it is due nothing is sent.
    fed_.Advance(delay - absl::Milliseconds(1));
    EXPECT_EQ(fed_.node(kUnion).DeliveriesOutstanding(), 0);
    EXPECT_EQ(Attempts(id), failures);
    // When it is due the retry starts (and, the ministry being down, fails).
    fed_.Advance(absl::Milliseconds(1));
    EXPECT_TRUE(fed_.node(kUnion).DeliveriesOutstanding() > 0 || Attempts(id) > failures);
  }
  ASSERT_TRUE(EventuallySettled(fed_, kUnion, id, 5));
  // The ministry is back: the next retry delivers it.
  ASSERT_TRUE(fed_.Start(kMinistry).ok());
  fed_.Advance(kMaxBackoff * 1.5);
  ASSERT_TRUE(EventuallyInState(fed_, kUnion, id, "delivered"));
  EXPECT_FALSE(InboxItemOf(fed_, kMinistry, sent.referral_id()).case_id().empty());
}

TEST_F(BackoffTest, TheSameSeedGivesTheSameScheduleAndAnotherSeedAnother) {
  Jitter a(kSeed), b(kSeed), c(kSeed + 1);
  bool differs = false;
  for (int i = 0; i < 16; ++i) {
    const double x = a.Uniform(0.5, 1.5);
    EXPECT_EQ(x, b.Uniform(0.5, 1.5));
    EXPECT_GE(x, 0.5);
    EXPECT_LT(x, 1.5);
    differs = differs || x != c.Uniform(0.5, 1.5);
  }
  EXPECT_TRUE(differs);
}

}  // namespace
}  // namespace corridor::testing
