// Concurrency stress against real corridord processes on loopback.
//
// Three nodes: union-sg (the node under load), ministry-id (a peer that also
// refers cases to union-sg and decides on the referrals it receives) and
// inspectorate-sg (a peer that is frozen with SIGSTOP for the middle of the
// run and resumed before the end). Users of every role call union-sg at
// once: one caseworker keeps 32 calls in flight on ONE channel (the normal
// way a gRPC client works), three more caseworkers use a channel each, and a
// prosecutor, an auditor, an approver and an admin have their own; calls mix
// reads, writes, evidence uploads, audit queries, referrals (so the nodes call
// PeerService.Deliver on each other) and calls the caller's role may not make.
//
// Afterwards: every node process is alive; every call ended with a status its
// kind may end with (no UNAVAILABLE, no DEADLINE_EXCEEDED except the calls
// meant to hit the frozen node); every envelope was delivered exactly once;
// and each node's ledger holds exactly the entries the calls made — the same
// count per action and outcome, each request id exactly as often as its call
// records — and its export verifies against the roster.
//
// How the test counts ledger entries (server/cases/case_service.cc,
// server/federation/referral_service.cc, server/federation/exchange.cc, server/node/node.cc):
// - Every CaseService, AuditService and ReferralService call records one
//   event, allowed or refused (a refused role too), except that ListCases
//   records one per case returned and ListInbox one per referral listed, or
//   one when there is none. Outcome: OK → allowed; PERMISSION_DENIED,
//   INVALID_ARGUMENT, UNAUTHENTICATED → denied; other codes → error.
// - NodeService (Whoami, Status, PushRoster), PeerService and health checks
//   record nothing when allowed; refused, they record one "auth.denied".
// - Each envelope a node sends records "envelope.receive" once at the receiver
//   (a redelivery returns the first receipt and records nothing) and
//   "envelope.receipt" once at the sender.
// - Every caller holds a configured identity: a refused certificate records
//   "auth.refused" once per call or once per connection depending on how the
//   node resolves identities, which an exact count cannot rely on.
// - Calls to the frozen node record nothing (Whoami, Status, health), so the
//   ones its freeze cuts off leave its ledger exact.
// - The window is [size before the load, size after it), both read with
//   GetCheckpoint, whose answer counts its own entry: the first one's entry is
//   outside the window, the last one's inside.
//
// Scale with CORRIDOR_STRESS_SECONDS (load duration, default 4) and
// CORRIDOR_STRESS_IN_FLIGHT (calls in flight on the shared channel, default 32;
// the other channels keep a quarter of it), e.g. smaller under sanitizers.
// The last test is issue 8's report as it was filed: 32 CreateCase calls in
// flight on one channel (always 32; its duration scales).
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <iostream>
#include <memory>
#include <set>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "client/lib/grpc_util.h"
#include "corridor/v1/case.grpc.pb.h"
#include "corridor/v1/federation.grpc.pb.h"
#include "corridor/v1/node.grpc.pb.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "gtest/gtest.h"
#include "ledger/crypto/crypto.h"
#include "server/common/edge.h"
#include "tests/testing/federation.h"
#include "tests/testing/load.h"
#include "tests/testing/process.h"
#include "tests/testing/status_matchers.h"

namespace corridor {
namespace {

using grpc::StatusCode;
using testing::BinaryPath;
using testing::CallDone;
using testing::CallStarter;
using testing::CommandResult;
using testing::LoadOptions;
using testing::OutcomeTally;
using testing::RunCommand;
using testing::StartUnaryCall;
using testing::Subprocess;
using testing::WeightedMix;

constexpr char kUnion[] = "union-sg";
constexpr char kMinistry[] = "ministry-id";
constexpr char kInspectorate[] = "inspectorate-sg";
constexpr char kAgreement[] = "test-agreement";
constexpr char kReferralPurpose[] = "case-referral";

// Generous: a call to a live node that needs this long is a failure anyway,
// and a deadline that fires on a live node would leave its ledger entry
// uncounted. Calls to the frozen node use kFrozenTimeout.
constexpr absl::Duration kCallTimeout = absl::Seconds(60);
constexpr absl::Duration kFrozenTimeout = absl::Milliseconds(500);
// Entries per Export call when the ledger is verified at the end.
constexpr uint64_t kExportChunk = 4000;

// An Export call (a stream of pieces) as the unary load machinery sees it: the
// pieces joined into `out`, then `done` with the status. Deletes itself.
class ExportReader : public grpc::ClientReadReactor<v1::ExportResponse> {
 public:
  ExportReader(v1::AuditService::Stub* stub, grpc::ClientContext* ctx, const v1::ExportRequest* req,
               v1::ExportResponse* out, std::function<void(grpc::Status)> done)
      : out_(out), done_(std::move(done)) {
    stub->async()->Export(ctx, req, this);
    StartRead(&piece_);
    StartCall();
  }
  void OnReadDone(bool ok) override {
    if (!ok) return;
    out_->mutable_export_()->append(piece_.export_());
    StartRead(&piece_);
  }
  void OnDone(const grpc::Status& s) override {
    done_(s);
    delete this;
  }

 private:
  v1::ExportResponse* out_;
  v1::ExportResponse piece_;
  std::function<void(grpc::Status)> done_;
};

int EnvInt(const char* name, int fallback) {
  const char* v = std::getenv(name);
  int n = 0;
  return v != nullptr && absl::SimpleAtoi(v, &n) && n > 0 ? n : fallback;
}
absl::Duration LoadDuration() { return absl::Seconds(EnvInt("CORRIDOR_STRESS_SECONDS", 4)); }
int SharedChannelInFlight() { return EnvInt("CORRIDOR_STRESS_IN_FLIGHT", 32); }

// Whether every thread of `pid` has stopped (SIGSTOP is delivered
// asynchronously: a thread may still finish a call after kill returns).
bool WaitUntilStopped(pid_t pid) {
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (absl::Now() < deadline) {
    bool all_stopped = true;
    const std::string tasks = absl::StrCat("/proc/", pid, "/task");
    for (const auto& task : std::filesystem::directory_iterator(tasks)) {
      // "pid (comm) S ...": the state follows the last ')'.
      const std::string stat = ReadFileToString(task.path().string() + "/stat").value_or("");
      const size_t paren = stat.rfind(')');
      if (paren == std::string::npos || paren + 2 >= stat.size() || stat[paren + 2] != 'T') {
        all_stopped = false;
      }
    }
    if (all_stopped) return true;
    absl::SleepFor(absl::Milliseconds(5));
  }
  return false;
}

v1::AccessOutcome OutcomeOf(StatusCode code) {
  switch (code) {
    case StatusCode::OK:
      return v1::ACCESS_OUTCOME_ALLOWED;
    case StatusCode::PERMISSION_DENIED:
    case StatusCode::UNAUTHENTICATED:
    case StatusCode::INVALID_ARGUMENT:
      return v1::ACCESS_OUTCOME_DENIED;
    default:
      return v1::ACCESS_OUTCOME_ERROR;
  }
}

std::string ActionKey(const std::string& action, v1::AccessOutcome outcome) {
  return absl::StrCat(action, " ", v1::AccessOutcome_Name(outcome));
}

// The ledger entries one node should have, as the test's calls finish. Thread-safe.
class LedgerAccount {
 public:
  void Expect(const std::string& action, v1::AccessOutcome outcome, uint64_t n) {
    absl::MutexLock lock(&mu_);
    if (n > 0) by_action_[ActionKey(action, outcome)] += n;
  }
  // The ledger holds each request id's digest, never the id (server/common/edge.h).
  void ExpectRequest(const std::string& request_id, uint64_t n) {
    absl::MutexLock lock(&mu_);
    by_request_[RequestIdForLedger(request_id)] += n;
  }
  std::map<std::string, uint64_t> by_action() const {
    absl::MutexLock lock(&mu_);
    return by_action_;
  }
  std::map<std::string, uint64_t> by_request() const {
    absl::MutexLock lock(&mu_);
    return by_request_;
  }

