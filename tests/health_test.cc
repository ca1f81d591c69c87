// Faults that heal, seen from outside a real node (in-process, mutual TLS on
// a loopback port): while its ledger cannot commit, grpc.health.v1 answers
// NOT_SERVING and `corridorctl health` prints why; calls are refused, and
// corridorctl says the node refused rather than that it cannot be reached;
// once the fault clears the node recovers by itself, without a restart.
// Also: corridorctl against a port where nothing listens says so.
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "client/ctl/ctl.h"
#include "client/lib/grpc_util.h"
#include "corridor/v1/case.grpc.pb.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "gtest/gtest.h"
#include "server/node/config.h"
#include "server/node/node.h"
#include "tests/testing/federation.h"
#include "tests/testing/status_matchers.h"

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
    const std::string path = fed_.WriteNodeConfig("union-sg", {{"cw", {"caseworker"}}});
    ASSERT_OK_AND_ASSIGN(config_, LoadNodeConfig(path));
    cw_ = fed_.IssueUser("union-sg", "cw");
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

  std::shared_ptr<grpc::Channel> Channel() {
    return MakeMutualTlsChannel(
        {ReadFileToString(cw_ + ".crt").value(), ReadFileToString(cw_ + ".key").value(),
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
  grpc::Status CreateCase(v1::Case* created) {
    v1::CreateCaseRequest req;
    auto* c = req.mutable_case_();
    c->set_category(v1::CASE_CATEGORY_RECRUITMENT_FEES);
    c->set_sector("domestic-work");
    c->set_origin_country("ID");
    c->set_destination_country("SG");
    c->mutable_worker()->set_name("Siti Rahayu");
    c->set_narrative("charged eight months of wages");
    return v1::CaseService::NewStub(Channel())->CreateCase(Ctx().get(), req, created);
  }

  testing::TestFederation fed_;
  v1::NodeConfig config_;
  std::string cw_;
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
