// Peers that overreach: a member's node sending, through PeerService.Deliver,
// envelopes corridorctl never sends. A peer may only speak for itself (every
// field of every body type that names a person or an org), decisions are final
// and the receiver's to make, envelope ids are unique per sender only, and a
// signing key whose time is over stays over however an envelope is dated.
// Every refusal: a specific error, exactly one denied ledger entry, and the
// case unchanged. The test acts as the peers "union-sg" and "inspectorate-sg"
// against a real "ministry-id" node in this process.
#include <atomic>
#include <functional>
#include <map>
#include <set>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/time/clock.h"
#include "client/lib/grpc_util.h"
#include "corridor/v1/case.grpc.pb.h"
#include "corridor/v1/federation.grpc.pb.h"
#include "corridor/v1/node.grpc.pb.h"
#include "gtest/gtest.h"
#include "ledger/crypto/crypto.h"
#include "ledger/rocksdb/rocksdb_ledger.h"
#include "server/common/edge.h"
#include "server/federation/envelope.h"
#include "server/federation/exchange.h"
#include "server/node/config.h"
#include "server/node/node.h"
#include "server/store/case_store.h"
#include "server/store/store.h"
#include "tests/testing/federation.h"
#include "tests/testing/fields.h"
#include "tests/testing/status_matchers.h"

namespace corridor {
namespace {

constexpr char kSelf[] = "ministry-id";
constexpr char kUnion[] = "union-sg";
constexpr char kInspectorate[] = "inspectorate-sg";

class OverreachTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fed_.AddOrg(kUnion);
    fed_.AddOrg(kSelf, v1::ORG_KIND_MINISTRY);
    fed_.AddOrg(kInspectorate, v1::ORG_KIND_INSPECTORATE);
  }
  // Starts the ministry's node with `roster` (default: the federation's).
  void StartNode(const v1::Roster* roster = nullptr) {
    const std::string path =
        fed_.WriteNodeConfig(kSelf, {{"aud", {"auditor"}}, {"cw", {"caseworker"}}});
    if (roster != nullptr) {
      ASSERT_OK(WriteFileAtomically(fed_.org(kSelf).dir + "/roster.json",
                                    fed_.Sign(*roster, fed_.threshold())));
    }
    ASSERT_OK_AND_ASSIGN(config_, LoadNodeConfig(path));
    ASSERT_OK_AND_ASSIGN(node_, Node::Start(config_));
    roster_ = roster != nullptr ? *roster : fed_.MakeRoster();
    cw_ = AsUser("cw");
    aud_ = AsUser("aud");
  }
  void TearDown() override {
    if (node_) node_->Shutdown(absl::Seconds(1));
  }