 private:
  mutable absl::Mutex mu_;
  std::map<std::string, uint64_t> by_action_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, uint64_t> by_request_ ABSL_GUARDED_BY(mu_);
};

// "a: 3 vs 4" for every key where the two maps differ.
std::string Differences(const std::map<std::string, uint64_t>& want,
                        const std::map<std::string, uint64_t>& got, size_t max_lines = 30) {
  std::set<std::string> keys;
  for (const auto& [k, v] : want) keys.insert(k);
  for (const auto& [k, v] : got) keys.insert(k);
  std::vector<std::string> lines;
  for (const std::string& k : keys) {
    const uint64_t w = want.count(k) ? want.at(k) : 0, g = got.count(k) ? got.at(k) : 0;
    if (w != g && lines.size() < max_lines) {
      lines.push_back(absl::StrCat("  ", k, ": expected ", w, ", ledger has ", g));
    }
  }
  return absl::StrJoin(lines, "\n");
}

struct TestNode {
  std::string org;
  std::unique_ptr<Subprocess> process;
  LedgerAccount account;
  uint64_t ledger_start = 0;
  std::map<std::string, std::shared_ptr<grpc::Channel>> channels;  // by user
};

class StressTest : public ::testing::Test {
 protected:
  // Users per org: name → roles.
  const std::map<std::string, std::map<std::string, std::vector<std::string>>> kUsers = {
      {kUnion,
       {{"cw1", {"caseworker"}},
        {"cw2", {"caseworker"}},
        {"cw3", {"caseworker"}},
        {"cw4", {"caseworker"}},
        {"pros", {"prosecutor"}},
        {"aud", {"auditor"}},
        {"appr", {"approver"}},
        {"adm", {"admin"}}}},
      {kMinistry, {{"cw1", {"caseworker"}}, {"aud", {"auditor"}}}},
      {kInspectorate, {{"cw1", {"caseworker"}}, {"aud", {"auditor"}}}},
  };

  void SetUp() override {
    // Unbuffered, so that a run cut off by ctest's timeout still shows how far it got.
    std::cout << std::unitbuf;
    fed_.AddOrg(kUnion, v1::ORG_KIND_UNION);
    fed_.AddOrg(kMinistry, v1::ORG_KIND_MINISTRY);
    fed_.AddOrg(kInspectorate, v1::ORG_KIND_INSPECTORATE);
    for (const auto& [org, users] : kUsers) {
      configs_[org] = fed_.WriteNodeConfig(org, users);
      auto node = std::make_unique<TestNode>();
      node->org = org;
      for (const auto& [user, roles] : users) {
        const std::string prefix = fed_.IssueUser(org, user);
        TlsIdentity id{ReadFileToString(prefix + ".crt").value(),
                       ReadFileToString(prefix + ".key").value(), fed_.org(org).ca.cert_pem};
        node->channels[user] = testing::MakeDedicatedChannel(id, fed_.org(org).endpoint());
      }
      nodes_[org] = std::move(node);
    }
  }

  void TearDown() override {
    for (auto& [org, node] : nodes_) {
      if (node->process && node->process->running()) kill(node->process->pid(), SIGCONT);
    }
  }

  void StartNode(const std::string& org) {
    nodes_[org]->process = std::make_unique<Subprocess>(
        std::vector<std::string>{BinaryPath("corridord"), "--config", configs_[org]},
        fed_.org(org).dir + "/corridord.log");
  }

  CommandResult Ctl(const std::string& org, std::vector<std::string> args) {
    const std::string prefix = fed_.org(org).dir + "/cw1";
    std::vector<std::string> argv = {BinaryPath("corridorctl")};
    argv.insert(argv.end(), args.begin(), args.end());
    for (const std::string& a :
         {std::string("--node"), fed_.org(org).endpoint(), std::string("--cert"), prefix + ".crt",
          std::string("--key"), prefix + ".key", std::string("--ca"),
          fed_.org(org).dir + "/ca.crt"}) {
      argv.push_back(a);
    }
    return RunCommand(argv);
  }

  TestNode& node(const std::string& org) { return *nodes_.at(org); }
  // One line per phase with the seconds since the test began (see SetUp: unbuffered).
  void Phase(const std::string& what) {
    std::cout << "[" << absl::ToDoubleSeconds(absl::Now() - began_) << " s] " << what << "\n";
  }
  std::shared_ptr<grpc::Channel> channel(const std::string& org, const std::string& user) {
    return node(org).channels.at(user);
  }

  static std::unique_ptr<grpc::ClientContext> Ctx() {
    auto ctx = std::make_unique<grpc::ClientContext>();
    ctx->set_deadline(absl::ToChronoTime(absl::Now() + kCallTimeout));
    return ctx;
  }
  std::string NewRequestId() { return absl::StrCat("stress-", next_request_.fetch_add(1)); }

  static v1::CreateCaseRequest NewCase(const std::string& worker) {
    v1::CreateCaseRequest req;
    v1::Case* c = req.mutable_case_();
    c->set_category(v1::CASE_CATEGORY_WAGE_THEFT);
    c->set_sector("construction");
    c->set_origin_country("ID");
    c->set_destination_country("SG");
    c->mutable_worker()->set_name(worker);
    c->set_narrative("wages withheld for three months");
    return req;
  }

  // A case created before the load (its entries fall before the window).
  std::string SeedCase(const std::string& org, const std::string& worker) {
    v1::Case c;
    grpc::Status s =
        v1::CaseService::NewStub(channel(org, "cw1"))->CreateCase(Ctx().get(), NewCase(worker), &c);
    EXPECT_TRUE(s.ok()) << org << ": " << s.error_message();
    return c.id();
  }

  // The auditor's view of the ledger size; the call itself is one entry, inside the size.
  uint64_t LedgerSize(const std::string& org) {
    v1::CheckpointResponse cp;
    grpc::Status s =
        v1::AuditService::NewStub(channel(org, "aud"))->GetCheckpoint(Ctx().get(), {}, &cp);
    EXPECT_TRUE(s.ok()) << org << ": " << s.error_message();
    return cp.size();
  }

  // Counts `action` events in `org`'s ledger with QueryEvents (accounted).
  uint64_t CountEvents(const std::string& org, const std::string& action) {
    auto stub = v1::AuditService::NewStub(channel(org, "aud"));
    uint64_t n = 0;
    std::string token;
    do {
      v1::QueryEventsRequest req;
      req.set_action(action);
      req.set_page_size(1000);
      req.set_page_token(token);
      req.set_request_id(NewRequestId());
      v1::QueryEventsResponse resp;
      grpc::Status s = stub->QueryEvents(Ctx().get(), req, &resp);
      node(org).account.Expect("audit.query", OutcomeOf(s.error_code()), 1);
      node(org).account.ExpectRequest(req.request_id(), 1);
      tally_.Add(absl::StrCat(org, " AuditService/QueryEvents (drain check)"), s.error_code());
      if (!s.ok()) {
        ADD_FAILURE() << org << " QueryEvents: " << s.error_message();
        return n;
      }
      n += resp.events_size();
      token = resp.next_page_token();
    } while (!token.empty());
    return n;
  }

