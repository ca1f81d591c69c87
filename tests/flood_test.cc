// Flooding, locks and timeouts at a real node (issue 9, "Flooding" and
// "Locks and timeouts"): refusals past a per-identity budget become
// aggregated ledger entries whose counts add up exactly to what was sent;
// users and peers are rate-limited per identity while others go on
// unaffected; an upload that stalls holds no case lock and is ended after the
// idle timeout; an erase during an upload discards it; evidence transfers are
// bounded in number and in the memory each uses.
#include <signal.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "client/lib/grpc_util.h"
#include "corridor/v1/case.grpc.pb.h"
#include "corridor/v1/federation.grpc.pb.h"
#include "corridor/v1/node.grpc.pb.h"
#include "gtest/gtest.h"
#include "server/common/rate_limit.h"
#include "server/federation/envelope.h"
#include "server/node/config.h"
#include "server/node/node.h"
#include "server/store/case_store.h"
#include "server/store/store.h"
#include "tests/testing/channels.h"
#include "tests/testing/deadline.h"
#include "tests/testing/federation.h"
#include "tests/testing/process.h"
#include "tests/testing/status_matchers.h"

namespace corridor {
namespace {

using testing::BinaryPath;
using testing::CommandResult;
using testing::RunCommand;
using testing::Subprocess;

// Deadlines scale with the build (ScaledDeadline: longer under sanitizers).
std::unique_ptr<grpc::ClientContext> Ctx(absl::Duration deadline = absl::Seconds(30)) {
  return testing::ScaledContext(deadline);
}

class FloodTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fed_.AddOrg("union-sg");
    fed_.AddOrg("ministry-id", v1::ORG_KIND_MINISTRY);
  }
  // The federation's directory goes too: some of these tests write hundreds of MiB.
  void TearDown() override {
    StopNode();
    std::error_code ignored;
    std::filesystem::remove_all(fed_.root(), ignored);
  }

  // Writes union-sg's config with `limits` on top of the test defaults and starts it in-process.
  void StartNode(const std::map<std::string, std::string>& limits) {
    for (const auto& [k, v] : limits) fed_.limits[k] = v;
    const std::string path = fed_.WriteNodeConfig("union-sg", {{"cw", {"caseworker"}},
                                                               {"cw2", {"caseworker"}},
                                                               {"appr", {"approver"}},
                                                               {"aud", {"auditor"}},
                                                               {"adm", {"admin"}}});
    ASSERT_OK_AND_ASSIGN(config_, LoadNodeConfig(path));
    ASSERT_OK_AND_ASSIGN(node_, Node::Start(config_));
  }
  void RestartNode() {
    node_->Shutdown(absl::Seconds(2));
    node_.reset();
    ASSERT_OK_AND_ASSIGN(node_, Node::Start(config_));
  }
  void StopNode() {
    if (node_) node_->Shutdown(absl::Seconds(2));
    node_.reset();
  }

  std::shared_ptr<grpc::Channel> As(const std::string& user, bool small_window = false) {
    std::string prefix;
    {
      absl::MutexLock lock(&issued_mu_);  // tests call this from several threads
      if (!issued_.count(user)) issued_[user] = fed_.IssueUser("union-sg", user);
      prefix = issued_[user];
    }
    // A channel of its own: tests that want several channels call this again.
    return testing::OwnChannel(
        ReadFileToString(prefix + ".crt").value(), ReadFileToString(prefix + ".key").value(),
        fed_.org("union-sg").ca.cert_pem, fed_.org("union-sg").endpoint(), small_window);
  }

  std::string CreateCase() {
    v1::CreateCaseRequest req;
    auto* c = req.mutable_case_();
    c->set_category(v1::CASE_CATEGORY_WAGE_THEFT);
    c->set_origin_country("ID");
    c->set_destination_country("SG");
    c->mutable_worker()->set_name("Dewi Lestari");
    v1::Case resp;
    grpc::Status s = v1::CaseService::NewStub(As("cw"))->CreateCase(Ctx().get(), req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return resp.id();
  }

  // Every ledger entry whose actor is `actor` ("<org>/<subject>"), oldest last.
  std::vector<v1::AccessEvent> EventsOf(const std::string& actor) {
    v1::QueryEventsRequest req;
    req.set_actor(actor);
    return EventsWhere(req);
  }
  // Every ledger entry `query` finds, oldest last.
  std::vector<v1::AccessEvent> EventsWhere(const v1::QueryEventsRequest& query) {
    auto stub = v1::AuditService::NewStub(As("aud"));
    std::vector<v1::AccessEvent> out;
    std::string token;
    for (;;) {
      v1::QueryEventsRequest req = query;
      req.set_page_size(1000);
      req.set_page_token(token);
      v1::QueryEventsResponse resp;
      grpc::Status s = stub->QueryEvents(Ctx().get(), req, &resp);
      EXPECT_TRUE(s.ok()) << s.error_message();
      for (const auto& e : resp.events()) out.push_back(e.event());
      if (!s.ok() || resp.next_page_token().empty()) break;
      token = resp.next_page_token();
    }
    return out;
  }

  testing::TestFederation fed_;
  v1::NodeConfig config_;
  std::unique_ptr<Node> node_;
  absl::Mutex issued_mu_;
  std::map<std::string, std::string> issued_ ABSL_GUARDED_BY(issued_mu_);
};

// Keys under `prefix` in `family` of a stopped node's database.
std::vector<std::string> KeysOffline(const std::string& data_dir, const std::string& family,
                                     const std::string& prefix) {
  auto store = NodeStore::Open(data_dir, {kCasesFamily, kEvidenceFamily});
  EXPECT_TRUE(store.ok()) << store.status();
  if (!store.ok()) return {};
  std::vector<std::string> out;
  std::unique_ptr<rocksdb::Iterator> it(
      (*store)->db()->NewIterator(rocksdb::ReadOptions(), (*store)->family(family)));
  for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
    out.push_back(it->key().ToString());
  }
  return out;
}

