// Faults that heal, and damage that does not, seen from outside a real node
// (in-process, mutual TLS on a loopback port): while its ledger cannot commit, grpc.health.v1
// answers NOT_SERVING and `corridorctl health` prints why; calls are refused, and corridorctl says
// the node refused rather than that it cannot be reached; once the fault clears the node recovers
// by itself, without a restart. A changed entry in the middle of the ledger is found by the node's
// background check, which runs under load without blocking appends.
// Also: corridorctl against a port where nothing listens says so.
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "client/ctl/ctl.h"
#include "client/lib/grpc_util.h"
#include "corridor/v1/case.grpc.pb.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "gtest/gtest.h"
#include "ledger/rocksdb/rocksdb_ledger.h"
#include "rocksdb/db.h"
#include "server/node/config.h"
#include "server/node/node.h"
#include "tests/testing/federation.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/stopped_db.h"

namespace corridor {
namespace {

struct CtlResult {
  int exit_code;
  std::string out, err;
};

class HealthTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fed_.AddOrg("union-sg");
    const std::string path =
        fed_.WriteNodeConfig("union-sg", {{"cw", {"caseworker"}}, {"aud", {"auditor"}}});
    ASSERT_OK_AND_ASSIGN(config_, LoadNodeConfig(path));
    cw_ = fed_.IssueUser("union-sg", "cw");
    aud_ = fed_.IssueUser("union-sg", "aud");
    NodeTestHooks hooks;
    hooks.ledger_before_commit = [this]() -> absl::Status {
      if (disk_full_) return absl::ResourceExhaustedError("injected: no space left on device");
      return absl::OkStatus();
    };
    ASSERT_OK_AND_ASSIGN(node_, Node::Start(config_, hooks));
  }
  void TearDown() override {
    if (node_) node_->Shutdown(absl::Seconds(1));
  }

  CtlResult Ctl(std::vector<std::string> args, const std::string& endpoint = "") {
    std::vector<std::string> argv = std::move(args);  // without the program name
    for (const std::string& a :
         {std::string("--node"), endpoint.empty() ? fed_.org("union-sg").endpoint() : endpoint,
          std::string("--cert"), cw_ + ".crt", std::string("--key"), cw_ + ".key",
          std::string("--ca"), fed_.org("union-sg").dir + "/ca.crt"}) {
      argv.push_back(a);
    }
    std::ostringstream out, err;
    const int code = ctl::Main(argv, out, err);
    return {code, out.str(), err.str()};
  }