  // One kind of unary call at `org`: `method` names it in the tally, `action`
  // is its ledger action ("" if it records nothing), `allowed` the status
  // codes it may end with. `make` builds the request from a fresh request id
  // (and says whether the request carries it); `entries` says how many ledger
  // entries a finished call made (1 unless given); `on_ok` sees a successful response.
  template <typename Request, typename Response, typename AsyncMethod>
  CallStarter Unary(const std::string& org, const std::string& method, const std::string& action,
                    std::set<StatusCode> allowed, AsyncMethod async_method,
                    std::function<Request(const std::string& request_id)> make,
                    bool carries_request_id,
                    std::function<uint64_t(const Response&)> entries_when_ok = nullptr,
                    std::function<void(const Response&)> on_ok = nullptr,
                    absl::Duration timeout = kCallTimeout) {
    return [=](uint64_t, CallDone done) {
      const std::string request_id = NewRequestId();
      StartUnaryCall<Request, Response>(async_method, make(request_id), timeout,
                                        [=](const grpc::Status& s, const Response& resp) {
                                          Finished(
                                              org, method, action, allowed, s,
                                              s.ok() && entries_when_ok ? entries_when_ok(resp) : 1,
                                              carries_request_id ? request_id : "");
                                          if (s.ok() && on_ok) on_ok(resp);
                                          done(s);
                                        });
    };
  }

  // Tallies one finished call and the entries it made.
  void Finished(const std::string& org, const std::string& method, const std::string& action,
                const std::set<StatusCode>& allowed, const grpc::Status& s, uint64_t entries,
                const std::string& request_id) {
    tally_.Add(absl::StrCat(org, " ", method), s.error_code());
    if (!allowed.count(s.error_code())) {
      absl::MutexLock lock(&unexpected_mu_);
      if (unexpected_.size() < 20) {
        unexpected_.push_back(absl::StrCat(org, " ", method, ": ",
                                           testing::StatusCodeName(s.error_code()), " ",
                                           s.error_message()));
      }
      ++unexpected_count_;
    }
    if (action.empty()) return;
    node(org).account.Expect(action, OutcomeOf(s.error_code()), entries);
    if (!request_id.empty()) node(org).account.ExpectRequest(request_id, entries);
  }

  // Calls every user may make that record nothing: Whoami, Status, health,
  // each with `weight` in a mix.
  std::vector<std::pair<int, CallStarter>> Unrecorded(const std::string& org,
                                                      const std::string& user,
                                                      std::set<StatusCode> allowed,
                                                      absl::Duration timeout = kCallTimeout,
                                                      int weight = 1) {
    auto node_stub =
        std::shared_ptr<v1::NodeService::Stub>(v1::NodeService::NewStub(channel(org, user)));
    auto health = std::shared_ptr<grpc::health::v1::Health::Stub>(
        grpc::health::v1::Health::NewStub(channel(org, user)));
    return {
        {weight, Unary<v1::WhoamiRequest, v1::WhoamiResponse>(
                     org, "NodeService/Whoami", "", allowed,
                     [node_stub](auto* c, auto* q, auto* r, auto cb) {
                       node_stub->async()->Whoami(c, q, r, std::move(cb));
                     },
                     [](const std::string&) { return v1::WhoamiRequest(); }, false, nullptr,
                     nullptr, timeout)},
        {weight, Unary<v1::StatusRequest, v1::StatusResponse>(
                     org, "NodeService/Status", "", allowed,
                     [node_stub](auto* c, auto* q, auto* r, auto cb) {
                       node_stub->async()->Status(c, q, r, std::move(cb));
                     },
                     [](const std::string&) { return v1::StatusRequest(); }, false, nullptr,
                     nullptr, timeout)},
        {weight, Unary<grpc::health::v1::HealthCheckRequest, grpc::health::v1::HealthCheckResponse>(
                     org, "Health/Check", "", allowed,
                     [health](auto* c, auto* q, auto* r, auto cb) {
                       health->async()->Check(c, q, r, std::move(cb));
                     },
                     [](const std::string&) { return grpc::health::v1::HealthCheckRequest(); },
                     false, nullptr, nullptr, timeout)},
    };
  }

  testing::TestFederation fed_;
  const absl::Time began_ = absl::Now();
  std::map<std::string, std::string> configs_;
  std::map<std::string, std::unique_ptr<TestNode>> nodes_;
  std::atomic<uint64_t> next_request_{0};
  OutcomeTally tally_;
  absl::Mutex unexpected_mu_;
  std::vector<std::string> unexpected_ ABSL_GUARDED_BY(unexpected_mu_);
  uint64_t unexpected_count_ ABSL_GUARDED_BY(unexpected_mu_) = 0;
};

// An evidence upload through the callback API: header, two data messages, done.
class EvidenceUploadCall : public grpc::ClientWriteReactor<v1::AddEvidenceRequest> {
 public:
  EvidenceUploadCall(v1::CaseService::Stub* stub, const std::string& case_id,
                     const std::string& request_id, size_t size,
                     std::function<void(const grpc::Status&)> done)
      : done_(std::move(done)) {
    context_.set_deadline(absl::ToChronoTime(absl::Now() + kCallTimeout));
    auto* h = messages_.emplace_back().mutable_header();
    h->set_case_id(case_id);
    h->set_file_name("payslip.txt");
    h->set_media_type("text/plain");
    h->set_request_id(request_id);
    messages_.emplace_back().set_data(std::string(size / 2, 'a'));
    messages_.emplace_back().set_data(std::string(size - size / 2, 'b'));
    stub->async()->AddEvidence(&context_, &item_, this);
    StartWrite(&messages_[0]);
    StartCall();
  }

  void OnWriteDone(bool ok) override {
    // Not ok: the node already answered (a refusal); OnDone brings its status.
    if (!ok) return;
    if (++next_ < messages_.size()) {
      StartWrite(&messages_[next_]);
    } else {
      StartWritesDone();
    }
  }
  void OnDone(const grpc::Status& s) override {
    done_(s);
    delete this;
  }

