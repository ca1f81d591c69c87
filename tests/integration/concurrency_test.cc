// Many referrals in flight at once against in-process nodes, on one channel
// and on several, while the shared fake clock moves: every one is queued
// once, delivered once, received once, recorded once at each end, and every
// sending case ends with its link delivered.
#include <atomic>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "tests/integration/calls.h"
#include "tests/testing/inproc_federation.h"

namespace corridor::testing {
namespace {

constexpr char kUnion[] = "union-sg";
constexpr char kMinistry[] = "ministry-id";

class ConcurrencyTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(fed_.StartAll().ok()); }

  struct Sent {
    std::string case_id, referral_id, envelope_id;
  };
  // Creates a case and refers it with personal data (consented) on `stub`.
  static Sent CreateAndRefer(v1::CaseService::Stub& cases, v1::ReferralService::Stub& referrals) {
    v1::CreateCaseRequest create;
    v1::Case* c = create.mutable_case_();
    c->set_category(v1::CASE_CATEGORY_RECRUITMENT_FEES);
    c->set_origin_country("ID");
    c->set_destination_country("SG");
    c->mutable_worker()->set_name(kWorkerName);
    v1::ConsentGrant* g = c->mutable_consent()->add_grants();
    g->set_org(kMinistry);
    g->add_purposes(kPurpose);
    c->mutable_consent()->set_method("written");
    v1::Case created;
    grpc::Status s = cases.CreateCase(InProcessFederation::Context().get(), create, &created);
    EXPECT_TRUE(s.ok()) << s.error_message();
    if (!s.ok()) return {};
    v1::ReferCaseRequest req = ReferralOf(created.id(), kMinistry);
    req.set_include_personal_data(true);
    v1::ReferCaseResponse resp;
    s = referrals.Refer(InProcessFederation::Context().get(), req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return {created.id(), resp.referral_id(), resp.envelope_id()};
  }

  InProcessFederation fed_;
};

TEST_F(ConcurrencyTest, ReferralsInFlightOnOneChannelAndOnSeveralAreEachDeliveredOnce) {
  constexpr int kThreads = 8;
  constexpr int kPerThread = 8;
  absl::Mutex mu;
  std::vector<Sent> sent;
  // The clock moves while the calls are in flight.
  std::atomic<bool> calling{true};
  std::thread ticker([&] {
    while (calling) {
      fed_.clock().Advance(absl::Seconds(1));
      absl::SleepFor(absl::Milliseconds(1));  // pacing only; nothing waits on it
    }
  });
  auto run = [&](bool own_channel) {
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, own_channel] {
        // One channel for every thread, or a channel (a connection) of its own.
        std::shared_ptr<grpc::Channel> channel =
            own_channel ? fed_.NewChannel(kUnion, "cw") : fed_.Channel(kUnion, "cw");
        auto cases = v1::CaseService::NewStub(channel);
        auto referrals = v1::ReferralService::NewStub(channel);
        for (int i = 0; i < kPerThread; ++i) {
          Sent s = CreateAndRefer(*cases, *referrals);
          absl::MutexLock lock(&mu);
          sent.push_back(std::move(s));
        }
      });
    }
    for (std::thread& t : threads) t.join();
  };
  run(/*own_channel=*/false);
  run(/*own_channel=*/true);
  calling = false;
  ticker.join();
  ASSERT_EQ(sent.size(), 2u * kThreads * kPerThread);

  std::set<std::string> envelopes, referrals;
  for (const Sent& s : sent) {
    ASSERT_FALSE(s.envelope_id.empty());
    envelopes.insert(s.envelope_id);
    referrals.insert(s.referral_id);
  }
  EXPECT_EQ(envelopes.size(), sent.size()) << "an envelope id was issued twice";
  EXPECT_EQ(referrals.size(), sent.size()) << "a referral id was issued twice";

  fed_.DeliverNow();
  ASSERT_TRUE(InProcessFederation::Eventually([&] {
    size_t delivered = 0;
    for (const v1::OutboxEntry& e : Outbox(fed_, kUnion)) delivered += e.state() == "delivered";
    return delivered == sent.size();
  })) << "not every referral was delivered";
  // Each received exactly once, with its personal data.
  v1::ListInboxResponse inbox;
  ASSERT_TRUE(
      fed_.Referrals(kMinistry)->ListInbox(InProcessFederation::Context().get(), {}, &inbox).ok());
  std::multiset<std::string> received;
  for (const v1::InboxItem& i : inbox.items()) {
    received.insert(i.referral_id());
    EXPECT_FALSE(i.deidentified());
  }
  for (const std::string& r : referrals) EXPECT_EQ(received.count(r), 1u) << r;
  EXPECT_EQ(received.size(), referrals.size());
  // Recorded once at each end.
  EXPECT_EQ(Events(fed_, kUnion, "referral.send", v1::ACCESS_OUTCOME_ALLOWED).size(), sent.size());
  EXPECT_EQ(Events(fed_, kUnion, "envelope.receipt", v1::ACCESS_OUTCOME_ALLOWED).size(),
            sent.size());
  EXPECT_EQ(Events(fed_, kMinistry, "envelope.receive", v1::ACCESS_OUTCOME_ALLOWED).size(),
            sent.size());
  // Every sending case ends with its link delivered.
  for (const Sent& s : sent) {
    EXPECT_TRUE(InProcessFederation::Eventually([&] {
      v1::Case c;
      if (!GetCase(fed_, kUnion, s.case_id, &c).ok()) return false;
      return c.referrals_size() == 1 && c.referrals(0).state() == v1::REFERRAL_STATE_DELIVERED;
    })) << s.case_id;
  }
}

}  // namespace
}  // namespace corridor::testing