// One call `user` may not make, by index: several methods and services.
grpc::Status RefusedCall(const std::shared_ptr<grpc::Channel>& ch, int i) {
  auto cases = v1::CaseService::NewStub(ch);
  auto audit = v1::AuditService::NewStub(ch);
  auto refs = v1::ReferralService::NewStub(ch);
  switch (i % 5) {
    case 0: {
      v1::GetCaseRequest req;
      req.set_id("C-1");
      req.set_purpose("case-handling");
      v1::Case resp;
      return cases->GetCase(Ctx().get(), req, &resp);
    }
    case 1: {
      v1::CreateCaseRequest req;
      v1::Case resp;
      return cases->CreateCase(Ctx().get(), req, &resp);
    }
    case 2: {
      v1::QueryEventsRequest req;
      v1::QueryEventsResponse resp;
      return audit->QueryEvents(Ctx().get(), req, &resp);
    }
    case 3: {
      v1::ListInboxRequest req;
      v1::ListInboxResponse resp;
      return refs->ListInbox(Ctx().get(), req, &resp);
    }
    default: {
      v1::EraseCaseRequest req;
      req.set_id("C-1");
      req.set_reason("x");
      v1::EraseCaseResponse resp;
      return cases->EraseCase(Ctx().get(), req, &resp);
    }
  }
}

// Runs `calls` calls of `call(channel, i)` from `threads` threads over `channels`.
std::vector<grpc::Status> RunConcurrently(
    const std::vector<std::shared_ptr<grpc::Channel>>& channels, int threads, int calls,
    const std::function<grpc::Status(const std::shared_ptr<grpc::Channel>&, int)>& call) {
  std::vector<grpc::Status> out(calls);
  std::atomic<int> next{0};
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      for (int i = next++; i < calls; i = next++) {
        out[i] = call(channels[(t + i) % channels.size()], i);
      }
    });
  }
  for (auto& t : pool) t.join();
  return out;
}

TEST_F(FloodTest, RefusalsPastTheBudgetAreCountedExactlyInAggregatedEntries) {
  constexpr int kBudget = 10;
  StartNode({{"refusal_budget", absl::StrCat(kBudget)}, {"refusal_interval_seconds", "2"}});
  // The admin may call none of these: 32 in flight on one channel and on three more.
  std::vector<std::shared_ptr<grpc::Channel>> channels = {As("adm"), As("adm"), As("adm"),
                                                          As("adm")};
  int sent = 0;
  auto flood = [&](int calls) {
    auto statuses = RunConcurrently(channels, 32, calls, RefusedCall);
    for (const auto& s : statuses) {
      EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED) << s.error_message();
    }
    sent += calls;
  };
  flood(600);
  // The interval closes (2 s): the aggregator writes without waiting for shutdown.
  uint64_t aggregated = 0;
  const absl::Time give_up = absl::Now() + absl::Seconds(30);
  while (absl::Now() < give_up) {
    aggregated = 0;
    for (const auto& e : EventsOf("union-sg/user/adm")) aggregated += RefusalBudget::CountOf(e);
    if (aggregated > 0) break;
    absl::SleepFor(absl::Milliseconds(200));
  }
  EXPECT_GT(aggregated, 0u) << "no aggregated entry after the interval closed";
  // A second flood, still counting when the node stops: shutdown writes it.
  flood(400);
  RestartNode();

  const std::vector<v1::AccessEvent> events = EventsOf("union-sg/user/adm");
  uint64_t individual = 0, counted = 0, aggregates = 0;
  std::map<std::string, uint64_t> actions;
  for (const auto& e : events) {
    EXPECT_NE(e.outcome(), v1::ACCESS_OUTCOME_ALLOWED) << e.ShortDebugString();
    if (e.action() == "access.refusals") {
      ++aggregates;
      counted += RefusalBudget::CountOf(e);
      EXPECT_TRUE(absl::StrContains(e.reason(), "more refusals of union-sg/user/adm"))
          << e.reason();
    } else {
      ++individual;
      ++actions[e.action()];
    }
  }
  std::cout << "refusals sent: " << sent << "; recorded one by one: " << individual << "; in "
            << aggregates << " aggregated entries: " << counted << "\n";
  // Complete: every refusal is in the record, one by one or counted.
  EXPECT_EQ(individual + counted, static_cast<uint64_t>(sent));
  // Bounded: at most the budget (+ the first over it) per interval one by one.
  EXPECT_LT(individual, static_cast<uint64_t>(sent) / 4);
  EXPECT_LE(aggregates, individual);
  EXPECT_GE(actions.size(), 2u);  // several methods were recorded one by one
}