 private:
  grpc::ClientContext context_;
  std::vector<v1::AddEvidenceRequest> messages_;
  size_t next_ = 0;
  v1::EvidenceItem item_;
  std::function<void(const grpc::Status&)> done_;
};

TEST_F(StressTest,
       ManyCallersManyCallsInFlightWithAFrozenPeerLeaveEveryNodeAliveAndEveryCallAudited) {
  for (const auto& [org, n] : nodes_) StartNode(org);
  for (const auto& [org, n] : nodes_) {
    CommandResult r = Ctl(org, {"health", "--wait", "60", "--require-peers"});
    ASSERT_EQ(r.exit_code, 0) << org << ": " << r.out << r.err << node(org).process->Log();
  }

  Phase("nodes serving");
  // Cases to work on, made before the window opens.
  std::vector<std::string> union_cases, ministry_cases, erasable;
  for (int i = 0; i < 16; ++i) union_cases.push_back(SeedCase(kUnion, absl::StrCat("Ani ", i)));
  for (int i = 0; i < 8; ++i) erasable.push_back(SeedCase(kUnion, absl::StrCat("Budi ", i)));
  for (int i = 0; i < 8; ++i)
    ministry_cases.push_back(SeedCase(kMinistry, absl::StrCat("Citra ", i)));
  ASSERT_FALSE(HasFailure());
  for (auto& [org, n] : nodes_) n->ledger_start = LedgerSize(org);
  const uint64_t union_start = node(kUnion).ledger_start;
  ASSERT_GT(union_start, 24u);  // the seeded cases at least

  // Envelopes sent, by sender and recipient.
  absl::Mutex sent_mu;
  std::map<std::pair<std::string, std::string>, uint64_t> sent;
  auto count_sent = [&](const std::string& from, const std::string& to, uint64_t n) {
    absl::MutexLock lock(&sent_mu);
    sent[{from, to}] += n;
  };
  // Referrals ministry-id has received and not yet handed to a Decide call.
  absl::Mutex inbox_mu;
  std::deque<std::string> undecided;
  std::set<std::string> seen_referrals;
  std::atomic<size_t> next_erase{0};

  const std::set<StatusCode> kOk = {StatusCode::OK};
  const std::set<StatusCode> kOkOrBusy = {StatusCode::OK, StatusCode::ABORTED};
  const std::set<StatusCode> kDenied = {StatusCode::PERMISSION_DENIED};
  auto pick = [](const std::vector<std::string>& ids, uint64_t salt) {
    return ids[(salt * 7919) % ids.size()];
  };
  std::atomic<uint64_t> salt{0};

  // ---- union-sg -----------------------------------------------------------------
  // `cheap_weight`: the weight of calls that record nothing; they finish
  // fastest, so they keep the most calls starting on a connection.
  auto caseworker_mix = [&](const std::string& user, int cheap_weight) {
    auto cases =
        std::shared_ptr<v1::CaseService::Stub>(v1::CaseService::NewStub(channel(kUnion, user)));
    auto referrals = std::shared_ptr<v1::ReferralService::Stub>(
        v1::ReferralService::NewStub(channel(kUnion, user)));
    auto audit =
        std::shared_ptr<v1::AuditService::Stub>(v1::AuditService::NewStub(channel(kUnion, user)));
    std::vector<std::pair<int, CallStarter>> mix = {
        {4, Unary<v1::CreateCaseRequest, v1::Case>(
                kUnion, "CaseService/CreateCase", "case.create", kOk,
                [cases](auto* c, auto* q, auto* r, auto cb) {
                  cases->async()->CreateCase(c, q, r, std::move(cb));
                },
                [](const std::string& rid) {
                  auto req = NewCase("Dewi");
                  req.set_request_id(rid);
                  return req;
                },
                true)},
        {4, Unary<v1::GetCaseRequest, v1::Case>(
                kUnion, "CaseService/GetCase", "case.get", kOk,
                [cases](auto* c, auto* q, auto* r, auto cb) {
                  cases->async()->GetCase(c, q, r, std::move(cb));
                },
                [&](const std::string& rid) {
                  v1::GetCaseRequest req;
                  req.set_id(pick(union_cases, salt++));
                  req.set_purpose("case-handling");
                  req.set_request_id(rid);
                  return req;
                },
                true)},
        {1,
         Unary<v1::ListCasesRequest, v1::ListCasesResponse>(
             kUnion, "CaseService/ListCases", "case.list", kOk,
             [cases](auto* c, auto* q, auto* r, auto cb) {
               cases->async()->ListCases(c, q, r, std::move(cb));
             },
             [](const std::string& rid) {
               v1::ListCasesRequest req;
               req.set_page_size(5);
               req.set_request_id(rid);
               return req;
             },
             true,
             [](const v1::ListCasesResponse& r) { return std::max<uint64_t>(1, r.cases_size()); })},
        {2, Unary<v1::UpdateCaseRequest, v1::Case>(
                kUnion, "CaseService/UpdateCase", "case.update", kOkOrBusy,
                [cases](auto* c, auto* q, auto* r, auto cb) {
                  cases->async()->UpdateCase(c, q, r, std::move(cb));
                },
                [&](const std::string& rid) {
                  v1::UpdateCaseRequest req;
                  req.set_id(pick(union_cases, salt++));
                  req.set_narrative("employer contacted");
                  req.set_request_id(rid);
                  return req;
                },
                true)},
        {2, Unary<v1::ListEvidenceRequest, v1::ListEvidenceResponse>(
                kUnion, "CaseService/ListEvidence", "evidence.list", kOk,
                [cases](auto* c, auto* q, auto* r, auto cb) {
                  cases->async()->ListEvidence(c, q, r, std::move(cb));
                },
                [&](const std::string& rid) {
                  v1::ListEvidenceRequest req;
                  req.set_case_id(pick(union_cases, salt++));
                  req.set_purpose("case-handling");
                  req.set_request_id(rid);
                  return req;
                },
                true)},
        {1,
         [&, cases](uint64_t, CallDone done) {
           const std::string rid = NewRequestId();
           new EvidenceUploadCall(cases.get(), pick(union_cases, salt++), rid, 3000,
                                  [this, rid, done](const grpc::Status& s) {
                                    Finished(kUnion, "CaseService/AddEvidence", "evidence.add",
                                             {StatusCode::OK, StatusCode::ABORTED}, s, 1, rid);
                                    done(s);
                                  });
         }},
        {1, Unary<v1::ReferCaseRequest, v1::ReferCaseResponse>(
                kUnion, "ReferralService/Refer to ministry-id", "referral.send", kOkOrBusy,
                [referrals](auto* c, auto* q, auto* r, auto cb) {
                  referrals->async()->Refer(c, q, r, std::move(cb));
                },
                [&](const std::string& rid) {
                  v1::ReferCaseRequest req;
                  req.set_case_id(pick(union_cases, salt++));
                  req.set_to_org(kMinistry);
                  req.set_agreement(kAgreement);
                  req.set_purpose(kReferralPurpose);
                  req.set_request_id(rid);
                  return req;
                },
                true, nullptr,
                [&](const v1::ReferCaseResponse&) { count_sent(kUnion, kMinistry, 1); })},
        {1, Unary<v1::ReferCaseRequest, v1::ReferCaseResponse>(
                kUnion, "ReferralService/Refer to inspectorate-sg", "referral.send", kOkOrBusy,
                [referrals](auto* c, auto* q, auto* r, auto cb) {
                  referrals->async()->Refer(c, q, r, std::move(cb));
                },
                [&](const std::string& rid) {
                  v1::ReferCaseRequest req;
                  req.set_case_id(pick(union_cases, salt++));
                  req.set_to_org(kInspectorate);
                  req.set_agreement(kAgreement);
                  req.set_purpose(kReferralPurpose);
                  req.set_request_id(rid);
                  return req;
                },
                true, nullptr,
                [&](const v1::ReferCaseResponse&) { count_sent(kUnion, kInspectorate, 1); })},
        {1, Unary<v1::PostUpdateRequest, v1::PostUpdateResponse>(
                kUnion, "ReferralService/PostUpdate", "case.post_update", kOkOrBusy,
                [referrals](auto* c, auto* q, auto* r, auto cb) {
                  referrals->async()->PostUpdate(c, q, r, std::move(cb));
                },
                [&](const std::string& rid) {
                  v1::PostUpdateRequest req;
                  req.set_case_id(pick(union_cases, salt++));
                  req.set_outcome("fees-refunded");
                  req.set_note("agency repaid part of the fees");
                  req.set_request_id(rid);
                  return req;
                },
                true, nullptr,
                // Only ministry-id accepts referrals, so every linked peer is ministry-id.
                [&](const v1::PostUpdateResponse& r) {
                  count_sent(kUnion, kMinistry, r.envelope_ids_size());
                })},
        {1, Unary<v1::ListOutboxRequest, v1::ListOutboxResponse>(
                kUnion, "ReferralService/ListOutbox", "outbox.view", kOk,
                [referrals](auto* c, auto* q, auto* r, auto cb) {
                  referrals->async()->ListOutbox(c, q, r, std::move(cb));
                },
                [](const std::string&) { return v1::ListOutboxRequest(); }, false)},
        // Refused: the ledger is for auditors.
        {1, Unary<v1::QueryEventsRequest, v1::QueryEventsResponse>(
                kUnion, "AuditService/QueryEvents by a caseworker", "audit.query", kDenied,
                [audit](auto* c, auto* q, auto* r, auto cb) {
                  audit->async()->QueryEvents(c, q, r, std::move(cb));
                },
                [](const std::string& rid) {
                  v1::QueryEventsRequest req;
                  req.set_request_id(rid);
                  return req;
                },
                true)},
    };
    for (auto& u : Unrecorded(kUnion, user, kOk, kCallTimeout, cheap_weight)) {
      mix.push_back(std::move(u));
    }
    return WeightedMix(std::move(mix));
  };

  auto prosecutor_mix = [&]() {
    auto cases =
        std::shared_ptr<v1::CaseService::Stub>(v1::CaseService::NewStub(channel(kUnion, "pros")));
    std::vector<std::pair<int, CallStarter>> mix = {
        {3, Unary<v1::GetCaseRequest, v1::Case>(
                kUnion, "CaseService/GetCase", "case.get", kOk,
                [cases](auto* c, auto* q, auto* r, auto cb) {
                  cases->async()->GetCase(c, q, r, std::move(cb));
                },
                [&](const std::string& rid) {
                  v1::GetCaseRequest req;
                  req.set_id(pick(union_cases, salt++));
                  req.set_purpose("prosecution");
                  req.set_request_id(rid);
                  return req;
                },
                true)},
        {1,
         Unary<v1::ListCasesRequest, v1::ListCasesResponse>(
             kUnion, "CaseService/ListCases", "case.list", kOk,
             [cases](auto* c, auto* q, auto* r, auto cb) {
               cases->async()->ListCases(c, q, r, std::move(cb));
             },
             [](const std::string& rid) {
               v1::ListCasesRequest req;
               req.set_page_size(3);
               req.set_category(v1::CASE_CATEGORY_WAGE_THEFT);
               req.set_request_id(rid);
               return req;
             },
             true,
             [](const v1::ListCasesResponse& r) { return std::max<uint64_t>(1, r.cases_size()); })},
        {1, Unary<v1::ListEvidenceRequest, v1::ListEvidenceResponse>(
                kUnion, "CaseService/ListEvidence", "evidence.list", kOk,
                [cases](auto* c, auto* q, auto* r, auto cb) {
                  cases->async()->ListEvidence(c, q, r, std::move(cb));
                },
                [&](const std::string& rid) {
                  v1::ListEvidenceRequest req;
                  req.set_case_id(pick(union_cases, salt++));
                  req.set_purpose("prosecution");
                  req.set_request_id(rid);
                  return req;
                },
                true)},
        // Refused: prosecutors read, they do not write.
        {1, Unary<v1::CreateCaseRequest, v1::Case>(
                kUnion, "CaseService/CreateCase by a prosecutor", "case.create", kDenied,
                [cases](auto* c, auto* q, auto* r, auto cb) {
                  cases->async()->CreateCase(c, q, r, std::move(cb));
                },
                [](const std::string& rid) {
                  auto req = NewCase("Eka");
                  req.set_request_id(rid);
                  return req;
                },
                true)},
        {1, Unary<v1::UpdateCaseRequest, v1::Case>(
                kUnion, "CaseService/UpdateCase by a prosecutor", "case.update", kDenied,
                [cases](auto* c, auto* q, auto* r, auto cb) {
                  cases->async()->UpdateCase(c, q, r, std::move(cb));
                },
                [&](const std::string& rid) {
                  v1::UpdateCaseRequest req;
                  req.set_id(pick(union_cases, salt++));
                  req.set_narrative("not mine to write");
                  req.set_request_id(rid);
                  return req;
                },
                true)},
    };
    for (auto& u : Unrecorded(kUnion, "pros", kOk)) mix.push_back(std::move(u));
    return WeightedMix(std::move(mix));
  };

  auto auditor_mix = [&]() {
    auto audit =
        std::shared_ptr<v1::AuditService::Stub>(v1::AuditService::NewStub(channel(kUnion, "aud")));
    auto cases =
        std::shared_ptr<v1::CaseService::Stub>(v1::CaseService::NewStub(channel(kUnion, "aud")));
    std::vector<std::pair<int, CallStarter>> mix = {
        {3, Unary<v1::QueryEventsRequest, v1::QueryEventsResponse>(
                kUnion, "AuditService/QueryEvents", "audit.query", kOk,
                [audit](auto* c, auto* q, auto* r, auto cb) {
                  audit->async()->QueryEvents(c, q, r, std::move(cb));
                },
                [&](const std::string& rid) {
                  v1::QueryEventsRequest req;
                  if (salt++ % 2 == 0) {
                    req.set_case_id(pick(union_cases, salt++));
                  } else {
                    req.set_action("case.create");
                  }
                  req.set_page_size(20);
                  req.set_request_id(rid);
                  return req;
                },
                true)},
        {2, Unary<v1::GetCheckpointRequest, v1::CheckpointResponse>(
                kUnion, "AuditService/GetCheckpoint", "audit.checkpoint", kOk,
                [audit](auto* c, auto* q, auto* r, auto cb) {
                  audit->async()->GetCheckpoint(c, q, r, std::move(cb));
                },
                [](const std::string&) { return v1::GetCheckpointRequest(); }, false)},
        {2, Unary<v1::InclusionProofRequest, v1::InclusionProofResponse>(
                kUnion, "AuditService/GetInclusionProof", "audit.prove", kOk,
                [audit](auto* c, auto* q, auto* r, auto cb) {
                  audit->async()->GetInclusionProof(c, q, r, std::move(cb));
                },
                [&](const std::string&) {
                  v1::InclusionProofRequest req;
                  req.set_index((salt++ * 31) % union_start);
                  return req;
                },
                false)},
        {1, Unary<v1::ConsistencyProofRequest, v1::ConsistencyProofResponse>(
                kUnion, "AuditService/GetConsistencyProof", "audit.consistency", kOk,
                [audit](auto* c, auto* q, auto* r, auto cb) {
                  audit->async()->GetConsistencyProof(c, q, r, std::move(cb));
                },
                [&](const std::string&) {
                  v1::ConsistencyProofRequest req;
                  req.set_old_size(union_start / 2);
                  return req;
                },
                false)},
        {1, Unary<v1::GetEntriesRequest, v1::GetEntriesResponse>(
                kUnion, "AuditService/GetEntries", "audit.entries", kOk,
                [audit](auto* c, auto* q, auto* r, auto cb) {
                  audit->async()->GetEntries(c, q, r, std::move(cb));
                },
                [&](const std::string&) {
                  v1::GetEntriesRequest req;
                  req.set_begin(union_start / 3);
                  req.set_end(union_start);
                  return req;
                },
                false)},
        // The ledger as it stood before the load, while everything else goes on.
        {1, Unary<v1::ExportRequest, v1::ExportResponse>(
                kUnion, "AuditService/Export", "audit.export", kOk,
                [audit](auto* c, auto* q, auto* r, auto cb) {
                  new ExportReader(audit.get(), c, q, r, std::move(cb));
                },
                [&](const std::string&) {
                  v1::ExportRequest req;
                  req.set_end(union_start);
                  return req;
                },
                false)},
        // Refused: auditors read no case content.
        {1, Unary<v1::GetCaseRequest, v1::Case>(
                kUnion, "CaseService/GetCase by an auditor", "case.get", kDenied,
                [cases](auto* c, auto* q, auto* r, auto cb) {
                  cases->async()->GetCase(c, q, r, std::move(cb));
                },
                [&](const std::string& rid) {
                  v1::GetCaseRequest req;
                  req.set_id(pick(union_cases, salt++));
                  req.set_purpose("audit");
                  req.set_request_id(rid);
                  return req;
                },
                true)},
    };
    for (auto& u : Unrecorded(kUnion, "aud", kOk)) mix.push_back(std::move(u));
    return WeightedMix(std::move(mix));
  };

  auto approver_mix = [&]() {
    auto cases =
        std::shared_ptr<v1::CaseService::Stub>(v1::CaseService::NewStub(channel(kUnion, "appr")));
    auto referrals = std::shared_ptr<v1::ReferralService::Stub>(
        v1::ReferralService::NewStub(channel(kUnion, "appr")));
    CallStarter erase = Unary<v1::EraseCaseRequest, v1::EraseCaseResponse>(
        kUnion, "CaseService/EraseCase", "case.erase", kOk,
        [cases](auto* c, auto* q, auto* r, auto cb) {
          cases->async()->EraseCase(c, q, r, std::move(cb));
        },
        [&](const std::string& rid) {
          v1::EraseCaseRequest req;
          req.set_id(erasable[next_erase++]);
          req.set_reason("consent withdrawn");
          req.set_request_id(rid);
          return req;
        },
        true);
    auto unrecorded = Unrecorded(kUnion, "appr", kOk);
    std::vector<std::pair<int, CallStarter>> mix = {
        // Each erasable case once; then a Whoami instead.
        {1,
         [&, erase, whoami = unrecorded[0].second](uint64_t n, CallDone done) {
           if (next_erase.load() < erasable.size()) return erase(n, std::move(done));
           whoami(n, std::move(done));
         }},
        // Refused: approvers erase, they do not refer.
        {1, Unary<v1::ReferCaseRequest, v1::ReferCaseResponse>(
                kUnion, "ReferralService/Refer by an approver", "referral.send", kDenied,
                [referrals](auto* c, auto* q, auto* r, auto cb) {
                  referrals->async()->Refer(c, q, r, std::move(cb));
                },
                [&](const std::string& rid) {
                  v1::ReferCaseRequest req;
                  req.set_case_id(pick(union_cases, salt++));
                  req.set_to_org(kMinistry);
                  req.set_agreement(kAgreement);
                  req.set_purpose(kReferralPurpose);
                  req.set_request_id(rid);
                  return req;
                },
                true)},
    };
    for (auto& u : unrecorded) mix.push_back(std::move(u));
    return WeightedMix(std::move(mix));
  };

  auto admin_mix = [&]() {
    auto cases =
        std::shared_ptr<v1::CaseService::Stub>(v1::CaseService::NewStub(channel(kUnion, "adm")));
    auto audit =
        std::shared_ptr<v1::AuditService::Stub>(v1::AuditService::NewStub(channel(kUnion, "adm")));
    auto peer =
        std::shared_ptr<v1::PeerService::Stub>(v1::PeerService::NewStub(channel(kUnion, "adm")));
    std::vector<std::pair<int, CallStarter>> mix = {
        // Refused: admins read no case content and no ledger.
        {1, Unary<v1::ListCasesRequest, v1::ListCasesResponse>(
                kUnion, "CaseService/ListCases by an admin", "case.list", kDenied,
                [cases](auto* c, auto* q, auto* r, auto cb) {
                  cases->async()->ListCases(c, q, r, std::move(cb));
                },
                [](const std::string& rid) {
                  v1::ListCasesRequest req;
                  req.set_request_id(rid);
                  return req;
                },
                true)},
        {1, Unary<v1::GetCheckpointRequest, v1::CheckpointResponse>(
                kUnion, "AuditService/GetCheckpoint by an admin", "audit.checkpoint", kDenied,
                [audit](auto* c, auto* q, auto* r, auto cb) {
                  audit->async()->GetCheckpoint(c, q, r, std::move(cb));
                },
                [](const std::string&) { return v1::GetCheckpointRequest(); }, false)},
        // Refused and recorded as auth.denied: Deliver is for peer nodes.
        {1, Unary<v1::Envelope, v1::Receipt>(
                kUnion, "PeerService/Deliver by a user", "auth.denied", kDenied,
                [peer](auto* c, auto* q, auto* r, auto cb) {
                  peer->async()->Deliver(c, q, r, std::move(cb));
                },
                [](const std::string&) { return v1::Envelope(); }, false)},
    };
    for (auto& u : Unrecorded(kUnion, "adm", kOk)) mix.push_back(std::move(u));
    return WeightedMix(std::move(mix));
  };

  // ---- ministry-id: refers cases to union-sg and decides on what it receives ----
  auto ministry_mix = [&]() {
    auto cases =
        std::shared_ptr<v1::CaseService::Stub>(v1::CaseService::NewStub(channel(kMinistry, "cw1")));
    auto referrals = std::shared_ptr<v1::ReferralService::Stub>(
        v1::ReferralService::NewStub(channel(kMinistry, "cw1")));
    CallStarter list_inbox = Unary<v1::ListInboxRequest, v1::ListInboxResponse>(
        kMinistry, "ReferralService/ListInbox", "referral.view", kOk,
        [referrals](auto* c, auto* q, auto* r, auto cb) {
          referrals->async()->ListInbox(c, q, r, std::move(cb));
        },
        [](const std::string&) { return v1::ListInboxRequest(); }, false,
        [](const v1::ListInboxResponse& r) { return std::max<uint64_t>(1, r.items_size()); },
        [&](const v1::ListInboxResponse& r) {
          absl::MutexLock lock(&inbox_mu);
          for (const auto& item : r.items()) {
            if (seen_referrals.insert(item.referral_id()).second) {
              undecided.push_back(item.referral_id());
            }
          }
        });
    auto decide = [&, referrals](const std::string& referral_id, CallDone done) {
      return Unary<v1::DecideReferralRequest, v1::DecideReferralResponse>(
          kMinistry, "ReferralService/Decide", "referral.accept",
          {StatusCode::OK, StatusCode::ABORTED},
          [referrals](auto* c, auto* q, auto* r, auto cb) {
            referrals->async()->Decide(c, q, r, std::move(cb));
          },
          [referral_id](const std::string& rid) {
            v1::DecideReferralRequest req;
            req.set_referral_id(referral_id);
            req.set_accept(true);
            req.set_request_id(rid);
            return req;
          },
          true, nullptr,
          [&](const v1::DecideReferralResponse&) { count_sent(kMinistry, kUnion, 1); })(
          0, std::move(done));
    };
    std::vector<std::pair<int, CallStarter>> mix = {
        {2, Unary<v1::CreateCaseRequest, v1::Case>(
                kMinistry, "CaseService/CreateCase", "case.create", kOk,
                [cases](auto* c, auto* q, auto* r, auto cb) {
                  cases->async()->CreateCase(c, q, r, std::move(cb));
                },
                [](const std::string& rid) {
                  auto req = NewCase("Fitri");
                  req.set_request_id(rid);
                  return req;
                },
                true)},
        {2, Unary<v1::GetCaseRequest, v1::Case>(
                kMinistry, "CaseService/GetCase", "case.get", kOk,
                [cases](auto* c, auto* q, auto* r, auto cb) {
                  cases->async()->GetCase(c, q, r, std::move(cb));
                },
                [&](const std::string& rid) {
                  v1::GetCaseRequest req;
                  req.set_id(pick(ministry_cases, salt++));
                  req.set_purpose("case-handling");
                  req.set_request_id(rid);
                  return req;
                },
                true)},
        {2, Unary<v1::ReferCaseRequest, v1::ReferCaseResponse>(
                kMinistry, "ReferralService/Refer to union-sg", "referral.send", kOkOrBusy,
                [referrals](auto* c, auto* q, auto* r, auto cb) {
                  referrals->async()->Refer(c, q, r, std::move(cb));
                },
                [&](const std::string& rid) {
                  v1::ReferCaseRequest req;
                  req.set_case_id(pick(ministry_cases, salt++));
                  req.set_to_org(kUnion);
                  req.set_agreement(kAgreement);
                  req.set_purpose(kReferralPurpose);
                  req.set_request_id(rid);
                  return req;
                },
                true, nullptr,
                [&](const v1::ReferCaseResponse&) { count_sent(kMinistry, kUnion, 1); })},
        // A pending referral if there is one, else a look at the inbox.
        {2,
         [&, decide, list_inbox](uint64_t n, CallDone done) {
           std::string referral_id;
           {
             absl::MutexLock lock(&inbox_mu);
             if (!undecided.empty()) {
               referral_id = undecided.front();
               undecided.pop_front();
             }
           }
           if (referral_id.empty()) return list_inbox(n, std::move(done));
           decide(referral_id, std::move(done));
         }},
        {1, Unary<v1::ListOutboxRequest, v1::ListOutboxResponse>(
                kMinistry, "ReferralService/ListOutbox", "outbox.view", kOk,
                [referrals](auto* c, auto* q, auto* r, auto cb) {
                  referrals->async()->ListOutbox(c, q, r, std::move(cb));
                },
                [](const std::string&) { return v1::ListOutboxRequest(); }, false)},
    };
    for (auto& u : Unrecorded(kMinistry, "cw1", kOk)) mix.push_back(std::move(u));
    return WeightedMix(std::move(mix));
  };

  auto ministry_auditor_mix = [&]() {
    auto audit = std::shared_ptr<v1::AuditService::Stub>(
        v1::AuditService::NewStub(channel(kMinistry, "aud")));
    auto referrals = std::shared_ptr<v1::ReferralService::Stub>(
        v1::ReferralService::NewStub(channel(kMinistry, "aud")));
    return WeightedMix({
        {2, Unary<v1::QueryEventsRequest, v1::QueryEventsResponse>(
                kMinistry, "AuditService/QueryEvents", "audit.query", kOk,
                [audit](auto* c, auto* q, auto* r, auto cb) {
                  audit->async()->QueryEvents(c, q, r, std::move(cb));
                },
                [](const std::string& rid) {
                  v1::QueryEventsRequest req;
                  req.set_action("envelope.receive");
                  req.set_page_size(10);
                  req.set_request_id(rid);
                  return req;
                },
                true)},
        {1, Unary<v1::GetCheckpointRequest, v1::CheckpointResponse>(
                kMinistry, "AuditService/GetCheckpoint", "audit.checkpoint", kOk,
                [audit](auto* c, auto* q, auto* r, auto cb) {
                  audit->async()->GetCheckpoint(c, q, r, std::move(cb));
                },
                [](const std::string&) { return v1::GetCheckpointRequest(); }, false)},
        // Refused: the inbox is for caseworkers.
        {1, Unary<v1::ListInboxRequest, v1::ListInboxResponse>(
                kMinistry, "ReferralService/ListInbox by an auditor", "referral.view", kDenied,
                [referrals](auto* c, auto* q, auto* r, auto cb) {
                  referrals->async()->ListInbox(c, q, r, std::move(cb));
                },
                [](const std::string&) { return v1::ListInboxRequest(); }, false)},
    });
  };

  // ---- inspectorate-sg: frozen in the middle of the run ----------------------------
  // Only calls that record nothing, so the frozen node's ledger stays exact:
  // those in flight while it is stopped end in DEADLINE_EXCEEDED, as intended.
  auto inspectorate_mix = [&]() {
    return WeightedMix(Unrecorded(kInspectorate, "cw1",
                                  {StatusCode::OK, StatusCode::DEADLINE_EXCEEDED}, kFrozenTimeout));
  };

  const absl::Duration duration = LoadDuration();
  const int shared_in_flight = SharedChannelInFlight();
  const int other_in_flight = std::max(1, shared_in_flight / 4);
  struct Load {
    std::string name;
    int in_flight;
    CallStarter start;
  };
  std::vector<Load> loads = {
      {"union-sg cw1, one channel", shared_in_flight, caseworker_mix("cw1", 4)},
      {"union-sg cw2", other_in_flight, caseworker_mix("cw2", 1)},
      {"union-sg cw3", other_in_flight, caseworker_mix("cw3", 1)},
      {"union-sg cw4", other_in_flight, caseworker_mix("cw4", 1)},
      {"union-sg prosecutor", other_in_flight, prosecutor_mix()},
      {"union-sg auditor", other_in_flight, auditor_mix()},
      {"union-sg approver", 2, approver_mix()},
      {"union-sg admin", 2, admin_mix()},
      {"ministry-id cw1", other_in_flight, ministry_mix()},
      {"ministry-id auditor", 2, ministry_auditor_mix()},
      {"inspectorate-sg cw1", 2, inspectorate_mix()},
  };
  Phase("cases seeded; the load starts");
  std::vector<std::thread> threads;
  std::map<std::string, uint64_t> calls_per_load;
  absl::Mutex calls_mu;
  for (const Load& load : loads) {
    threads.emplace_back([&, load] {
      LoadOptions options;
      options.in_flight = load.in_flight;
      options.duration = duration;
      const uint64_t calls = testing::RunLoad(options, load.start).calls;
      absl::MutexLock lock(&calls_mu);
      calls_per_load[load.name] = calls;
    });
  }
  // The freeze: from a quarter to three quarters of the run. While stopped, the
  // node cannot answer even a Whoami.
  Subprocess& frozen = *node(kInspectorate).process;
  absl::SleepFor(duration / 4);
  EXPECT_EQ(kill(frozen.pid(), SIGSTOP), 0);
  EXPECT_TRUE(WaitUntilStopped(frozen.pid()));
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + kFrozenTimeout));
    v1::WhoamiResponse who;
    EXPECT_EQ(v1::NodeService::NewStub(channel(kInspectorate, "aud"))
                  ->Whoami(&ctx, v1::WhoamiRequest(), &who)
                  .error_code(),
              StatusCode::DEADLINE_EXCEEDED);
  }
  absl::SleepFor(duration / 2);
  EXPECT_EQ(kill(frozen.pid(), SIGCONT), 0);
  for (std::thread& t : threads) t.join();
  Phase("every load's calls answered");

  std::cout << "calls per load:\n";
  for (const auto& [name, calls] : calls_per_load)
    std::cout << "  " << name << ": " << calls << "\n";
  std::cout << "outcomes per method:\n" << tally_.ToString();
  for (auto& [org, n] : nodes_) {
    EXPECT_TRUE(n->process->running()) << org << " died under load:\n" << n->process->Log();
  }
  {
    absl::MutexLock lock(&unexpected_mu_);
    EXPECT_EQ(unexpected_count_, 0u) << "calls without a definite answer, e.g.:\n"
                                     << absl::StrJoin(unexpected_, "\n");
  }
  ASSERT_FALSE(HasFailure());
  // The load was a load: the shared channel busy, every kind of call made
  // (the mixes are round-robin by weight), refusals refused, the frozen node silent.
  EXPECT_GT(calls_per_load["union-sg cw1, one channel"], static_cast<uint64_t>(shared_in_flight));
  EXPECT_GT(tally_.Count("union-sg CaseService/CreateCase by a prosecutor",
                         StatusCode::PERMISSION_DENIED),
            0u);
  EXPECT_GT(tally_.Total("ministry-id ReferralService/Refer to union-sg"), 0u);
  EXPECT_GT(tally_.Total("union-sg ReferralService/Refer to inspectorate-sg"), 0u);
  EXPECT_GT(tally_.Count("inspectorate-sg NodeService/Whoami", StatusCode::DEADLINE_EXCEEDED) +
                tally_.Count("inspectorate-sg NodeService/Status", StatusCode::DEADLINE_EXCEEDED) +
                tally_.Count("inspectorate-sg Health/Check", StatusCode::DEADLINE_EXCEEDED),
            0u);

  // One more referral on every route, of a new case nothing else touches (a
  // referral under load may meet a busy case), so each route carries at least
  // one envelope whatever the load's luck.
  const std::vector<std::pair<std::string, std::string>> routes = {
      {kUnion, kMinistry}, {kUnion, kInspectorate}, {kMinistry, kUnion}};
  for (const auto& [from, to] : routes) {
    v1::CreateCaseRequest create = NewCase("Hadi");
    create.set_request_id(NewRequestId());
    v1::Case c;
    grpc::Status s =
        v1::CaseService::NewStub(channel(from, "cw1"))->CreateCase(Ctx().get(), create, &c);
    Finished(from, "CaseService/CreateCase", "case.create", kOk, s, 1, create.request_id());
    v1::ReferCaseRequest refer;
    refer.set_case_id(c.id());
    refer.set_to_org(to);
    refer.set_agreement(kAgreement);
    refer.set_purpose(kReferralPurpose);
    refer.set_request_id(NewRequestId());
    v1::ReferCaseResponse referred;
    s = v1::ReferralService::NewStub(channel(from, "cw1"))->Refer(Ctx().get(), refer, &referred);
    Finished(from, absl::StrCat("ReferralService/Refer to ", to), "referral.send", kOk, s, 1,
             refer.request_id());
    if (s.ok()) count_sent(from, to, 1);
  }
  {
    absl::MutexLock lock(&unexpected_mu_);
    ASSERT_EQ(unexpected_count_, 0u) << absl::StrJoin(unexpected_, "\n");
  }

  // Every envelope is delivered exactly once: a receipt entry at the sender and
  // a receive entry at the receiver each, however often it was retried.
  std::map<std::string, uint64_t> receipts_due, receives_due;
  {
    absl::MutexLock lock(&sent_mu);
    for (const auto& [route, n] : sent) {
      receipts_due[route.first] += n;
      receives_due[route.second] += n;
    }
  }
  for (const auto& [org, n] : nodes_) {
    n->account.Expect("envelope.receipt", v1::ACCESS_OUTCOME_ALLOWED, receipts_due[org]);
    n->account.Expect("envelope.receive", v1::ACCESS_OUTCOME_ALLOWED, receives_due[org]);
  }
  Phase("a referral sent on every route; waiting for delivery");
  const absl::Time drain_deadline = absl::Now() + absl::Seconds(120);
  for (const auto& [org, n] : nodes_) {
    uint64_t receipts = 0, receives = 0;
    while (true) {
      receipts = CountEvents(org, "envelope.receipt");
      receives = CountEvents(org, "envelope.receive");
      if ((receipts >= receipts_due[org] && receives >= receives_due[org]) ||
          absl::Now() > drain_deadline || HasFailure()) {
        break;
      }
      absl::SleepFor(absl::Milliseconds(250));
    }
    EXPECT_EQ(receipts, receipts_due[org]) << org << " receipts";
    EXPECT_EQ(receives, receives_due[org]) << org << " envelopes received";
  }
  ASSERT_FALSE(HasFailure());

  Phase("every envelope delivered once; checking the ledgers");
  // Each ledger holds exactly what the calls made, and verifies.
  for (auto& [org, n] : nodes_) {
    const uint64_t end = LedgerSize(org);
    n->account.Expect("audit.checkpoint", v1::ACCESS_OUTCOME_ALLOWED, 1);
    std::map<std::string, uint64_t> by_action, by_request;
    auto audit = v1::AuditService::NewStub(channel(org, "aud"));
    for (uint64_t begin = n->ledger_start; begin < end; begin += 1000) {
      v1::GetEntriesRequest req;
      req.set_begin(begin);
      req.set_end(std::min(end, begin + 1000));
      v1::GetEntriesResponse resp;
      grpc::Status s = audit->GetEntries(Ctx().get(), req, &resp);
      ASSERT_TRUE(s.ok()) << org << ": " << s.error_message();
      ASSERT_EQ(static_cast<uint64_t>(resp.events_size()), req.end() - req.begin());
      for (const v1::LoggedEvent& e : resp.events()) {
        ++by_action[ActionKey(e.event().action(), e.event().outcome())];
        if (!e.event().request_id().empty()) ++by_request[e.event().request_id()];
      }
    }
    std::cout << org << ": " << end - n->ledger_start << " ledger entries in the window\n";
    const std::string by_action_differences = Differences(n->account.by_action(), by_action);
    EXPECT_TRUE(by_action_differences.empty()) << org << ", entries per action and outcome:\n"
                                               << by_action_differences;
    const std::string by_request_differences = Differences(n->account.by_request(), by_request);
    EXPECT_TRUE(by_request_differences.empty()) << org << ", entries per request id:\n"
                                                << by_request_differences;

    // Exported in ranges (one answer is capped at 4 MiB), each verified offline
    // against the node's key in the roster.
    for (uint64_t begin = 0; begin < end; begin += kExportChunk) {
      v1::ExportRequest req;
      req.set_begin(begin);
      req.set_end(std::min(end, begin + kExportChunk));
      v1::ExportResponse exported, piece;
      auto ctx = Ctx();
      auto reader = audit->Export(ctx.get(), req);
      while (reader->Read(&piece)) exported.mutable_export_()->append(piece.export_());
      grpc::Status s = reader->Finish();
      ASSERT_TRUE(s.ok()) << org << ": " << s.error_message();
      const std::string path = absl::StrCat(fed_.org(org).dir, "/ledger-", begin, ".export");
      ASSERT_OK(WriteFileAtomically(path, exported.export_()));
      CommandResult verified = RunCommand({BinaryPath("corridorctl"), "audit", "verify", path,
                                           "--roster", fed_.org(org).dir + "/roster.json", "--org",
                                           org, "--stewards", fed_.WriteStewardsFile()});
      EXPECT_EQ(verified.exit_code, 0) << org << ": " << verified.out << verified.err;
    }
  }

  Phase("ledgers checked and verified");
  for (auto& [org, n] : nodes_) {
    EXPECT_EQ(n->process->Stop(SIGTERM), 0) << org << ":\n" << n->process->Log();
  }
}

