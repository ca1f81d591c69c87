// The referral policy between nodes, in process on a fake clock: consent
// decides whether a worker's personal data travels, the agreement must bind
// the receiver and cover the purpose, and a received case travels on only as
// its originator's handling rules allow (docs/federation.md, "Policy that
// travels"). Every refusal changes nothing (no outbox item) and is one denied
// ledger entry at the node that refused.
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/integration/calls.h"
#include "tests/testing/inproc_federation.h"

namespace corridor::testing {
namespace {

constexpr char kUnion[] = "union-sg";
constexpr char kMinistry[] = "ministry-id";
constexpr char kNgo[] = "ngo-my";
// Binds only the union and the ministry; covers one more purpose.
constexpr char kPairAgreement[] = "sg-id-pair";
constexpr char kFeeRecovery[] = "fee-recovery";
// Binds the ministry and the NGO only.
constexpr char kOnwardAgreement[] = "id-my-onward";

InProcessFederationOptions ThreeOrgs() {
  InProcessFederationOptions o;
  o.orgs = {
      {kUnion, v1::ORG_KIND_UNION}, {kMinistry, v1::ORG_KIND_MINISTRY}, {kNgo, v1::ORG_KIND_NGO}};
  o.edit_roster = [](v1::Roster& r) {
    v1::Agreement* a = r.add_agreements();
    a->set_id(kPairAgreement);
    a->add_parties(kUnion);
    a->add_parties(kMinistry);
    a->add_purposes(kPurpose);
    a->add_purposes(kFeeRecovery);
    v1::Agreement* b = r.add_agreements();
    b->set_id(kOnwardAgreement);
    b->add_parties(kMinistry);
    b->add_parties(kNgo);
    b->add_purposes(kPurpose);
  };
  return o;
}

class ReferralPolicyTest : public ::testing::Test {
 protected:
  ReferralPolicyTest() : fed_(ThreeOrgs()) {}
  void SetUp() override { ASSERT_TRUE(fed_.StartAll().ok()); }