// Whoever holds a member's CA can put any name in a certificate: refusals of
// names the node does not know share one budget per issuing CA, so inventing a
// new name per call cannot grow the ledger past it, and they do not use up the
// budget of anyone the node knows.
TEST_F(FloodTest, InventedNamesShareTheirIssuersRefusalBudget) {
  constexpr int kBudget = 10, kGhosts = 40, kCallsEach = 10, kAdminCalls = 5;
  StartNode({{"refusal_budget", absl::StrCat(kBudget)}, {"refusal_interval_seconds", "600"}});
  // 40 names union-sg's CA signed that the node does not know, 10 calls each, 32 in flight.
  std::vector<std::shared_ptr<grpc::Channel>> ghosts;
  for (int i = 0; i < kGhosts; ++i) ghosts.push_back(As(absl::StrCat("ghost-", i)));
  const std::vector<grpc::Status> statuses =
      RunConcurrently(ghosts, 32, kGhosts * kCallsEach, RefusedCall);
  for (const grpc::Status& st : statuses) {
    EXPECT_TRUE(st.error_code() == grpc::StatusCode::UNAUTHENTICATED ||
                st.error_code() == grpc::StatusCode::PERMISSION_DENIED)
        << st.error_code() << " " << st.error_message();
  }
  // A known user's refusals after the flood are still recorded one by one.
  const std::vector<grpc::Status> admin = RunConcurrently({As("adm")}, 1, kAdminCalls, RefusedCall);
  for (const grpc::Status& st : admin)
    EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  RestartNode();  // shutdown writes the open interval's aggregate

  v1::QueryEventsRequest refused;
  refused.set_action("auth.refused");
  uint64_t individual = 0;
  std::set<std::string> names;
  for (const v1::AccessEvent& e : EventsWhere(refused)) {
    EXPECT_EQ(e.actor_issuer(), "union-sg") << e.ShortDebugString();
    EXPECT_TRUE(absl::StartsWith(e.actor_subject(), "unverified:user/ghost-")) << e.actor_subject();
    names.insert(e.actor_subject());
    ++individual;
  }
  v1::QueryEventsRequest aggregated;
  aggregated.set_action("access.refusals");
  uint64_t counted = 0;
  for (const v1::AccessEvent& e : EventsWhere(aggregated)) {
    EXPECT_EQ(e.actor_org(), "union-sg") << e.ShortDebugString();
    EXPECT_EQ(e.actor_subject(), "unverified:*") << e.ShortDebugString();
    counted += RefusalBudget::CountOf(e);
  }
  std::cout << "invented-name refusals: " << kGhosts * kCallsEach << "; one by one: " << individual
            << " (" << names.size() << " names); counted in aggregates: " << counted << "\n";
  EXPECT_EQ(individual + counted, static_cast<uint64_t>(kGhosts * kCallsEach));  // complete
  EXPECT_LE(individual, static_cast<uint64_t>(kBudget) + 1);  // one budget for all the names
  // adm's own budget was untouched: each of its refusals is an entry of its own.
  uint64_t adm = 0;
  for (const v1::AccessEvent& e : EventsOf("union-sg/user/adm")) {
    EXPECT_NE(e.action(), "access.refusals") << e.ShortDebugString();
    adm += e.outcome() != v1::ACCESS_OUTCOME_ALLOWED;
  }
  EXPECT_EQ(adm, static_cast<uint64_t>(kAdminCalls));
}

