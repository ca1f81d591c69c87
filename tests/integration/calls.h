// Calls the in-process integration tests share: make a case, refer it, read
// the outbox, the inbox and the ledger of a node of an InProcessFederation.
// Each returns the gRPC status or what the node answered. Test-only.
#ifndef CORRIDOR_TESTS_INTEGRATION_CALLS_H_
#define CORRIDOR_TESTS_INTEGRATION_CALLS_H_

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/testing/inproc_federation.h"

namespace corridor::testing {

inline constexpr char kPurpose[] = "case-referral";
inline constexpr char kAgreement[] = "test-agreement";
inline constexpr char kWorkerName[] = "Siti Quillfeather";

// A case at `at` whose worker consents to share their data with each of
// `consent` (org → purpose).
inline std::string CreateCase(InProcessFederation& fed, const std::string& at,
                              const std::vector<std::pair<std::string, std::string>>& consent) {
  v1::CreateCaseRequest req;
  v1::Case* c = req.mutable_case_();
  c->set_category(v1::CASE_CATEGORY_RECRUITMENT_FEES);
  c->set_sector("domestic-work");
  c->set_origin_country("ID");
  c->set_destination_country("SG");
  c->mutable_worker()->set_name(kWorkerName);
  c->set_narrative("wages withheld for seven months");
  c->mutable_employer()->set_name("Kestrel Pte Ltd");
  for (const auto& [org, purpose] : consent) {
    v1::ConsentGrant* g = c->mutable_consent()->add_grants();
    g->set_org(org);
    g->add_purposes(purpose);
  }
  if (!consent.empty()) c->mutable_consent()->set_method("written, witnessed");
  v1::Case created;
  grpc::Status s = fed.Cases(at)->CreateCase(InProcessFederation::Context().get(), req, &created);
  EXPECT_TRUE(s.ok()) << s.error_message();
  return created.id();
}

// A referral request of `case_id` to `to` under kAgreement for kPurpose.
inline v1::ReferCaseRequest ReferralOf(const std::string& case_id, const std::string& to) {
  v1::ReferCaseRequest req;
  req.set_case_id(case_id);
  req.set_to_org(to);
  req.set_agreement(kAgreement);
  req.set_purpose(kPurpose);
  return req;
}

inline grpc::Status Refer(InProcessFederation& fed, const std::string& at,
                          const v1::ReferCaseRequest& req, v1::ReferCaseResponse* resp) {
  return fed.Referrals(at)->Refer(InProcessFederation::Context().get(), req, resp);
}

// Every entry of `at`'s outbox, all pages.
inline std::vector<v1::OutboxEntry> Outbox(InProcessFederation& fed, const std::string& at) {
  std::vector<v1::OutboxEntry> out;
  v1::ListOutboxRequest req;
  req.set_page_size(1000);
  do {
    v1::ListOutboxResponse resp;
    grpc::Status s =
        fed.Referrals(at)->ListOutbox(InProcessFederation::Context().get(), req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    if (!s.ok()) break;
    for (auto& e : *resp.mutable_entries()) out.push_back(std::move(e));
    req.set_page_token(resp.next_page_token());
  } while (!req.page_token().empty());
  return out;
}

// `at`'s outbox entry of `envelope_id` (empty state if there is none).
inline v1::OutboxEntry OutboxEntryOf(InProcessFederation& fed, const std::string& at,
                                     const std::string& envelope_id) {
  for (v1::OutboxEntry& e : Outbox(fed, at)) {
    if (e.envelope_id() == envelope_id) return e;
  }
  return {};
}

// Waits (real time, on the real condition) until `envelope_id` in `at`'s
// outbox is in `state`.
inline bool EventuallyInState(InProcessFederation& fed, const std::string& at,
                              const std::string& envelope_id, const std::string& state) {
  return InProcessFederation::Eventually(
      [&] { return OutboxEntryOf(fed, at, envelope_id).state() == state; });
}

// Waits until `envelope_id` in `at`'s outbox has been tried at least
// `attempts` times and no delivery call of `at` is in flight: its next retry
// is then scheduled, and moving the clock decides when it happens.
inline bool EventuallySettled(InProcessFederation& fed, const std::string& at,
                              const std::string& envelope_id, uint32_t attempts) {
  return InProcessFederation::Eventually([&] {
    return OutboxEntryOf(fed, at, envelope_id).attempts() >= attempts &&
           fed.node(at).DeliveriesOutstanding() == 0;
  });
}

// The inbox item of `referral_id` at `at` (empty if it is not there).
inline v1::InboxItem InboxItemOf(InProcessFederation& fed, const std::string& at,
                                 const std::string& referral_id) {
  v1::ListInboxResponse resp;
  grpc::Status s = fed.Referrals(at)->ListInbox(InProcessFederation::Context().get(), {}, &resp);
  EXPECT_TRUE(s.ok()) << s.error_message();
  for (v1::InboxItem& i : *resp.mutable_items()) {
    if (i.referral_id() == referral_id) return i;
  }
  return {};
}

inline grpc::Status GetCase(InProcessFederation& fed, const std::string& at,
                            const std::string& case_id, v1::Case* out) {
  v1::GetCaseRequest req;
  req.set_id(case_id);
  req.set_purpose(kPurpose);
  return fed.Cases(at)->GetCase(InProcessFederation::Context().get(), req, out);
}

// The ledger events at `at` with `action` and `outcome`, as its auditor reads them.
inline std::vector<v1::AccessEvent> Events(InProcessFederation& fed, const std::string& at,
                                           const std::string& action, v1::AccessOutcome outcome) {
  std::vector<v1::AccessEvent> out;
  v1::QueryEventsRequest req;
  req.set_action(action);
  req.set_outcome(outcome);
  req.set_page_size(1000);
  do {
    v1::QueryEventsResponse resp;
    grpc::Status s = fed.Audit(at)->QueryEvents(InProcessFederation::Context().get(), req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    if (!s.ok()) break;
    for (const v1::LoggedEvent& e : resp.events()) out.push_back(e.event());
    req.set_page_token(resp.next_page_token());
  } while (!req.page_token().empty());
  return out;
}

}  // namespace corridor::testing

#endif  // CORRIDOR_TESTS_INTEGRATION_CALLS_H_