// The report of issue 8, as a test: a client keeping 32 CreateCase calls in
// flight on one channel must leave the node alive, every call answered OK and
// recorded once.
TEST_F(StressTest, ThirtyTwoCreateCaseCallsInFlightOnOneChannelAllSucceed) {
  StartNode(kUnion);
  CommandResult r = Ctl(kUnion, {"health", "--wait", "60"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err << node(kUnion).process->Log();
  const uint64_t start = LedgerSize(kUnion);

  auto cases =
      std::shared_ptr<v1::CaseService::Stub>(v1::CaseService::NewStub(channel(kUnion, "cw1")));
  LoadOptions options;
  options.in_flight = 32;
  options.duration = LoadDuration();
  const uint64_t calls =
      testing::RunLoad(options,
                       Unary<v1::CreateCaseRequest, v1::Case>(
                           kUnion, "CaseService/CreateCase", "case.create", {StatusCode::OK},
                           [cases](auto* c, auto* q, auto* r, auto cb) {
                             cases->async()->CreateCase(c, q, r, std::move(cb));
                           },
                           [](const std::string& rid) {
                             auto req = NewCase("Gita");
                             req.set_request_id(rid);
                             return req;
                           },
                           true))
          .calls;
  std::cout << "outcomes:\n" << tally_.ToString();
  EXPECT_TRUE(node(kUnion).process->running()) << node(kUnion).process->Log();
  EXPECT_GT(calls, 32u);
  EXPECT_EQ(tally_.Count("union-sg CaseService/CreateCase", StatusCode::OK), calls)
      << tally_.ToString();
  ASSERT_FALSE(HasFailure());
  // One entry per create, plus the closing GetCheckpoint's own.
  EXPECT_EQ(LedgerSize(kUnion) - start, calls + 1);
  EXPECT_EQ(node(kUnion).process->Stop(SIGTERM), 0) << node(kUnion).process->Log();
}

}  // namespace
}  // namespace corridor
