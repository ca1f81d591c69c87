// The referral index is keyed by (peer org, referral id): a referral id is
// chosen by the referral's sender, so another member that learnt it (48
// random bits) can send a referral of its own under it. Such a referral
// neither blocks the real one nor reaches its case, and no envelope naming a
// referral id (update, decision, permission, erasure request or outcome)
// reaches a case exchanged with another org. A caseworker naming an id that
// two members used is told so and nothing is decided. Entries earlier versions
// wrote under the bare id still work, for their own peer only. Every refusal:
// a specific error, one denied ledger entry, nothing changed. The test acts as
// the peers "union-sg" and "inspectorate-sg" against a real "ministry-id"
// node in this process, on 127.0.0.1.
#include <map>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "client/lib/grpc_util.h"
#include "corridor/v1/case.grpc.pb.h"
#include "corridor/v1/federation.grpc.pb.h"
#include "corridor/v1/node.grpc.pb.h"
#include "gtest/gtest.h"
#include "ledger/rocksdb/rocksdb_ledger.h"
#include "server/federation/envelope.h"
#include "server/federation/exchange.h"
#include "server/node/config.h"
#include "server/node/node.h"
#include "server/store/case_store.h"
#include "server/store/store.h"
#include "tests/testing/federation.h"
#include "tests/testing/status_matchers.h"

namespace corridor {
namespace {

constexpr char kSelf[] = "ministry-id";
constexpr char kUnion[] = "union-sg";
constexpr char kInspectorate[] = "inspectorate-sg";

class ReferralIndexTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fed_.AddOrg(kUnion);
    fed_.AddOrg(kSelf, v1::ORG_KIND_MINISTRY);
    fed_.AddOrg(kInspectorate, v1::ORG_KIND_INSPECTORATE);
    const std::string path =
        fed_.WriteNodeConfig(kSelf, {{"aud", {"auditor"}}, {"cw", {"caseworker"}}});
    ASSERT_OK_AND_ASSIGN(config_, LoadNodeConfig(path));
    ASSERT_OK_AND_ASSIGN(node_, Node::Start(config_));
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
  grpc::Status Deliver(const std::string& as_org, const v1::Envelope& env) {
    v1::Receipt ignored;
    return v1::PeerService::NewStub(AsNode(as_org))->Deliver(Ctx().get(), env, &ignored);
  }

