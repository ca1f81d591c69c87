// PeerService.Deliver at a real node: idempotent redelivery, a reused id
// with another payload, envelopes refused before anything but the denial
// is written, and ListOutbox paging.
#include <set>

#include "absl/time/clock.h"
#include "client/lib/grpc_util.h"
#include "corridor/v1/case.grpc.pb.h"
#include "corridor/v1/federation.grpc.pb.h"
#include "corridor/v1/node.grpc.pb.h"
#include "gtest/gtest.h"
#include "server/federation/envelope.h"
#include "server/node/config.h"
#include "server/node/node.h"
#include "tests/testing/federation.h"
#include "tests/testing/status_matchers.h"

namespace corridor {
namespace {

class ExchangeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fed_.AddOrg("union-sg");
    fed_.AddOrg("ministry-id", v1::ORG_KIND_MINISTRY);
    fed_.AddOrg("inspectorate-sg", v1::ORG_KIND_INSPECTORATE);
    ASSERT_OK_AND_ASSIGN(v1::NodeConfig config,
                         LoadNodeConfig(fed_.WriteNodeConfig(
                             "ministry-id", {{"aud", {"auditor"}}, {"cw", {"caseworker"}}})));
    ASSERT_OK_AND_ASSIGN(node_, Node::Start(config));
    roster_ = fed_.MakeRoster();
  }
  void TearDown() override { node_->Shutdown(absl::Seconds(1)); }

  grpc::Status Deliver(const std::string& as_org, const v1::Envelope& env, v1::Receipt* receipt) {
    const testing::TestOrg& o = fed_.org(as_org);
    auto ch =
        MakeMutualTlsChannel({o.node.cert_pem, o.node.key_pem, fed_.org("ministry-id").ca.cert_pem},
                             fed_.org("ministry-id").endpoint(), "");
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
    return v1::PeerService::NewStub(ch)->Deliver(&ctx, env, receipt);
  }
  v1::EnvelopePayload Payload(const std::string& id) {
    v1::EnvelopePayload p;
    p.set_envelope_id(id);
    p.set_sender_org("union-sg");
    p.set_recipient_org("ministry-id");
    p.set_created_unix(absl::ToUnixSeconds(absl::Now()));
    p.set_expires_unix(absl::ToUnixSeconds(absl::Now() + absl::Hours(1)));
    p.set_key_id("union-sg-1");
    p.set_agreement("test-agreement");
    p.set_purpose("case-referral");
    p.mutable_referral()->set_referral_id("REF-" + id);
    p.mutable_referral()->set_origin_case_id("C-1");
    p.mutable_referral()->mutable_shared()->set_category(v1::CASE_CATEGORY_ABUSE);
    return p;
  }

  testing::TestFederation fed_;
  std::unique_ptr<Node> node_;
  v1::Roster roster_;
};

TEST_F(ExchangeTest, RedeliveredEnvelopeReturnsOriginalReceipt) {
  const v1::Envelope env = SignEnvelope(Payload("ENV-1"), fed_.org("union-sg").signing);
  v1::Receipt first, second;
  ASSERT_TRUE(Deliver("union-sg", env, &first).ok());
  ASSERT_OK_AND_ASSIGN(v1::ReceiptBody body, VerifyReceipt(first, env, "ministry-id", roster_));
  EXPECT_EQ(body.envelope_id(), "ENV-1");
  EXPECT_GT(body.ledger_index(), 0u);
  ASSERT_TRUE(Deliver("union-sg", env, &second).ok());
  EXPECT_EQ(second.SerializeAsString(), first.SerializeAsString());
}

TEST_F(ExchangeTest, ReusedIdWithAnotherPayloadIsRefused) {
  v1::Receipt original;
  ASSERT_TRUE(
      Deliver("union-sg", SignEnvelope(Payload("ENV-2"), fed_.org("union-sg").signing), &original)
          .ok());
  v1::EnvelopePayload changed = Payload("ENV-2");
  changed.mutable_referral()->set_referral_id("REF-other");
  v1::Receipt r;
  grpc::Status s = Deliver("union-sg", SignEnvelope(changed, fed_.org("union-sg").signing), &r);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::ALREADY_EXISTS) << s.error_message();
  EXPECT_NE(s.error_message().find("already used for a different payload"), std::string::npos);
}

TEST_F(ExchangeTest, EnvelopesFromTheWrongNodeOrKeyAreRefused) {
  v1::Receipt r;
  // union-sg's envelope carried by inspectorate-sg's node.
  grpc::Status s =
      Deliver("inspectorate-sg", SignEnvelope(Payload("ENV-3"), fed_.org("union-sg").signing), &r);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED) << s.error_message();
  // Signed by another member's key.
  v1::EnvelopePayload p = Payload("ENV-4");
  p.set_key_id("inspectorate-sg-1");
  s = Deliver("union-sg", SignEnvelope(p, fed_.org("inspectorate-sg").signing), &r);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED) << s.error_message();
  EXPECT_NE(s.error_message().find("not a key of union-sg"), std::string::npos);
  // Expired.
  p = Payload("ENV-5");
  p.set_expires_unix(absl::ToUnixSeconds(absl::Now()) - 10);
  s = Deliver("union-sg", SignEnvelope(p, fed_.org("union-sg").signing), &r);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << s.error_message();
  // Users cannot deliver envelopes at all.
  const std::string prefix = fed_.IssueUser("ministry-id", "someone");
  auto ch = MakeMutualTlsChannel(
      {ReadFileToString(prefix + ".crt").value(), ReadFileToString(prefix + ".key").value(),
       fed_.org("ministry-id").ca.cert_pem},
      fed_.org("ministry-id").endpoint(), "");
  grpc::ClientContext ctx;
  s = v1::PeerService::NewStub(ch)->Deliver(
      &ctx, SignEnvelope(Payload("ENV-6"), fed_.org("union-sg").signing), &r);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED) << s.error_message();
}

