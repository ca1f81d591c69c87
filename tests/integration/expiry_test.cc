// What time ends, in process on a fake clock and without sleeping: a signing
// key past its valid_until (envelopes signed with it are refused by the
// receiver however they are dated), an envelope not delivered within its
// lifetime (it fails at the sender, and the referral with it), and a received
// case past its retention date (closed to reads at the receiver, each refused
// read recorded; the sender's own case stays readable).
#include <string>

#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "tests/integration/calls.h"
#include "tests/testing/inproc_federation.h"

namespace corridor::testing {
namespace {

constexpr char kUnion[] = "union-sg";
constexpr char kMinistry[] = "ministry-id";

std::string Rfc3339(absl::Time t) {
  return absl::FormatTime(absl::RFC3339_sec, t, absl::UTCTimeZone());
}

// The state of the sender's link of `referral_id` on its case `case_id`.
v1::ReferralState LinkState(InProcessFederation& fed, const std::string& case_id,
                            const std::string& referral_id) {
  v1::Case c;
  if (!GetCase(fed, kUnion, case_id, &c).ok()) return v1::REFERRAL_STATE_UNSPECIFIED;
  for (const auto& l : c.referrals()) {
    if (l.referral_id() == referral_id) return l.state();
  }
  return v1::REFERRAL_STATE_UNSPECIFIED;
}

class KeyExpiryTest : public ::testing::Test {
 protected:
  static constexpr absl::Duration kKeyLife = absl::Hours(24 * 10);
  static InProcessFederationOptions Options(absl::Time start) {
    InProcessFederationOptions o;
    o.start = start;
    // The union's only signing key is valid for ten days from the start.
    o.edit_roster = [start](v1::Roster& r) {
      for (auto& m : *r.mutable_members()) {
        if (m.org() == kUnion)
          m.mutable_signing_keys(0)->set_valid_until(Rfc3339(start + kKeyLife));
      }
    };
    o.limits = {{"peer_call_timeout_seconds", "1"}};
    return o;
  }
  KeyExpiryTest()
      : start_(absl::FromUnixSeconds(absl::ToUnixSeconds(absl::Now()))), fed_(Options(start_)) {}
  void SetUp() override { ASSERT_TRUE(fed_.StartAll().ok()); }

