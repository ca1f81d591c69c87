// Delivery lanes of the Exchange, with a sending node assembled in-process on a
// fake clock and a real receiving node: backoff reset when the peer answers
// again, paging and pruning of the outbox, and no delivered referral left
// QUEUED on its case while the case is busy, across a restart.
#include <atomic>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "ledger/rocksdb/rocksdb_ledger.h"
#include "server/audit/access_log.h"
#include "server/auth/identity.h"
#include "server/common/executor.h"
#include "server/federation/envelope.h"
#include "server/federation/exchange.h"
#include "server/federation/peers.h"
#include "server/node/config.h"
#include "server/node/node.h"
#include "server/store/case_store.h"
#include "server/store/store.h"
#include "tests/testing/federation.h"
#include "tests/testing/status_matchers.h"

namespace corridor {
namespace {

// Polls `done` until it holds; false if it still does not after `limit` (a
// generous bound for an eventual state, not a timing check).
template <typename F>
bool Eventually(F done, absl::Duration limit = absl::Seconds(60)) {
  const absl::Time give_up = absl::Now() + limit;
  while (!done()) {
    if (absl::Now() > give_up) return false;
    absl::SleepFor(absl::Milliseconds(10));
  }
  return true;
}

class DeliveryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fed_.AddOrg("union-sg");
    fed_.AddOrg("ministry-id", v1::ORG_KIND_MINISTRY);
    fed_.AddOrg("inspectorate-sg", v1::ORG_KIND_INSPECTORATE);  // never started
    ASSERT_OK_AND_ASSIGN(
        config_, LoadNodeConfig(fed_.WriteNodeConfig("union-sg", {{"cw", {"caseworker"}}})));
    // Calls to a peer that is down wait for it up to their deadline: keep it short.
    config_.mutable_limits()->set_peer_call_timeout_seconds(1);
    ASSERT_OK_AND_ASSIGN(receiver_config_, LoadNodeConfig(fed_.WriteNodeConfig(
                                               "ministry-id", {{"cw", {"caseworker"}}})));
    std::vector<std::string> families = ledger::LedgerColumnFamilyNames();
    for (const char* f :
         {kCasesFamily, kEvidenceFamily, kOutboxFamily, kReceivedFamily, kReferralIndexFamily}) {
      families.push_back(f);
    }
    ASSERT_OK_AND_ASSIGN(store_, NodeStore::Open(config_.data_dir(), families));
    signing_key_ = std::make_unique<Ed25519PrivateKey>(
        *Ed25519PrivateKey::FromSeed(fed_.org("union-sg").signing.seed()));
    ledger::RocksDbLedgerOptions o;
    o.origin = LedgerOrigin(config_);
    o.signing_key = signing_key_.get();
    ASSERT_OK_AND_ASSIGN(
        ledger_, ledger::RocksDbLedger::Open(store_->db(), store_->families(), std::move(o)));
    completions_ = std::make_unique<Executor>("completions", 2);
    log_ = std::make_unique<AccessLog>(ledger_.get(), &Clock::Real(), completions_.get());
    ASSERT_OK_AND_ASSIGN(std::string master, ReadFileToString(config_.master_key_file()));
    ASSERT_OK_AND_ASSIGN(std::string master_key, Base64Decode(absl::StripAsciiWhitespace(master)));
    ASSERT_OK_AND_ASSIGN(cases_, CaseStore::Open(store_->db(), store_->family(kCasesFamily),
                                                 store_->family(kEvidenceFamily),
                                                 store_->family(NodeStore::kMetaFamily),
                                                 config_.data_dir() + "/keystore", master_key));
    roster_ = std::make_shared<const v1::Roster>(fed_.MakeRoster());
    identity_ = std::make_shared<IdentityResolver>(config_, roster_);
    ASSERT_OK_AND_ASSIGN(tls_, LoadTlsIdentity(config_.tls().cert_file(), config_.tls().key_file(),
                                               config_.tls().ca_file()));
    exchange_ = NewExchange();
  }
  void TearDown() override {
    if (exchange_) exchange_->Stop();
    exchange_.reset();
    if (receiver_) receiver_->Shutdown(absl::Seconds(1));
    ledger_.reset();
  }

