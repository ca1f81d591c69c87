// The evidence-request flow end to end in process (docs/evidence.md): a
// prosecutor's request, the approver's grant, the fetch with its digest
// checked at both ends, the custody listing; the deadline on the fake clock.
#include <memory>
#include <string>

#include "corridor/v1/evidence.grpc.pb.h"
#include "gtest/gtest.h"
#include "ledger/crypto/crypto.h"
#include "tests/integration/calls.h"
#include "tests/testing/inproc_federation.h"

namespace corridor::testing {
namespace {

constexpr char kHolder[] = "union-sg";
constexpr char kRequester[] = "prosecutor-sg";
constexpr char kEvidenceAgreement[] = "mla-test";
constexpr char kEvidencePurpose[] = "prosecution";

InProcessFederationOptions Options() {
  InProcessFederationOptions o;
  o.orgs = {{kHolder, v1::ORG_KIND_UNION}, {kRequester, v1::ORG_KIND_PROSECUTOR}};
  o.edit_roster = [](v1::Roster& r) {
    v1::Agreement* a = r.add_agreements();
    a->set_id(kEvidenceAgreement);
    a->add_parties(kHolder);
    a->add_parties(kRequester);
    a->add_purposes(kEvidencePurpose);
    a->add_evidence_requesters(v1::ORG_KIND_PROSECUTOR);
  };
  return o;
}

class EvidenceFlowTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(fed_.StartAll().ok()); }

  std::unique_ptr<v1::EvidenceService::Stub> Evidence(const std::string& at,
                                                      const std::string& user) {
    return v1::EvidenceService::NewStub(fed_.Channel(at, user));
  }

  // Uploads `content` to case `case_id` at the holder; returns the item.
  v1::EvidenceItem Upload(const std::string& case_id, const std::string& content) {
    auto ctx = InProcessFederation::Context();
    v1::EvidenceItem item;
    auto writer = fed_.Cases(kHolder)->AddEvidence(ctx.get(), &item);
    v1::AddEvidenceRequest header;
    header.mutable_header()->set_case_id(case_id);
    header.mutable_header()->set_file_name("payslips.pdf");
    header.mutable_header()->set_media_type("application/pdf");
    EXPECT_TRUE(writer->Write(header));
    v1::AddEvidenceRequest data;
    data.set_data(content);
    EXPECT_TRUE(writer->Write(data));
    writer->WritesDone();
    grpc::Status s = writer->Finish();
    EXPECT_TRUE(s.ok()) << s.error_message();
    return item;
  }

  // A case at the holder with one evidence item, referred to the requester
  // and accepted there; returns (holder case, requester case, item).
  void LinkedCase(std::string* holder_case, std::string* requester_case, v1::EvidenceItem* item) {
    *holder_case = CreateCase(fed_, kHolder, {});
    *item = Upload(*holder_case, std::string(200000, 'x') + "end");
    v1::ReferCaseRequest req = ReferralOf(*holder_case, kRequester);
    req.set_deidentify(true);
    v1::ReferCaseResponse sent;
    ASSERT_TRUE(Refer(fed_, kHolder, req, &sent).ok());
    fed_.DeliverNow();
    ASSERT_TRUE(EventuallyInState(fed_, kHolder, sent.envelope_id(), "delivered"));
    *requester_case = InboxItemOf(fed_, kRequester, sent.referral_id()).case_id();
    ASSERT_FALSE(requester_case->empty());
  }

  v1::RequestEvidenceRequest RequestOf(const std::string& requester_case) {
    v1::RequestEvidenceRequest r;
    r.set_holder_org(kHolder);
    r.set_case_id(requester_case);
    r.set_all(true);
    r.set_agreement(kEvidenceAgreement);
    r.set_purpose(kEvidencePurpose);
    r.set_legal_basis("Criminal Procedure Code s.20 production order 17/2026");
    return r;
  }

  // Waits until `at` lists request `id` in `state`.
  bool EventuallyListed(const std::string& at, const std::string& user, const std::string& id,
                        v1::EvidenceRequestState state) {
    return InProcessFederation::Eventually([&] {
      fed_.DeliverNow();
      v1::ListEvidenceRequestsResponse list;
      if (!Evidence(at, user)->List(InProcessFederation::Context().get(), {}, &list).ok()) {
        return false;
      }
      for (const auto& r : list.requests()) {
        if (r.request_id() == id && r.state() == state) return true;
      }
      return false;
    });
  }

  InProcessFederation fed_{Options()};
};