  // Refers `req` from `at` and waits until the receiver holds it; the
  // receiver's local case id.
  std::string ReferAndReceive(const std::string& at, const v1::ReferCaseRequest& req) {
    v1::ReferCaseResponse resp;
    grpc::Status s = Refer(fed_, at, req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    if (!s.ok()) return "";
    EXPECT_TRUE(EventuallyInState(fed_, at, resp.envelope_id(), "delivered"))
        << OutboxEntryOf(fed_, at, resp.envelope_id()).DebugString();
    const v1::InboxItem item = InboxItemOf(fed_, req.to_org(), resp.referral_id());
    EXPECT_FALSE(item.case_id().empty()) << "referral " << resp.referral_id() << " not received";
    return item.case_id();
  }

  // Refers `req` from `at` expecting the refusal `code`: nothing is queued,
  // and the refusal is one more denied "referral.send" entry.
  void ExpectRefused(const std::string& at, const v1::ReferCaseRequest& req, grpc::StatusCode code,
                     const std::string& why) {
    SCOPED_TRACE(why);
    const size_t outbox = Outbox(fed_, at).size();
    const size_t denied = Events(fed_, at, "referral.send", v1::ACCESS_OUTCOME_DENIED).size();
    v1::ReferCaseResponse resp;
    grpc::Status s = Refer(fed_, at, req, &resp);
    EXPECT_EQ(s.error_code(), code) << s.error_message();
    EXPECT_TRUE(resp.referral_id().empty());
    EXPECT_EQ(Outbox(fed_, at).size(), outbox) << "a refused referral was queued";
    // The refusal is recorded before the caller hears of it.
    EXPECT_EQ(Events(fed_, at, "referral.send", v1::ACCESS_OUTCOME_DENIED).size(), denied + 1);
  }

  InProcessFederation fed_;
};

TEST_F(ReferralPolicyTest, ConsentDecidesWhetherTheWorkersDataTravels) {
  struct Row {
    const char* name;
    std::vector<std::pair<std::string, std::string>> consent;
    bool deidentify;
    bool refused;      // without --deidentify, no consent: refused
    bool with_worker;  // the receiver gets the worker's name
  };
  const std::vector<Row> rows = {
      {"consent for this org and purpose", {{kMinistry, kPurpose}}, false, false, true},
      {"no consent", {}, false, true, false},
      {"consent for another org", {{kNgo, kPurpose}}, false, true, false},
      {"consent for another purpose", {{kMinistry, kFeeRecovery}}, false, true, false},
      {"no consent, de-identified", {}, true, false, false},
      {"consent, de-identify asked but not needed", {{kMinistry, kPurpose}}, true, false, true},
  };
  for (const Row& row : rows) {
    SCOPED_TRACE(row.name);
    v1::ReferCaseRequest req = ReferralOf(CreateCase(fed_, kUnion, row.consent), kMinistry);
    req.set_include_personal_data(true);
    req.set_deidentify(row.deidentify);
    if (row.refused) {
      ExpectRefused(kUnion, req, grpc::StatusCode::PERMISSION_DENIED, row.name);
      continue;
    }
    const std::string received = ReferAndReceive(kUnion, req);
    v1::Case c;
    grpc::Status s = GetCase(fed_, kMinistry, received, &c);
    ASSERT_TRUE(s.ok()) << s.error_message();
    EXPECT_EQ(c.worker().name() == kWorkerName, row.with_worker) << c.worker().name();
    EXPECT_EQ(c.narrative().empty(), !row.with_worker);
    EXPECT_EQ(c.employer().name(), "Kestrel Pte Ltd");  // not personal data: always shared
  }
}

TEST_F(ReferralPolicyTest, TheAgreementMustBindTheReceiverAndCoverThePurpose) {
  const std::string case_id = CreateCase(fed_, kUnion, {});
  struct Row {
    const char* name;
    std::string to, agreement, purpose;
    grpc::StatusCode code;
  };
  const std::vector<Row> rows = {
      // Refused as the receiver refuses it (the referral policy, both sides).
      {"unknown agreement", kMinistry, "no-such-agreement", kPurpose,
       grpc::StatusCode::PERMISSION_DENIED},
      {"agreement without the receiver", kNgo, kPairAgreement, kPurpose,
       grpc::StatusCode::PERMISSION_DENIED},
      {"purpose not covered", kMinistry, kAgreement, kFeeRecovery,
       grpc::StatusCode::PERMISSION_DENIED},
      {"to itself", kUnion, kAgreement, kPurpose, grpc::StatusCode::INVALID_ARGUMENT},
      {"to nobody", "", kAgreement, kPurpose, grpc::StatusCode::INVALID_ARGUMENT},
  };
  for (const Row& row : rows) {
    v1::ReferCaseRequest req = ReferralOf(case_id, row.to);
    req.set_agreement(row.agreement);
    req.set_purpose(row.purpose);
    ExpectRefused(kUnion, req, row.code, row.name);
  }
  // The same case under an agreement that covers it goes through, for each purpose it covers.
  for (const char* purpose : {kPurpose, kFeeRecovery}) {
    v1::ReferCaseRequest req = ReferralOf(case_id, kMinistry);
    req.set_agreement(kPairAgreement);
    req.set_purpose(purpose);
    EXPECT_FALSE(ReferAndReceive(kUnion, req).empty()) << purpose;
  }
}

TEST_F(ReferralPolicyTest, AReceivedCaseTravelsOnOnlyAsItsOriginatorAllows) {
  struct Row {
    const char* name;
    v1::OnwardSharing rule;
    bool same_agreement_allowed;   // ministry → NGO under the agreement it came under
    bool other_agreement_allowed;  // ministry → NGO under another agreement
  };
  const std::vector<Row> rows = {
      {"unspecified means never", v1::ONWARD_SHARING_UNSPECIFIED, false, false},
      {"never", v1::ONWARD_SHARING_NEVER, false, false},
      {"within the agreement", v1::ONWARD_SHARING_WITHIN_AGREEMENT, true, false},
      {"with the originator's permission, none given",
       v1::ONWARD_SHARING_WITH_ORIGINATOR_PERMISSION, false, false},
  };
  for (const Row& row : rows) {
    SCOPED_TRACE(row.name);
    v1::ReferCaseRequest first = ReferralOf(CreateCase(fed_, kUnion, {}), kMinistry);
    first.set_onward_sharing(row.rule);
    const std::string received = ReferAndReceive(kUnion, first);
    ASSERT_FALSE(received.empty());
    v1::ReferCaseRequest onward = ReferralOf(received, kNgo);
    v1::ReferCaseRequest elsewhere = ReferralOf(received, kNgo);
    elsewhere.set_agreement(kOnwardAgreement);
    if (row.other_agreement_allowed) {
      EXPECT_FALSE(ReferAndReceive(kMinistry, elsewhere).empty());
    } else {
      ExpectRefused(kMinistry, elsewhere, grpc::StatusCode::PERMISSION_DENIED,
                    "under another agreement");
    }
    if (row.same_agreement_allowed) {
      EXPECT_FALSE(ReferAndReceive(kMinistry, onward).empty());
    } else {
      ExpectRefused(kMinistry, onward, grpc::StatusCode::PERMISSION_DENIED,
                    "under the same agreement");
    }
  }
}

TEST_F(ReferralPolicyTest, TheOriginatorsPermissionOpensExactlyOneOnwardReferralUntilItExpires) {
  const std::string origin = CreateCase(fed_, kUnion, {});
  v1::ReferCaseRequest first = ReferralOf(origin, kMinistry);
  first.set_onward_sharing(v1::ONWARD_SHARING_WITH_ORIGINATOR_PERMISSION);
  v1::ReferCaseResponse sent;
  ASSERT_TRUE(Refer(fed_, kUnion, first, &sent).ok());
  ASSERT_TRUE(EventuallyInState(fed_, kUnion, sent.envelope_id(), "delivered"));
  const std::string received = InboxItemOf(fed_, kMinistry, sent.referral_id()).case_id();
  ASSERT_FALSE(received.empty());
  const v1::ReferCaseRequest onward = ReferralOf(received, kNgo);
  ExpectRefused(kMinistry, onward, grpc::StatusCode::PERMISSION_DENIED, "before the permission");
  // The ministry accepts the referral (a permission is for an accepted one).
  v1::DecideReferralRequest decide;
  decide.set_referral_id(sent.referral_id());
  decide.set_accept(true);
  v1::DecideReferralResponse decided;
  grpc::Status accepted =
      fed_.Referrals(kMinistry)->Decide(InProcessFederation::Context().get(), decide, &decided);
  ASSERT_TRUE(accepted.ok()) << accepted.error_message();
  ASSERT_TRUE(EventuallyInState(fed_, kMinistry, decided.envelope_id(), "delivered"));
  ASSERT_TRUE(InProcessFederation::Eventually([&] {
    v1::Case c;
    if (!GetCase(fed_, kUnion, origin, &c).ok()) return false;
    for (const auto& l : c.referrals()) {
      if (l.referral_id() == sent.referral_id()) return l.state() == v1::REFERRAL_STATE_ACCEPTED;
    }
    return false;
  }));

  // The union permits the ministry to pass it to the NGO for this purpose.
  v1::PermitRequest permit;
  permit.set_case_id(origin);
  permit.set_referral_id(sent.referral_id());
  permit.set_to_org(kNgo);
  permit.set_purpose(kPurpose);
  permit.set_agreement(kAgreement);
  v1::PermitResponse permitted;
  grpc::Status s =
      fed_.Referrals(kUnion)->Permit(InProcessFederation::Context().get(), permit, &permitted);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_TRUE(EventuallyInState(fed_, kUnion, permitted.envelope_id(), "delivered"));

  // Not for another purpose, nor under another agreement.
  v1::ReferCaseRequest other_purpose = onward;
  other_purpose.set_agreement(kOnwardAgreement);
  ExpectRefused(kMinistry, other_purpose, grpc::StatusCode::PERMISSION_DENIED,
                "permission for another agreement");

  // For exactly this one it does.
  EXPECT_FALSE(ReferAndReceive(kMinistry, onward).empty());

  // A permission is a signed envelope: once it has expired (seven days by the
  // ministry's clock) it no longer opens the referral.
  fed_.Advance(absl::Hours(24 * 8));
  ExpectRefused(kMinistry, onward, grpc::StatusCode::PERMISSION_DENIED,
                "after the permission expired");
}

}  // namespace
}  // namespace corridor::testing