  // A new channel as the user whose files start with `prefix` (default: the caseworker).
  std::shared_ptr<grpc::Channel> Channel(const std::string& prefix = "") {
    const std::string& who = prefix.empty() ? cw_ : prefix;
    return MakeMutualTlsChannel(
        {ReadFileToString(who + ".crt").value(), ReadFileToString(who + ".key").value(),
         fed_.org("union-sg").ca.cert_pem},
        fed_.org("union-sg").endpoint(), "");
  }
  static std::unique_ptr<grpc::ClientContext> Ctx() {
    auto ctx = std::make_unique<grpc::ClientContext>();
    ctx->set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
    return ctx;
  }
  grpc::health::v1::HealthCheckResponse::ServingStatus Health(std::string* reason) {
    grpc::health::v1::HealthCheckResponse resp;
    auto ctx = Ctx();
    grpc::Status s = grpc::health::v1::Health::NewStub(Channel())->Check(
        ctx.get(), grpc::health::v1::HealthCheckRequest(), &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    auto it = ctx->GetServerTrailingMetadata().find(kHealthReasonKey);
    if (reason != nullptr && it != ctx->GetServerTrailingMetadata().end()) {
      *reason = std::string(it->second.data(), it->second.size());
    }
    return resp.status();
  }
  grpc::Status CreateCase(v1::Case* created, std::shared_ptr<grpc::Channel> channel = nullptr) {
    v1::CreateCaseRequest req;
    auto* c = req.mutable_case_();
    c->set_category(v1::CASE_CATEGORY_RECRUITMENT_FEES);
    c->set_sector("domestic-work");
    c->set_origin_country("ID");
    c->set_destination_country("SG");
    c->mutable_worker()->set_name("Siti Rahayu");
    c->set_narrative("charged eight months of wages");
    return v1::CaseService::NewStub(channel ? channel : Channel())
        ->CreateCase(Ctx().get(), req, created);
  }

  testing::TestFederation fed_;
  v1::NodeConfig config_;
  std::string cw_, aud_;
  std::atomic<bool> disk_full_{false};
  std::unique_ptr<Node> node_;
};

TEST_F(HealthTest, NotServingWithTheReasonWhileTheLedgerRefusesThenServingAfterRecovery) {
  EXPECT_EQ(Health(nullptr), grpc::health::v1::HealthCheckResponse::SERVING);
  CtlResult r = Ctl({"health"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find(": serving"), std::string::npos) << r.out;
  v1::Case kept;
  ASSERT_TRUE(CreateCase(&kept).ok());

  disk_full_ = true;
  v1::Case lost;
  grpc::Status s = CreateCase(&lost);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE) << s.error_message();
  std::string reason;
  EXPECT_EQ(Health(&reason), grpc::health::v1::HealthCheckResponse::NOT_SERVING);
  EXPECT_NE(reason.find("no space left on device"), std::string::npos) << reason;

  r = Ctl({"health"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.out.find("NOT SERVING"), std::string::npos) << r.out;
  EXPECT_NE(r.err.find("is running but not serving"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("no space left on device"), std::string::npos) << r.err;

  // A call the node refuses is reported as the node's refusal, not as a
  // node that cannot be reached.
  r = Ctl({"case", "show", kept.id(), "--purpose", "case-handling"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("refused the request for now"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("cannot reach"), std::string::npos) << r.err;

  // The fault clears: the node recovers by itself (no restart) and serves.
  disk_full_ = false;
  r = Ctl({"health", "--wait", "60"});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find(": serving"), std::string::npos) << r.out;
  EXPECT_EQ(Health(nullptr), grpc::health::v1::HealthCheckResponse::SERVING);
  v1::Case after;
  s = CreateCase(&after);
  EXPECT_TRUE(s.ok()) << s.error_message();
  r = Ctl({"case", "show", kept.id(), "--purpose", "case-handling"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("Siti Rahayu"), std::string::npos) << r.out;
}

// Restarts the node with the background ledger check every second, and no
// per-user call rate limit in the way of a load.
void RestartWithLedgerCheckEverySecond(v1::NodeConfig* config, std::unique_ptr<Node>* node) {
  (*node)->Shutdown(absl::Seconds(1));
  node->reset();
  config->mutable_limits()->set_ledger_scrub_interval_seconds(1);
  config->mutable_limits()->set_user_calls_per_second(100000);
  config->mutable_limits()->set_user_call_burst(100000);
  auto started = Node::Start(*config);
  ASSERT_OK(started);
  *node = std::move(*started);
}

// Changes one byte of ledger entry `index` in the stopped node's database.
void DamageLedgerEntry(const std::string& data_dir, uint64_t index) {
  testing::StoppedDb stopped(data_dir);
  ASSERT_TRUE(stopped.ok());
  rocksdb::ColumnFamilyHandle* entries = stopped.family(ledger::kEntriesFamily);
  ASSERT_NE(entries, nullptr);
  const std::string key = testing::LedgerIndexKey(index);
  std::string value;
  ASSERT_TRUE(stopped.db()->Get(rocksdb::ReadOptions(), entries, key, &value).ok());
  value[value.size() / 2] ^= 0x20;
  ASSERT_TRUE(stopped.db()->Put(rocksdb::WriteOptions(), entries, key, value).ok());
}

// A changed entry in the middle of the ledger does not stop the node from
// starting (opening checks only the last entry); the background check finds
// it soon after, names it, and the node says so in health, in its log and in
// its ledger (once, not once per run), while it goes on answering.
TEST_F(HealthTest, LedgerDamageFoundInTheBackgroundIsInHealthAndTheLedger) {
  for (int i = 0; i < 6; ++i) {
    v1::Case c;
    ASSERT_TRUE(CreateCase(&c).ok());
  }
  node_->Shutdown(absl::Seconds(1));
  node_.reset();
  DamageLedgerEntry(config_.data_dir(), 2);
  config_.mutable_limits()->set_ledger_scrub_interval_seconds(1);
  ASSERT_OK_AND_ASSIGN(node_, Node::Start(config_));

  std::string reason;
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (Health(&reason) == grpc::health::v1::HealthCheckResponse::SERVING &&
         absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(100));
  }
  EXPECT_NE(reason.find("the ledger is damaged: entry 2 does not match its stored leaf hash"),
            std::string::npos)
      << reason;
  CtlResult r = Ctl({"health"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("entry 2 does not match its stored leaf hash"), std::string::npos) << r.err;
  // Three more runs find the same damage: it is recorded once.
  const absl::Time first = node_->LastLedgerCheck()->finished;
  while (node_->LastLedgerCheck()->finished < first + absl::Seconds(3) && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(100));
  }
  v1::QueryEventsRequest q;
  q.set_action("ledger.scrub");
  v1::QueryEventsResponse found;
  grpc::Status s = v1::AuditService::NewStub(Channel(aud_))->QueryEvents(Ctx().get(), q, &found);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_EQ(found.events_size(), 1);
  EXPECT_EQ(found.events(0).event().outcome(), v1::ACCESS_OUTCOME_ERROR);
  EXPECT_EQ(found.events(0).event().actor_subject(), "node");
  EXPECT_NE(found.events(0).event().reason().find("entry 2 does not match"), std::string::npos);
  // Still answering: the damage is reported, not hidden behind a dead node.
  v1::Case after;
  EXPECT_TRUE(CreateCase(&after).ok());
}

// The check runs every second while 40 callers (32 on one channel) create
// cases: it never takes an append in flight for damage, never blocks one, and
// records nothing.
TEST_F(HealthTest, LedgerCheckUnderLoadFindsNothingAndBlocksNothing) {
  RestartWithLedgerCheckEverySecond(&config_, &node_);
  ASSERT_FALSE(HasFailure());
  const auto shared = Channel();
  std::atomic<int> ok{0}, failed{0};
  std::vector<std::thread> callers;
  const absl::Time until = absl::Now() + absl::Seconds(4);
  for (int i = 0; i < 40; ++i) {
    callers.emplace_back([&, i] {
      const auto channel = i < 32 ? shared : Channel();
      while (absl::Now() < until) {
        v1::Case c;
        (CreateCase(&c, channel).ok() ? ok : failed)++;
      }
    });
  }
  for (auto& t : callers) t.join();
  EXPECT_GT(ok.load(), 40);
  EXPECT_EQ(failed.load(), 0);
  // A run that began after the load ended has checked all of it.
  const absl::Time load_end = absl::Now();
  const absl::Time deadline = load_end + absl::Seconds(30);
  while ((!node_->LastLedgerCheck() ||
          node_->LastLedgerCheck()->finished - node_->LastLedgerCheck()->took < load_end) &&
         absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(100));
  }
  ASSERT_TRUE(node_->LastLedgerCheck().has_value());
  EXPECT_OK(node_->LastLedgerCheck()->status);
  EXPECT_GE(node_->LastLedgerCheck()->size, static_cast<uint64_t>(ok.load()));
  EXPECT_EQ(Health(nullptr), grpc::health::v1::HealthCheckResponse::SERVING);
  v1::QueryEventsRequest q;
  q.set_action("ledger.scrub");
  v1::QueryEventsResponse found;
  ASSERT_TRUE(v1::AuditService::NewStub(Channel(aud_))->QueryEvents(Ctx().get(), q, &found).ok());
  EXPECT_EQ(found.events_size(), 0);
}

// A port with no node behind it: the message says the node cannot be
// reached (and not that it refused).
TEST_F(HealthTest, AnUnreachableNodeIsToldApartFromARefusal) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  socklen_t len = sizeof(addr);
  ASSERT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  const std::string endpoint = absl::StrCat("127.0.0.1:", ntohs(addr.sin_port));
  close(fd);  // nothing listens there now
  for (const std::vector<std::string>& cmd :
       {std::vector<std::string>{"health"},
        std::vector<std::string>{"case", "show", "c-1", "--purpose", "case-handling"}}) {
    CtlResult r = Ctl(cmd, endpoint);
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.err.find("cannot reach the node"), std::string::npos) << r.err;
    EXPECT_EQ(r.err.find("refused the request"), std::string::npos) << r.err;
  }
}

// The node's own refusal carries error details; a client-side failure does
// not, and the channel is not connected after it.
TEST_F(HealthTest, AnsweredByServerTellsTheNodesAnswerFromTheTransports) {
  const grpc::Status own = ToGrpcStatus(absl::UnavailableError("disk full"));
  EXPECT_FALSE(own.error_details().empty());
  EXPECT_EQ(FromGrpcStatus(own), absl::UnavailableError("disk full"));
  auto dead = grpc::CreateChannel("127.0.0.1:1", grpc::InsecureChannelCredentials());
  EXPECT_TRUE(AnsweredByServer(own, *dead));
  const grpc::Status transport(grpc::StatusCode::UNAVAILABLE, "failed to connect");
  EXPECT_FALSE(AnsweredByServer(transport, *dead));
}

}  // namespace
}  // namespace corridor
