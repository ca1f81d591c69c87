// Erasure reaches every copy a node keeps (docs/federation.md, "Erasure"),
// with real corridord processes on loopback: a referral still queued when its
// case is erased is cancelled and never delivered, and no file under the data
// directory (WAL, SSTs, MANIFEST, key store, everything) holds the case's
// personal data afterwards; a delivered referral is erased at the receiver on
// the sender's signed request, or refused under a legal hold, and both
// ledgers record request and outcome; erasing cases while their referrals are
// being delivered, many calls in flight, cancels each queued envelope once.
#include <signal.h>

#include <atomic>
#include <cstdio>
#include <iostream>
#include <map>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "client/lib/grpc_util.h"
#include "corridor/v1/case.grpc.pb.h"
#include "corridor/v1/federation.grpc.pb.h"
#include "gtest/gtest.h"
#include "ledger/crypto/crypto.h"
#include "server/node/config.h"
#include "tests/testing/federation.h"
#include "tests/testing/load.h"
#include "tests/testing/nodes.h"
#include "tests/testing/process.h"
#include "tests/testing/status_matchers.h"

namespace corridor {
namespace {

using testing::BinaryPath;
using testing::CommandResult;
using testing::RunCommand;
using testing::Subprocess;

constexpr char kSender[] = "union-sg";
constexpr char kReceiver[] = "ministry-id";
constexpr char kDown[] = "inspectorate-sg";  // never started

// Distinctive personal data, one per free-text field a case holds (or a
// referral carries): none may be left in any file once the case is erased.
struct PersonalData {
  std::string name, dob, document, contact, employer, recruiter, licence, narrative, consent_method,
      file_name, evidence_content, note;
  std::vector<std::string> All() const {
    return {name,    dob,       document,       contact,   employer,         recruiter,
            licence, narrative, consent_method, file_name, evidence_content, note};
  }
};

PersonalData MakePersonalData(const std::string& tag) {
  PersonalData pd;
  pd.name = "Zephyrine Quillfeather " + tag;
  pd.dob = "1913-07-29";
  pd.document = "XQ77319" + tag + "PZ";
  pd.contact = "quillfeather-phone-" + tag;
  pd.employer = "Brightwater Umbrella " + tag;
  pd.recruiter = "Kestrel Veloria Agency " + tag;
  pd.licence = "LIC-VELORIA-" + tag;
  pd.narrative = "paid nine thousand to Veloria in Surabaya " + tag;
  pd.consent_method = "witnessed by Ottoline Marchbanks " + tag;
  pd.file_name = "payslip-quillfeather-" + tag + ".txt";
  pd.evidence_content = "evidence: quillfeather wages withheld " + tag;
  pd.note = "note: Quillfeather moved to a shelter " + tag;
  return pd;
}

using testing::JsonValues;

bool Eventually(const std::function<bool()>& done, absl::Duration limit = absl::Seconds(90)) {
  const absl::Time give_up = absl::Now() + limit;
  while (absl::Now() < give_up) {
    if (done()) return true;
    absl::SleepFor(absl::Milliseconds(200));
  }
  return done();
}

std::unique_ptr<grpc::ClientContext> Ctx() {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(60)));
  return ctx;
}

class ErasureTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fed_.AddOrg(kSender, v1::ORG_KIND_UNION);
    fed_.AddOrg(kReceiver, v1::ORG_KIND_MINISTRY);
    fed_.AddOrg(kDown, v1::ORG_KIND_INSPECTORATE);
    for (const std::string org : {kSender, kReceiver}) {
      configs_[org] = fed_.WriteNodeConfig(
          org, {{"cw", {"caseworker"}}, {"ann", {"approver"}}, {"aud", {"auditor"}}});
      for (const std::string user : {"cw", "ann", "aud"}) {
        const std::string prefix = fed_.IssueUser(org, user);
        users_[{org, user}] = prefix;
        TlsIdentity id{ReadFileToString(prefix + ".crt").value(),
                       ReadFileToString(prefix + ".key").value(), fed_.org(org).ca.cert_pem};
        channels_[{org, user}] = testing::MakeDedicatedChannel(id, fed_.org(org).endpoint());
      }
      auto config = LoadNodeConfig(configs_[org]);
      ASSERT_OK(config.status());
      data_dirs_[org] = config->data_dir();
    }
  }
  void TearDown() override {
    for (auto& [org, node] : nodes_) {
      if (node) node->Stop(SIGTERM);
    }
  }

  void Start(const std::string& org) {
    nodes_[org] = std::make_unique<Subprocess>(
        std::vector<std::string>{BinaryPath("corridord"), "--config", configs_[org]},
        fed_.org(org).dir + "/corridord.log");
    CommandResult r = Ctl(org, "cw", {"health", "--wait", "60"});
    ASSERT_EQ(r.exit_code, 0) << r.err << nodes_[org]->Log();
  }
  void Stop(const std::string& org) {
    ASSERT_EQ(nodes_[org]->Stop(SIGTERM), 0) << nodes_[org]->Log();
    nodes_[org].reset();
  }
  // Restarts a stopped node and stops it again: the WAL is replayed and
  // flushed, whatever it held lands in the files searched afterwards.
  void Restart(const std::string& org) {
    Start(org);
    Stop(org);
  }

  CommandResult Ctl(const std::string& org, const std::string& user,
                    std::vector<std::string> args) {
    std::vector<std::string> argv = {BinaryPath("corridorctl")};
    argv.insert(argv.end(), args.begin(), args.end());
    const std::string& prefix = users_[{org, user}];
    for (const std::string& a :
         {std::string("--node"), fed_.org(org).endpoint(), std::string("--cert"), prefix + ".crt",
          std::string("--key"), prefix + ".key", std::string("--ca"),
          fed_.org(org).dir + "/ca.crt"}) {
      argv.push_back(a);
    }
    return RunCommand(argv);
  }

  // A case at the sender with `pd` in every free-text field: worker, parties,
  // narrative, consent, an evidence item (name and content) and a note.
  // Returns the case id and the evidence id.
  std::pair<std::string, std::string> CreateCase(const PersonalData& pd) {
    CommandResult r = Ctl(kSender, "cw",
                          {"case",
                           "create",
                           "--json",
                           "--category",
                           "wage-theft",
                           "--origin",
                           "ID",
                           "--destination",
                           "SG",
                           "--worker-name",
                           pd.name,
                           "--worker-dob",
                           pd.dob,
                           "--worker-document",
                           pd.document,
                           "--worker-contact",
                           pd.contact,
                           "--employer",
                           pd.employer,
                           "--recruiter",
                           pd.recruiter,
                           "--recruiter-licence",
                           pd.licence,
                           "--narrative",
                           pd.narrative,
                           "--consent",
                           std::string(kReceiver) + ":case-referral",
                           "--consent",
                           std::string(kDown) + ":case-referral",
                           "--consent-method",
                           pd.consent_method});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    auto ids = JsonValues(r.out, "id");
    if (ids.empty()) return {};
    const std::string file = fed_.root() + "/" + pd.file_name;
    EXPECT_OK(WriteFileAtomically(file, pd.evidence_content));
    r = Ctl(kSender, "cw", {"evidence", "add", ids[0], file, "--json"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    auto evidence = JsonValues(r.out, "id");
    r = Ctl(kSender, "cw", {"update", ids[0], "--note", pd.note});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    std::remove(file.c_str());
    return {ids[0], evidence.empty() ? "" : evidence[0]};
  }
  // Refers the case with its personal data and evidence; returns (referral, envelope).
  std::pair<std::string, std::string> Refer(const std::string& case_id,
                                            const std::string& evidence_id) {
    CommandResult r =
        Ctl(kSender, "cw",
            {"refer", case_id, "--to", kReceiver, "--agreement", "test-agreement", "--purpose",
             "case-referral", "--include", "personal-data," + evidence_id, "--json"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    auto referral = JsonValues(r.out, "referral_id");
    auto envelope = JsonValues(r.out, "envelope_id");
    if (referral.empty() || envelope.empty()) return {};
    return {referral[0], envelope[0]};
  }
  CommandResult Erase(const std::string& org, const std::string& case_id,
                      const std::string& reason) {
    return Ctl(org, "ann", {"case", "erase", case_id, "--reason", reason});
  }

  // Every ledger event about `case_id` at `org` (oldest first).
  std::vector<v1::AccessEvent> Events(const std::string& org, const std::string& case_id) {
    auto stub = v1::AuditService::NewStub(channels_[{org, "aud"}]);
    std::vector<v1::AccessEvent> out;
    v1::QueryEventsRequest req;
    req.set_case_id(case_id);
    req.set_page_size(1000);
    while (true) {
      v1::QueryEventsResponse resp;
      grpc::Status s = stub->QueryEvents(Ctx().get(), req, &resp);
      EXPECT_TRUE(s.ok()) << s.error_message();
      if (!s.ok()) return out;
      for (const auto& e : resp.events()) out.insert(out.begin(), e.event());
      if (resp.next_page_token().empty()) return out;
      req.set_page_token(resp.next_page_token());
    }
  }
  static size_t Count(const std::vector<v1::AccessEvent>& events, const std::string& action,
                      v1::AccessOutcome outcome = v1::ACCESS_OUTCOME_UNSPECIFIED) {
    size_t n = 0;
    for (const auto& e : events) {
      n += e.action() == action &&
           (outcome == v1::ACCESS_OUTCOME_UNSPECIFIED || e.outcome() == outcome);
    }
    return n;
  }
  // Whether the sender's outbox has nothing pending but erasure requests to
  // the peer that is down.
  bool Settled() {
    auto stub = v1::ReferralService::NewStub(channels_[{kSender, "cw"}]);
    v1::ListOutboxRequest req;
    req.set_page_size(1000);
    v1::ListOutboxResponse resp;
    if (!stub->ListOutbox(Ctx().get(), req, &resp).ok()) return false;
    for (const auto& e : resp.entries()) {
      if (e.state() == "pending" && (e.kind() != "erasure-request" || e.recipient_org() != kDown))
        return false;
    }
    return resp.next_page_token().empty();
  }
  // The state of each outbox entry of the sender, by envelope id.
  std::map<std::string, std::string> Outbox(const std::string& org = kSender) {
    auto stub = v1::ReferralService::NewStub(channels_[{org, "cw"}]);
    std::map<std::string, std::string> out;
    v1::ListOutboxRequest req;
    req.set_page_size(1000);
    while (true) {
      v1::ListOutboxResponse resp;
      grpc::Status s = stub->ListOutbox(Ctx().get(), req, &resp);
      EXPECT_TRUE(s.ok()) << s.error_message();
      if (!s.ok()) return out;
      for (const auto& e : resp.entries()) out[e.envelope_id()] = e.state();
      if (resp.next_page_token().empty()) return out;
      req.set_page_token(resp.next_page_token());
    }
  }
  // Every string of `pd` found in any file under `org`'s data directory or
  // in its log.
  std::vector<std::string> Leaks(const std::string& org, const PersonalData& pd) {
    std::vector<std::string> found;
    for (const std::string& s : pd.All()) {
      if (testing::AnyFileContains(data_dirs_[org], s)) found.push_back("data: " + s);
      if (ReadFileToString(fed_.org(org).dir + "/corridord.log").value_or("").find(s) !=
          std::string::npos) {
        found.push_back("log: " + s);
      }
    }
    return found;
  }
  std::string ReceivedCase(const std::string& referral) {
    CommandResult r = Ctl(kReceiver, "cw", {"inbox", "--json"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    auto referrals = JsonValues(r.out, "referral_id");
    auto cases = JsonValues(r.out, "case_id");
    for (size_t i = 0; i < referrals.size() && i < cases.size(); ++i) {
      if (referrals[i] == referral) return cases[i];
    }
    return "";
  }

  testing::TestFederation fed_;
  std::map<std::string, std::string> configs_, data_dirs_;
  std::map<std::pair<std::string, std::string>, std::string> users_;
  std::map<std::pair<std::string, std::string>, std::shared_ptr<grpc::Channel>> channels_;
  std::map<std::string, std::unique_ptr<Subprocess>> nodes_;
};

TEST_F(ErasureTest, QueuedReferralOfAnErasedCaseLeavesNoPersonalDataOnDiskAndIsNeverDelivered) {
  Start(kSender);  // the receiver is down: the referral waits in the outbox
  const PersonalData pd = MakePersonalData("A1");
  const auto created = CreateCase(pd);
  const std::string case_id = created.first, evidence = created.second;
  ASSERT_FALSE(case_id.empty());
  ASSERT_FALSE(evidence.empty());
  const auto referred = Refer(case_id, evidence);
  const std::string referral = referred.first, envelope = referred.second;
  ASSERT_FALSE(envelope.empty());
  EXPECT_EQ(Outbox()[envelope], "pending");
  // Sealed from the start: the queued referral is not readable on disk.
  Stop(kSender);
  EXPECT_EQ(Leaks(kSender, pd), std::vector<std::string>{});
  Start(kSender);

  CommandResult erased = Erase(kSender, case_id, "asked by " + pd.name);
  ASSERT_EQ(erased.exit_code, 0) << erased.err;
  ASSERT_TRUE(Eventually([&] { return Outbox()[envelope] == "cancelled"; })) << Outbox()[envelope];
  Stop(kSender);
  Restart(kSender);
  EXPECT_EQ(Leaks(kSender, pd), std::vector<std::string>{});

  // The receiver comes up and never gets the case.
  Start(kSender);
  Start(kReceiver);
  ASSERT_TRUE(Eventually([&] { return Settled(); }));
  EXPECT_EQ(ReceivedCase(referral), "");
  CommandResult inbox = Ctl(kReceiver, "cw", {"inbox", "--json"});
  EXPECT_EQ(inbox.out.find(referral), std::string::npos) << inbox.out;
  const auto events = Events(kSender, case_id);
  EXPECT_EQ(Count(events, "envelope.cancel"), 1u);
  EXPECT_EQ(Count(events, "envelope.receipt"), 0u);
  for (const auto& e : events) {
    if (e.action() == "envelope.cancel") {
      EXPECT_EQ(e.resource_id(), envelope);
      EXPECT_EQ(e.peer_org(), kReceiver);
    }
  }
  Stop(kReceiver);
  Stop(kSender);
  EXPECT_EQ(Leaks(kSender, pd), std::vector<std::string>{});
  EXPECT_EQ(Leaks(kReceiver, pd), std::vector<std::string>{});
}

TEST_F(ErasureTest, DeliveredReferralIsErasedAtTheReceiverOnTheSendersSignedRequest) {
  Start(kSender);
  Start(kReceiver);
  const PersonalData pd = MakePersonalData("B1");
  const auto created = CreateCase(pd);
  const std::string case_id = created.first, evidence = created.second;
  const auto referred = Refer(case_id, evidence);
  const std::string referral = referred.first, envelope = referred.second;
  ASSERT_FALSE(envelope.empty());
  ASSERT_TRUE(Eventually([&] { return Outbox()[envelope] == "delivered"; }));
  const std::string received = ReceivedCase(referral);
  ASSERT_FALSE(received.empty());
  CommandResult show =
      Ctl(kReceiver, "cw", {"case", "show", received, "--purpose", "case-handling"});
  ASSERT_NE(show.out.find(pd.name), std::string::npos) << show.out << show.err;

  ASSERT_EQ(Erase(kSender, case_id, "consent withdrawn").exit_code, 0);
  ASSERT_TRUE(Eventually([&] { return Count(Events(kSender, case_id), "erasure.outcome") == 1; }));
  const auto sent = Events(kSender, case_id);
  EXPECT_EQ(Count(sent, "erasure.request", v1::ACCESS_OUTCOME_ALLOWED), 1u);
  EXPECT_EQ(Count(sent, "erasure.outcome", v1::ACCESS_OUTCOME_ALLOWED), 1u);
  const auto got = Events(kReceiver, received);
  EXPECT_EQ(Count(got, "case.erase", v1::ACCESS_OUTCOME_ALLOWED), 1u);
  show = Ctl(kReceiver, "cw", {"case", "show", received, "--purpose", "case-handling"});
  EXPECT_NE(show.exit_code, 0);
  EXPECT_NE(show.err.find("erased"), std::string::npos) << show.err;
  for (const std::string org : {kSender, kReceiver}) {
    Stop(org);
    Restart(org);
  }
  EXPECT_EQ(Leaks(kSender, pd), std::vector<std::string>{});
  EXPECT_EQ(Leaks(kReceiver, pd), std::vector<std::string>{});
}

TEST_F(ErasureTest, ReceiverHoldingTheCaseForProceedingsRefusesAndBothLedgersSaySo) {
  Start(kSender);
  Start(kReceiver);
  const PersonalData pd = MakePersonalData("B2");
  const auto created = CreateCase(pd);
  const std::string case_id = created.first, evidence = created.second;
  const auto referred = Refer(case_id, evidence);
  const std::string referral = referred.first, envelope = referred.second;
  ASSERT_TRUE(Eventually([&] { return Outbox()[envelope] == "delivered"; }));
  const std::string received = ReceivedCase(referral);
  ASSERT_FALSE(received.empty());
  ASSERT_EQ(Ctl(kReceiver, "cw", {"accept", referral}).exit_code, 0);
  CommandResult hold =
      Ctl(kReceiver, "cw", {"update", received, "--outcome", "legal-hold", "--note", "court"});
  ASSERT_EQ(hold.exit_code, 0) << hold.err;

  ASSERT_EQ(Erase(kSender, case_id, "consent withdrawn").exit_code, 0);
  ASSERT_TRUE(Eventually([&] { return Count(Events(kSender, case_id), "erasure.outcome") == 1; }));
  const auto sent = Events(kSender, case_id);
  EXPECT_EQ(Count(sent, "erasure.outcome", v1::ACCESS_OUTCOME_DENIED), 1u);
  for (const auto& e : sent) {
    if (e.action() == "erasure.outcome") {
      EXPECT_NE(e.reason().find("legal-hold"), std::string::npos) << e.reason();
    }
  }
  const auto got = Events(kReceiver, received);
  EXPECT_EQ(Count(got, "case.erase", v1::ACCESS_OUTCOME_DENIED), 1u);
  EXPECT_EQ(Count(got, "case.erase", v1::ACCESS_OUTCOME_ALLOWED), 0u);
  // Kept, under the receiver's own law, and still readable there.
  CommandResult show =
      Ctl(kReceiver, "cw", {"case", "show", received, "--purpose", "case-handling"});
  EXPECT_EQ(show.exit_code, 0) << show.err;
  EXPECT_NE(show.out.find(pd.name), std::string::npos) << show.out;
  // The sender's own copy is gone all the same.
  Stop(kSender);
  Restart(kSender);
  EXPECT_EQ(Leaks(kSender, pd), std::vector<std::string>{});
}

// Several cases, each with referrals being delivered (the receiver is up) and
// more queued for a peer that is down, erased at once while more calls are in
// flight on one channel and on several.
TEST_F(ErasureTest, ErasingCasesWhileTheirReferralsAreDeliveredCancelsEachQueuedEnvelopeOnce) {
  Start(kSender);
  Start(kReceiver);
  constexpr int kCases = 4;
  constexpr int kReferrals = 4;
  std::vector<PersonalData> pds;
  std::vector<std::pair<std::string, std::string>> cases;  // (case, evidence)
  for (int i = 0; i < kCases; ++i) {
    pds.push_back(MakePersonalData(absl::StrCat("C", i)));
    cases.push_back(CreateCase(pds.back()));
    ASSERT_FALSE(cases.back().first.empty());
  }
  // Referrals on one caseworker channel, all in flight at once.
  auto referrals = v1::ReferralService::NewStub(channels_[{kSender, "cw"}]);
  absl::Mutex mu;
  std::map<std::string, std::string> case_of_envelope;
  std::atomic<int> refused{0};
  std::vector<std::thread> threads;
  for (const auto& [case_id, evidence] : cases) {
    for (int r = 0; r < kReferrals; ++r) {
      threads.emplace_back([&, case_id = case_id, evidence = evidence, r] {
        for (int attempt = 0; attempt < 100; ++attempt) {  // the case lock turns some away
          v1::ReferCaseRequest req;
          req.set_case_id(case_id);
          req.set_to_org(r % 2 == 0 ? kReceiver : kDown);
          req.set_agreement("test-agreement");
          req.set_purpose("case-referral");
          req.set_include_personal_data(true);
          req.add_evidence_ids(evidence);
          v1::ReferCaseResponse resp;
          grpc::Status s = referrals->Refer(Ctx().get(), req, &resp);
          if (s.ok()) {
            absl::MutexLock lock(&mu);
            case_of_envelope[resp.envelope_id()] = case_id;
            return;
          }
          if (s.error_code() != grpc::StatusCode::ABORTED) break;
          absl::SleepFor(absl::Milliseconds(5));
        }
        ++refused;
      });
    }
  }
  for (auto& t : threads) t.join();
  threads.clear();
  ASSERT_EQ(refused.load(), 0);
  ASSERT_EQ(case_of_envelope.size(), static_cast<size_t>(kCases * kReferrals));

  // Erase every case at once on one approver channel, with reads on several
  // others in flight meanwhile.
  auto erasers = v1::CaseService::NewStub(channels_[{kSender, "ann"}]);
  std::atomic<bool> erasing{true};
  std::atomic<int> erase_failures{0};
  for (const auto& [case_id, evidence] : cases) {
    threads.emplace_back([&, case_id = case_id] {
      for (int attempt = 0; attempt < 200; ++attempt) {
        v1::EraseCaseRequest req;
        req.set_id(case_id);
        req.set_reason("consent withdrawn");
        v1::EraseCaseResponse resp;
        grpc::Status s = erasers->EraseCase(Ctx().get(), req, &resp);
        if (s.ok()) return;
        if (s.error_code() != grpc::StatusCode::ABORTED) {
          ADD_FAILURE() << case_id << ": " << s.error_message();
          break;
        }
        absl::SleepFor(absl::Milliseconds(5));
      }
      ++erase_failures;
    });
  }
  std::vector<std::thread> readers;
  for (const std::string user : {"cw", "aud"}) {
    readers.emplace_back([&, user] {
      auto outbox = v1::ReferralService::NewStub(channels_[{kSender, user}]);
      while (erasing) {
        v1::ListOutboxResponse resp;
        (void)outbox->ListOutbox(Ctx().get(), v1::ListOutboxRequest(), &resp);
      }
    });
  }
  for (auto& t : threads) t.join();
  erasing = false;
  for (auto& t : readers) t.join();
  ASSERT_EQ(erase_failures.load(), 0);

  // Settled: nothing pending; each envelope was delivered or cancelled, and
  // each cancellation is recorded exactly once.
  ASSERT_TRUE(Eventually([&] { return Settled(); }));
  const auto outbox = Outbox();
  std::map<std::string, int> cancelled_events;
  int delivered_referrals = 0;
  for (const auto& [case_id, evidence] : cases) {
    const auto events = Events(kSender, case_id);
    for (const auto& e : events) {
      if (e.action() == "envelope.cancel") ++cancelled_events[e.resource_id()];
    }
    // Every referral that reached the receiver is followed by an erasure request.
    int delivered = 0;
    for (const auto& [env, c] : case_of_envelope) {
      delivered += c == case_id && outbox.count(env) && outbox.at(env) == "delivered";
    }
    delivered_referrals += delivered;
    EXPECT_GE(Count(events, "erasure.request"), static_cast<size_t>(delivered)) << case_id;
  }
  for (const auto& [env, case_id] : case_of_envelope) {
    ASSERT_TRUE(outbox.count(env)) << env;
    const std::string& state = outbox.at(env);
    EXPECT_TRUE(state == "delivered" || state == "cancelled") << env << ": " << state;
    EXPECT_EQ(cancelled_events[env], state == "cancelled" ? 1 : 0) << env;
  }
  // The receiver that is up answered every request it got: erased (or never had it).
  ASSERT_TRUE(Eventually([&] {
    size_t outcomes = 0, requests = 0;
    for (const auto& [case_id, evidence] : cases) {
      for (const auto& e : Events(kSender, case_id)) {
        outcomes += e.action() == "erasure.outcome" && e.outcome() == v1::ACCESS_OUTCOME_ALLOWED;
        requests += e.action() == "erasure.request" && e.peer_org() == kReceiver;
      }
    }
    return outcomes == requests;
  }));
  std::cout << "delivered before erasure: " << delivered_referrals << " of "
            << case_of_envelope.size() << "\n";
  for (const std::string org : {kSender, kReceiver}) {
    Stop(org);
    Restart(org);
  }
  for (const auto& pd : pds) {
    EXPECT_EQ(Leaks(kSender, pd), std::vector<std::string>{});
    EXPECT_EQ(Leaks(kReceiver, pd), std::vector<std::string>{});
  }
}

}  // namespace
}  // namespace corridor
