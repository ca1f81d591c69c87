// The referral policy, rule by rule, without a node: each rule allows what it
// should and refuses what it should with its own code and reason. The tables
// are the rules of docs/federation.md ("Policy that travels").
#include "server/federation/referral_policy.h"

#include <functional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "tests/testing/federation.h"
#include "tests/testing/status_matchers.h"

namespace corridor {
namespace {

constexpr char kUnion[] = "union-sg";
constexpr char kMinistry[] = "ministry-id";
constexpr char kInspectorate[] = "inspectorate-sg";
constexpr char kPurpose[] = "case-referral";
constexpr char kAgreement[] = "test-agreement";  // all three orgs, case-referral

class ReferralPolicyTest : public ::testing::Test {
 protected:
  ReferralPolicyTest() {
    fed_.AddOrg(kUnion);
    fed_.AddOrg(kMinistry, v1::ORG_KIND_MINISTRY);
    fed_.AddOrg(kInspectorate, v1::ORG_KIND_INSPECTORATE);
    roster_ = fed_.MakeRoster();
    // union-sg and ministry-id only, for fee recovery and case referral.
    v1::Agreement* narrow = roster_.add_agreements();
    narrow->set_id("narrow");
    narrow->add_parties(kUnion);
    narrow->add_parties(kMinistry);
    narrow->add_purposes("fee-recovery");
    narrow->add_purposes(kPurpose);
  }

  // A referral from the ministry of a case it received from the union, to the inspectorate.
  static ReferralRequest Onward() {
    return {kMinistry, kInspectorate, kAgreement, kPurpose, false, false};
  }
  // The link a case came to the ministry by, from the union, under `rule`.
  static v1::ReferralLink Received(v1::OnwardSharing rule) {
    v1::ReferralLink in;
    in.set_referral_id("REF-1");
    in.set_outgoing(false);
    in.set_peer_org(kUnion);
    in.set_peer_case_id("C-UNION");
    in.set_agreement(kAgreement);
    in.set_purpose(kPurpose);
    in.set_state(v1::REFERRAL_STATE_ACCEPTED);
    in.set_onward_sharing(rule);
    return in;
  }
  // `signer`'s permission for the ministry to pass the case on, as `f` changes it.
  std::string Permission(const std::function<void(v1::EnvelopePayload&)>& f = nullptr,
                         const std::string& signer = kUnion) {
    v1::EnvelopePayload p;
    p.set_envelope_id("ENV-PERMIT");
    p.set_sender_org(signer);
    p.set_recipient_org(kMinistry);
    p.set_created_unix(absl::ToUnixSeconds(now_) - 60);
    p.set_expires_unix(absl::ToUnixSeconds(now_) + 3600);
    p.set_key_id(signer + "-1");
    p.set_agreement(kAgreement);
    p.set_purpose(kPurpose);
    v1::OnwardPermission* perm = p.mutable_permission();
    perm->set_referral_id("REF-1");
    perm->set_holder_org(kMinistry);
    perm->set_permitted_org(kInspectorate);
    perm->set_purpose(kPurpose);
    perm->set_agreement(kAgreement);
    if (f) f(p);
    return SignEnvelope(p, fed_.org(signer).signing).SerializeAsString();
  }