  std::unique_ptr<Exchange> NewExchange() {
    ExchangeOptions options;
    options.clock = &clock_;
    return std::make_unique<Exchange>(config_, identity_, signing_key_.get(), store_->db(),
                                      store_->families(), cases_.get(), log_.get(), tls_, options);
  }
  // The receiver runs on the sender's clock: an envelope dated by a clock
  // moved a day ahead would be refused as created in the future.
  void StartReceiver() {
    NodeTestHooks hooks;
    hooks.clock = &clock_;
    ASSERT_OK_AND_ASSIGN(receiver_, Node::Start(receiver_config_, hooks));
  }

  std::string CreateCase() {
    v1::Case c;
    c.set_id(CaseStore::NewCaseId());
    c.set_owner_org("union-sg");
    c.set_category(v1::CASE_CATEGORY_ABUSE);
    c.set_status(v1::CASE_STATUS_OPEN);
    auto batch = cases_->PrepareCreate(c);
    EXPECT_OK(batch.status());
    v1::AccessEvent ev;
    ev.set_action("case.create");
    ev.set_case_id(c.id());
    EXPECT_OK(log_->RecordSync({ev}, *std::move(batch)).status());
    return c.id();
  }
  // What ReferralService.Refer does: the referral link (QUEUED), its envelope
  // in the outbox and the send entry in one batch. Waits for the case lock.
  std::string Refer(const std::string& case_id, const std::string& to = "ministry-id") {
    while (!cases_->Lock(case_id).ok()) absl::SleepFor(absl::Microseconds(100));
    const std::string referral_id = "REF-" + HexEncode(RandomBytes(6));
    v1::EnvelopePayload p = exchange_->NewPayload(to, "test-agreement", "case-referral");
    p.mutable_referral()->set_referral_id(referral_id);
    p.mutable_referral()->set_origin_case_id(case_id);
    p.mutable_referral()->set_deidentified(true);
    p.mutable_referral()->mutable_shared()->set_category(v1::CASE_CATEGORY_ABUSE);
    auto batch = std::make_unique<ledger::Mutation>();
    EXPECT_OK(exchange_->Enqueue(batch.get(), p, "referral", case_id, referral_id).status());
    exchange_->IndexReferral(batch.get(), to, referral_id, case_id);
    auto c = cases_->Get(case_id);
    EXPECT_OK(c.status());
    v1::ReferralLink* link = c->add_referrals();
    link->set_referral_id(referral_id);
    link->set_outgoing(true);
    link->set_peer_org(to);
    link->set_state(v1::REFERRAL_STATE_QUEUED);
    EXPECT_OK(cases_->PutCase(batch.get(), *c));
    v1::AccessEvent ev;
    ev.set_action("referral.send");
    ev.set_case_id(case_id);
    EXPECT_OK(log_->RecordSync({ev}, std::move(batch)).status());
    cases_->Unlock(case_id);
    exchange_->Wake();
    return referral_id;
  }

  std::vector<v1::OutboxItem> Outbox(size_t page_size = 7) {
    std::vector<v1::OutboxItem> all;
    std::string token;
    do {
      auto page = exchange_->ListOutbox(page_size, token);
      EXPECT_OK(page.status());
      if (!page.ok()) break;
      EXPECT_LE(page->items.size(), page_size);
      all.insert(all.end(), page->items.begin(), page->items.end());
      token = page->next_page_token;
    } while (!token.empty());
    return all;
  }
  size_t Count(const std::string& state) {
    size_t n = 0;
    for (const auto& i : Outbox()) n += i.state() == state;
    return n;
  }
  // The referral states on the sending case, by referral id.
  std::map<std::string, v1::ReferralState> Links(const std::string& case_id) {
    std::map<std::string, v1::ReferralState> out;
    auto c = cases_->Get(case_id);
    EXPECT_OK(c.status());
    if (c.ok()) {
      for (const auto& l : c->referrals()) out[l.referral_id()] = l.state();
    }
    return out;
  }
  size_t CaseUpdateMarkers() {
    size_t n = 0;
    std::unique_ptr<rocksdb::Iterator> it(
        store_->db()->NewIterator(rocksdb::ReadOptions(), store_->family(kOutboxFamily)));
    for (it->Seek("case-update/"); it->Valid() && it->key().starts_with("case-update/");
         it->Next()) {
      ++n;
    }
    return n;
  }