  // Envelopes from `from` to this node, signed with `from`'s key; each gets a new envelope id.
  v1::EnvelopePayload Header(const std::string& from) {
    v1::EnvelopePayload p;
    p.set_envelope_id(absl::StrCat("ENV-", from, "-", ++next_id_));
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
  v1::Envelope Referral(const std::string& from, const std::string& referral_id) {
    v1::EnvelopePayload p = Header(from);
    p.mutable_referral()->set_referral_id(referral_id);
    p.mutable_referral()->set_origin_case_id("C-" + from);
    p.mutable_referral()->mutable_shared()->set_category(v1::CASE_CATEGORY_WAGE_THEFT);
    p.mutable_referral()->mutable_shared()->set_narrative("narrative of " + from);
    return Sign(p);
  }
  v1::Envelope Update(const std::string& from, const std::string& referral_id) {
    v1::EnvelopePayload p = Header(from);
    p.mutable_update()->set_referral_id(referral_id);
    p.mutable_update()->set_note("note from " + from);
    p.mutable_update()->set_author(from + "/user/cw");
    return Sign(p);
  }
  v1::Envelope Decision(const std::string& from, const std::string& referral_id) {
    v1::EnvelopePayload p = Header(from);
    p.mutable_decision()->set_referral_id(referral_id);
    p.mutable_decision()->set_accepted(true);
    p.mutable_decision()->set_linked_case_id("C-" + from);
    return Sign(p);
  }
  v1::Envelope Permission(const std::string& from, const std::string& referral_id) {
    v1::EnvelopePayload p = Header(from);
    v1::OnwardPermission* perm = p.mutable_permission();
    perm->set_referral_id(referral_id);
    perm->set_holder_org(kSelf);
    perm->set_permitted_org(from == kUnion ? kInspectorate : kUnion);
    perm->set_purpose("case-referral");
    perm->set_agreement("test-agreement");
    return Sign(p);
  }
  v1::Envelope ErasureRequest(const std::string& from, const std::string& referral_id) {
    v1::EnvelopePayload p = Header(from);
    p.mutable_erasure_request()->set_referral_id(referral_id);
    return Sign(p);
  }
  v1::Envelope ErasureOutcome(const std::string& from, const std::string& referral_id) {
    v1::EnvelopePayload p = Header(from);
    p.mutable_erasure_outcome()->set_referral_id(referral_id);
    p.mutable_erasure_outcome()->set_request_envelope_id("ENV-REQUEST");
    p.mutable_erasure_outcome()->set_result(v1::ERASURE_RESULT_ERASED);
    return Sign(p);
  }

  grpc::Status Decide(const std::string& referral_id, v1::DecideReferralResponse* resp) {
    v1::DecideReferralRequest req;
    req.set_referral_id(referral_id);
    req.set_accept(true);
    return v1::ReferralService::NewStub(cw_)->Decide(Ctx().get(), req, resp);
  }
  // The local case `from`'s referral `referral_id` created (from the inbox or, once
  // decided, the cases' links); "" if there is none.
  std::string CaseOf(const std::string& from, const std::string& referral_id) {
    v1::ListCasesResponse list;
    grpc::Status s = v1::CaseService::NewStub(cw_)->ListCases(Ctx().get(), {}, &list);
    EXPECT_TRUE(s.ok()) << s.error_message();
    for (const auto& summary : list.cases()) {
      if (summary.status() == v1::CASE_STATUS_ERASED) continue;
      const v1::Case c = GetCase(summary.id());
      for (const auto& l : c.referrals()) {
        if (!l.outgoing() && l.referral_id() == referral_id && l.peer_org() == from) return c.id();
      }
    }
    return "";
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
  // Every case, serialized, by id: to show that nothing changed.
  std::map<std::string, std::string> AllCases() {
    v1::ListCasesResponse list;
    grpc::Status s = v1::CaseService::NewStub(cw_)->ListCases(Ctx().get(), {}, &list);
    EXPECT_TRUE(s.ok()) << s.error_message();
    std::map<std::string, std::string> all;
    for (const auto& summary : list.cases()) {
      all[summary.id()] = GetCase(summary.id()).SerializeAsString();
    }
    return all;
  }

  // Delivers `env` as `as_org` and expects it refused with `code` and an error
  // containing `says`, exactly one denied envelope.receive entry, and every
  // case exactly as before.
  void ExpectRefused(const std::string& as_org, const v1::Envelope& env, grpc::StatusCode code,
                     const std::string& says) {
    const auto before_cases = AllCases();
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
    EXPECT_EQ(AllCases(), before_cases);
  }
  // Expects the caseworker's decision on `referral_id` refused as ambiguous,
  // the refusal recorded, and every case as before.
  void ExpectAmbiguous(const std::string& referral_id) {
    const auto before_cases = AllCases();
    const uint64_t before = LedgerSize();
    v1::DecideReferralResponse resp;
    grpc::Status s = Decide(referral_id, &resp);
    const uint64_t after = LedgerSize();
    EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << s.error_message();
    EXPECT_NE(s.error_message().find("was received from 2 different members under the same id (" +
                                     std::string(kInspectorate) + ", " + kUnion + ")"),
              std::string::npos)
        << s.error_message();
    EXPECT_NE(s.error_message().find("nothing was decided"), std::string::npos);
    ASSERT_EQ(after - before, 2u);
    const v1::AccessEvent ev = EntryAt(before);
    EXPECT_EQ(ev.action(), "referral.accept");
    // Not the caller's access denied: the node could not tell which referral was meant.
    EXPECT_EQ(ev.outcome(), v1::ACCESS_OUTCOME_ERROR);
    EXPECT_NE(ev.reason().find("under the same id"), std::string::npos) << ev.reason();
    EXPECT_EQ(AllCases(), before_cases);
  }

  testing::TestFederation fed_;
  v1::NodeConfig config_;
  std::unique_ptr<Node> node_;
  std::shared_ptr<grpc::Channel> cw_, aud_;
  int next_id_ = 0;
};

// A member that learnt another's referral id and delivers it first: the real
// referral is still taken, as a case of its own; the caseworker is told the id
// is ambiguous instead of deciding either; once the squatter's copy is gone,
// the real one is decided.
TEST_F(ReferralIndexTest, ASecondSenderUsingTheIdDoesNotBlockTheRealReferral) {
  ASSERT_TRUE(Deliver(kInspectorate, Referral(kInspectorate, "REF-SHARED")).ok());
  grpc::Status s = Deliver(kUnion, Referral(kUnion, "REF-SHARED"));
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(CaseCount(), 2u);
  const std::string real = CaseOf(kUnion, "REF-SHARED");
  const std::string squat = CaseOf(kInspectorate, "REF-SHARED");
  ASSERT_FALSE(real.empty());
  ASSERT_FALSE(squat.empty());
  ASSERT_NE(real, squat);
  EXPECT_EQ(GetCase(real).narrative(), "narrative of union-sg");
  EXPECT_EQ(GetCase(squat).narrative(), "narrative of inspectorate-sg");
  // Each sender's second referral under the id is its own duplicate.
  for (const char* from : {kUnion, kInspectorate}) {
    SCOPED_TRACE(from);
    ExpectRefused(from, Referral(from, "REF-SHARED"), grpc::StatusCode::ALREADY_EXISTS,
                  absl::StrCat("referral REF-SHARED from ", from, " was already received"));
  }
  ExpectAmbiguous("REF-SHARED");
  // The squatter may erase what it sent, and only that.
  const std::string real_before = GetCase(real).SerializeAsString();
  ASSERT_TRUE(Deliver(kInspectorate, ErasureRequest(kInspectorate, "REF-SHARED")).ok());
  EXPECT_EQ(GetCase(real).SerializeAsString(), real_before);
  v1::DecideReferralResponse decided;
  s = Decide("REF-SHARED", &decided);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(decided.case_id(), real);
  EXPECT_EQ(GetCase(real).referrals(0).state(), v1::REFERRAL_STATE_ACCEPTED);
}

// Every body that names a referral id, sent by a member that is not party to
// the referral of that id: refused (or, for an erasure request, answered "not
// held"), one denied entry, no case changed. Then the same member sends a
// referral under the id and reaches only its own new case.
TEST_F(ReferralIndexTest, BodiesNamingAnotherSendersReferralReachNothing) {
  ASSERT_TRUE(Deliver(kUnion, Referral(kUnion, "REF-REAL")).ok());
  v1::DecideReferralResponse decided;
  ASSERT_TRUE(Decide("REF-REAL", &decided).ok());
  const std::string real = decided.case_id();
  const auto [mine, sent] = Referred(kUnion);  // one this node sent union-sg
  for (const std::string& ref : {std::string("REF-REAL"), sent}) {
    SCOPED_TRACE(ref);
    ExpectRefused(kInspectorate, Update(kInspectorate, ref), grpc::StatusCode::PERMISSION_DENIED,
                  "inspectorate-sg is not party to referral " + ref);
    ExpectRefused(kInspectorate, Decision(kInspectorate, ref), grpc::StatusCode::PERMISSION_DENIED,
                  "inspectorate-sg is not party to referral " + ref);
    ExpectRefused(kInspectorate, Permission(kInspectorate, ref),
                  grpc::StatusCode::PERMISSION_DENIED,
                  "inspectorate-sg is not party to referral " + ref);
    ExpectRefused(kInspectorate, ErasureOutcome(kInspectorate, ref),
                  grpc::StatusCode::PERMISSION_DENIED, "this node sent inspectorate-sg no erasure");
    // An erasure request is answered (its sender holds nothing here) and erases nothing.
    const auto before = AllCases();
    ASSERT_TRUE(Deliver(kInspectorate, ErasureRequest(kInspectorate, ref)).ok());
    EXPECT_EQ(AllCases(), before);
  }
  // The real parties still reach their referrals.
  const int history = GetCase(real).history_size();
  ASSERT_TRUE(Deliver(kUnion, Update(kUnion, "REF-REAL")).ok());
  EXPECT_EQ(GetCase(real).history_size(), history + 1);
  ASSERT_TRUE(Deliver(kUnion, Decision(kUnion, sent)).ok());
  EXPECT_EQ(GetCase(mine).referrals(0).state(), v1::REFERRAL_STATE_ACCEPTED);

  // A referral of its own under the accepted referral's id makes a new case;
  // what it sends about that id reaches that case only.
  ASSERT_TRUE(Deliver(kInspectorate, Referral(kInspectorate, "REF-REAL")).ok());
  const std::string squat = CaseOf(kInspectorate, "REF-REAL");
  ASSERT_FALSE(squat.empty());
  ASSERT_NE(squat, real);
  ExpectRefused(kInspectorate, Update(kInspectorate, "REF-REAL"),
                grpc::StatusCode::FAILED_PRECONDITION, "is not accepted");
  ExpectRefused(kInspectorate, Permission(kInspectorate, "REF-REAL"),
                grpc::StatusCode::FAILED_PRECONDITION, "has not been accepted here");
  const std::string real_before = GetCase(real).SerializeAsString();
  ASSERT_TRUE(Deliver(kInspectorate, ErasureRequest(kInspectorate, "REF-REAL")).ok());
  EXPECT_EQ(GetCase(real).SerializeAsString(), real_before);
  EXPECT_EQ(CaseOf(kInspectorate, "REF-REAL"), "");  // its own copy is erased
  ASSERT_TRUE(Deliver(kUnion, Update(kUnion, "REF-REAL")).ok());
  EXPECT_EQ(GetCase(real).history_size(), history + 2);
}

// Many referrals in flight from two senders under the same ids, each twice
// (a second envelope carrying the same referral), with updates from the
// referrals' sender and a member naming them, on one shared channel per peer
// and on channels of their own: per (sender, id) exactly one case; every
// envelope one ledger entry; the other member's updates change nothing.
TEST_F(ReferralIndexTest, ConcurrentDeliveriesUnderSharedIds) {
  constexpr int kIds = 12;
  std::vector<std::string> accepted(kIds);
  for (int i = 0; i < kIds; ++i) {
    ASSERT_TRUE(Deliver(kUnion, Referral(kUnion, absl::StrCat("REF-A", i))).ok());
    v1::DecideReferralResponse resp;
    ASSERT_TRUE(Decide(absl::StrCat("REF-A", i), &resp).ok());
    accepted[i] = resp.case_id();
  }
  const size_t cases = CaseCount();
  struct Send {
    std::string from;
    v1::Envelope env;
    grpc::Status status;
  };
  std::vector<Send> sends;
  for (int i = 0; i < kIds; ++i) {
    for (const char* from : {kUnion, kInspectorate}) {
      for (int copy = 0; copy < 2; ++copy) {
        sends.push_back({from, Referral(from, absl::StrCat("REF-S", i)), {}});
      }
      sends.push_back({from, Update(from, absl::StrCat("REF-A", i)), {}});
    }
  }
  const uint64_t before = LedgerSize();
  {
    auto shared_union = v1::PeerService::NewStub(AsNode(kUnion));
    auto shared_insp = v1::PeerService::NewStub(AsNode(kInspectorate));
    constexpr int kThreads = 8;
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        // Half the threads share one channel per peer, half open their own.
        auto own_union = t % 2 == 0 ? nullptr : v1::PeerService::NewStub(AsNode(kUnion));
        auto own_insp = t % 2 == 0 ? nullptr : v1::PeerService::NewStub(AsNode(kInspectorate));
        for (size_t i = t; i < sends.size(); i += kThreads) {
          v1::PeerService::Stub* stub = sends[i].from == kUnion
                                            ? (own_union ? own_union : shared_union).get()
                                            : (own_insp ? own_insp : shared_insp).get();
          v1::Receipt r;
          // A concurrent duplicate or a busy case is told to retry (not recorded).
          do {
            sends[i].status = stub->Deliver(Ctx().get(), sends[i].env, &r);
          } while (sends[i].status.error_code() == grpc::StatusCode::UNAVAILABLE);
        }
      });
    }
    for (auto& th : threads) th.join();
  }
  const uint64_t after = LedgerSize();
  std::map<std::string, int> allowed, duplicate, denied;
  for (const Send& s : sends) {
    v1::EnvelopePayload p;
    ASSERT_TRUE(p.ParseFromString(s.env.payload()));
    const std::string key =
        s.from + "/" + (p.has_referral() ? p.referral().referral_id() : p.update().referral_id());
    if (s.status.ok()) ++allowed[key];
    if (s.status.error_code() == grpc::StatusCode::ALREADY_EXISTS) ++duplicate[key];
    if (s.status.error_code() == grpc::StatusCode::PERMISSION_DENIED) ++denied[key];
  }
  for (int i = 0; i < kIds; ++i) {
    SCOPED_TRACE(i);
    for (const char* from : {kUnion, kInspectorate}) {
      const std::string key = absl::StrCat(from, "/REF-S", i);
      EXPECT_EQ(allowed[key], 1) << key;
      EXPECT_EQ(duplicate[key], 1) << key;
      EXPECT_FALSE(CaseOf(from, absl::StrCat("REF-S", i)).empty());
    }
    EXPECT_EQ(allowed[absl::StrCat(kUnion, "/REF-A", i)], 1);
    EXPECT_EQ(denied[absl::StrCat(kInspectorate, "/REF-A", i)], 1);
    // Accepted, its note and union-sg's update: nothing from inspectorate-sg.
    const v1::Case c = GetCase(accepted[i]);
    ASSERT_EQ(c.history_size(), 3);
    EXPECT_EQ(c.history(2).note(), "note from union-sg");
  }
  EXPECT_EQ(CaseCount(), cases + 2 * kIds);
  // One entry per envelope, plus the checkpoint read.
  ASSERT_EQ(after - before, sends.size() + 1);
  std::map<std::pair<std::string, int>, int> tally;
  for (uint64_t i = before; i < after - 1; ++i) {
    const v1::AccessEvent ev = EntryAt(i);
    EXPECT_EQ(ev.action(), "envelope.receive");
    ++tally[{ev.actor_org(), ev.outcome()}];
  }
  EXPECT_EQ((tally[{kUnion, v1::ACCESS_OUTCOME_ALLOWED}]), 2 * kIds);
  EXPECT_EQ((tally[{kUnion, v1::ACCESS_OUTCOME_DENIED}]), kIds);
  EXPECT_EQ((tally[{kInspectorate, v1::ACCESS_OUTCOME_ALLOWED}]), kIds);
  EXPECT_EQ((tally[{kInspectorate, v1::ACCESS_OUTCOME_DENIED}]), 2 * kIds);
  ExpectAmbiguous("REF-S0");
}

