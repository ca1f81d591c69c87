// A running node follows the roster in force and its reloaded config without a
// restart (in-process node on a loopback port, real mutual TLS):
// - a member a new roster brings in is trusted at its first handshake after the
//   install, shown as `joining` until verified; a member a roster drops is refused
//   at once, on a connection already open too, and no longer probed;
// - SIGHUP's Node::Reload applies users and revoked serials to open connections,
//   and refuses, changing nothing, a change that needs a restart;
// - calls in flight on one channel and on several while the roster changes all
//   get a definite answer.
#include <atomic>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/time/clock.h"
#include "client/lib/pki.h"
#include "corridor/v1/node.grpc.pb.h"
#include "gtest/gtest.h"
#include "ledger/base/file.h"
#include "server/auth/identity.h"
#include "server/auth/tls_trust.h"
#include "server/federation/peers.h"
#include "server/node/config.h"
#include "server/node/node.h"
#include "tests/testing/channels.h"
#include "tests/testing/federation.h"
#include "tests/testing/status_matchers.h"

namespace corridor {
namespace {

constexpr char kNewcomer[] = "inspectorate-sg";

class RosterFollowingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fed_.AddOrg("union-sg");
    fed_.AddOrg("ministry-id", v1::ORG_KIND_MINISTRY);
    fed_.AddOrg(kNewcomer, v1::ORG_KIND_INSPECTORATE);
    config_path_ = fed_.WriteNodeConfig("union-sg", {{"adm", {"admin"}}, {"alice", {"auditor"}}});
    // Version 1 lists union-sg and ministry-id only.
    ASSERT_OK(WriteFileAtomically(fed_.org("union-sg").dir + "/roster.json",
                                  fed_.Sign(Without(fed_.MakeRoster(1), kNewcomer), 2)));
    ASSERT_OK_AND_ASSIGN(v1::NodeConfig config, LoadNodeConfig(config_path_));
    ASSERT_OK_AND_ASSIGN(node_, Node::Start(config));
    target_ = fed_.org("union-sg").endpoint();
    admin_ = UserChannel("adm");
  }
  void TearDown() override {
    if (node_) node_->Shutdown(absl::Seconds(1));
  }

  static v1::Roster Without(v1::Roster roster, const std::string& org) {
    auto* members = roster.mutable_members();
    for (int i = members->size() - 1; i >= 0; --i) {
      if (members->Get(i).org() == org) members->DeleteSubrange(i, 1);
    }
    for (auto& a : *roster.mutable_agreements()) {
      auto* parties = a.mutable_parties();
      for (int i = parties->size() - 1; i >= 0; --i) {
        if (parties->Get(i) == org) parties->DeleteSubrange(i, 1);
      }
    }
    return roster;
  }