TEST_F(EvidenceFlowTest, RequestApproveFetchAndCustody) {
  std::string holder_case, requester_case;
  v1::EvidenceItem item;
  ASSERT_NO_FATAL_FAILURE(LinkedCase(&holder_case, &requester_case, &item));

  v1::RequestEvidenceResponse asked;
  grpc::Status s =
      Evidence(kRequester, "pros")
          ->Request(InProcessFederation::Context().get(), RequestOf(requester_case), &asked);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_TRUE(
      EventuallyListed(kHolder, "appr", asked.request_id(), v1::EVIDENCE_REQUEST_STATE_PENDING));

  v1::DecideEvidenceRequest decide;
  decide.set_request_id(asked.request_id());
  decide.set_approve(true);
  decide.set_max_fetches(1);
  decide.add_conditions("Not to be shown to the employer");
  v1::DecideEvidenceResponse granted;
  s = Evidence(kHolder, "appr")->Decide(InProcessFederation::Context().get(), decide, &granted);
  if (!s.ok()) {
    for (auto o : {v1::ACCESS_OUTCOME_DENIED, v1::ACCESS_OUTCOME_ERROR}) {
      for (const auto& e : Events(fed_, kHolder, "evidence.decide", o)) {
        ADD_FAILURE() << e.ShortDebugString();
      }
    }
  }
  ASSERT_TRUE(s.ok()) << s.error_code() << " " << s.error_message();
  ASSERT_TRUE(EventuallyListed(kRequester, "pros", asked.request_id(),
                               v1::EVIDENCE_REQUEST_STATE_APPROVED));

  v1::FetchGrantedRequest fetch;
  fetch.set_request_id(asked.request_id());
  v1::FetchGrantedResponse fetched;
  s = Evidence(kRequester, "pros")
          ->Fetch(InProcessFederation::Context(absl::Seconds(60)).get(), fetch, &fetched);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_EQ(fetched.items_size(), 1);
  const v1::EvidenceItem& got = fetched.items(0).item();
  EXPECT_EQ(got.sha256(), item.sha256());
  EXPECT_EQ(got.received_from(), kHolder);
  ASSERT_GE(got.conditions_size(), 2);
  EXPECT_EQ(got.conditions(1), "Not to be shown to the employer");

  // The limit of one fetch is spent: a second is refused at the holder and recorded there.
  v1::FetchGrantedResponse again;
  s = Evidence(kRequester, "pros")
          ->Fetch(InProcessFederation::Context(absl::Seconds(60)).get(), fetch, &again);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED) << s.error_message();
  EXPECT_EQ(Events(fed_, kHolder, "evidence.serve", v1::ACCESS_OUTCOME_ALLOWED).size(), 1u);
  EXPECT_EQ(Events(fed_, kHolder, "evidence.serve", v1::ACCESS_OUTCOME_DENIED).size(), 1u);
  EXPECT_EQ(Events(fed_, kRequester, "evidence.fetch", v1::ACCESS_OUTCOME_DENIED).size(), 1u);

  v1::CustodyRequest custody;
  custody.set_evidence_id(item.id());
  v1::CustodyResponse chain;
  s = Evidence(kHolder, "appr")->Custody(InProcessFederation::Context().get(), custody, &chain);
  ASSERT_TRUE(s.ok()) << s.error_message();
  std::vector<std::string> actions;
  for (const auto& e : chain.events()) actions.push_back(e.event().event().action());
  EXPECT_EQ(actions, (std::vector<std::string>{"evidence.add", "evidence.grant", "evidence.serve",
                                               "evidence.serve"}));
  custody.set_evidence_id(got.id());
  s = Evidence(kRequester, "pros")->Custody(InProcessFederation::Context().get(), custody, &chain);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_GE(chain.events_size(), 1);
  EXPECT_EQ(chain.events(0).event().event().action(), "evidence.fetch");
  EXPECT_FALSE(chain.events(0).holder_receipt().body().empty());
}

TEST_F(EvidenceFlowTest, NoDecisionByTheDeadlineIsRecordedOnceAtTheRequester) {
  std::string holder_case, requester_case;
  v1::EvidenceItem item;
  ASSERT_NO_FATAL_FAILURE(LinkedCase(&holder_case, &requester_case, &item));
  v1::RequestEvidenceRequest req = RequestOf(requester_case);
  req.set_urgent(true);
  v1::RequestEvidenceResponse asked;
  ASSERT_TRUE(Evidence(kRequester, "pros")
                  ->Request(InProcessFederation::Context().get(), req, &asked)
                  .ok());
  ASSERT_TRUE(
      EventuallyListed(kHolder, "appr", asked.request_id(), v1::EVIDENCE_REQUEST_STATE_PENDING));
  fed_.Advance(absl::Hours(9));
  ASSERT_TRUE(fed_.node(kRequester).SweepEvidenceDeadlines().ok());
  ASSERT_TRUE(fed_.node(kRequester).SweepEvidenceDeadlines().ok());
  EXPECT_EQ(Events(fed_, kRequester, "evidence.no_response", v1::ACCESS_OUTCOME_ALLOWED).size(),
            1u);
  v1::ListEvidenceRequestsResponse list;
  ASSERT_TRUE(
      Evidence(kHolder, "appr")->List(InProcessFederation::Context().get(), {}, &list).ok());
  ASSERT_EQ(list.requests_size(), 1);
  EXPECT_TRUE(list.requests(0).overdue());
}

}  // namespace
}  // namespace corridor::testing
