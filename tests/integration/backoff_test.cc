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

// The in-process form of federation_test's ReferralSentWhileRecipientIsDown:
// queued while the ministry is down, delivered once it starts, accepted there,
// and the ministry's outcome shows on the union's case.
TEST_F(BackoffTest, AReferralSentWhileTheReceiverIsDownArrivesAndItsOutcomeComesBack) {
  fed_.Stop(kMinistry);
  const std::string origin = CreateCase(fed_, kUnion, {});
  v1::ReferCaseResponse sent;
  ASSERT_TRUE(Refer(fed_, kUnion, ReferralOf(origin, kMinistry), &sent).ok());
  ASSERT_TRUE(EventuallySettled(fed_, kUnion, sent.envelope_id(), 1));
  const v1::OutboxEntry waiting = OutboxEntryOf(fed_, kUnion, sent.envelope_id());
  EXPECT_EQ(waiting.state(), "pending");
  EXPECT_FALSE(waiting.last_error().empty());
  ASSERT_TRUE(fed_.Start(kMinistry).ok());
  fed_.Advance(kMaxBackoff * 1.5);
  ASSERT_TRUE(EventuallyInState(fed_, kUnion, sent.envelope_id(), "delivered"));
  const std::string received = InboxItemOf(fed_, kMinistry, sent.referral_id()).case_id();
  ASSERT_FALSE(received.empty());

  v1::DecideReferralRequest decide;
  decide.set_referral_id(sent.referral_id());
  decide.set_accept(true);
  v1::DecideReferralResponse decided;
  ASSERT_TRUE(fed_.Referrals(kMinistry)
                  ->Decide(InProcessFederation::Context().get(), decide, &decided)
                  .ok());
  v1::PostUpdateRequest update;
  update.set_case_id(received);
  update.set_outcome("fees-refunded");
  update.set_note("refunded in full");
  v1::PostUpdateResponse updated;
  grpc::Status s =
      fed_.Referrals(kMinistry)->PostUpdate(InProcessFederation::Context().get(), update, &updated);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_EQ(updated.envelope_ids_size(), 1);
  ASSERT_TRUE(EventuallyInState(fed_, kMinistry, updated.envelope_ids(0), "delivered"));
  v1::Case c;
  ASSERT_TRUE(InProcessFederation::Eventually([&] {
    if (!GetCase(fed_, kUnion, origin, &c).ok()) return false;
    bool outcome = false;
    for (const v1::CaseNote& n : c.history()) outcome = outcome || n.outcome() == "fees-refunded";
    return outcome && c.referrals_size() == 1 &&
           c.referrals(0).state() == v1::REFERRAL_STATE_ACCEPTED;
  })) << c.DebugString();
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