TEST_F(FloodTest, UsersAreRateLimitedPerIdentityWhileOthersGoOn) {
  StartNode({{"user_calls_per_second", "5"}, {"user_call_burst", "20"}});
  std::atomic<bool> flooding{true};
  std::atomic<int> other_ok{0}, other_limited{0};
  const absl::Time start = absl::Now();
  // cw2 makes 15 calls (under its own burst) on three channels while cw floods.
  std::thread other([&] {
    std::vector<std::shared_ptr<grpc::Channel>> channels = {As("cw2"), As("cw2"), As("cw2")};
    auto statuses = RunConcurrently(channels, 8, 15, [](const auto& ch, int) {
      v1::ListCasesRequest req;
      v1::ListCasesResponse resp;
      return v1::CaseService::NewStub(ch)->ListCases(Ctx().get(), req, &resp);
    });
    for (const auto& s : statuses) {
      if (s.ok()) ++other_ok;
      if (s.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED) ++other_limited;
    }
  });
  std::vector<std::shared_ptr<grpc::Channel>> channels = {As("cw"), As("cw")};
  auto statuses = RunConcurrently(channels, 32, 400, [](const auto& ch, int) {
    v1::GetCaseRequest req;
    req.set_id("C-404");
    req.set_purpose("case-handling");
    v1::Case resp;
    return v1::CaseService::NewStub(ch)->GetCase(Ctx().get(), req, &resp);
  });
  const double elapsed = absl::ToDoubleSeconds(absl::Now() - start);
  flooding = false;
  other.join();
  int through = 0, limited = 0;
  for (const auto& s : statuses) {
    if (s.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED) {
      ++limited;
      EXPECT_TRUE(absl::StartsWith(s.error_message(),
                                   "too many requests from union-sg/user/cw; try again in "))
          << s.error_message();
    } else {
      ++through;
      EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND) << s.error_message();
    }
  }
  std::cout << "flooder: " << through << " through, " << limited << " limited in " << elapsed
            << " s\n";
  EXPECT_LE(through, 20 + static_cast<int>(5 * elapsed) + 1);
  EXPECT_GE(through, 20);
  EXPECT_EQ(other_ok.load(), 15);
  EXPECT_EQ(other_limited.load(), 0);
  // The limited calls are refusals like any other: in the record.
  int recorded = 0;
  for (const auto& e : EventsOf("union-sg/user/cw")) {
    if (e.action() == "auth.rate_limited") ++recorded;
    recorded += static_cast<int>(RefusalBudget::CountOf(e));
  }
  RestartNode();  // aggregated counts still open are written at shutdown
  recorded = 0;
  for (const auto& e : EventsOf("union-sg/user/cw")) {
    if (e.action() == "auth.rate_limited") ++recorded;
    if (e.action() == "access.refusals") {
      EXPECT_TRUE(absl::StrContains(e.reason(), "auth.rate_limited denied x")) << e.reason();
      recorded += static_cast<int>(RefusalBudget::CountOf(e));
    }
  }
  EXPECT_EQ(recorded, limited);
}

TEST_F(FloodTest, PeersAreRateLimitedOnDeliver) {
  StartNode({{"peer_calls_per_second", "5"}, {"peer_call_burst", "10"}});
  const testing::TestOrg& peer = fed_.org("ministry-id");
  std::vector<std::shared_ptr<grpc::Channel>> channels;
  for (int i = 0; i < 3; ++i) {
    channels.push_back(testing::OwnChannel(peer.node.cert_pem, peer.node.key_pem,
                                           fed_.org("union-sg").ca.cert_pem,
                                           fed_.org("union-sg").endpoint()));
  }
  const absl::Time start = absl::Now();
  auto statuses = RunConcurrently(channels, 16, 200, [&](const auto& ch, int i) {
    v1::EnvelopePayload p;
    p.set_envelope_id(absl::StrCat("ENV-FLOOD-", i));
    p.set_sender_org("ministry-id");
    p.set_recipient_org("union-sg");
    p.set_created_unix(absl::ToUnixSeconds(absl::Now()));
    p.set_expires_unix(absl::ToUnixSeconds(absl::Now() + absl::Hours(1)));
    p.set_key_id(peer.key_id);
    p.set_agreement("test-agreement");
    p.set_purpose("case-referral");
    p.mutable_referral()->set_referral_id(absl::StrCat("REF-FLOOD-", i));
    p.mutable_referral()->set_origin_case_id("C-1");
    p.mutable_referral()->mutable_shared()->set_category(v1::CASE_CATEGORY_ABUSE);
    v1::Receipt receipt;
    return v1::PeerService::NewStub(ch)->Deliver(Ctx().get(), SignEnvelope(p, peer.signing),
                                                 &receipt);
  });
  const double elapsed = absl::ToDoubleSeconds(absl::Now() - start);
  int through = 0, limited = 0;
  for (const auto& s : statuses) {
    if (s.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED) {
      ++limited;
      EXPECT_TRUE(absl::StartsWith(s.error_message(), "too many requests from ministry-id/node"))
          << s.error_message();
    } else {
      ++through;
    }
  }
  std::cout << "peer: " << through << " through, " << limited << " limited in " << elapsed
            << " s\n";
  EXPECT_LE(through, 10 + static_cast<int>(5 * elapsed) + 1);
  // The inbox holds no more than what got through.
  v1::ListInboxRequest req;
  v1::ListInboxResponse inbox;
  ASSERT_TRUE(v1::ReferralService::NewStub(As("cw"))->ListInbox(Ctx().get(), req, &inbox).ok());
  EXPECT_LE(inbox.items_size(), through);
}