// A data directory written by an earlier version: its index entries are keyed
// by the bare referral id. They still work for their own peer (updates,
// decisions, duplicates), reach nothing for another member, and do not block
// another member's referral under the id.
TEST_F(ReferralIndexTest, EntriesKeyedByIdAloneStillWorkForTheirPeerOnly) {
  ASSERT_TRUE(Deliver(kUnion, Referral(kUnion, "REF-OLD")).ok());
  v1::DecideReferralResponse decided;
  ASSERT_TRUE(Decide("REF-OLD", &decided).ok());
  const std::string received = decided.case_id();
  const auto [mine, sent] = Referred(kInspectorate);
  node_->Shutdown(absl::Seconds(1));
  node_.reset();
  {  // Rewrite the index the way an earlier version stored it.
    std::vector<std::string> families = ledger::LedgerColumnFamilyNames();
    for (const char* f :
         {kCasesFamily, kEvidenceFamily, kOutboxFamily, kReceivedFamily, kReferralIndexFamily}) {
      families.push_back(f);
    }
    ASSERT_OK_AND_ASSIGN(auto store, NodeStore::Open(config_.data_dir(), families));
    rocksdb::ColumnFamilyHandle* index = store->family(kReferralIndexFamily);
    rocksdb::WriteBatch batch;
    std::unique_ptr<rocksdb::Iterator> it(store->db()->NewIterator(rocksdb::ReadOptions(), index));
    int rewritten = 0;
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      const std::string key = it->key().ToString();
      ASSERT_NE(key.find('/'), std::string::npos) << key;
      batch.Delete(index, key);
      batch.Put(index, key.substr(0, key.find('/')), it->value());
      ++rewritten;
    }
    ASSERT_EQ(rewritten, 2);
    rocksdb::WriteOptions wo;
    wo.sync = true;
    ASSERT_TRUE(store->db()->Write(wo, &batch).ok());
  }
  ASSERT_OK_AND_ASSIGN(node_, Node::Start(config_));
  // Their own peers reach them.
  const int history = GetCase(received).history_size();
  ASSERT_TRUE(Deliver(kUnion, Update(kUnion, "REF-OLD")).ok());
  EXPECT_EQ(GetCase(received).history_size(), history + 1);
  ExpectRefused(kUnion, Referral(kUnion, "REF-OLD"), grpc::StatusCode::ALREADY_EXISTS,
                "referral REF-OLD from union-sg was already received");
  ASSERT_TRUE(Deliver(kInspectorate, Decision(kInspectorate, sent)).ok());
  EXPECT_EQ(GetCase(mine).referrals(0).state(), v1::REFERRAL_STATE_ACCEPTED);
  // Another member reaches neither.
  ExpectRefused(kInspectorate, Update(kInspectorate, "REF-OLD"),
                grpc::StatusCode::PERMISSION_DENIED, "inspectorate-sg is not party to referral");
  ExpectRefused(kUnion, Update(kUnion, sent), grpc::StatusCode::PERMISSION_DENIED,
                "union-sg is not party to referral");
  // Nor is it blocked by them: its referral under the id is its own case.
  ASSERT_TRUE(Deliver(kInspectorate, Referral(kInspectorate, "REF-OLD")).ok());
  const std::string squat = CaseOf(kInspectorate, "REF-OLD");
  ASSERT_FALSE(squat.empty());
  EXPECT_NE(squat, received);
  ExpectAmbiguous("REF-OLD");
}

}  // namespace
}  // namespace corridor