  testing::TestFederation fed_;
  FakeClock clock_{absl::Now()};
  v1::NodeConfig config_, receiver_config_;
  std::unique_ptr<NodeStore> store_;
  std::unique_ptr<Ed25519PrivateKey> signing_key_;
  std::unique_ptr<Executor> completions_;  // outlives the ledger: runs its last completions
  std::unique_ptr<ledger::RocksDbLedger> ledger_;
  std::unique_ptr<AccessLog> log_;
  std::unique_ptr<CaseStore> cases_;
  std::shared_ptr<const v1::Roster> roster_;
  std::shared_ptr<IdentityResolver> identity_;
  TlsIdentity tls_;
  std::unique_ptr<Exchange> exchange_;
  std::unique_ptr<Node> receiver_;
};

TEST_F(DeliveryTest, ASuccessfulProbeRetriesABackedOffPeerAtOnce) {
  const std::string case_id = CreateCase();
  const std::string referral = Refer(case_id);
  exchange_->Start();
  // The receiver is down: let the item fail until its backoff is long.
  for (uint32_t failures = 1; failures <= 4; ++failures) {
    // Each attempt has failed and recorded its backoff (no call in flight): a
    // probe's reset that raced an attempt still failing would be undone by it.
    ASSERT_TRUE(Eventually([&] {
      auto items = Outbox();
      return items.size() == 1 && items[0].attempts() >= failures && exchange_->Outstanding() == 0;
    })) << "attempt "
        << failures << " did not happen";
    if (failures < 4) {
      clock_.Advance(absl::Minutes(1));  // past any backoff
      exchange_->Wake();
    }
  }
  std::vector<v1::OutboxItem> items = Outbox();
  ASSERT_EQ(items[0].state(), "pending");
  // Backed off by at least 250 ms · 2^4 · 0.5 into the (fake) future: without a
  // reset nothing would retry it, as the fake clock stands still from here on.
  EXPECT_GE(absl::FromUnixMillis(items[0].next_attempt_unix_ms()) - clock_.Now(), absl::Seconds(2));

  StartReceiver();
  PeerProber prober(config_, roster_, tls_);
  prober.set_on_reachable([this](const std::string& org) { exchange_->PeerReachable(org); });
  prober.ProbeAll();
  ASSERT_TRUE(Eventually([&] { return Count("delivered") == 1; })) << Outbox()[0].DebugString();
  EXPECT_TRUE(Eventually([&] { return Links(case_id)[referral] == v1::REFERRAL_STATE_DELIVERED; }));
}

