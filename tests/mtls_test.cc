// Mutual TLS and identity at a real node (in-process, on a loopback port):
// who is refused at the handshake, who is refused by identity checks, and who
// gets through with which roles.
#include "absl/time/clock.h"
#include "client/ctl/certificates.h"
#include "client/lib/grpc_util.h"
#include "corridor/v1/node.grpc.pb.h"
#include "gtest/gtest.h"
#include "server/node/config.h"
#include "server/node/node.h"
#include "tests/testing/federation.h"
#include "tests/testing/status_matchers.h"

namespace corridor {
namespace {

class MutualTlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fed_.AddOrg("union-sg");
    fed_.AddOrg("ministry-id", v1::ORG_KIND_MINISTRY);
    const std::string path = fed_.WriteNodeConfig(
        "union-sg", {{"alice", {"caseworker", "auditor"}}, {"bob", {"admin"}}});
    ASSERT_OK_AND_ASSIGN(v1::NodeConfig config, LoadNodeConfig(path));
    ASSERT_OK_AND_ASSIGN(node_, Node::Start(config));
    target_ = fed_.org("union-sg").endpoint();
  }
  void TearDown() override {
    if (node_) node_->Shutdown(absl::Seconds(1));
  }

  std::shared_ptr<grpc::Channel> Channel(const std::string& cert, const std::string& key) {
    return MakeMutualTlsChannel({cert, key, fed_.org("union-sg").ca.cert_pem}, target_, "");
  }
  std::shared_ptr<grpc::Channel> UserChannel(const std::string& org, const std::string& name) {
    const std::string prefix = fed_.IssueUser(org, name);
    return Channel(ReadFileToString(prefix + ".crt").value(),
                   ReadFileToString(prefix + ".key").value());
  }
  static grpc::Status Whoami(std::shared_ptr<grpc::Channel> ch, v1::WhoamiResponse* resp) {
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(5)));
    return v1::NodeService::NewStub(ch)->Whoami(&ctx, v1::WhoamiRequest(), resp);
  }
  static grpc::Status Hello(std::shared_ptr<grpc::Channel> ch) {
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(5)));
    v1::HelloResponse resp;
    return v1::PeerService::NewStub(ch)->Hello(&ctx, v1::HelloRequest(), &resp);
  }

  testing::TestFederation fed_;
  std::unique_ptr<Node> node_;
  std::string target_;
};

TEST_F(MutualTlsTest, RefusesClientWithoutCertificate) {
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = fed_.org("union-sg").ca.cert_pem;
  auto ch = grpc::CreateChannel(target_, grpc::SslCredentials(ssl));
  v1::WhoamiResponse resp;
  grpc::Status s = Whoami(ch, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE) << s.error_message();
}

TEST_F(MutualTlsTest, RefusesPlaintextClient) {
  auto ch = grpc::CreateChannel(target_, grpc::InsecureChannelCredentials());
  v1::WhoamiResponse resp;
  EXPECT_EQ(Whoami(ch, &resp).error_code(), grpc::StatusCode::UNAVAILABLE);
}

TEST_F(MutualTlsTest, RefusesCertificateFromUnknownCa) {
  pki::CaOptions opts;
  opts.federation = "corridor.test";
  opts.org = "recruiter-x";
  opts.common_name = "rogue";
  auto rogue_ca = pki::CreateOrgCa(opts).value();
  pki::LeafOptions leaf;
  leaf.spiffe_uri = "spiffe://corridor.test/union-sg/user/alice";
  leaf.common_name = "alice";
  auto cert = pki::IssueLeaf(rogue_ca, leaf).value();
  v1::WhoamiResponse resp;
  EXPECT_EQ(Whoami(Channel(cert.cert_pem, cert.key_pem), &resp).error_code(),
            grpc::StatusCode::UNAVAILABLE);
}

TEST_F(MutualTlsTest, RefusesPeerWhoseCertificateIsFromAnotherMembersCa) {
  // union-sg's CA (a member CA, so the TLS handshake succeeds) issues a node
  // certificate that claims ministry-id.
  pki::LeafOptions leaf;
  leaf.spiffe_uri = "spiffe://corridor.test/ministry-id/node";
  leaf.common_name = "impostor";
  auto forged = pki::IssueLeaf(fed_.org("union-sg").ca, leaf).value();
  grpc::Status s = Hello(Channel(forged.cert_pem, forged.key_pem));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_NE(s.error_message().find("not issued by that org's CA"), std::string::npos)
      << s.error_message();
}

TEST_F(MutualTlsTest, AcceptsLegitimatePeerNode) {
  const testing::TestOrg& m = fed_.org("ministry-id");
  EXPECT_TRUE(Hello(Channel(m.node.cert_pem, m.node.key_pem)).ok());
  v1::WhoamiResponse resp;
  ASSERT_TRUE(Whoami(Channel(m.node.cert_pem, m.node.key_pem), &resp).ok());
  EXPECT_EQ(resp.org(), "ministry-id");
  EXPECT_EQ(resp.subject(), "node");
}

TEST_F(MutualTlsTest, WhoamiReportsUserRoles) {
  v1::WhoamiResponse resp;
  grpc::Status s = Whoami(UserChannel("union-sg", "alice"), &resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(resp.org(), "union-sg");
  EXPECT_EQ(resp.subject(), "user/alice");
  ASSERT_EQ(resp.roles_size(), 2);
  EXPECT_EQ(resp.roles(0), v1::ROLE_CASEWORKER);
  EXPECT_EQ(resp.roles(1), v1::ROLE_AUDITOR);
  ASSERT_TRUE(Whoami(UserChannel("union-sg", "bob"), &resp).ok());
  ASSERT_EQ(resp.roles_size(), 1);
  EXPECT_EQ(resp.roles(0), v1::ROLE_ADMIN);
}

TEST_F(MutualTlsTest, RefusesUnknownUserAndUserOfAnotherOrg) {
  v1::WhoamiResponse resp;
  grpc::Status s = Whoami(UserChannel("union-sg", "mallory"), &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED) << s.error_message();
  s = Whoami(UserChannel("ministry-id", "alice"), &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED) << s.error_message();
}

TEST_F(MutualTlsTest, UsersCannotCallPeerService) {
  grpc::Status s = Hello(UserChannel("union-sg", "alice"));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED) << s.error_message();
}

}  // namespace
}  // namespace corridor