  std::shared_ptr<grpc::Channel> AsUser(const std::string& name) {
    const std::string prefix = fed_.IssueUser(kSelf, name);
    return MakeMutualTlsChannel(
        {ReadFileToString(prefix + ".crt").value(), ReadFileToString(prefix + ".key").value(),
         fed_.org(kSelf).ca.cert_pem},
        fed_.org(kSelf).endpoint(), "");
  }
  std::shared_ptr<grpc::Channel> AsNode(const std::string& org) {
    const testing::TestOrg& o = fed_.org(org);
    return MakeMutualTlsChannel({o.node.cert_pem, o.node.key_pem, fed_.org(kSelf).ca.cert_pem},
                                fed_.org(kSelf).endpoint(), "");
  }
  static std::unique_ptr<grpc::ClientContext> Ctx() {
    auto ctx = std::make_unique<grpc::ClientContext>();
    ctx->set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(20)));
    return ctx;
  }

  grpc::Status Deliver(const std::string& as_org, const v1::Envelope& env,
                       v1::Receipt* receipt = nullptr) {
    v1::Receipt ignored;
    return v1::PeerService::NewStub(AsNode(as_org))
        ->Deliver(Ctx().get(), env, receipt != nullptr ? receipt : &ignored);
  }
  // A payload header from `from` to this node, signed with `from`'s key.
  static v1::EnvelopePayload Header(const std::string& from, const std::string& id) {
    v1::EnvelopePayload p;
    p.set_envelope_id(id);
    p.set_sender_org(from);
    p.set_recipient_org(kSelf);
    p.set_created_unix(absl::ToUnixSeconds(absl::Now()));
    p.set_expires_unix(absl::ToUnixSeconds(absl::Now() + absl::Hours(1)));
    p.set_key_id(from + "-1");
    p.set_agreement("test-agreement");
    p.set_purpose("case-referral");
    return p;
  }
  v1::Envelope Sign(const v1::EnvelopePayload& p) {
    return SignEnvelope(p, fed_.org(p.sender_org()).signing);
  }
  v1::EnvelopePayload Referral(const std::string& from, const std::string& id) {
    v1::EnvelopePayload p = Header(from, id);
    p.mutable_referral()->set_referral_id("REF-" + id);
    p.mutable_referral()->set_origin_case_id("C-" + from);
    p.mutable_referral()->mutable_shared()->set_category(v1::CASE_CATEGORY_WAGE_THEFT);
    return p;
  }
  v1::EnvelopePayload Update(const std::string& from, const std::string& id,
                             const std::string& referral_id, const std::string& author) {
    v1::EnvelopePayload p = Header(from, id);
    p.mutable_update()->set_referral_id(referral_id);
    p.mutable_update()->set_note("fees refunded");
    p.mutable_update()->set_author(author);
    return p;
  }
  v1::EnvelopePayload Decision(const std::string& from, const std::string& id,
                               const std::string& referral_id, bool accepted,
                               const std::string& linked_case_id) {
    v1::EnvelopePayload p = Header(from, id);
    p.mutable_decision()->set_referral_id(referral_id);
    p.mutable_decision()->set_accepted(accepted);
    p.mutable_decision()->set_reason(accepted ? "" : "out of scope");
    p.mutable_decision()->set_linked_case_id(linked_case_id);
    return p;
  }
  v1::EnvelopePayload Permission(const std::string& from, const std::string& id,
                                 const std::string& referral_id, const std::string& holder,
                                 const std::string& permitted) {
    v1::EnvelopePayload p = Header(from, id);
    v1::OnwardPermission* perm = p.mutable_permission();
    perm->set_referral_id(referral_id);
    perm->set_holder_org(holder);
    perm->set_permitted_org(permitted);
    perm->set_purpose("case-referral");
    perm->set_agreement("test-agreement");
    return p;
  }

  // `from` refers a case to this node, which accepts it; returns the local case id.
  std::string ReceivedAndAccepted(const std::string& from, const std::string& id) {
    EXPECT_TRUE(Deliver(from, Sign(Referral(from, id))).ok());
    v1::DecideReferralRequest req;
    req.set_referral_id("REF-" + id);
    req.set_accept(true);
    v1::DecideReferralResponse resp;
    grpc::Status s = v1::ReferralService::NewStub(cw_)->Decide(Ctx().get(), req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return resp.case_id();
  }
  // This node refers a new case of its own to `to` (whose node is not running:
  // the envelope waits in the outbox); returns {case id, referral id}.
  std::pair<std::string, std::string> Referred(const std::string& to) {
    v1::CreateCaseRequest create;
    create.mutable_case_()->set_category(v1::CASE_CATEGORY_RECRUITMENT_FEES);
    create.mutable_case_()->set_sector("construction");
    create.mutable_case_()->set_origin_country("ID");
    create.mutable_case_()->set_destination_country("SG");
    create.mutable_case_()->mutable_worker()->set_name("Worker W");
    v1::Case c;
    grpc::Status s = v1::CaseService::NewStub(cw_)->CreateCase(Ctx().get(), create, &c);
    EXPECT_TRUE(s.ok()) << s.error_message();
    v1::ReferCaseRequest refer;
    refer.set_case_id(c.id());
    refer.set_to_org(to);
    refer.set_agreement("test-agreement");
    refer.set_purpose("case-referral");
    v1::ReferCaseResponse resp;
    s = v1::ReferralService::NewStub(cw_)->Refer(Ctx().get(), refer, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return {c.id(), resp.referral_id()};
  }
  v1::Case GetCase(const std::string& id) {
    v1::GetCaseRequest req;
    req.set_id(id);
    req.set_purpose("case-handling");
    v1::Case c;
    grpc::Status s = v1::CaseService::NewStub(cw_)->GetCase(Ctx().get(), req, &c);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return c;
  }
  size_t CaseCount() {
    v1::ListCasesResponse list;
    grpc::Status s = v1::CaseService::NewStub(cw_)->ListCases(Ctx().get(), {}, &list);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return list.cases_size();
  }
  // Ledger size as the auditor sees it (the read itself adds one entry).
  uint64_t LedgerSize() {
    v1::CheckpointResponse cp;
    grpc::Status s = v1::AuditService::NewStub(aud_)->GetCheckpoint(Ctx().get(), {}, &cp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return cp.size();
  }
  v1::AccessEvent EntryAt(uint64_t index) {
    v1::GetEntriesRequest req;
    req.set_begin(index);
    req.set_end(index + 1);
    v1::GetEntriesResponse resp;
    grpc::Status s = v1::AuditService::NewStub(aud_)->GetEntries(Ctx().get(), req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return resp.events_size() == 1 ? resp.events(0).event() : v1::AccessEvent();
  }

  // Delivers `env` as `as_org` and expects it refused with `code` and an error
  // containing `says`, exactly one denied envelope.receive entry naming the
  // reason, no new case, and case `watched` (if any) exactly as before.
  void ExpectRefused(const std::string& as_org, const v1::Envelope& env, grpc::StatusCode code,
                     const std::string& says, const std::string& watched = "") {
    const std::string before_case = watched.empty() ? "" : GetCase(watched).SerializeAsString();
    const size_t cases = CaseCount();
    const uint64_t before = LedgerSize();
    grpc::Status s = Deliver(as_org, env);
    const uint64_t after = LedgerSize();
    EXPECT_EQ(s.error_code(), code) << s.error_message();
    EXPECT_NE(s.error_message().find(says), std::string::npos) << s.error_message();
    ASSERT_EQ(after - before, 2u) << "the denial and the second checkpoint read, nothing else";
    const v1::AccessEvent ev = EntryAt(before);
    EXPECT_EQ(ev.action(), "envelope.receive");
    EXPECT_EQ(ev.outcome(), v1::ACCESS_OUTCOME_DENIED);
    EXPECT_EQ(ev.actor_org(), as_org);
    EXPECT_NE(ev.reason().find(says), std::string::npos) << ev.reason();
    EXPECT_EQ(CaseCount(), cases);
    if (!watched.empty()) {
      EXPECT_EQ(GetCase(watched).SerializeAsString(), before_case);
    }
  }

  testing::TestFederation fed_;
  v1::NodeConfig config_;
  std::unique_ptr<Node> node_;
  v1::Roster roster_;
  std::shared_ptr<grpc::Channel> cw_, aud_;
  int next_id_ = 0;
  std::string NextId() { return absl::StrCat("ENV-T", ++next_id_); }
};

// Every field of every body type that names a person or an org must name the
// sender (or, for a permission, this node as holder and a member as permitted).
TEST_F(OverreachTest, EveryFieldNamingAPersonOrOrgMustNameTheSender) {
  StartNode();
  const std::string mcase = ReceivedAndAccepted(kUnion, "ENV-R1");
  // Names a peer may not use for itself: the receiver's own people, a third
  // org's, look-alikes and malformed principals.
  const std::vector<std::string> foreign = {"ministry-id/user/cw",
                                            "ministry-id/node",
                                            "inspectorate-sg/user/x",
                                            "union-sg",
                                            "union-sg/",
                                            "union-sg/user/",
                                            "union-sg/user/a/b",
                                            "union-sg/admin",
                                            "union-sg-x/user/a",
                                            "xunion-sg/user/a",
                                            "union-sg/user/a\nb",
                                            "union-sg/user/a b",
                                            "union-sg/node/extra",
                                            "UNION-SG/user/a",
                                            std::string("union-sg/user/a\0b", 17),
                                            std::string(300, 'a'),
                                            "ministry-id/user/siti-rahayu"};
  // update.author
  for (const std::string& who : foreign) {
    SCOPED_TRACE("update.author " + who);
    ExpectRefused(kUnion, Sign(Update(kUnion, NextId(), "REF-ENV-R1", who)),
                  grpc::StatusCode::PERMISSION_DENIED, "update.author", mcase);
  }
  ExpectRefused(kUnion, Sign(Update(kUnion, NextId(), "REF-ENV-R1", "")),
                grpc::StatusCode::PERMISSION_DENIED, "update.author", mcase);
  // referral.shared.evidence[i].added_by (any item, not only the first)
  for (const std::string& who : foreign) {
    SCOPED_TRACE("evidence.added_by " + who);
    v1::EnvelopePayload p = Referral(kUnion, NextId());
    v1::SharedCase* shared = p.mutable_referral()->mutable_shared();
    shared->add_evidence()->set_id("E-1");
    shared->mutable_evidence(0)->set_added_by("union-sg/user/cw");
    shared->add_evidence()->set_id("E-2");
    shared->mutable_evidence(1)->set_added_by(who);
    ExpectRefused(kUnion, Sign(p), grpc::StatusCode::PERMISSION_DENIED,
                  "referral.shared.evidence[1].added_by");
  }
  // A refusal names the field, never the name in it: the reason is in a ledger that
  // cannot be erased.
  for (uint64_t i = 0, n = LedgerSize(); i < n; ++i) {
    EXPECT_FALSE(absl::StrContains(EntryAt(i).reason(), "siti-rahayu")) << "entry " << i;
  }
  // permission.holder_org must be this node; permission.permitted_org a member.
  for (const std::string& holder :
       std::initializer_list<std::string>{kUnion, kInspectorate, "nobody", ""}) {
    SCOPED_TRACE(absl::StrCat("permission.holder_org ", holder));
    ExpectRefused(kUnion, Sign(Permission(kUnion, NextId(), "REF-ENV-R1", holder, kInspectorate)),
                  grpc::StatusCode::PERMISSION_DENIED, "permission.holder_org", mcase);
  }
  for (const std::string& permitted :
       std::initializer_list<std::string>{"nobody", "", "inspectorate-sg/node"}) {
    SCOPED_TRACE(absl::StrCat("permission.permitted_org ", permitted));
    ExpectRefused(kUnion, Sign(Permission(kUnion, NextId(), "REF-ENV-R1", kSelf, permitted)),
                  grpc::StatusCode::PERMISSION_DENIED, "permission.permitted_org", mcase);
  }

  // The sender's own people and node are taken, in every field.
  const size_t history = GetCase(mcase).history_size();
  for (const std::string& who : std::initializer_list<std::string>{
           "union-sg/user/cw", "union-sg/node", "union-sg/user/a.b_c-1"}) {
    SCOPED_TRACE(who);
    ASSERT_TRUE(Deliver(kUnion, Sign(Update(kUnion, NextId(), "REF-ENV-R1", who))).ok());
  }
  v1::EnvelopePayload honest = Referral(kUnion, NextId());
  honest.mutable_referral()->mutable_shared()->add_evidence()->set_id("E-1");
  honest.mutable_referral()->mutable_shared()->mutable_evidence(0)->set_added_by(
      "union-sg/user/cw");
  honest.mutable_referral()->mutable_shared()->add_evidence()->set_id("E-2");  // no added_by
  EXPECT_TRUE(Deliver(kUnion, Sign(honest)).ok());
  EXPECT_TRUE(
      Deliver(kUnion, Sign(Permission(kUnion, NextId(), "REF-ENV-R1", kSelf, kInspectorate))).ok());
  const v1::Case c = GetCase(mcase);
  ASSERT_EQ(c.history_size(), history + 4);
  for (int i = 0; i < c.history_size(); ++i) {
    if (c.history(i).org() == kUnion) {
      EXPECT_TRUE(IsPrincipalOf(c.history(i).author(), kUnion)) << c.history(i).author();
    }
  }
}

// A decision is the receiver's to make, once: no second decision (same or
// different), no rewritten linked case, none by the referral's sender or a
// third org; updates and permissions only on accepted referrals.
TEST_F(OverreachTest, DecisionsAreFinalAndOnlyTheReceiversToMake) {
  StartNode();
  const auto [mine, ref] = Referred(kUnion);
  // Malformed decisions first: an acceptance names its linked case, a decline none.
  ExpectRefused(kUnion, Sign(Decision(kUnion, NextId(), ref, true, "")),
                grpc::StatusCode::INVALID_ARGUMENT, "must name the receiver's linked case", mine);
  ExpectRefused(kUnion, Sign(Decision(kUnion, NextId(), ref, false, "C-U1")),
                grpc::StatusCode::INVALID_ARGUMENT, "a decline names no linked case", mine);
  // A third org is not party to it.
  ExpectRefused(kInspectorate, Sign(Decision(kInspectorate, NextId(), ref, false, "")),
                grpc::StatusCode::PERMISSION_DENIED, "is not party to referral", mine);
  // Updates and permissions before acceptance.
  ExpectRefused(kUnion, Sign(Update(kUnion, NextId(), ref, "union-sg/user/cw")),
                grpc::StatusCode::FAILED_PRECONDITION, "is not accepted", mine);

  // The receiver accepts, once.
  const v1::Envelope accept = Sign(Decision(kUnion, "ENV-ACCEPT", ref, true, "C-U1"));
  v1::Receipt first, again;
  ASSERT_TRUE(Deliver(kUnion, accept, &first).ok());
  ASSERT_TRUE(Deliver(kUnion, accept, &again).ok());  // idempotent redelivery
  EXPECT_EQ(again.SerializeAsString(), first.SerializeAsString());
  ASSERT_OK(VerifyReceipt(first, accept, kSelf, roster_).status());
  // Every later decision is refused: a flip, the same again under a new id,
  // another linked case.
  ExpectRefused(kUnion, Sign(Decision(kUnion, NextId(), ref, false, "")),
                grpc::StatusCode::FAILED_PRECONDITION, "a decision is final once recorded", mine);
  ExpectRefused(kUnion, Sign(Decision(kUnion, NextId(), ref, true, "C-U1")),
                grpc::StatusCode::FAILED_PRECONDITION, "was already accepted", mine);
  ExpectRefused(kUnion, Sign(Decision(kUnion, NextId(), ref, true, "C-OTHER")),
                grpc::StatusCode::FAILED_PRECONDITION, "was already accepted", mine);
  const v1::Case decided = GetCase(mine);
  ASSERT_EQ(decided.referrals_size(), 1);
  EXPECT_EQ(decided.referrals(0).state(), v1::REFERRAL_STATE_ACCEPTED);
  EXPECT_EQ(decided.referrals(0).peer_case_id(), "C-U1");
  // Accepted: updates are taken, but not statuses no node can post.
  EXPECT_TRUE(Deliver(kUnion, Sign(Update(kUnion, NextId(), ref, "union-sg/user/cw"))).ok());
  for (int status :
       {static_cast<int>(v1::CASE_STATUS_ERASED), static_cast<int>(v1::CASE_STATUS_INCOMING), 99}) {
    SCOPED_TRACE(status);
    v1::EnvelopePayload p = Update(kUnion, NextId(), ref, "union-sg/user/cw");
    p.mutable_update()->set_status(static_cast<v1::CaseStatus>(status));
    ExpectRefused(kUnion, Sign(p), grpc::StatusCode::INVALID_ARGUMENT, "cannot be posted", mine);
  }
  // A permission concerns a referral this node received, not one it sent.
  ExpectRefused(kUnion, Sign(Permission(kUnion, NextId(), ref, kSelf, kInspectorate)),
                grpc::StatusCode::PERMISSION_DENIED, "a referral this node received", mine);

  // A referral's sender does not decide it: union-sg referred a case here.
  ASSERT_TRUE(Deliver(kUnion, Sign(Referral(kUnion, "ENV-IN"))).ok());
  std::string incoming;
  {
    v1::ListInboxResponse inbox;
    ASSERT_TRUE(v1::ReferralService::NewStub(cw_)->ListInbox(Ctx().get(), {}, &inbox).ok());
    for (const auto& item : inbox.items()) {
      if (item.referral_id() == "REF-ENV-IN") incoming = item.case_id();
    }
  }
  ASSERT_FALSE(incoming.empty());
  for (bool accepted : {true, false}) {
    SCOPED_TRACE(accepted);
    ExpectRefused(kUnion,
                  Sign(Decision(kUnion, NextId(), "REF-ENV-IN", accepted, accepted ? "C-X" : "")),
                  grpc::StatusCode::PERMISSION_DENIED, "only its receiver decides it", incoming);
  }
  // Nor updates it or grants permissions on it before this node accepted it.
  ExpectRefused(kUnion, Sign(Update(kUnion, NextId(), "REF-ENV-IN", "union-sg/user/cw")),
                grpc::StatusCode::FAILED_PRECONDITION, "is not accepted", incoming);
  ExpectRefused(kUnion, Sign(Permission(kUnion, NextId(), "REF-ENV-IN", kSelf, kInspectorate)),
                grpc::StatusCode::FAILED_PRECONDITION, "has not been accepted here", incoming);
  const v1::Case undecided = GetCase(incoming);
  ASSERT_EQ(undecided.referrals_size(), 1);
  EXPECT_EQ(undecided.referrals(0).state(), v1::REFERRAL_STATE_PENDING);
  EXPECT_EQ(undecided.status(), v1::CASE_STATUS_INCOMING);
}

// The honest side of the evidence rule: a node passing on a case it received
// names its own node for evidence the originator's people added, and the next
// receiver takes it (two real nodes).
TEST_F(OverreachTest, PassingOnReceivedEvidenceSpeaksForTheSenderOnly) {
  StartNode();
  ASSERT_OK_AND_ASSIGN(
      v1::NodeConfig inspectorate_config,
      LoadNodeConfig(fed_.WriteNodeConfig(kInspectorate, {{"cw", {"caseworker"}}})));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Node> inspectorate, Node::Start(inspectorate_config));
  const std::string prefix = fed_.IssueUser(kInspectorate, "cw");
  auto inspectorate_cw = MakeMutualTlsChannel(
      {ReadFileToString(prefix + ".crt").value(), ReadFileToString(prefix + ".key").value(),
       fed_.org(kInspectorate).ca.cert_pem},
      fed_.org(kInspectorate).endpoint(), "");

  v1::EnvelopePayload p = Referral(kUnion, "ENV-ONWARD");
  p.mutable_referral()->mutable_handling()->set_onward_sharing(v1::ONWARD_SHARING_WITHIN_AGREEMENT);
  v1::EvidenceItem* e = p.mutable_referral()->mutable_shared()->add_evidence();
  e->set_id("E-1");
  e->set_file_name("payslip.pdf");
  e->set_added_by("union-sg/user/cw");
  ASSERT_TRUE(Deliver(kUnion, Sign(p)).ok());
  v1::DecideReferralRequest decide;
  decide.set_referral_id("REF-ENV-ONWARD");
  decide.set_accept(true);
  v1::DecideReferralResponse decided;
  ASSERT_TRUE(v1::ReferralService::NewStub(cw_)->Decide(Ctx().get(), decide, &decided).ok());
  // As received here, the evidence keeps the originator's attribution.
  EXPECT_EQ(GetCase(decided.case_id()).evidence(0).added_by(), "union-sg/user/cw");

  v1::ReferCaseRequest refer;
  refer.set_case_id(decided.case_id());
  refer.set_to_org(kInspectorate);
  refer.set_agreement("test-agreement");
  refer.set_purpose("case-referral");
  refer.add_evidence_ids("E-1");
  v1::ReferCaseResponse referred;
  grpc::Status s = v1::ReferralService::NewStub(cw_)->Refer(Ctx().get(), refer, &referred);
  ASSERT_TRUE(s.ok()) << s.error_message();
  std::string received;
  for (int i = 0; i < 300 && received.empty(); ++i) {
    v1::ListInboxResponse inbox;
    ASSERT_TRUE(
        v1::ReferralService::NewStub(inspectorate_cw)->ListInbox(Ctx().get(), {}, &inbox).ok());
    for (const auto& item : inbox.items()) {
      if (item.referral_id() == referred.referral_id()) received = item.case_id();
    }
    if (received.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_FALSE(received.empty()) << "the onward referral did not arrive";
  v1::GetCaseRequest get;
  get.set_id(received);
  get.set_purpose("case-handling");
  v1::Case c;
  ASSERT_TRUE(v1::CaseService::NewStub(inspectorate_cw)->GetCase(Ctx().get(), get, &c).ok());
  ASSERT_EQ(c.evidence_size(), 1);
  EXPECT_EQ(c.evidence(0).added_by(), "ministry-id/node");
  inspectorate->Shutdown(absl::Seconds(1));
}

// Envelope ids are unique per sender only: another member reusing an id does
// not get the real sender refused, and each gets its own receipt.
TEST_F(OverreachTest, EnvelopeIdsAreUniquePerSender) {
  StartNode();
  const v1::Envelope squatter = Sign(Referral(kInspectorate, "ENV-SHARED"));
  v1::EnvelopePayload real_payload = Referral(kUnion, "ENV-SHARED");
  real_payload.mutable_referral()->set_referral_id("REF-REAL");
  const v1::Envelope real = Sign(real_payload);
  v1::Receipt squatter_receipt, real_receipt, again;
  ASSERT_TRUE(Deliver(kInspectorate, squatter, &squatter_receipt).ok());
  grpc::Status s = Deliver(kUnion, real, &real_receipt);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_OK_AND_ASSIGN(v1::ReceiptBody rb, VerifyReceipt(real_receipt, real, kSelf, roster_));
  ASSERT_OK_AND_ASSIGN(v1::ReceiptBody sb,
                       VerifyReceipt(squatter_receipt, squatter, kSelf, roster_));
  EXPECT_NE(rb.ledger_index(), sb.ledger_index());
  EXPECT_EQ(CaseCount(), 2u);
  // Redeliveries return each sender its own original receipt.
  ASSERT_TRUE(Deliver(kUnion, real, &again).ok());
  EXPECT_EQ(again.SerializeAsString(), real_receipt.SerializeAsString());
  ASSERT_TRUE(Deliver(kInspectorate, squatter, &again).ok());
  EXPECT_EQ(again.SerializeAsString(), squatter_receipt.SerializeAsString());
  // Within one sender, an id still means one payload.
  v1::EnvelopePayload changed = Referral(kUnion, "ENV-SHARED");
  changed.mutable_referral()->set_referral_id("REF-CHANGED");
  ExpectRefused(kUnion, Sign(changed), grpc::StatusCode::ALREADY_EXISTS,
                "already used for a different payload");
  // Identifiers a peer sends are checked like any other (no control bytes, no '/').
  for (const std::string& id :
       {std::string("ENV-a\nb"), std::string("ENV/x"), std::string(200, 'E'), std::string()}) {
    SCOPED_TRACE(id);
    ExpectRefused(kUnion, Sign(Referral(kUnion, id)), grpc::StatusCode::INVALID_ARGUMENT,
                  id.empty() ? "envelope has no id" : "envelope_id");
  }
}

// A peer's notes count against the same size cap as local ones: past it, the
// update is refused (permanently, recorded) and the case stays as it was.
TEST_F(OverreachTest, PeerNotesCountAgainstTheCaseSizeCap) {
  StartNode();
  const std::string mcase = ReceivedAndAccepted(kUnion, "ENV-CAP");
  auto update = [&](size_t note_bytes) {
    v1::EnvelopePayload p = Update(kUnion, NextId(), "REF-ENV-CAP", "union-sg/user/cw");
    p.mutable_update()->set_note(std::string(note_bytes, 'n'));
    return Sign(p);
  };
  // Largest notes while one surely fits, then small ones until a largest one cannot.
  int applied = 0;
  for (size_t size = GetCase(mcase).ByteSizeLong(); kMaxCaseBytes - size >= kMaxNoteBytes;
       size = GetCase(mcase).ByteSizeLong()) {
    const size_t note = size + kMaxNoteBytes + 512 <= kMaxCaseBytes ? kMaxNoteBytes : 1024;
    grpc::Status s = Deliver(kUnion, update(note));
    ASSERT_TRUE(s.ok()) << "update " << applied << " at " << size
                        << " bytes: " << s.error_message();
    ASSERT_LT(++applied, 2000);
  }
  EXPECT_GT(applied, 100);
  ExpectRefused(kUnion, update(kMaxNoteBytes), grpc::StatusCode::FAILED_PRECONDITION,
                "largest size a case may have", mcase);
  EXPECT_LE(GetCase(mcase).ByteSizeLong(), kMaxCaseBytes);
}

// Records written before (sender, id) keys, under the bare envelope id, still
// deduplicate, for their own sender only: no migration needed.
TEST_F(OverreachTest, RecordsKeyedByIdAloneStillDeduplicateForTheirSender) {
  StartNode();
  const v1::Envelope env = Sign(Referral(kUnion, "ENV-OLD"));
  v1::Receipt original, again;
  ASSERT_TRUE(Deliver(kUnion, env, &original).ok());
  node_->Shutdown(absl::Seconds(1));
  node_.reset();
  {  // Rewrite the record the way an earlier version stored it.
    std::vector<std::string> families = ledger::LedgerColumnFamilyNames();
    for (const char* f :
         {kCasesFamily, kEvidenceFamily, kOutboxFamily, kReceivedFamily, kReferralIndexFamily}) {
      families.push_back(f);
    }
    ASSERT_OK_AND_ASSIGN(auto store, NodeStore::Open(config_.data_dir(), families));
    rocksdb::ColumnFamilyHandle* received = store->family(kReceivedFamily);
    std::string record;
    ASSERT_TRUE(
        store->db()->Get(rocksdb::ReadOptions(), received, "from/union-sg/ENV-OLD", &record).ok());
    rocksdb::WriteBatch batch;
    batch.Delete(received, "from/union-sg/ENV-OLD");
    batch.Put(received, "ENV-OLD", record);
    rocksdb::WriteOptions wo;
    wo.sync = true;
    ASSERT_TRUE(store->db()->Write(wo, &batch).ok());
  }
  ASSERT_OK_AND_ASSIGN(node_, Node::Start(config_));
  // Its sender's redelivery: the original receipt, nothing applied twice.
  ASSERT_TRUE(Deliver(kUnion, env, &again).ok());
  EXPECT_EQ(again.SerializeAsString(), original.SerializeAsString());
  EXPECT_EQ(CaseCount(), 1u);
  // The same id for another payload from that sender: still refused.
  v1::EnvelopePayload changed = Referral(kUnion, "ENV-OLD");
  changed.mutable_referral()->set_referral_id("REF-CHANGED");
  ExpectRefused(kUnion, Sign(changed), grpc::StatusCode::ALREADY_EXISTS,
                "already used for a different payload");
  // Another sender's envelope with that id is its own.
  v1::EnvelopePayload other = Referral(kInspectorate, "ENV-OLD");
  other.mutable_referral()->set_referral_id("REF-INSPECTORATE");
  grpc::Status s = Deliver(kInspectorate, Sign(other));
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(CaseCount(), 2u);
}

// A key whose validity ended is refused by the receiver's clock however the
// envelope is dated; lifetimes are bounded.
TEST_F(OverreachTest, KeyValidityByTheReceiversClockAndAMaximumLifetime) {
  const absl::Time now = absl::Now();
  auto rfc = [](absl::Time t) {
    return absl::FormatTime(absl::RFC3339_sec, t, absl::UTCTimeZone());
  };
  v1::Roster roster = fed_.MakeRoster();
  Ed25519PrivateKey old_key = Ed25519PrivateKey::Generate();
  Ed25519PrivateKey next_key = Ed25519PrivateKey::Generate();
  Ed25519PrivateKey revoked_key = Ed25519PrivateKey::Generate();
  for (auto& m : *roster.mutable_members()) {
    if (m.org() != kUnion) continue;
    v1::SigningKey* k = m.add_signing_keys();
    k->set_key_id("union-sg-old");
    k->set_public_key(Base64Encode(old_key.public_key().raw()));
    k->set_status(v1::KEY_STATUS_RETIRED);
    k->set_valid_until(rfc(now - absl::Hours(24)));
    k = m.add_signing_keys();
    k->set_key_id("union-sg-next");
    k->set_public_key(Base64Encode(next_key.public_key().raw()));
    k->set_status(v1::KEY_STATUS_ACTIVE);
    k->set_valid_from(rfc(now + absl::Hours(24)));
    k = m.add_signing_keys();
    k->set_key_id("union-sg-revoked");
    k->set_public_key(Base64Encode(revoked_key.public_key().raw()));
    k->set_status(v1::KEY_STATUS_REVOKED);
  }
  StartNode(&roster);
  auto signed_with = [&](const std::string& key_id, const Ed25519PrivateKey& key,
                         absl::Time created, absl::Time expires) {
    v1::EnvelopePayload p = Referral(kUnion, NextId());
    p.set_key_id(key_id);
    p.set_created_unix(absl::ToUnixSeconds(created));
    p.set_expires_unix(absl::ToUnixSeconds(expires));
    return SignEnvelope(p, key);
  };
  const absl::Time t = absl::Now();
  // Backdated into the retired key's validity: refused, by the receiver's clock.
  ExpectRefused(kUnion,
                signed_with("union-sg-old", old_key, t - absl::Hours(48), t + absl::Hours(1)),
                grpc::StatusCode::PERMISSION_DENIED, "stopped being valid");
  // Dated after its end: refused too.
  ExpectRefused(kUnion, signed_with("union-sg-old", old_key, t, t + absl::Hours(1)),
                grpc::StatusCode::PERMISSION_DENIED, "stopped being valid");
  // A key not valid yet, however the envelope is dated (within the skew, or ahead).
  ExpectRefused(kUnion, signed_with("union-sg-next", next_key, t, t + absl::Hours(1)),
                grpc::StatusCode::PERMISSION_DENIED, "is not valid before");
  ExpectRefused(kUnion,
                signed_with("union-sg-next", next_key, t + absl::Hours(25), t + absl::Hours(26)),
                grpc::StatusCode::PERMISSION_DENIED, "is not valid before");
  // Revoked: refused however dated.
  ExpectRefused(
      kUnion, signed_with("union-sg-revoked", revoked_key, t - absl::Hours(1), t + absl::Hours(1)),
      grpc::StatusCode::PERMISSION_DENIED, "has been revoked");
  // Lifetime: longer than 30 days declared, created in the future beyond the skew.
  ExpectRefused(kUnion,
                signed_with("union-sg-1", fed_.org(kUnion).signing, t - absl::Hours(1),
                            t + absl::Hours(24 * 30)),
                grpc::StatusCode::FAILED_PRECONDITION, "longer than the 30 days");
  ExpectRefused(kUnion,
                signed_with("union-sg-1", fed_.org(kUnion).signing, t - absl::Hours(24 * 40),
                            t + absl::Hours(1)),
                grpc::StatusCode::FAILED_PRECONDITION, "longer than the 30 days");
  ExpectRefused(kUnion,
                signed_with("union-sg-1", fed_.org(kUnion).signing, t + absl::Minutes(10),
                            t + absl::Hours(1)),
                grpc::StatusCode::FAILED_PRECONDITION, "created in the future");
  ExpectRefused(
      kUnion,
      signed_with("union-sg-1", fed_.org(kUnion).signing, t - absl::Hours(2), t - absl::Hours(1)),
      grpc::StatusCode::FAILED_PRECONDITION, "expired at");
  // Inside every bound: taken (29 days old, within the skew ahead, the current key).
  EXPECT_TRUE(Deliver(kUnion, signed_with("union-sg-1", fed_.org(kUnion).signing,
                                          t - absl::Hours(24 * 29), t + absl::Hours(1)))
                  .ok());
  EXPECT_TRUE(Deliver(kUnion, signed_with("union-sg-1", fed_.org(kUnion).signing,
                                          t + absl::Minutes(2), t + absl::Hours(1)))
                  .ok());
}

TEST_F(OverreachTest, TheMaximumLifetimeIsAConfiguredLimit) {
  const std::string path = fed_.WriteNodeConfig(kSelf, {{"cw", {"caseworker"}}});
  const std::string yaml = ReadFileToString(path).value();
  auto with = [&](const std::string& line) {
    ASSERT_OK(WriteFileAtomically(
        path, absl::StrReplaceAll(yaml, {{"limits:\n", "limits:\n  " + line + "\n"}})));
  };
  ASSERT_OK_AND_ASSIGN(v1::NodeConfig config, LoadNodeConfig(path));
  EXPECT_EQ(config.limits().max_envelope_lifetime_days(), 30u);
  for (const char* bad : {"max_envelope_lifetime_days: 6", "max_envelope_lifetime_days: 366"}) {
    with(bad);
    auto loaded = LoadNodeConfig(path);
    EXPECT_FALSE(loaded.ok()) << bad;
    EXPECT_NE(loaded.status().message().find("limits.max_envelope_lifetime_days"),
              std::string::npos)
        << loaded.status().message();
  }
  with("max_envelope_lifetime_days: 8");
  ASSERT_OK_AND_ASSIGN(config, LoadNodeConfig(path));
  EXPECT_EQ(config.limits().max_envelope_lifetime_days(), 8u);
  ASSERT_OK_AND_ASSIGN(node_, Node::Start(config));
  roster_ = fed_.MakeRoster();
  cw_ = AsUser("cw");
  aud_ = AsUser("aud");
  v1::EnvelopePayload p = Referral(kUnion, NextId());
  p.set_expires_unix(p.created_unix() + 9 * 24 * 3600);
  grpc::Status s = Deliver(kUnion, Sign(p));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << s.error_message();
  EXPECT_NE(s.error_message().find("longer than the 8 days"), std::string::npos)
      << s.error_message();
  p = Referral(kUnion, NextId());
  p.set_expires_unix(p.created_unix() + 7 * 24 * 3600);  // what senders use
  EXPECT_TRUE(Deliver(kUnion, Sign(p)).ok());
}

// A misbehaving peer and an honest one deliver many envelopes at once, on one
// shared channel each and on channels of their own, the bad one reusing the
// honest one's ids: every honest envelope applies, every bad one is refused,
// and each is recorded exactly once.
TEST_F(OverreachTest, ConcurrentOverreachingAndHonestPeers) {
  StartNode();
  const std::string mcase = ReceivedAndAccepted(kInspectorate, "ENV-BAD-BASE");
  const auto [mine, ref] = Referred(kUnion);
  ASSERT_TRUE(Deliver(kUnion, Sign(Decision(kUnion, "ENV-DEC", ref, true, "C-U1"))).ok());
  const size_t history = GetCase(mcase).history_size();
  const int mine_history = GetCase(mine).history_size();
  const size_t cases = CaseCount();

  constexpr int kEach = 48;
  std::vector<v1::Envelope> honest, bad;
  for (int i = 0; i < kEach; ++i) {
    const std::string id = absl::StrCat("ENV-C", i);
    honest.push_back(
        Sign(i % 2 == 0 ? Referral(kUnion, id) : Update(kUnion, id, ref, "union-sg/user/cw")));
    switch (i % 4) {
      case 0:  // speaks for the receiver's caseworker
        bad.push_back(Sign(Update(kInspectorate, id, "REF-ENV-BAD-BASE", "ministry-id/user/cw")));
        break;
      case 1:  // speaks for the honest peer's user
        bad.push_back(Sign(Update(kInspectorate, id, "REF-ENV-BAD-BASE", "union-sg/user/cw")));
        break;
      case 2:  // decides a referral it is not party to
        bad.push_back(Sign(Decision(kInspectorate, id, ref, false, "")));
        break;
      default: {  // evidence attributed to the receiver
        v1::EnvelopePayload p = Referral(kInspectorate, id);
        p.mutable_referral()->mutable_shared()->add_evidence()->set_id("E-1");
        p.mutable_referral()->mutable_shared()->mutable_evidence(0)->set_added_by(
            "ministry-id/user/cw");
        bad.push_back(Sign(p));
      }
    }
  }
  const uint64_t before = LedgerSize();
  std::vector<grpc::Status> honest_status(kEach), bad_status(kEach);
  std::vector<v1::Receipt> receipts(kEach);
  {
    auto shared_union = v1::PeerService::NewStub(AsNode(kUnion));
    auto shared_bad = v1::PeerService::NewStub(AsNode(kInspectorate));
    std::vector<std::thread> threads;
    constexpr int kThreads = 8;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        // Half the threads share one channel per peer, half open their own.
        auto own_union = t % 2 == 0 ? nullptr : v1::PeerService::NewStub(AsNode(kUnion));
        auto own_bad = t % 2 == 0 ? nullptr : v1::PeerService::NewStub(AsNode(kInspectorate));
        for (int i = t; i < kEach; i += kThreads) {
          // A busy case or a concurrent duplicate is told to retry (not a
          // refusal, not recorded); senders do.
          v1::Receipt r;
          do {
            bad_status[i] = (own_bad ? own_bad : shared_bad)->Deliver(Ctx().get(), bad[i], &r);
          } while (bad_status[i].error_code() == grpc::StatusCode::UNAVAILABLE);
          do {
            honest_status[i] = (own_union ? own_union : shared_union)
                                   ->Deliver(Ctx().get(), honest[i], &receipts[i]);
          } while (honest_status[i].error_code() == grpc::StatusCode::UNAVAILABLE);
        }
      });
    }
    for (auto& th : threads) th.join();
  }
  const uint64_t after = LedgerSize();
  for (int i = 0; i < kEach; ++i) {
    SCOPED_TRACE(i);
    EXPECT_TRUE(honest_status[i].ok()) << honest_status[i].error_message();
    if (honest_status[i].ok()) {
      EXPECT_OK(VerifyReceipt(receipts[i], honest[i], kSelf, roster_).status());
    }
    EXPECT_FALSE(bad_status[i].ok());
    EXPECT_TRUE(bad_status[i].error_code() == grpc::StatusCode::PERMISSION_DENIED)
        << bad_status[i].error_message();
  }
  // Exactly one entry per envelope: 48 allowed from union-sg, 48 denied from
  // inspectorate-sg, plus the checkpoint read.
  ASSERT_EQ(after - before, 2u * kEach + 1);
  std::map<std::pair<std::string, int>, int> tally;
  for (uint64_t i = before; i < after - 1; ++i) {
    const v1::AccessEvent ev = EntryAt(i);
    EXPECT_EQ(ev.action(), "envelope.receive");
    ++tally[{ev.actor_org(), ev.outcome()}];
  }
  EXPECT_EQ((tally[{kUnion, v1::ACCESS_OUTCOME_ALLOWED}]), kEach);
  EXPECT_EQ((tally[{kInspectorate, v1::ACCESS_OUTCOME_DENIED}]), kEach);
  // Nothing the bad peer sent changed anything.
  const v1::Case c = GetCase(mcase);
  EXPECT_EQ(static_cast<size_t>(c.history_size()), history);
  const v1::Case decided = GetCase(mine);
  ASSERT_EQ(decided.referrals_size(), 1);
  EXPECT_EQ(decided.referrals(0).state(), v1::REFERRAL_STATE_ACCEPTED);
  EXPECT_EQ(decided.referrals(0).peer_case_id(), "C-U1");
  EXPECT_EQ(GetCase(mine).history_size(), mine_history + kEach / 2);  // the honest updates
  EXPECT_EQ(CaseCount(), cases + kEach / 2);
}

// A received case's text is bounded as a local one's (CheckCaseText): every
// text field of a referral's shared case (walked by descriptor), one byte over
// its bound, gets the referral refused with the field named, one denied
// entry, and no case.
TEST_F(OverreachTest, ReceivedCaseTextIsBoundedAsALocalCasesIs) {
  StartNode();
  std::vector<testing::FieldPath> fields;
  testing::StringFields(v1::SharedCase::descriptor(), {}, &fields);
  int walked = 0;
  for (const testing::FieldPath& path : fields) {
    const std::string name = testing::PathName(path);
    // Evidence items are checked as the sender's first (their ids, who added them).
    if (path.back()->type() != google::protobuf::FieldDescriptor::TYPE_STRING ||
        absl::StartsWith(name, "evidence")) {
      continue;
    }
    v1::EnvelopePayload p = Referral(kUnion, NextId());
    testing::SetAt(
        p.mutable_referral()->mutable_shared(), path,
        std::string((name == "narrative" ? kMaxNarrativeBytes : kMaxCaseFieldBytes) + 1, 'x'));
    ExpectRefused(kUnion, Sign(p), grpc::StatusCode::INVALID_ARGUMENT,
                  "the case's " + name + " is ");
    ++walked;
  }
  EXPECT_GE(walked, 10);
}

// A decline's reason is bounded like a note (kMaxNoteBytes), from this node's
// caseworker and from a peer's decision: refused INVALID_ARGUMENT naming the
// field and its length, recorded, and the referral is still waiting. An
// evidence id typed as a name in a referral is refused without the name
// reaching the ledger.
TEST_F(OverreachTest, DecisionReasonsAreBoundedAndTypedIdsStayOutOfTheLedger) {
  StartNode();
  // Local: a received referral declined with an over-long reason.
  ASSERT_TRUE(Deliver(kUnion, Sign(Referral(kUnion, "ENV-LONG"))).ok());
  v1::DecideReferralRequest decline;
  decline.set_referral_id("REF-ENV-LONG");
  decline.set_reason(std::string(kMaxNoteBytes + 1, 'r'));
  v1::DecideReferralResponse decided;
  uint64_t before = LedgerSize();
  grpc::Status s = v1::ReferralService::NewStub(cw_)->Decide(Ctx().get(), decline, &decided);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
  EXPECT_TRUE(absl::StrContains(s.error_message(), "the reason is 16385 bytes long"))
      << s.error_message();
  v1::AccessEvent ev = EntryAt(before);
  EXPECT_EQ(ev.action(), "referral.decline");
  EXPECT_EQ(ev.outcome(), v1::ACCESS_OUTCOME_DENIED);
  decline.set_reason("out of our remit");
  s = v1::ReferralService::NewStub(cw_)->Decide(Ctx().get(), decline, &decided);
  EXPECT_TRUE(s.ok()) << s.error_message();  // still waiting: now declined
  // From a peer: a decision on this node's referral with an over-long reason.
  const auto [case_id, referral_id] = Referred(kUnion);
  v1::EnvelopePayload d = Decision(kUnion, NextId(), referral_id, false, "");
  d.mutable_decision()->set_reason(std::string(kMaxNoteBytes + 1, 'r'));
  ExpectRefused(kUnion, Sign(d), grpc::StatusCode::INVALID_ARGUMENT,
                "decision.reason is 16385 bytes long", case_id);
  // A name typed as an evidence id in a referral: refused, and not in the ledger.
  v1::ReferCaseRequest refer;
  refer.set_case_id(case_id);
  refer.set_to_org(kInspectorate);
  refer.set_agreement("test-agreement");
  refer.set_purpose("case-referral");
  refer.add_evidence_ids("Siti Rahayu");
  v1::ReferCaseResponse referred;
  before = LedgerSize();
  s = v1::ReferralService::NewStub(cw_)->Refer(Ctx().get(), refer, &referred);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND) << s.error_message();
  EXPECT_FALSE(absl::StrContains(s.error_message(), "Siti")) << s.error_message();
  ev = EntryAt(before);
  EXPECT_EQ(ev.action(), "referral.send");
  EXPECT_FALSE(absl::StrContains(ev.SerializeAsString(), "Siti")) << ev.ShortDebugString();
}

}  // namespace
}  // namespace corridor
