#include "server/auth/identity.h"

#include <atomic>
#include <thread>

#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "server/auth/auth.h"
#include "tests/testing/federation.h"
#include "tests/testing/status_matchers.h"

namespace corridor {
namespace {

class IdentityTest : public ::testing::Test {
 protected:
  IdentityTest() {
    fed_.AddOrg("union-sg");
    fed_.AddOrg("ministry-id", v1::ORG_KIND_MINISTRY);
    config_.set_federation("corridor.test");
    config_.set_org("union-sg");
    (*config_.mutable_users())["alice"].add_roles(v1::ROLE_CASEWORKER);
    (*config_.mutable_users())["alice"].add_roles(v1::ROLE_AUDITOR);
    (*config_.mutable_users())["sam"].add_roles(v1::ROLE_ADMIN);
    (*config_.mutable_users())["sam"].set_suspended(true);
    roster_ = std::make_shared<v1::Roster>(fed_.MakeRoster());
  }

  std::string Issue(const std::string& issuer_org, const std::string& uri) {
    return fed_.IssueCertificatePem(issuer_org, uri);
  }

  absl::StatusOr<Principal> Resolve(const std::string& pem) {
    IdentityResolver resolver(config_, roster_);
    return resolver.Resolve(pem, absl::Now());
  }