  const absl::Time start_;
  InProcessFederation fed_;
};

TEST_F(KeyExpiryTest, EnvelopesSignedWithAKeyPastItsValidUntilAreRefusedHoweverTheyAreDated) {
  // Within the key's validity a referral is delivered.
  v1::ReferCaseResponse before;
  ASSERT_TRUE(
      Refer(fed_, kUnion, ReferralOf(CreateCase(fed_, kUnion, {}), kMinistry), &before).ok());
  ASSERT_TRUE(EventuallyInState(fed_, kUnion, before.envelope_id(), "delivered"));

  // Signed a minute before the key ends, but the ministry is down until after
  // it: the ministry refuses it by its own clock.
  fed_.Stop(kMinistry);
  fed_.Advance(kKeyLife - absl::Minutes(1));
  const std::string late_case = CreateCase(fed_, kUnion, {});
  v1::ReferCaseResponse late;
  ASSERT_TRUE(Refer(fed_, kUnion, ReferralOf(late_case, kMinistry), &late).ok());
  ASSERT_TRUE(EventuallySettled(fed_, kUnion, late.envelope_id(), 1));
  fed_.Advance(absl::Minutes(2));
  ASSERT_TRUE(fed_.Start(kMinistry).ok());
  fed_.Advance(absl::Minutes(1));  // past any backoff
  ASSERT_TRUE(EventuallyInState(fed_, kUnion, late.envelope_id(), "failed"));
  EXPECT_NE(
      OutboxEntryOf(fed_, kUnion, late.envelope_id()).last_error().find("stopped being valid"),
      std::string::npos)
      << OutboxEntryOf(fed_, kUnion, late.envelope_id()).last_error();
  EXPECT_TRUE(InProcessFederation::Eventually(
      [&] { return LinkState(fed_, late_case, late.referral_id()) == v1::REFERRAL_STATE_FAILED; }));

  // Signed after the key ended: refused the same way.
  v1::ReferCaseResponse after;
  ASSERT_TRUE(
      Refer(fed_, kUnion, ReferralOf(CreateCase(fed_, kUnion, {}), kMinistry), &after).ok());
  ASSERT_TRUE(EventuallyInState(fed_, kUnion, after.envelope_id(), "failed"));

  // Neither reached the ministry's inbox; each refusal is a denied entry there.
  EXPECT_FALSE(InboxItemOf(fed_, kMinistry, before.referral_id()).case_id().empty());
  EXPECT_TRUE(InboxItemOf(fed_, kMinistry, late.referral_id()).case_id().empty());
  EXPECT_TRUE(InboxItemOf(fed_, kMinistry, after.referral_id()).case_id().empty());
  EXPECT_EQ(Events(fed_, kMinistry, "envelope.receive", v1::ACCESS_OUTCOME_DENIED).size(), 2u);
}

class ExpiryTest : public ::testing::Test {
 protected:
  static InProcessFederationOptions Options() {
    InProcessFederationOptions o;
    o.limits = {{"peer_call_timeout_seconds", "1"}};
    return o;
  }
  ExpiryTest() : fed_(Options()) {}
  void SetUp() override { ASSERT_TRUE(fed_.StartAll().ok()); }
  InProcessFederation fed_;
};

TEST_F(ExpiryTest, AnEnvelopeNotDeliveredWithinItsLifetimeFailsAndSoDoesItsReferral) {
  fed_.Stop(kMinistry);
  const std::string case_id = CreateCase(fed_, kUnion, {});
  v1::ReferCaseResponse sent;
  ASSERT_TRUE(Refer(fed_, kUnion, ReferralOf(case_id, kMinistry), &sent).ok());
  ASSERT_TRUE(EventuallySettled(fed_, kUnion, sent.envelope_id(), 1));
  // Six days on it is tried again (and fails again), still pending, its link still queued.
  fed_.Advance(absl::Hours(24 * 6));
  ASSERT_TRUE(EventuallySettled(fed_, kUnion, sent.envelope_id(), 2));
  EXPECT_EQ(OutboxEntryOf(fed_, kUnion, sent.envelope_id()).state(), "pending");
  EXPECT_EQ(LinkState(fed_, case_id, sent.referral_id()), v1::REFERRAL_STATE_QUEUED);
  // Past its seven days it fails when next due, without another call, and
  // the referral with it.
  fed_.Advance(absl::Hours(24) + absl::Seconds(1));
  ASSERT_TRUE(EventuallyInState(fed_, kUnion, sent.envelope_id(), "failed"))
      << OutboxEntryOf(fed_, kUnion, sent.envelope_id()).DebugString();
  EXPECT_EQ(OutboxEntryOf(fed_, kUnion, sent.envelope_id()).attempts(), 2u);
  EXPECT_NE(OutboxEntryOf(fed_, kUnion, sent.envelope_id()).last_error().find("expired"),
            std::string::npos);
  EXPECT_TRUE(InProcessFederation::Eventually(
      [&] { return LinkState(fed_, case_id, sent.referral_id()) == v1::REFERRAL_STATE_FAILED; }));
  // The ministry, back, never receives it.
  ASSERT_TRUE(fed_.Start(kMinistry).ok());
  fed_.Advance(absl::Minutes(1));
  EXPECT_TRUE(InboxItemOf(fed_, kMinistry, sent.referral_id()).case_id().empty());
}

TEST_F(ExpiryTest, AReceivedCaseClosesToReadsAtItsRetentionDate) {
  const absl::Time start = fed_.clock().Now();
  const std::string origin = CreateCase(fed_, kUnion, {});
  // One referral kept two days, one with the default (a year).
  v1::ReferCaseRequest short_kept = ReferralOf(origin, kMinistry);
  short_kept.set_retention_until(Rfc3339(start + absl::Hours(48)));
  v1::ReferCaseResponse s1, s2;
  ASSERT_TRUE(Refer(fed_, kUnion, short_kept, &s1).ok());
  ASSERT_TRUE(Refer(fed_, kUnion, ReferralOf(CreateCase(fed_, kUnion, {}), kMinistry), &s2).ok());
  ASSERT_TRUE(EventuallyInState(fed_, kUnion, s1.envelope_id(), "delivered"));
  ASSERT_TRUE(EventuallyInState(fed_, kUnion, s2.envelope_id(), "delivered"));
  const std::string two_days = InboxItemOf(fed_, kMinistry, s1.referral_id()).case_id();
  const std::string one_year = InboxItemOf(fed_, kMinistry, s2.referral_id()).case_id();
  ASSERT_FALSE(two_days.empty());
  ASSERT_FALSE(one_year.empty());

  struct Step {
    absl::Duration at;  // since the start
    bool two_days_readable, one_year_readable;
  };
  const Step steps[] = {
      {absl::Hours(47) + absl::Minutes(59), true, true},
      {absl::Hours(48), false, true},  // the retention date itself is closed
      {absl::Hours(24 * 364), false, true},
      {absl::Hours(24 * 366), false, false},
  };
  size_t refused = 0;
  for (const Step& step : steps) {
    fed_.clock().Set(start + step.at);
    SCOPED_TRACE(absl::FormatDuration(step.at));
    for (const auto& [id, readable] : {std::pair{two_days, step.two_days_readable},
                                       std::pair{one_year, step.one_year_readable}}) {
      v1::Case c;
      grpc::Status s = GetCase(fed_, kMinistry, id, &c);
      if (readable) {
        EXPECT_TRUE(s.ok()) << s.error_message();
        continue;
      }
      ++refused;
      EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
      EXPECT_NE(s.error_message().find("closed to reads"), std::string::npos) << s.error_message();
      EXPECT_TRUE(c.worker().name().empty() && c.id().empty());
    }
  }
  // Every refused read is one denied entry at the ministry.
  EXPECT_EQ(Events(fed_, kMinistry, "case.get", v1::ACCESS_OUTCOME_DENIED).size(), refused);
  // The union's own case is not bound by what it asked the ministry to keep.
  v1::Case own;
  EXPECT_TRUE(GetCase(fed_, kUnion, origin, &own).ok());
}

}  // namespace
}  // namespace corridor::testing