TEST_F(ExchangeTest, ARefusedEnvelopeLeavesOnlyItsDenialEntry) {
  auto as = [&](const std::string& user) {
    const std::string prefix = fed_.IssueUser("ministry-id", user);
    return MakeMutualTlsChannel(
        {ReadFileToString(prefix + ".crt").value(), ReadFileToString(prefix + ".key").value(),
         fed_.org("ministry-id").ca.cert_pem},
        fed_.org("ministry-id").endpoint(), "");
  };
  auto auditor = v1::AuditService::NewStub(as("aud"));
  auto size = [&] {
    grpc::ClientContext ctx;
    v1::CheckpointResponse cp;
    grpc::Status st = auditor->GetCheckpoint(&ctx, {}, &cp);
    EXPECT_TRUE(st.ok()) << st.error_message();
    return cp.size();
  };
  const std::vector<std::pair<std::string, v1::Envelope>> bad = {
      {"expired",
       [&] {
         v1::EnvelopePayload p = Payload("ENV-X1");
         p.set_expires_unix(absl::ToUnixSeconds(absl::Now()) - 10);
         return SignEnvelope(p, fed_.org("union-sg").signing);
       }()},
      {"unknown agreement",
       [&] {
         v1::EnvelopePayload p = Payload("ENV-X2");
         p.set_agreement("secret-deal");
         return SignEnvelope(p, fed_.org("union-sg").signing);
       }()},
      {"changed body",
       [&] {
         v1::Envelope e = SignEnvelope(Payload("ENV-X3"), fed_.org("union-sg").signing);
         v1::EnvelopePayload p = Payload("ENV-X3");
         p.mutable_referral()->set_referral_id("REF-changed");
         e.set_payload(p.SerializeAsString());
         return e;
       }()},
  };
  for (const auto& [name, env] : bad) {
    SCOPED_TRACE(name);
    const uint64_t before = size();
    v1::Receipt r;
    EXPECT_FALSE(Deliver("union-sg", env, &r).ok());
    const uint64_t after = size();
    ASSERT_EQ(after - before, 2u);  // the denial, and the second checkpoint read
    grpc::ClientContext ctx;
    v1::GetEntriesRequest req;
    req.set_begin(before);
    req.set_end(before + 1);
    v1::GetEntriesResponse entries;
    ASSERT_TRUE(auditor->GetEntries(&ctx, req, &entries).ok());
    EXPECT_EQ(entries.events(0).event().action(), "envelope.receive");
    EXPECT_EQ(entries.events(0).event().outcome(), v1::ACCESS_OUTCOME_DENIED);
    EXPECT_FALSE(entries.events(0).event().reason().empty());
  }
  // And no case was filed.
  grpc::ClientContext ctx;
  v1::ListCasesResponse list;
  ASSERT_TRUE(v1::CaseService::NewStub(as("cw"))->ListCases(&ctx, {}, &list).ok());
  EXPECT_EQ(list.cases_size(), 0);
}

TEST_F(ExchangeTest, ListOutboxPagesEveryItemOnce) {
  // Five received referrals, each accepted: five decisions wait in the outbox
  // (their recipient's node is not running).
  const std::string prefix = fed_.IssueUser("ministry-id", "cw");
  auto cw = MakeMutualTlsChannel(
      {ReadFileToString(prefix + ".crt").value(), ReadFileToString(prefix + ".key").value(),
       fed_.org("ministry-id").ca.cert_pem},
      fed_.org("ministry-id").endpoint(), "");
  auto referrals = v1::ReferralService::NewStub(cw);
  std::set<std::string> decisions;
  for (int i = 0; i < 5; ++i) {
    const std::string id = "ENV-P" + std::to_string(i);
    v1::Receipt r;
    ASSERT_TRUE(
        Deliver("union-sg", SignEnvelope(Payload(id), fed_.org("union-sg").signing), &r).ok());
    grpc::ClientContext ctx;
    v1::DecideReferralRequest req;
    req.set_referral_id("REF-" + id);
    req.set_accept(true);
    v1::DecideReferralResponse resp;
    grpc::Status st = referrals->Decide(&ctx, req, &resp);
    ASSERT_TRUE(st.ok()) << st.error_message();
    decisions.insert(resp.envelope_id());
  }
  std::vector<std::string> listed;
  std::vector<int> page_sizes;
  v1::ListOutboxRequest req;
  req.set_page_size(2);
  do {
    grpc::ClientContext ctx;
    v1::ListOutboxResponse page;
    grpc::Status st = referrals->ListOutbox(&ctx, req, &page);
    ASSERT_TRUE(st.ok()) << st.error_message();
    page_sizes.push_back(page.entries_size());
    for (const auto& e : page.entries()) listed.push_back(e.envelope_id());
    req.set_page_token(page.next_page_token());
  } while (!req.page_token().empty());
  EXPECT_EQ(page_sizes, (std::vector<int>{2, 2, 1}));
  EXPECT_EQ(std::set<std::string>(listed.begin(), listed.end()), decisions);
  EXPECT_EQ(listed.size(), decisions.size());
  // A token the node did not issue.
  grpc::ClientContext ctx;
  req.set_page_token("ENV-P0");
  v1::ListOutboxResponse page;
  EXPECT_EQ(referrals->ListOutbox(&ctx, req, &page).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
}

}  // namespace
}  // namespace corridor