// An upload that sent its header and `data`, and then nothing.
struct Upload {
  std::unique_ptr<grpc::ClientContext> ctx = Ctx(absl::Seconds(60));
  v1::EvidenceItem item;
  std::unique_ptr<grpc::ClientWriter<v1::AddEvidenceRequest>> writer;
};

std::unique_ptr<Upload> StartUpload(const std::shared_ptr<grpc::Channel>& ch,
                                    const std::string& case_id, const std::string& data) {
  auto u = std::make_unique<Upload>();
  u->writer = v1::CaseService::NewStub(ch)->AddEvidence(u->ctx.get(), &u->item);
  v1::AddEvidenceRequest header;
  header.mutable_header()->set_case_id(case_id);
  header.mutable_header()->set_file_name("contract.pdf");
  EXPECT_TRUE(u->writer->Write(header));
  if (!data.empty()) {
    v1::AddEvidenceRequest part;
    part.set_data(data);
    EXPECT_TRUE(u->writer->Write(part));
  }
  return u;
}

TEST_F(FloodTest, StalledUploadHoldsNoCaseLockAndIsEndedWhenIdle) {
  StartNode({{"stream_idle_timeout_seconds", "2"}});
  const std::string id = CreateCase();
  auto cw = As("cw");
  auto stalled = StartUpload(cw, id, std::string(100000, 'x'));
  absl::SleepFor(absl::Milliseconds(300));  // the node has read the header
  // Changes to the case go ahead at once while the upload is open.
  {
    v1::UpdateCaseRequest req;
    req.set_id(id);
    req.set_narrative("updated while an upload is open");
    v1::Case resp;
    grpc::Status s = v1::CaseService::NewStub(As("cw2"))->UpdateCase(Ctx().get(), req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
  }
  {
    v1::CloseCaseRequest req;
    req.set_id(id);
    v1::CaseSummary resp;
    grpc::Status s = v1::CaseService::NewStub(cw)->CloseCase(Ctx().get(), req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
  }
  // Other uploads to the same case commit while it stalls (concurrently, on one channel).
  std::vector<std::thread> others;
  std::atomic<int> committed{0};
  for (int i = 0; i < 4; ++i) {
    others.emplace_back([&, i] {
      auto u = StartUpload(cw, id, std::string(1000 + i, 'a' + i));
      u->writer->WritesDone();
      grpc::Status s = u->writer->Finish();
      EXPECT_TRUE(s.ok()) << s.error_message();
      if (s.ok()) ++committed;
    });
  }
  for (auto& t : others) t.join();
  EXPECT_EQ(committed.load(), 4);
  // The stalled stream is ended by the node after the idle timeout.
  const absl::Time before = absl::Now();
  grpc::Status s = stalled->writer->Finish();
  EXPECT_EQ(s.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED) << s.error_message();
  EXPECT_TRUE(absl::StrContains(s.error_message(), "sent nothing for")) << s.error_message();
  EXPECT_LT(absl::Now() - before, absl::Seconds(30));
  // Recorded, and nothing of it was stored.
  bool recorded = false;
  for (const auto& e : EventsOf("union-sg/user/cw")) {
    recorded |= e.action() == "evidence.add" && e.outcome() == v1::ACCESS_OUTCOME_ERROR &&
                absl::StrContains(e.reason(), "sent nothing for");
  }
  EXPECT_TRUE(recorded);
  v1::ListEvidenceRequest req;
  req.set_case_id(id);
  req.set_purpose("case-handling");
  v1::ListEvidenceResponse list;
  ASSERT_TRUE(v1::CaseService::NewStub(cw)->ListEvidence(Ctx().get(), req, &list).ok());
  EXPECT_EQ(list.items_size(), 4);
}

TEST_F(FloodTest, DownloadThatStopsReadingIsCutOffWhenIdle) {
#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
  // Under ThreadSanitizer the client's transport takes in the whole 32 MiB for
  // the stalled reader (seen with BDP probing off too), so the node never finds
  // the download idle. The cut-off is checked by the optimised and ASan builds.
  GTEST_SKIP() << "not meaningful under ThreadSanitizer (see the comment)";
#endif
#endif
  StartNode({{"stream_idle_timeout_seconds", "2"}});
  const std::string id = CreateCase();
  auto cw = As("cw");
  std::string evidence_id;
  {
    auto u = StartUpload(cw, id, "");
    v1::AddEvidenceRequest part;
    part.set_data(std::string(1u << 20, 'd'));
    for (int i = 0; i < 32; ++i) ASSERT_TRUE(u->writer->Write(part));
    u->writer->WritesDone();
    ASSERT_TRUE(u->writer->Finish().ok());
    evidence_id = u->item.id();
  }
  v1::GetEvidenceRequest req;
  req.set_case_id(id);
  req.set_evidence_id(evidence_id);
  req.set_purpose("case-handling");
  auto ctx = Ctx(absl::Seconds(60));
  // The stalled reader's window stays small, or the transport would take in
  // the whole file on the client's behalf on a slow (sanitized) build.
  auto reader =
      v1::CaseService::NewStub(As("cw", /*small_window=*/true))->GetEvidence(ctx.get(), req);
  v1::EvidenceChunk chunk;
  ASSERT_TRUE(reader->Read(&chunk));
  // The client stops reading; the node stops waiting for it after the idle timeout.
  bool cut_off = false;
  const absl::Time give_up = absl::Now() + corridor::testing::ScaledDeadline(absl::Seconds(30));
  while (!cut_off && absl::Now() < give_up) {
    absl::SleepFor(absl::Milliseconds(500));
    for (const auto& e : EventsOf("union-sg/user/cw")) {
      cut_off |= e.action() == "evidence.get" && e.outcome() == v1::ACCESS_OUTCOME_ERROR &&
                 absl::StrContains(e.reason(), "read nothing for");
    }
  }
  EXPECT_TRUE(cut_off) << "no evidence.get error recorded for the stalled download";
  uint64_t got = chunk.data().size();
  while (reader->Read(&chunk)) got += chunk.data().size();
  grpc::Status s = reader->Finish();
  EXPECT_FALSE(s.ok());
  EXPECT_LT(got, 32u << 20);
  // The transfer slot is back: another download goes through.
  auto again = Ctx();
  auto second = v1::CaseService::NewStub(cw)->GetEvidence(again.get(), req);
  uint64_t n = 0;
  while (second->Read(&chunk)) n += chunk.data().size();
  EXPECT_TRUE(second->Finish().ok());
  EXPECT_EQ(n, 32u << 20);
}

TEST_F(FloodTest, EraseDuringAnUploadWinsAndTheUploadIsDiscarded) {
  StartNode({});
  const std::string id = CreateCase();
  auto u = StartUpload(As("cw"), id, std::string(300000, 'y'));
  absl::SleepFor(absl::Milliseconds(300));
  v1::EraseCaseRequest req;
  req.set_id(id);
  req.set_reason("the worker asked");
  v1::EraseCaseResponse resp;
  grpc::Status erased = v1::CaseService::NewStub(As("appr"))->EraseCase(Ctx().get(), req, &resp);
  ASSERT_TRUE(erased.ok()) << erased.error_message();
  v1::AddEvidenceRequest more;
  more.set_data(std::string(1000, 'z'));
  u->writer->Write(more);  // may fail: the node may already have ended the upload
  u->writer->WritesDone();
  grpc::Status s = u->writer->Finish();
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.error_code(), grpc::StatusCode::UNAVAILABLE) << s.error_message();
  bool recorded = false;
  for (const auto& e : EventsOf("union-sg/user/cw")) {
    recorded |= e.action() == "evidence.add" && e.outcome() != v1::ACCESS_OUTCOME_ALLOWED;
  }
  EXPECT_TRUE(recorded);
  // Nothing staged survives: no marker, no chunk of the case.
  StopNode();
  EXPECT_TRUE(KeysOffline(config_.data_dir(), NodeStore::kMetaFamily, "staging/").empty());
  EXPECT_TRUE(KeysOffline(config_.data_dir(), kEvidenceFamily, id + "/").empty());
}

TEST_F(FloodTest, WhatACrashLeftStagedIsDiscardedAtStart) {
  const std::string config = fed_.WriteNodeConfig("union-sg", {{"cw", {"caseworker"}}});
  ASSERT_OK_AND_ASSIGN(config_, LoadNodeConfig(config));
  const std::string cw = fed_.IssueUser("union-sg", "cw");
  auto start = [&] {
    auto node = std::make_unique<Subprocess>(
        std::vector<std::string>{BinaryPath("corridord"), "--config", config},
        fed_.org("union-sg").dir + "/corridord.log");
    CommandResult ready =
        RunCommand({BinaryPath("corridorctl"), "health", "--wait", "60", "--node",
                    fed_.org("union-sg").endpoint(), "--cert", cw + ".crt", "--key", cw + ".key",
                    "--ca", fed_.org("union-sg").dir + "/ca.crt"});
    EXPECT_EQ(ready.exit_code, 0) << ready.err << node->Log();
    return node;
  };
  auto node = start();
  auto ch = testing::OwnChannel(ReadFileToString(cw + ".crt").value(),
                                ReadFileToString(cw + ".key").value(),
                                fed_.org("union-sg").ca.cert_pem, fed_.org("union-sg").endpoint());
  v1::CreateCaseRequest create;
  create.mutable_case_()->set_category(v1::CASE_CATEGORY_WAGE_THEFT);
  create.mutable_case_()->set_origin_country("ID");
  create.mutable_case_()->set_destination_country("SG");
  create.mutable_case_()->mutable_worker()->set_name("Dewi Lestari");
  v1::Case c;
  ASSERT_TRUE(v1::CaseService::NewStub(ch)->CreateCase(Ctx().get(), create, &c).ok());
  auto u = StartUpload(ch, c.id(), std::string(1u << 20, 'k'));
  absl::SleepFor(absl::Milliseconds(500));  // the node has staged some chunks
  node->Stop(SIGKILL);
  u->ctx->TryCancel();
  u->writer->Finish();
  u.reset();
  EXPECT_FALSE(KeysOffline(config_.data_dir(), NodeStore::kMetaFamily, "staging/").empty());
  node = start();
  EXPECT_EQ(node->Stop(SIGTERM), 0) << node->Log();
  EXPECT_TRUE(absl::StrContains(node->Log(), "evidence.staging_discarded")) << node->Log();
  EXPECT_TRUE(KeysOffline(config_.data_dir(), NodeStore::kMetaFamily, "staging/").empty());
  EXPECT_TRUE(KeysOffline(config_.data_dir(), kEvidenceFamily, c.id() + "/").empty());
}

TEST_F(FloodTest, TransfersPastTheLimitAreRefusedAtOnce) {
  StartNode({{"max_evidence_transfers", "2"}, {"stream_idle_timeout_seconds", "60"}});
  const std::string id = CreateCase();
  // A finished upload to download later.
  std::string evidence_id;
  {
    auto u = StartUpload(As("cw"), id, "evidence bytes");
    u->writer->WritesDone();
    ASSERT_TRUE(u->writer->Finish().ok());
    evidence_id = u->item.id();
  }
  auto a = StartUpload(As("cw"), id, "a");
  auto b = StartUpload(As("cw2"), id, "b");
  absl::SleepFor(absl::Milliseconds(300));
  // A third upload and a download are refused at once, and recorded.
  auto c = StartUpload(As("cw"), id, "c");
  grpc::Status s = c->writer->Finish();
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << s.error_message();
  EXPECT_TRUE(absl::StrContains(s.error_message(), "limits.max_evidence_transfers"));
  {
    v1::GetEvidenceRequest req;
    req.set_case_id(id);
    req.set_evidence_id(evidence_id);
    req.set_purpose("case-handling");
    auto ctx = Ctx();
    auto reader = v1::CaseService::NewStub(As("cw"))->GetEvidence(ctx.get(), req);
    v1::EvidenceChunk chunk;
    while (reader->Read(&chunk)) {
    }
    grpc::Status d = reader->Finish();
    EXPECT_EQ(d.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << d.error_message();
  }
  // The two in progress finish; then transfers go ahead again.
  for (auto* u : {a.get(), b.get()}) {
    u->writer->WritesDone();
    grpc::Status done = u->writer->Finish();
    EXPECT_TRUE(done.ok()) << done.error_message();
  }
  v1::GetEvidenceRequest req;
  req.set_case_id(id);
  req.set_evidence_id(evidence_id);
  req.set_purpose("case-handling");
  auto ctx = Ctx();
  auto reader = v1::CaseService::NewStub(As("cw"))->GetEvidence(ctx.get(), req);
  std::string data;
  v1::EvidenceChunk chunk;
  while (reader->Read(&chunk)) data += chunk.data();
  ASSERT_TRUE(reader->Finish().ok());
  EXPECT_EQ(data, "evidence bytes");
  int refused = 0;
  for (const auto& e : EventsOf("union-sg/user/cw")) {
    refused += absl::StrContains(e.reason(), "limits.max_evidence_transfers");
  }
  EXPECT_EQ(refused, 2);
}

// Peak resident memory of a process, in bytes (VmHWM).
uint64_t PeakRss(pid_t pid) {
  std::ifstream status(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(status, line)) {
    if (absl::StartsWith(line, "VmHWM:")) {
      uint64_t kb = 0;
      std::string num;
      for (char ch : line) {
        if (ch >= '0' && ch <= '9') num += ch;
      }
      if (absl::SimpleAtoi(num, &kb)) return kb * 1024;
    }
  }
  return 0;
}

#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define CORRIDOR_FLOOD_TEST_SANITIZED 1
#endif
#endif
// gcc 12 has no __has_feature; it defines these instead.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define CORRIDOR_FLOOD_TEST_SANITIZED 1
#endif

TEST_F(FloodTest, ConcurrentLargeUploadsAndDownloadsKeepMemoryBounded) {
  // Issue 9's probe: six 60 MiB uploads at once peaked at 927 MB before.
  // Sanitizer builds move 8 MiB each: there the memory bound is not checked
  // (below), and what they look for (races, misuse) shows at any size.
  constexpr int kUploads = 6;
#ifdef CORRIDOR_FLOOD_TEST_SANITIZED
  constexpr size_t kSize = 8u << 20;
#else
  constexpr size_t kSize = 60u << 20;
#endif
  fed_.limits["max_evidence_transfers"] = absl::StrCat(kUploads);
  const std::string config = fed_.WriteNodeConfig("union-sg", {{"cw", {"caseworker"}}});
  const std::string cw = fed_.IssueUser("union-sg", "cw");
  Subprocess node({BinaryPath("corridord"), "--config", config},
                  fed_.org("union-sg").dir + "/corridord.log");
  CommandResult ready = RunCommand({BinaryPath("corridorctl"), "health", "--wait", "60", "--node",
                                    fed_.org("union-sg").endpoint(), "--cert", cw + ".crt", "--key",
                                    cw + ".key", "--ca", fed_.org("union-sg").dir + "/ca.crt"});
  ASSERT_EQ(ready.exit_code, 0) << ready.err << node.Log();
  auto channel = [&](int) {
    return testing::OwnChannel(ReadFileToString(cw + ".crt").value(),
                               ReadFileToString(cw + ".key").value(),
                               fed_.org("union-sg").ca.cert_pem, fed_.org("union-sg").endpoint());
  };
  v1::CreateCaseRequest create;
  create.mutable_case_()->set_category(v1::CASE_CATEGORY_WAGE_THEFT);
  create.mutable_case_()->set_origin_country("ID");
  create.mutable_case_()->set_destination_country("SG");
  create.mutable_case_()->mutable_worker()->set_name("Dewi Lestari");
  v1::Case c;
  ASSERT_TRUE(v1::CaseService::NewStub(channel(0))->CreateCase(Ctx().get(), create, &c).ok());
  const uint64_t baseline = PeakRss(node.pid());

  std::vector<std::string> ids(kUploads);
  std::vector<std::thread> threads;
  const std::string block(1u << 20, 'e');
  for (int i = 0; i < kUploads; ++i) {
    threads.emplace_back([&, i] {
      auto ch = channel(i + 1);
      auto u = StartUpload(ch, c.id(), "");
      v1::AddEvidenceRequest part;
      part.set_data(block);
      for (size_t sent = 0; sent < kSize; sent += block.size()) {
        if (!u->writer->Write(part)) break;
      }
      u->writer->WritesDone();
      grpc::Status s = u->writer->Finish();
      EXPECT_TRUE(s.ok()) << s.error_message();
      ids[i] = u->item.id();
    });
  }
  for (auto& t : threads) t.join();
  const uint64_t after_uploads = PeakRss(node.pid());
  threads.clear();
  std::atomic<uint64_t> downloaded{0};
  for (int i = 0; i < kUploads; ++i) {
    threads.emplace_back([&, i] {
      v1::GetEvidenceRequest req;
      req.set_case_id(c.id());
      req.set_evidence_id(ids[i]);
      req.set_purpose("case-handling");
      auto ctx = Ctx(absl::Seconds(120));
      auto reader = v1::CaseService::NewStub(channel(i + 10))->GetEvidence(ctx.get(), req);
      v1::EvidenceChunk chunk;
      uint64_t n = 0;
      while (reader->Read(&chunk)) n += chunk.data().size();
      grpc::Status s = reader->Finish();
      EXPECT_TRUE(s.ok()) << s.error_message();
      downloaded += n;
    });
  }
  for (auto& t : threads) t.join();
  const uint64_t after_downloads = PeakRss(node.pid());
  std::cout << "node VmHWM: " << (baseline >> 20) << " MiB before, " << (after_uploads >> 20)
            << " MiB after " << kUploads << " concurrent " << (kSize >> 20) << " MiB uploads, "
            << (after_downloads >> 20) << " MiB after as many downloads\n";
  EXPECT_EQ(downloaded.load(), kUploads * kSize);
  // What the node holds is bounded by its transport windows and memtables, not
  // by the files: it never holds them all (measured: about 180 MiB above the
  // baseline for 360 MiB of uploads, saturating as files grow).
#ifdef CORRIDOR_FLOOD_TEST_SANITIZED
  // Sanitizer builds keep freed memory in quarantine and shadow it, so the node's
  // peak RSS measures the sanitizer, not what the node holds: the bound is checked
  // in the optimised build (make test) only.
  std::cout << "memory bound not checked in a sanitizer build\n";
#else
  EXPECT_LT(after_downloads, baseline + kUploads * kSize);
#endif
  EXPECT_EQ(node.Stop(SIGTERM), 0) << node.Log();
}

}  // namespace
}  // namespace corridor