  testing::TestFederation fed_;
  v1::Roster roster_;
  const absl::Time now_ = absl::FromUnixSeconds(1800000000);
};

// One row: a request, the case's consent and links, and what the policy says.
struct Row {
  std::string name;
  ReferralRequest req;
  v1::ConsentRecord consent;
  std::vector<v1::ReferralLink> links;
  absl::StatusCode code = absl::StatusCode::kOk;
  std::string reason;         // in the refusal's message
  bool deidentified = false;  // when allowed
  bool cites_permission = false;
};

v1::ConsentRecord ConsentFor(const std::string& org, const std::string& purpose) {
  v1::ConsentRecord c;
  v1::ConsentGrant* g = c.add_grants();
  g->set_org(org);
  g->add_purposes(purpose);
  return c;
}

void Check(const v1::Roster& roster, const Row& row, absl::Time now) {
  SCOPED_TRACE(row.name);
  google::protobuf::RepeatedPtrField<v1::ReferralLink> links(row.links.begin(), row.links.end());
  auto got = DecideReferral(roster, row.consent, links, row.req, now);
  EXPECT_EQ(got.status().code(), row.code) << got.status();
  if (!got.ok()) {
    EXPECT_TRUE(absl::StrContains(got.status().message(), row.reason)) << got.status();
    return;
  }
  EXPECT_EQ(got->deidentified, row.deidentified);
  EXPECT_EQ(!got->onward_permission.empty(), row.cites_permission);
}

TEST_F(ReferralPolicyTest, RecipientAgreementAndConsent) {
  const auto kDenied = absl::StatusCode::kPermissionDenied;
  const ReferralRequest plain{kUnion, kMinistry, kAgreement, kPurpose, false, false};
  ReferralRequest with_data = plain;
  with_data.include_personal_data = true;
  auto with = [](ReferralRequest r, const std::function<void(ReferralRequest&)>& f) {
    f(r);
    return r;
  };
  const v1::ConsentRecord consented = ConsentFor(kMinistry, kPurpose);
  const std::vector<Row> rows = {
      {"de-identified needs no consent", plain, {}, {}, absl::StatusCode::kOk, "", true},
      {"personal data with consent", with_data, consented, {}, absl::StatusCode::kOk, "", false},
      {"no recipient",
       with(plain, [](auto& r) { r.to_org = ""; }),
       {},
       {},
       absl::StatusCode::kInvalidArgument,
       "--to must name another member org"},
      {"to itself",
       with(plain, [](auto& r) { r.to_org = kUnion; }),
       {},
       {},
       absl::StatusCode::kInvalidArgument,
       "--to must name another member org"},
      {"recipient not in the roster (a member that left)",
       with(plain, [](auto& r) { r.to_org = "left-org"; }),
       {},
       {},
       absl::StatusCode::kFailedPrecondition,
       "(8 bytes, not recorded) is not a member in the roster in force"},
      {"agreement not in the roster",
       with(plain, [](auto& r) { r.agreement = "secret"; }),
       {},
       {},
       kDenied,
       "(6 bytes, not recorded) is not in the roster"},
      {"agreement without the recipient",
       with(plain, [](auto& r) { r.to_org = kInspectorate, r.agreement = "narrow"; }),
       {},
       {},
       kDenied,
       "does not bind both union-sg and inspectorate-sg"},
      {"agreement without the sender",
       with(plain, [](auto& r) { r.from_org = kInspectorate, r.agreement = "narrow"; }),
       {},
       {},
       kDenied,
       "does not bind both inspectorate-sg and ministry-id"},
      {"purpose not covered",
       with(plain, [](auto& r) { r.purpose = "marketing"; }),
       {},
       {},
       kDenied,
       "does not cover the purpose stated"},
      {"purpose covered by one agreement, not the other",
       with(plain, [](auto& r) { r.purpose = "fee-recovery"; }),
       {},
       {},
       kDenied,
       "agreement test-agreement does not cover the purpose stated"},
      {"no consent recorded",
       with_data,
       {},
       {},
       kDenied,
       "consent record does not allow sharing their personal data with ministry-id"},
      {"consent for another org",
       with_data,
       ConsentFor(kInspectorate, kPurpose),
       {},
       kDenied,
       "consent record does not allow"},
      {"consent for another purpose",
       with_data,
       ConsentFor(kMinistry, "fee-recovery"),
       {},
       kDenied,
       "consent record does not allow"},
      {"no consent, sent de-identified",
       with(with_data, [](auto& r) { r.deidentify = true; }),
       {},
       {},
       absl::StatusCode::kOk,
       "",
       true},
      {"personal data with consent, under another agreement that covers it",
       with(with_data, [](auto& r) { r.agreement = "narrow"; }),
       consented,
       {},
       absl::StatusCode::kOk,
       "",
       false},
  };
  for (const Row& row : rows) Check(roster_, row, now_);
}

TEST_F(ReferralPolicyTest, ReceivedCasesTravelOnOnlyAsTheirOriginatorAllowed) {
  const auto kDenied = absl::StatusCode::kPermissionDenied;
  auto received = [](v1::OnwardSharing rule, const std::vector<std::string>& permissions = {}) {
    v1::ReferralLink in = Received(rule);
    for (const auto& p : permissions) in.add_permissions(p);
    v1::ReferralLink out;  // an earlier referral it made: not how it came in
    out.set_outgoing(true);
    out.set_peer_org(kInspectorate);
    return std::vector<v1::ReferralLink>{out, in};
  };
  ReferralRequest other_agreement = Onward();
  other_agreement.to_org = kUnion;
  other_agreement.agreement = "narrow";
  const std::string good = Permission();
  const std::vector<Row> rows = {
      {"never",
       Onward(),
       {},
       received(v1::ONWARD_SHARING_NEVER),
       kDenied,
       "received from union-sg whose handling rules do not allow sharing it onward"},
      {"unspecified is never",
       Onward(),
       {},
       received(v1::ONWARD_SHARING_UNSPECIFIED),
       kDenied,
       "do not allow sharing it onward"},
      {"within the agreement it came under",
       Onward(),
       {},
       received(v1::ONWARD_SHARING_WITHIN_AGREEMENT),
       absl::StatusCode::kOk,
       "",
       true},
      {"within agreement, under another",
       other_agreement,
       {},
       received(v1::ONWARD_SHARING_WITHIN_AGREEMENT),
       kDenied,
       "allow sharing it onward only under agreement test-agreement"},
      {"with permission, none held",
       Onward(),
       {},
       received(v1::ONWARD_SHARING_WITH_ORIGINATOR_PERMISSION),
       kDenied,
       "needs the signed permission of union-sg for inspectorate-sg and \"case-referral\"; ask "
       "them to run `corridorctl permit C-UNION --referral REF-1"},
      {"with permission, held",
       Onward(),
       {},
       received(v1::ONWARD_SHARING_WITH_ORIGINATOR_PERMISSION, {good}),
       absl::StatusCode::kOk,
       "",
       true,
       true},
      {"with permission, the good one among bad ones",
       Onward(),
       {},
       received(v1::ONWARD_SHARING_WITH_ORIGINATOR_PERMISSION, {"garbage", good}),
       absl::StatusCode::kOk,
       "",
       true,
       true},
      {"permission for another recipient",
       Onward(),
       {},
       received(v1::ONWARD_SHARING_WITH_ORIGINATOR_PERMISSION,
                {Permission([](auto& p) { p.mutable_permission()->set_permitted_org(kUnion); })}),
       kDenied,
       "needs the signed permission"},
      {"permission for another purpose",
       Onward(),
       {},
       received(v1::ONWARD_SHARING_WITH_ORIGINATOR_PERMISSION,
                {Permission([](auto& p) { p.mutable_permission()->set_purpose("x"); })}),
       kDenied,
       "needs the signed permission"},
      {"permission for another holder",
       Onward(),
       {},
       received(v1::ONWARD_SHARING_WITH_ORIGINATOR_PERMISSION,
                {Permission([](auto& p) { p.mutable_permission()->set_holder_org(kUnion); })}),
       kDenied,
       "needs the signed permission"},
      {"permission expired",
       Onward(),
       {},
       received(v1::ONWARD_SHARING_WITH_ORIGINATOR_PERMISSION, {Permission([this](auto& p) {
                  p.set_expires_unix(absl::ToUnixSeconds(now_) - 1);
                })}),
       kDenied,
       "needs the signed permission"},
      {"permission signed by someone other than the originator",
       Onward(),
       {},
       received(v1::ONWARD_SHARING_WITH_ORIGINATOR_PERMISSION,
                {Permission(nullptr, kInspectorate)}),
       kDenied,
       "needs the signed permission"},
      {"permission with a forged signature",
       Onward(),
       {},
       received(v1::ONWARD_SHARING_WITH_ORIGINATOR_PERMISSION, {[&] {
                  v1::Envelope e;
                  e.ParseFromString(good);
                  e.mutable_signatures(0)->set_sig(std::string(64, 'x'));
                  return e.SerializeAsString();
                }()}),
       kDenied,
       "needs the signed permission"},
      // Onward sharing is checked before consent: the originator's rule comes first.
      {"never, even with consent",
       [] {
         ReferralRequest r = Onward();
         r.include_personal_data = true;
         return r;
       }(),
       ConsentFor(kInspectorate, kPurpose), received(v1::ONWARD_SHARING_NEVER), kDenied,
       "do not allow sharing it onward"},
      {"allowed onward, but no consent for the personal data",
       [] {
         ReferralRequest r = Onward();
         r.include_personal_data = true;
         return r;
       }(),
       {},
       received(v1::ONWARD_SHARING_WITHIN_AGREEMENT),
       kDenied,
       "consent record does not allow"},
  };
  for (const Row& row : rows) Check(roster_, row, now_);
}

TEST_F(ReferralPolicyTest, TheReceiverChecksACitedPermission) {
  EnvelopeContext ctx{kMinistry, kInspectorate, &roster_, now_, 4 << 20};
  v1::EnvelopePayload p;
  p.set_sender_org(kMinistry);
  p.set_agreement(kAgreement);
  p.set_purpose(kPurpose);
  p.mutable_referral()->set_referral_id("REF-2");
  ASSERT_OK_AND_ASSIGN(std::string originator, CheckReceivedReferral(p, ctx));
  EXPECT_EQ(originator, "");  // none cited: a referral of the ministry's own
  p.mutable_referral()->set_onward_permission(Permission());
  ASSERT_OK_AND_ASSIGN(originator, CheckReceivedReferral(p, ctx));
  EXPECT_EQ(originator, kUnion);
  p.set_purpose("fee-recovery");  // not what the permission names
  EXPECT_EQ(CheckReceivedReferral(p, ctx).status().code(), absl::StatusCode::kPermissionDenied);
  p.set_purpose(kPurpose);
  ctx.now = now_ + absl::Hours(2);  // expired
  EXPECT_EQ(CheckReceivedReferral(p, ctx).status().code(), absl::StatusCode::kPermissionDenied);
}

TEST_F(ReferralPolicyTest, APeerChangesOnlyWhatIsItsOwnToChange) {
  struct PeerRow {
    std::string name;
    bool outgoing;  // the local link: this node sent the referral
    v1::ReferralState state;
    std::function<void(v1::EnvelopePayload&)> body;
    absl::StatusCode code;
    std::string reason;
  };
  auto accept = [](auto& p) {
    p.mutable_decision()->set_accepted(true);
    p.mutable_decision()->set_linked_case_id("C-THEIRS");
  };
  auto decline = [](auto& p) { p.mutable_decision()->set_accepted(false); };
  auto permit = [](auto& p) { p.mutable_permission()->set_holder_org(kUnion); };
  auto update = [](v1::CaseStatus st) {
    return [st](auto& p) {
      p.mutable_update()->set_status(st);
      p.mutable_update()->set_note("n");
    };
  };
  const auto kOk = absl::StatusCode::kOk;
  const auto kDenied = absl::StatusCode::kPermissionDenied;
  const auto kPrecondition = absl::StatusCode::kFailedPrecondition;
  const auto kInvalid = absl::StatusCode::kInvalidArgument;
  const std::vector<PeerRow> rows = {
      {"receiver accepts", true, v1::REFERRAL_STATE_DELIVERED, accept, kOk, ""},
      {"receiver declines", true, v1::REFERRAL_STATE_QUEUED, decline, kOk, ""},
      {"the sender decides its own referral", false, v1::REFERRAL_STATE_PENDING, accept, kDenied,
       "only its receiver decides it"},
      {"a second decision", true, v1::REFERRAL_STATE_ACCEPTED, decline, kPrecondition,
       "was already accepted by ministry-id; a decision is final"},
      {"a decision after a decline", true, v1::REFERRAL_STATE_DECLINED, accept, kPrecondition,
       "was already declined"},
      {"an acceptance without the linked case", true, v1::REFERRAL_STATE_DELIVERED,
       [](auto& p) { p.mutable_decision()->set_accepted(true); }, kInvalid,
       "an acceptance must name the receiver's linked case"},
      {"a decline naming a linked case", true, v1::REFERRAL_STATE_DELIVERED,
       [](auto& p) { p.mutable_decision()->set_linked_case_id("C-X"); }, kInvalid,
       "a decline names no linked case"},
      {"originator permits", false, v1::REFERRAL_STATE_ACCEPTED, permit, kOk, ""},
      {"a permission for a referral this node sent", true, v1::REFERRAL_STATE_ACCEPTED, permit,
       kDenied, "must concern a referral this node received"},
      {"a permission for another holder", false, v1::REFERRAL_STATE_ACCEPTED,
       [](auto& p) { p.mutable_permission()->set_holder_org(kInspectorate); }, kDenied,
       "must concern a referral this node received"},
      {"a permission before acceptance", false, v1::REFERRAL_STATE_PENDING, permit, kPrecondition,
       "has not been accepted here"},
      {"an update on a linked case", true, v1::REFERRAL_STATE_ACCEPTED,
       update(v1::CASE_STATUS_CLOSED), kOk, ""},
      {"an update on a received, accepted case", false, v1::REFERRAL_STATE_ACCEPTED,
       update(v1::CASE_STATUS_UNSPECIFIED), kOk, ""},
      {"an update before acceptance", false, v1::REFERRAL_STATE_PENDING,
       update(v1::CASE_STATUS_OPEN), kPrecondition, "updates are taken only on linked cases"},
      {"an update that erases", true, v1::REFERRAL_STATE_ACCEPTED, update(v1::CASE_STATUS_ERASED),
       kInvalid, "cannot be posted"},
      {"an update that makes the case incoming", true, v1::REFERRAL_STATE_ACCEPTED,
       update(v1::CASE_STATUS_INCOMING), kInvalid, "cannot be posted"},
      {"an update with an unknown status", true, v1::REFERRAL_STATE_ACCEPTED,
       update(static_cast<v1::CaseStatus>(99)), kInvalid, "update.status 99 cannot be posted"},
      {"a referral is not a change to a link", true, v1::REFERRAL_STATE_ACCEPTED,
       [](auto& p) { p.mutable_referral(); }, kInvalid, "does not change a referral link"},
  };
  for (const PeerRow& row : rows) {
    SCOPED_TRACE(row.name);
    v1::ReferralLink link;
    link.set_referral_id("REF-1");
    link.set_outgoing(row.outgoing);
    link.set_peer_org(kMinistry);
    link.set_state(row.state);
    v1::EnvelopePayload p;
    p.set_sender_org(kMinistry);
    row.body(p);
    const absl::Status st = CheckPeerChange(link, p, kUnion);
    EXPECT_EQ(st.code(), row.code) << st;
    EXPECT_TRUE(absl::StrContains(st.message(), row.reason)) << st;
  }
}

}  // namespace
}  // namespace corridor