  // Each channel has a connection of its own: a new channel is a new TLS handshake.
  std::shared_ptr<grpc::Channel> Channel(const std::string& cert, const std::string& key) {
    return testing::OwnChannel(cert, key, fed_.org("union-sg").ca.cert_pem, target_);
  }
  std::shared_ptr<grpc::Channel> UserChannel(const std::string& name) {
    const std::string prefix = fed_.IssueUser("union-sg", name);
    return Channel(ReadFileToString(prefix + ".crt").value(),
                   ReadFileToString(prefix + ".key").value());
  }
  std::shared_ptr<grpc::Channel> NodeChannel(const std::string& org) {
    const testing::TestOrg& o = fed_.org(org);
    return Channel(o.node.cert_pem, o.node.key_pem);
  }
  static std::unique_ptr<grpc::ClientContext> Ctx() {
    return testing::ScaledContext(absl::Seconds(10));
  }
  static grpc::Status Hello(const std::shared_ptr<grpc::Channel>& ch) {
    v1::HelloResponse resp;
    return v1::PeerService::NewStub(ch)->Hello(Ctx().get(), v1::HelloRequest(), &resp);
  }
  static grpc::Status Whoami(const std::shared_ptr<grpc::Channel>& ch) {
    v1::WhoamiResponse resp;
    return v1::NodeService::NewStub(ch)->Whoami(Ctx().get(), v1::WhoamiRequest(), &resp);
  }
  grpc::Status Push(const v1::Roster& roster) {
    v1::PushRosterRequest req;
    req.set_signed_roster(fed_.Sign(roster, 2));
    v1::PushRosterResponse resp;
    return v1::NodeService::NewStub(admin_)->PushRoster(Ctx().get(), req, &resp);
  }
  // The node's view of `org`, or nullopt if it does not list it.
  std::optional<v1::PeerStatus> PeerView(const std::string& org) {
    v1::StatusResponse resp;
    grpc::Status s = v1::NodeService::NewStub(admin_)->Status(Ctx().get(), {}, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    for (const auto& p : resp.peers()) {
      if (p.org() == org) return p;
    }
    return std::nullopt;
  }
  // Rewrites the node's config file with `from` replaced by `to`.
  void EditConfig(const std::string& from, const std::string& to) {
    std::string text = ReadFileToString(config_path_).value();
    ASSERT_NE(text.find(from), std::string::npos) << from;
    ASSERT_OK(WriteFileAtomically(config_path_, absl::StrReplaceAll(text, {{from, to}})));
  }

  testing::TestFederation fed_;
  std::string config_path_;
  std::unique_ptr<Node> node_;
  std::string target_;
  std::shared_ptr<grpc::Channel> admin_;
};

TEST_F(RosterFollowingTest, ANewMemberIsTrustedAtOnceAndARemovedOneRefusedAtOnce) {
  // Before the roster lists it, the newcomer's node fails the TLS handshake.
  EXPECT_EQ(Hello(NodeChannel(kNewcomer)).error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_FALSE(PeerView(kNewcomer).has_value());

  ASSERT_TRUE(Push(fed_.MakeRoster(2)).ok());
  // Its first handshake after the install is accepted: no restart.
  auto newcomer = NodeChannel(kNewcomer);
  grpc::Status hello = Hello(newcomer);
  EXPECT_TRUE(hello.ok()) << hello.error_message();
  // Its node is not running: it shows as joining, with the cause, not as healthy.
  node_->ProbePeersNow();
  auto view = PeerView(kNewcomer);
  ASSERT_TRUE(view.has_value());
  EXPECT_EQ(view->state(), v1::PEER_STATE_JOINING);
  EXPECT_NE(view->last_error(), "");
  EXPECT_EQ(view->endpoint(), fed_.org(kNewcomer).endpoint());

  // Version 3 drops it: refused on the connection already open, and on a new one at TLS.
  ASSERT_TRUE(Push(Without(fed_.MakeRoster(3), kNewcomer)).ok());
  hello = Hello(newcomer);
  EXPECT_EQ(hello.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_NE(hello.error_message().find("not in the roster in force (version 3)"), std::string::npos)
      << hello.error_message();
  EXPECT_EQ(Hello(NodeChannel(kNewcomer)).error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_FALSE(PeerView(kNewcomer).has_value());
  EXPECT_TRUE(PeerView("ministry-id").has_value());
}

// An open connection of a removed member is closed, not only refused: at
// limits.max_connection_age_seconds the node asks it to reconnect, and the new
// handshake fails.
TEST_F(RosterFollowingTest, ARemovedMembersOpenConnectionIsClosed) {
  node_->Shutdown(absl::Seconds(1));
  node_.reset();
  std::string text = ReadFileToString(config_path_).value();
  text = absl::StrReplaceAll(text, {{"limits:\n", "limits:\n  max_connection_age_seconds: 1\n"}});
  ASSERT_OK(WriteFileAtomically(config_path_, text));
  ASSERT_OK_AND_ASSIGN(v1::NodeConfig config, LoadNodeConfig(config_path_));
  ASSERT_OK_AND_ASSIGN(node_, Node::Start(config));
  admin_ = UserChannel("adm");
  ASSERT_TRUE(Push(fed_.MakeRoster(2)).ok());
  auto newcomer = NodeChannel(kNewcomer);
  ASSERT_TRUE(Hello(newcomer).ok());
  ASSERT_TRUE(Push(Without(fed_.MakeRoster(3), kNewcomer)).ok());
  // Refused on the open connection, or (on a slow machine, where the
  // one-second age has already passed) at the new handshake.
  const grpc::StatusCode first = Hello(newcomer).error_code();
  EXPECT_TRUE(first == grpc::StatusCode::PERMISSION_DENIED ||
              first == grpc::StatusCode::UNAVAILABLE)
      << first;
  // Within a few connection ages the same channel no longer gets through the handshake.
  const absl::Time give_up = absl::Now() + testing::ScaledDeadline(absl::Seconds(20));
  grpc::StatusCode code = grpc::StatusCode::PERMISSION_DENIED;
  while (code != grpc::StatusCode::UNAVAILABLE && absl::Now() < give_up) {
    absl::SleepFor(absl::Milliseconds(200));
    code = Hello(newcomer).error_code();
  }
  EXPECT_EQ(code, grpc::StatusCode::UNAVAILABLE);
  // A member's connection is asked to reconnect too, and does, unnoticed.
  auto member = NodeChannel("ministry-id");
  ASSERT_TRUE(Hello(member).ok());
  absl::SleepFor(absl::Seconds(2));
  grpc::Status again = Hello(member);
  EXPECT_TRUE(again.ok()) << again.error_message();
}

TEST_F(RosterFollowingTest, TheHandshakeCheckNamesTheCause) {
  auto roster = std::make_shared<const v1::Roster>(Without(fed_.MakeRoster(1), kNewcomer));
  v1::NodeConfig config;
  config.set_federation(fed_.federation());
  config.set_org("union-sg");
  IdentityResolver identity(config, roster);
  const absl::Time now = absl::Now();
  EXPECT_OK(CheckIssuedByRosterMember(identity, fed_.org("ministry-id").node.cert_pem, now));
  EXPECT_STATUS(
      CheckIssuedByRosterMember(identity, fed_.org(kNewcomer).node.cert_pem, now),
      absl::StatusCode::kUnauthenticated,
      "CA not trusted: org \"inspectorate-sg\" is not in the roster in force (version 1)");
  // A member's name on a certificate its CA did not issue.
  EXPECT_STATUS(
      CheckIssuedByRosterMember(
          identity, fed_.IssueCertificatePem(kNewcomer, "spiffe://corridor.test/union-sg/node"),
          now),
      absl::StatusCode::kUnauthenticated, "is not valid under the CA of org \"union-sg\"");
  // An identity of another federation.
  EXPECT_STATUS(
      CheckIssuedByRosterMember(
          identity, fed_.IssueCertificatePem(kNewcomer, "spiffe://other.example/union-sg/node"),
          now),
      absl::StatusCode::kUnauthenticated, "no CA of a member of roster version 1");
  // Expired by the clock: the member's CA issued it, the cause is the date. (A fresh
  // resolver: answers are cached per certificate, and expiry is also checked per call.)
  IdentityResolver later(config, roster);
  EXPECT_STATUS(CheckIssuedByRosterMember(later, fed_.org("ministry-id").node.cert_pem,
                                          now + testing::kCertificateValidity + absl::Hours(48)),
                absl::StatusCode::kUnauthenticated, "ministry-id");
  // A member's CA certificate is no TLS client certificate (no digitalSignature use).
  EXPECT_STATUS(CheckIssuedByRosterMember(identity, fed_.org("ministry-id").ca.cert_pem, now),
                absl::StatusCode::kUnauthenticated, "no CA of a member");
  identity.SetRoster(std::make_shared<const v1::Roster>(fed_.MakeRoster(2)));
  EXPECT_OK(CheckIssuedByRosterMember(identity, fed_.org(kNewcomer).node.cert_pem, now));
}

// What a failed call to a peer says, by the kind of failure.
TEST(DescribePeerCallErrorTest, NamesWhichSideRefusedTheHandshake) {
  auto describe = [](const std::string& message) {
    return DescribePeerCallError(grpc::Status(grpc::StatusCode::UNAVAILABLE, message));
  };
  EXPECT_NE(describe("failed to connect to all addresses; last error: UNKNOWN: "
                     "ipv4:127.0.0.1:5000: Socket closed")
                .find("may not trust this node's CA yet"),
            std::string::npos);
  EXPECT_NE(describe("failed to connect to all addresses; last error: UNKNOWN: "
                     "ipv4:127.0.0.1:5000: Ssl handshake failed: SSL_ERROR_SSL: error:1000007d:SSL "
                     "routines:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED")
                .find("this node does not accept the peer's certificate"),
            std::string::npos);
  EXPECT_NE(describe("failed to connect to all addresses; last error: UNAVAILABLE: "
                     "ipv4:127.0.0.1:5000: Connection refused")
                .find("nothing listens at the peer's endpoint"),
            std::string::npos);
  // Anything else, and every other code, is passed on as it is.
  EXPECT_EQ(describe("Deadline Exceeded"), "Deadline Exceeded");
  EXPECT_EQ(
      DescribePeerCallError(grpc::Status(grpc::StatusCode::PERMISSION_DENIED, "Socket closed")),
      "Socket closed");
}

// Calls in flight on one channel and on several while rosters are installed
// (adding, then dropping, the newcomer): each call gets a definite answer, and
// the members' and users' calls are never refused.
TEST_F(RosterFollowingTest, CallsInFlightWhileTheRosterChangesAllGetAnAnswer) {
  std::vector<std::shared_ptr<grpc::Channel>> channels = {NodeChannel("ministry-id"),
                                                          NodeChannel("ministry-id")};
  for (int i = 0; i < 3; ++i) channels.push_back(UserChannel(absl::StrCat("user", i)));
  std::atomic<bool> stop{false};
  std::atomic<int> calls{0}, wrong{0};
  std::vector<std::thread> callers;
  for (int t = 0; t < 32; ++t) {
    // Half the callers share channel 0 (one connection); the rest spread over the others.
    auto ch = channels[t % 2 == 0 ? 0 : 1 + (t % (channels.size() - 1))];
    const bool node = ch == channels[0] || ch == channels[1];
    callers.emplace_back([&, ch, node] {
      while (!stop.load()) {
        grpc::Status s = node ? Hello(ch) : Whoami(ch);
        ++calls;
        // Users not in the config are refused; nodes of members never are.
        const bool ok = node ? s.ok() : s.error_code() == grpc::StatusCode::PERMISSION_DENIED;
        if (!ok) {
          ++wrong;
          ADD_FAILURE() << s.error_code() << " " << s.error_message();
        }
      }
    });
  }
  for (uint64_t v = 2; v <= 7; ++v) {
    v1::Roster roster = fed_.MakeRoster(v);
    ASSERT_TRUE(Push(v % 2 == 0 ? roster : Without(roster, kNewcomer)).ok()) << v;
    absl::SleepFor(absl::Milliseconds(50));
  }
  stop = true;
  for (auto& t : callers) t.join();
  EXPECT_GT(calls.load(), 64);
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_FALSE(PeerView(kNewcomer).has_value());  // version 7 drops it
}

TEST_F(RosterFollowingTest, ReloadAppliesUsersAndRevocationsToOpenConnections) {
  auto alice = UserChannel("alice");
  auto carol = UserChannel("carol");
  ASSERT_TRUE(Whoami(alice).ok());
  EXPECT_EQ(Whoami(carol).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  ASSERT_OK_AND_ASSIGN(std::string unchanged, node_->Reload(config_path_));
  EXPECT_EQ(unchanged, "nothing changed");

  // carol is added, alice's certificate revoked.
  const std::string alice_serial =
      pki::InspectCertificate(ReadFileToString(fed_.org("union-sg").dir + "/alice.crt").value())
          ->serial_hex;
  EditConfig("users:\n", "users:\n  carol: {roles: [caseworker]}\n");
  EditConfig("tls:\n", absl::StrCat("tls:\n  revoked_serials: [\"", alice_serial, "\"]\n"));
  ASSERT_OK_AND_ASSIGN(std::string changed, node_->Reload(config_path_));
  EXPECT_EQ(changed, "users, tls.revoked_serials");
  grpc::Status s = Whoami(alice);  // the same connection as before
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_NE(s.error_message().find("has been revoked"), std::string::npos) << s.error_message();
  EXPECT_TRUE(Whoami(carol).ok());
}

TEST_F(RosterFollowingTest, ReloadRefusesWhatNeedsARestartAndChangesNothing) {
  auto alice = UserChannel("alice");
  ASSERT_TRUE(Whoami(alice).ok());
  const std::string alice_serial =
      pki::InspectCertificate(ReadFileToString(fed_.org("union-sg").dir + "/alice.crt").value())
          ->serial_hex;
  // A revocation together with changes that need a restart: none of it is applied.
  EditConfig("tls:\n", absl::StrCat("tls:\n  revoked_serials: [\"", alice_serial, "\"]\n"));
  const testing::TestOrg& o = fed_.org("union-sg");
  EditConfig(absl::StrCat("listen: 127.0.0.1:", o.port),
             absl::StrCat("listen: 127.0.0.1:", testing::PickFreePort()));
  EditConfig("data_dir: data", "data_dir: data2");
  EXPECT_STATUS(node_->Reload(config_path_), absl::StatusCode::kFailedPrecondition,
                "nothing was reloaded: listen, data_dir changed, which need a restart");
  EXPECT_TRUE(Whoami(alice).ok());
  // Each restart-only part of tls is named too.
  EditConfig("cert_file: node.crt", "cert_file: ./node.crt");  // the same file, another path
  EXPECT_STATUS(node_->Reload(config_path_), absl::StatusCode::kFailedPrecondition,
                "tls.cert_file");
  // A config that does not load changes nothing either.
  ASSERT_OK(WriteFileAtomically(config_path_, "federation: [\n"));
  EXPECT_STATUS(node_->Reload(config_path_), absl::StatusCode::kInvalidArgument,
                "nothing was reloaded");
  EXPECT_TRUE(Whoami(alice).ok());
}

TEST_F(RosterFollowingTest, ReloadRefusesASigningKeyTheRosterDoesNotListAsActive) {
  const testing::TestOrg& o = fed_.org("union-sg");
  ASSERT_OK(WriteFileAtomically(o.dir + "/other.key", Ed25519PrivateKey::Generate().ToPem()));
  EditConfig("key_file: signing.key", "key_file: other.key");
  EXPECT_STATUS(node_->Reload(config_path_), absl::StatusCode::kFailedPrecondition,
                "does not list key");
  // Nothing else in that reload was applied: the next unchanged reload still sees the change.
  EditConfig("key_file: other.key", "key_file: signing.key");
  ASSERT_OK_AND_ASSIGN(std::string changed, node_->Reload(config_path_));
  EXPECT_EQ(changed, "nothing changed");
}

}  // namespace
}  // namespace corridor