TEST_F(DeliveryTest, OutboxPagesThroughPendingFailedAndDeliveredItemsOnce) {
  const std::string case_id = CreateCase();
  StartReceiver();
  exchange_->Start();
  std::set<std::string> delivered;
  for (int i = 0; i < 12; ++i) delivered.insert(Refer(case_id));
  ASSERT_TRUE(Eventually([&] { return Count("delivered") == 12; }));
  // More to a peer that is not in the roster: they fail at once.
  for (int i = 0; i < 5; ++i) {
    v1::EnvelopePayload p = exchange_->NewPayload("nobody", "test-agreement", "case-referral");
    p.mutable_update()->set_referral_id("REF-none");
    auto batch = std::make_unique<ledger::Mutation>();
    ASSERT_OK(exchange_->Enqueue(batch.get(), p, "update", case_id, "REF-none").status());
    ASSERT_OK(log_->RecordSync({v1::AccessEvent()}, std::move(batch)).status());
    exchange_->Wake();
  }
  ASSERT_TRUE(Eventually([&] { return Count("failed") == 5; }));
  for (int i = 0; i < 4; ++i) Refer(case_id, "inspectorate-sg");  // not running: stays pending

  for (size_t page_size : {1, 3, 7, 100}) {
    std::vector<v1::OutboxItem> items = Outbox(page_size);
    ASSERT_EQ(items.size(), 21u) << "page size " << page_size;
    std::set<std::string> ids;
    for (const auto& i : items) ids.insert(i.envelope_id());
    EXPECT_EQ(ids.size(), 21u) << "an item was listed twice";
    // Pending first (in the order queued), then failed, then delivered.
    for (size_t i = 0; i < items.size(); ++i) {
      EXPECT_EQ(items[i].state(), i < 4 ? "pending" : i < 9 ? "failed" : "delivered") << i;
      if (i > 0 && i < 4) {
        EXPECT_GT(items[i].seq(), items[i - 1].seq());
      }
    }
    // Delivered and failed items no longer carry the envelope (nor its personal data).
    EXPECT_FALSE(items.back().has_envelope());
    EXPECT_TRUE(items.back().sealed_envelope().empty());
    // A pending one keeps it only sealed under its case's key.
    EXPECT_FALSE(items.front().has_envelope());
    EXPECT_FALSE(items.front().sealed_envelope().empty());
  }
  EXPECT_EQ(exchange_->ListOutbox(0, "").value().items.size(), 21u);
  EXPECT_EQ(exchange_->ListOutbox(0, "bogus").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(DeliveryTest, DeliveredItemsArePrunedAfterRetentionAndReceiptsStayInTheLedger) {
  const std::string case_id = CreateCase();
  StartReceiver();
  exchange_->Start();
  for (int i = 0; i < 5; ++i) Refer(case_id);
  ASSERT_TRUE(Eventually([&] { return Count("delivered") == 5; }));
  clock_.Advance(absl::Hours(23));
  ASSERT_OK(exchange_->PruneDelivered());
  EXPECT_EQ(Count("delivered"), 5u) << "pruned before the retention window passed";
  Refer(case_id);
  ASSERT_TRUE(Eventually([&] { return Count("delivered") == 6; }));
  clock_.Advance(absl::Hours(2));
  ASSERT_OK(exchange_->PruneDelivered());
  EXPECT_EQ(Count("delivered"), 1u) << "only the newest is within the window";
  AccessLog::Query q;
  q.action = "envelope.receipt";
  q.limit = 100;
  ASSERT_OK_AND_ASSIGN(auto receipts, log_->Find(q));
  EXPECT_EQ(receipts.size(), 6u);
}

TEST_F(DeliveryTest, ReferralsDeliveredWhileTheirCaseIsBusyAllShowDelivered) {
  StartReceiver();
  std::vector<std::string> case_ids;
  for (int i = 0; i < 3; ++i) case_ids.push_back(CreateCase());
  exchange_->Start();
  // Other changes to the same cases keep taking their locks while referrals
  // are made and delivered.
  std::atomic<bool> contend{true};
  std::thread contender([&] {
    while (contend) {
      for (const std::string& id : case_ids) {
        if (cases_->Lock(id).ok()) {
          absl::SleepFor(absl::Microseconds(300));
          cases_->Unlock(id);
        }
      }
    }
  });
  std::map<std::string, std::string> referrals;  // referral → case
  for (int i = 0; i < 150; ++i) {
    const std::string& id = case_ids[i % case_ids.size()];
    referrals[Refer(id)] = id;
  }
  ASSERT_TRUE(Eventually([&] { return Count("delivered") == referrals.size(); }));
  auto queued = [&] {
    size_t n = 0;
    for (const auto& [referral, case_id] : referrals)
      n += Links(case_id)[referral] != v1::REFERRAL_STATE_DELIVERED;
    return n;
  };
  // Every one of them turns DELIVERED, with the contention still going on.
  EXPECT_TRUE(Eventually([&] { return queued() == 0; })) << queued() << " not delivered";
  contend = false;
  contender.join();
  EXPECT_EQ(queued(), 0u);
  EXPECT_EQ(CaseUpdateMarkers(), 0u);
}

TEST_F(DeliveryTest, CaseUpdatesOwedWhenTheNodeStopsAreMadeAfterARestart) {
  StartReceiver();
  std::vector<std::string> case_ids = {CreateCase(), CreateCase()};
  std::map<std::string, std::string> referrals;
  for (int i = 0; i < 20; ++i) {
    const std::string& id = case_ids[i % 2];
    referrals[Refer(id)] = id;
  }
  // The cases stay busy the whole time this exchange runs: every receipt is
  // recorded with a marker instead of the case change.
  for (const std::string& id : case_ids) ASSERT_OK(cases_->Lock(id));
  exchange_->Start();
  ASSERT_TRUE(Eventually([&] { return Count("delivered") == referrals.size(); }));
  ASSERT_TRUE(Eventually([&] { return CaseUpdateMarkers() == referrals.size(); }));
  exchange_->Stop();
  exchange_ = NewExchange();  // a restart, on the same database
  for (const std::string& id : case_ids) cases_->Unlock(id);
  for (const auto& [referral, case_id] : referrals) {
    EXPECT_EQ(Links(case_id)[referral], v1::REFERRAL_STATE_QUEUED);
  }
  exchange_->Start();
  ASSERT_TRUE(Eventually([&] { return CaseUpdateMarkers() == 0; }));
  for (const auto& [referral, case_id] : referrals) {
    EXPECT_EQ(Links(case_id)[referral], v1::REFERRAL_STATE_DELIVERED) << referral;
  }
}

}  // namespace
}  // namespace corridor