  testing::TestFederation fed_;
  v1::NodeConfig config_;
  std::shared_ptr<v1::Roster> roster_;
};

TEST_F(IdentityTest, PeerNodeOfMemberOrgIsAccepted) {
  ASSERT_OK_AND_ASSIGN(Principal p, Resolve(fed_.org("ministry-id").node.cert_pem));
  EXPECT_EQ(p.kind, PrincipalKind::kNode);
  EXPECT_EQ(p.org, "ministry-id");
  EXPECT_EQ(p.subject, "node");
  EXPECT_TRUE(p.roles.empty());
}

TEST_F(IdentityTest, MemberCaCannotSpeakForAnotherMember) {
  // union-sg's CA issues a certificate claiming to be ministry-id's node.
  std::string forged = Issue("union-sg", "spiffe://corridor.test/ministry-id/node");
  EXPECT_STATUS(Resolve(forged), absl::StatusCode::kPermissionDenied,
                "claims to be a node of \"ministry-id\" but was not issued by that org's CA");
}

TEST_F(IdentityTest, UserOfThisOrgGetsRolesFromConfig) {
  ASSERT_OK_AND_ASSIGN(Principal p,
                       Resolve(Issue("union-sg", "spiffe://corridor.test/union-sg/user/alice")));
  EXPECT_EQ(p.kind, PrincipalKind::kUser);
  EXPECT_EQ(p.subject, "user/alice");
  EXPECT_TRUE(p.HasRole(v1::ROLE_CASEWORKER));
  EXPECT_TRUE(p.HasRole(v1::ROLE_AUDITOR));
  EXPECT_FALSE(p.HasRole(v1::ROLE_ADMIN));
}

TEST_F(IdentityTest, RefusalsEachSayWhy) {
  struct Case {
    const char* name;
    std::string pem;
    absl::StatusCode code;
    const char* error;
  };
  const std::vector<Case> cases = {
      {"user of another org", Issue("ministry-id", "spiffe://corridor.test/ministry-id/user/bob"),
       absl::StatusCode::kPermissionDenied, "must use their own org's node"},
      {"user not in config", Issue("union-sg", "spiffe://corridor.test/union-sg/user/mallory"),
       absl::StatusCode::kPermissionDenied, "is not listed in this node's configuration"},
      {"suspended user", Issue("union-sg", "spiffe://corridor.test/union-sg/user/sam"),
       absl::StatusCode::kPermissionDenied, "is suspended"},
      {"user cert from another CA",
       Issue("ministry-id", "spiffe://corridor.test/union-sg/user/alice"),
       absl::StatusCode::kPermissionDenied, "was not issued by the CA of \"union-sg\""},
      {"non-member org", Issue("union-sg", "spiffe://corridor.test/recruiter-x/node"),
       absl::StatusCode::kPermissionDenied, "is not in the roster in force"},
      {"other federation", Issue("union-sg", "spiffe://evil.example/union-sg/node"),
       absl::StatusCode::kUnauthenticated, "is not an identity in federation"},
      {"malformed identity", Issue("union-sg", "spiffe://corridor.test/union-sg/admin"),
       absl::StatusCode::kUnauthenticated, "is neither"},
      {"no certificate", "", absl::StatusCode::kUnauthenticated, "no client certificate"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    EXPECT_STATUS(Resolve(c.pem), c.code, c.error);
  }
}

TEST_F(IdentityTest, RevokedSerialsAreRefused) {
  const std::string cert = fed_.org("ministry-id").node.cert_pem;
  auto info = pki::InspectCertificate(cert).value();
  roster_->mutable_members(1)->add_revoked_serials(info.serial_hex);
  EXPECT_STATUS(Resolve(cert), absl::StatusCode::kPermissionDenied, "has been revoked");

  const std::string alice = Issue("union-sg", "spiffe://corridor.test/union-sg/user/alice");
  ASSERT_OK(Resolve(alice));
  config_.mutable_tls()->add_revoked_serials(pki::InspectCertificate(alice)->serial_hex);
  EXPECT_STATUS(Resolve(alice), absl::StatusCode::kPermissionDenied, "has been revoked");
}

TEST_F(IdentityTest, CachedResolutionIsDoneOncePerCertificate) {
  IdentityResolver resolver(config_, roster_);
  const std::string alice = Issue("union-sg", "spiffe://corridor.test/union-sg/user/alice");
  const absl::Time now = absl::Now();
  ASSERT_OK_AND_ASSIGN(auto first, resolver.ResolveCached(alice, now));
  for (int i = 0; i < 100; ++i) {
    ASSERT_OK_AND_ASSIGN(auto again, resolver.ResolveCached(alice, now + absl::Seconds(i)));
    EXPECT_EQ(again.get(), first.get());  // the same immutable principal
  }
  EXPECT_EQ(resolver.resolutions(), 1u);
  // Periodic re-check even when nothing changed.
  ASSERT_OK(resolver.ResolveCached(alice, now + IdentityResolver::kRecheckAllowed));
  EXPECT_EQ(resolver.resolutions(), 2u);
}

TEST_F(IdentityTest, RosterChangeRechecksOpenConnectionsAtTheirNextCall) {
  IdentityResolver resolver(config_, roster_);
  const std::string cert = fed_.org("ministry-id").node.cert_pem;
  const absl::Time now = absl::Now();
  ASSERT_OK(resolver.ResolveCached(cert, now));
  // The roster in force now revokes the peer's certificate: the same
  // certificate (an already-open connection) is refused at once.
  auto revoked = std::make_shared<v1::Roster>(*roster_);
  revoked->set_version(roster_->version() + 1);
  revoked->mutable_members(1)->add_revoked_serials(
      pki::InspectCertificate(cert).value().serial_hex);
  resolver.SetRoster(revoked);
  EXPECT_STATUS(resolver.ResolveCached(cert, now), absl::StatusCode::kPermissionDenied,
                "has been revoked");
  // And an org dropped from the roster is refused too.
  auto dropped = std::make_shared<v1::Roster>(*roster_);
  dropped->set_version(roster_->version() + 2);
  dropped->mutable_members()->DeleteSubrange(1, 1);
  resolver.SetRoster(dropped);
  EXPECT_STATUS(resolver.ResolveCached(cert, now), absl::StatusCode::kPermissionDenied,
                "not in the roster in force");
}

TEST_F(IdentityTest, ExpiredCertificateIsRecheckedAndRefused) {
  IdentityResolver resolver(config_, roster_);
  const std::string alice = Issue("union-sg", "spiffe://corridor.test/union-sg/user/alice");
  const absl::Time not_after = pki::InspectCertificate(alice).value().not_after;
  ASSERT_OK(resolver.ResolveCached(alice, not_after - absl::Seconds(1)));
  EXPECT_STATUS(resolver.ResolveCached(alice, not_after + absl::Seconds(1)),
                absl::StatusCode::kPermissionDenied, "");
}

TEST_F(IdentityTest, ConcurrentCallsOnOneCertificateShareOnePrincipal) {
  IdentityResolver resolver(config_, roster_);
  const std::string alice = Issue("union-sg", "spiffe://corridor.test/union-sg/user/alice");
  const std::string node = fed_.org("ministry-id").node.cert_pem;
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 500; ++i) {
        auto p = resolver.ResolveCached(t % 2 ? alice : node, absl::Now());
        if (!p.ok() || (*p)->org.empty()) ++failures;
        if (t == 0 && i % 100 == 0) resolver.SetRoster(roster_);
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
}

TEST(AccessTable, NodesAndUsersReachOnlyTheirMethods) {
  Principal node{PrincipalKind::kNode, "ministry-id", "node", {}, ""};
  Principal user{PrincipalKind::kUser, "union-sg", "user/alice", {v1::ROLE_CASEWORKER}, ""};
  EXPECT_OK(CheckAccess(node, "/corridor.v1.PeerService/Hello"));
  EXPECT_STATUS(CheckAccess(user, "/corridor.v1.PeerService/Hello"),
                absl::StatusCode::kPermissionDenied, "peer nodes only");
  EXPECT_OK(CheckAccess(user, "/corridor.v1.NodeService/Status"));
  EXPECT_STATUS(CheckAccess(node, "/corridor.v1.NodeService/Status"),
                absl::StatusCode::kPermissionDenied, "is for users");
  EXPECT_STATUS(CheckAccess(user, "/corridor.v1.Unknown/Method"),
                absl::StatusCode::kPermissionDenied, "not open to anyone");
}

}  // namespace
}  // namespace corridor
