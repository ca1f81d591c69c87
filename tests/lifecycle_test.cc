// A living federation with real corridord processes (issue 14): a member joins
// a running federation and one is removed with no restart, a signing key is
// rotated and the old one revoked while referrals flow, SIGHUP reloads what can
// change at run time and refuses what needs a restart, and corridord
// --check-config refuses each misconfiguration that would stop a start.
// Operators' side of it: docs/onboarding.md.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <functional>
#include <map>
#include <set>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "client/lib/grpc_util.h"
#include "client/lib/pki.h"
#include "corridor/v1/node.grpc.pb.h"
#include "gtest/gtest.h"
#include "server/federation/envelope.h"
#include "tests/testing/channels.h"
#include "tests/testing/federation.h"
#include "tests/testing/load.h"
#include "tests/testing/nodes.h"
#include "tests/testing/process.h"
#include "tests/testing/status_matchers.h"

namespace corridor {
namespace {

using testing::BinaryPath;
using testing::CommandResult;
using testing::Eventually;
using testing::JsonValues;
using testing::RunCommand;

constexpr char kUnion[] = "union-sg";
constexpr char kMinistry[] = "ministry-id";
constexpr char kInspectorate[] = "inspectorate-sg";

// `roster` without `org`: not a member, and no party to any agreement.
v1::Roster Without(v1::Roster roster, const std::string& org) {
  auto* members = roster.mutable_members();
  for (int i = members->size() - 1; i >= 0; --i) {
    if (members->Get(i).org() == org) members->DeleteSubrange(i, 1);
  }
  for (v1::Agreement& a : *roster.mutable_agreements()) {
    auto* parties = a.mutable_parties();
    for (int i = parties->size() - 1; i >= 0; --i) {
      if (parties->Get(i) == org) parties->DeleteSubrange(i, 1);
    }
  }
  return roster;
}

v1::Member* MemberOf(v1::Roster& roster, const std::string& org) {
  for (v1::Member& m : *roster.mutable_members()) {
    if (m.org() == org) return &m;
  }
  ADD_FAILURE() << org << " is not in the roster";
  return roster.add_members();
}

// Replaces the first `from` in the file at `path` by `to`.
void EditFile(const std::string& path, const std::string& from, const std::string& to) {
  std::string text = ReadFileToString(path).value_or("");
  const size_t at = text.find(from);
  ASSERT_NE(at, std::string::npos) << "no \"" << from << "\" in " << path << ":\n" << text;
  text.replace(at, from.size(), to);
  ASSERT_OK(WriteFileAtomically(path, text, 0644));
}

// How many lines of `log` contain `needle`.
int CountLines(const std::string& log, const std::string& needle) {
  int n = 0;
  for (absl::string_view line : absl::StrSplit(log, '\n')) n += absl::StrContains(line, needle);
  return n;
}

// Calls kept in flight against one node from several threads, on one shared
// channel and on channels of their own, until Stop(); every outcome tallied.
class CallsInFlight {
 public:
  using Call = std::function<grpc::Status(const std::shared_ptr<grpc::Channel>&)>;
  // `threads` threads share `shared`; one more thread runs on each of `own`.
  CallsInFlight(std::shared_ptr<grpc::Channel> shared, int threads,
                std::vector<std::shared_ptr<grpc::Channel>> own, Call call)
      : call_(std::move(call)) {
    for (int i = 0; i < threads; ++i) threads_.emplace_back([this, shared] { Run(shared); });
    for (auto& ch : own) threads_.emplace_back([this, ch] { Run(ch); });
  }
  ~CallsInFlight() { Stop(); }
  void Stop() {
    stop_ = true;
    for (std::thread& t : threads_) {
      if (t.joinable()) t.join();
    }
  }
  const testing::OutcomeTally& tally() const { return tally_; }
  std::string first_failure() const {
    absl::MutexLock l(&mu_);
    return first_failure_;
  }

 private:
  void Run(const std::shared_ptr<grpc::Channel>& channel) {
    while (!stop_) {
      const grpc::Status s = call_(channel);
      tally_.Add("call", s.error_code());
      if (!s.ok()) {
        absl::MutexLock l(&mu_);
        if (first_failure_.empty()) {
          first_failure_ = testing::StatusCodeName(s.error_code()) + ": " + s.error_message();
        }
      }
    }
  }

  Call call_;
  std::atomic<bool> stop_{false};
  std::vector<std::thread> threads_;
  testing::OutcomeTally tally_;
  mutable absl::Mutex mu_;
  std::string first_failure_ ABSL_GUARDED_BY(mu_);
};

class LifecycleTest : public ::testing::Test {
 protected:
  // The identity `org`'s node presents, trusting `to`'s CA.
  TlsIdentity NodeIdentity(const std::string& org, const std::string& to) {
    return {fed_.org(org).node.cert_pem, fed_.org(org).node.key_pem, fed_.org(to).ca.cert_pem};
  }
  // A user's identity at its own org's node.
  TlsIdentity UserIdentity(const std::string& org, const std::string& prefix) {
    return {ReadFileToString(prefix + ".crt").value_or(""),
            ReadFileToString(prefix + ".key").value_or(""), fed_.org(org).ca.cert_pem};
  }
  std::shared_ptr<grpc::Channel> Channel(const TlsIdentity& identity, const std::string& to) {
    return testing::MakeDedicatedChannel(identity, fed_.org(to).endpoint());
  }
  grpc::Status Hello(const std::shared_ptr<grpc::Channel>& channel) {
    v1::HelloRequest req;
    v1::HelloResponse resp;
    return v1::PeerService::NewStub(channel)->Hello(testing::ScaledContext().get(), req, &resp);
  }
  grpc::Status Whoami(const std::shared_ptr<grpc::Channel>& channel) {
    v1::WhoamiRequest req;
    v1::WhoamiResponse resp;
    return v1::NodeService::NewStub(channel)->Whoami(testing::ScaledContext().get(), req, &resp);
  }
  grpc::Status Deliver(const std::shared_ptr<grpc::Channel>& channel, const v1::Envelope& env) {
    v1::Receipt receipt;
    return v1::PeerService::NewStub(channel)->Deliver(testing::ScaledContext().get(), env,
                                                      &receipt);
  }
  // A referral envelope from `from` to `to` under test-agreement, signed with `key`.
  v1::Envelope Envelope(const std::string& from, const std::string& to, const std::string& key_id,
                        const Ed25519PrivateKey& key) {
    v1::EnvelopePayload p;
    const std::string id = absl::StrCat("ENV-", from, "-", ++envelopes_);
    p.set_envelope_id(id);
    p.set_sender_org(from);
    p.set_recipient_org(to);
    p.set_created_unix(absl::ToUnixSeconds(absl::Now()));
    p.set_expires_unix(absl::ToUnixSeconds(absl::Now() + absl::Hours(1)));
    p.set_key_id(key_id);
    p.set_agreement("test-agreement");
    p.set_purpose("case-referral");
    p.mutable_referral()->set_referral_id("REF-" + id);
    p.mutable_referral()->set_origin_case_id("C-1");
    p.mutable_referral()->mutable_shared()->set_category(v1::CASE_CATEGORY_ABUSE);
    return SignEnvelope(p, key);
  }
  // A new case at `org` whose worker consents to referral to `to`.
  std::string CreateCase(const std::string& org, const std::string& to) {
    CommandResult r = nodes_.Ctl(
        org, {"case", "create", "--json", "--category", "wage-theft", "--origin", "ID",
              "--destination", "SG", "--worker-name", "Dewi", "--consent", to + ":case-referral"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    auto ids = JsonValues(r.out, "id");
    return ids.empty() ? "" : ids[0];
  }
  CommandResult Refer(const std::string& from, const std::string& case_id, const std::string& to) {
    return nodes_.Ctl(from, {"refer", case_id, "--to", to, "--agreement", "test-agreement",
                             "--purpose", "case-referral", "--include", "personal-data", "--json"});
  }
  std::vector<std::string> Inbox(const std::string& org) {
    return JsonValues(nodes_.Ctl(org, {"inbox", "--json"}).out, "referral_id");
  }
  // Refers a new case from `from` to `to`, which accepts it; true once the
  // acceptance shows on the sender's case.
  void ReferAndAccept(const std::string& from, const std::string& to) {
    SCOPED_TRACE(from + " refers a case to " + to);
    const std::string id = CreateCase(from, to);
    CommandResult r = Refer(from, id, to);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const std::string referral = JsonValues(r.out, "referral_id").at(0);
    ASSERT_TRUE(Eventually([&] {
      auto inbox = Inbox(to);
      return std::count(inbox.begin(), inbox.end(), referral) == 1;
    })) << nodes_.Ctl(from, {"outbox"}).out;
    r = nodes_.Ctl(to, {"accept", referral});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    std::string shown;
    EXPECT_TRUE(Eventually([&] {
      shown = nodes_.Ctl(from, {"case", "show", id, "--purpose", "case-handling"}).out;
      return absl::StrContains(shown, "accepted");
    })) << shown;
  }
  // Sends SIGHUP to `org`'s node.
  void Hangup(const std::string& org) { ASSERT_EQ(kill(nodes_.process(org).pid(), SIGHUP), 0); }
  std::string SerialOf(const std::string& cert_prefix) {
    auto info = pki::InspectCertificate(ReadFileToString(cert_prefix + ".crt").value_or(""));
    EXPECT_TRUE(info.ok()) << info.status();
    return info.ok() ? info->serial_hex : "";
  }

  testing::TestFederation fed_;
  testing::NodeProcesses nodes_{fed_};
  int envelopes_ = 0;
};

// Whoami from users and Hello from a member's node, on one shared channel and
// on channels of their own, kept in flight at `org` while its roster changes.
class LoadDuringRosterChange {
 public:
  LoadDuringRosterChange(const TlsIdentity& user, const TlsIdentity& peer_node,
                         const std::string& endpoint) {
    auto own = [&](const TlsIdentity& id) {
      std::vector<std::shared_ptr<grpc::Channel>> v;
      for (int i = 0; i < 3; ++i) v.push_back(testing::MakeDedicatedChannel(id, endpoint));
      return v;
    };
    users_ = std::make_unique<CallsInFlight>(
        testing::MakeDedicatedChannel(user, endpoint), 6, own(user), [](const auto& ch) {
          v1::WhoamiResponse resp;
          return v1::NodeService::NewStub(ch)->Whoami(testing::ScaledContext().get(), {}, &resp);
        });
    peers_ = std::make_unique<CallsInFlight>(
        testing::MakeDedicatedChannel(peer_node, endpoint), 4, own(peer_node), [](const auto& ch) {
          v1::HelloResponse resp;
          return v1::PeerService::NewStub(ch)->Hello(testing::ScaledContext().get(), {}, &resp);
        });
  }
  // Stops the calls; every one of them must have been answered OK.
  void StopAndCheck() {
    users_->Stop();
    peers_->Stop();
    for (const auto* calls : {users_.get(), peers_.get()}) {
      EXPECT_GT(calls->tally().Total(), 0u);
      EXPECT_EQ(calls->tally().Count("call", grpc::StatusCode::OK), calls->tally().Total())
          << calls->tally().ToString() << "; first failure: " << calls->first_failure();
    }
  }

 private:
  std::unique_ptr<CallsInFlight> users_, peers_;
};

TEST_F(LifecycleTest, ThirdMemberJoinsARunningFederationWithoutARestart) {
  fed_.AddOrg(kUnion, v1::ORG_KIND_UNION);
  fed_.AddOrg(kMinistry, v1::ORG_KIND_MINISTRY);
  nodes_.Configure(kUnion);  // roster v1: union-sg and ministry-id
  nodes_.Configure(kMinistry);
  fed_.AddOrg(kInspectorate, v1::ORG_KIND_INSPECTORATE);
  nodes_.Configure(kInspectorate, 2);  // roster v2: the three of them, one agreement
  ASSERT_TRUE(nodes_.Start(kUnion));
  ASSERT_TRUE(nodes_.Start(kMinistry));
  const pid_t union_pid = nodes_.process(kUnion).pid();
  const pid_t ministry_pid = nodes_.process(kMinistry).pid();
  ASSERT_EQ(nodes_.Ctl(kUnion, {"health", "--require-peers", "--wait", "60"}).exit_code, 0);

  LoadDuringRosterChange load(UserIdentity(kUnion, nodes_.user(kUnion)),
                              NodeIdentity(kMinistry, kUnion), fed_.org(kUnion).endpoint());
  // v2 pushed to union-sg only; the ministry fetches it from its peer.
  CommandResult r = nodes_.PushRoster(kUnion, fed_.Sign(fed_.MakeRoster(2), fed_.threshold()));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_TRUE(nodes_.AwaitRosterVersion(kMinistry, 2));
  // The inspectorate is not running yet: both list it as joining, and
  // --require-peers fails naming it.
  for (const std::string org : {kUnion, kMinistry}) {
    SCOPED_TRACE(org);
    EXPECT_TRUE(Eventually([&] {
      return nodes_.PeerState(org, kInspectorate) == v1::PEER_STATE_JOINING;
    })) << nodes_.Ctl(org, {"health"}).out;
    r = nodes_.Ctl(org, {"health", "--require-peers"});
    EXPECT_NE(r.exit_code, 0) << r.out;
    EXPECT_TRUE(absl::StrContains(r.err, kInspectorate)) << r.err;
    EXPECT_TRUE(absl::StrContains(r.out, "joining")) << r.out;
  }
  // Started, it is reached and verified: healthy everywhere.
  ASSERT_TRUE(nodes_.Start(kInspectorate));
  for (const std::string org : {kUnion, kMinistry, kInspectorate}) {
    r = nodes_.Ctl(org, {"health", "--require-peers", "--wait", "60"});
    EXPECT_EQ(r.exit_code, 0) << org << ": " << r.out << r.err;
  }
  EXPECT_EQ(nodes_.PeerState(kUnion, kInspectorate), v1::PEER_STATE_HEALTHY);
  EXPECT_EQ(nodes_.PeerState(kMinistry, kInspectorate), v1::PEER_STATE_HEALTHY);
  load.StopAndCheck();

  // Referrals flow to and from the newcomer, and acceptances reach the sender.
  ReferAndAccept(kUnion, kInspectorate);
  ReferAndAccept(kInspectorate, kMinistry);
  // No node was restarted.
  EXPECT_TRUE(nodes_.process(kUnion).running());
  EXPECT_TRUE(nodes_.process(kMinistry).running());
  EXPECT_EQ(nodes_.process(kUnion).pid(), union_pid);
  EXPECT_EQ(nodes_.process(kMinistry).pid(), ministry_pid);
}

TEST_F(LifecycleTest, NewcomerNotYetTrustedIsToldWhyAndTheRefusalIsLogged) {
  fed_.AddOrg(kUnion, v1::ORG_KIND_UNION);
  fed_.AddOrg(kMinistry, v1::ORG_KIND_MINISTRY);
  nodes_.Configure(kUnion);
  nodes_.Configure(kMinistry);
  fed_.AddOrg(kInspectorate, v1::ORG_KIND_INSPECTORATE);
  nodes_.Configure(kInspectorate, 2);
  ASSERT_TRUE(nodes_.Start(kUnion));
  // The newcomer runs on v2, which union-sg has not seen: union-sg does not
  // trust its CA yet.
  ASSERT_TRUE(nodes_.Start(kInspectorate));
  std::string detail;
  EXPECT_TRUE(Eventually([&] {
    const v1::StatusResponse health = nodes_.Health(kInspectorate);
    for (const v1::PeerStatus& p : health.peers()) {
      if (p.org() == kUnion) detail = p.last_error();
    }
    return absl::StrContains(detail, "may not trust this node's CA");
  })) << "the newcomer's view of union-sg: "
      << detail;
  EXPECT_NE(nodes_.PeerState(kInspectorate, kUnion), v1::PEER_STATE_HEALTHY);
  const std::string line = nodes_.AwaitLogLine(
      kUnion, {"\"event\":\"tls.refused\"", pki::NodeSpiffeUri(fed_.federation(), kInspectorate)});
  EXPECT_FALSE(line.empty()) << nodes_.process(kUnion).Log();
  // A certificate from an issuer no member knows, as a user would present it.
  testing::TestFederation stranger_fed;
  stranger_fed.AddOrg("stranger");
  const std::string prefix = stranger_fed.IssueUser("stranger", "mallory");
  const grpc::Status s = Whoami(Channel(UserIdentity(kUnion, prefix), kUnion));
  // Refused at the handshake (docs/access-control.md): UNAVAILABLE at the client.
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE) << s.error_message();
  EXPECT_FALSE(nodes_
                   .AwaitLogLine(kUnion, {"\"event\":\"tls.refused\"",
                                          pki::UserSpiffeUri(stranger_fed.federation(), "stranger",
                                                             "mallory")})
                   .empty())
      << nodes_.process(kUnion).Log();
}

TEST_F(LifecycleTest, RemovedMemberIsRefusedAtOnceAndLeavesHealth) {
  fed_.AddOrg(kUnion, v1::ORG_KIND_UNION);
  fed_.AddOrg(kMinistry, v1::ORG_KIND_MINISTRY);
  fed_.AddOrg(kInspectorate, v1::ORG_KIND_INSPECTORATE);
  for (const std::string org : {kUnion, kMinistry, kInspectorate}) nodes_.Configure(org);
  for (const std::string org : {kUnion, kMinistry, kInspectorate}) ASSERT_TRUE(nodes_.Start(org));
  ASSERT_EQ(nodes_.Ctl(kUnion, {"health", "--require-peers", "--wait", "60"}).exit_code, 0);
  // A connection the inspectorate's node holds open to union-sg.
  auto open = Channel(NodeIdentity(kInspectorate, kUnion), kUnion);
  ASSERT_TRUE(Hello(open).ok());

  CommandResult r = nodes_.PushRoster(
      kUnion, fed_.Sign(Without(fed_.MakeRoster(2), kInspectorate), fed_.threshold()));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // Its next calls on that connection are refused, saying why.
  grpc::Status s = Hello(open);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED) << s.error_message();
  EXPECT_TRUE(absl::StrContains(s.error_message(), "not in the roster in force"))
      << s.error_message();
  s = Deliver(open, Envelope(kInspectorate, kUnion, fed_.org(kInspectorate).key_id,
                             fed_.org(kInspectorate).signing));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED) << s.error_message();
  EXPECT_TRUE(absl::StrContains(s.error_message(), "not in the roster in force"))
      << s.error_message();
  // A referral it sends stays in its outbox, refused, and its outbox says why.
  const std::string id = CreateCase(kInspectorate, kUnion);
  r = Refer(kInspectorate, id, kUnion);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // Refused by union-sg on a connection open before (PERMISSION_DENIED) or at
  // the handshake of a new one: either way the reason, not a bare timeout.
  v1::OutboxEntry entry;
  auto says_why = [&] {
    return absl::StrContains(entry.last_error(), "not in the roster in force") ||
           absl::StrContains(entry.last_error(), "may not trust this node's CA");
  };
  EXPECT_TRUE(Eventually([&] {
    const v1::ListOutboxResponse outbox = nodes_.Outbox(kInspectorate);
    for (const v1::OutboxEntry& e : outbox.entries()) {
      if (e.recipient_org() == kUnion) entry = e;
    }
    return says_why();
  })) << entry.DebugString();
  EXPECT_NE(entry.state(), "delivered") << entry.DebugString();
  const std::string shown = nodes_.Ctl(kInspectorate, {"outbox"}).out;
  EXPECT_TRUE(absl::StrContains(shown, entry.last_error().substr(0, 40))) << shown;
  EXPECT_TRUE(Inbox(kUnion).empty());
  // It is gone from union-sg's health, and from the ministry's once the
  // ministry has the new roster too; every remaining peer is healthy.
  EXPECT_TRUE(Eventually([&] {
    return nodes_.PeerState(kUnion, kInspectorate) == v1::PEER_STATE_UNSPECIFIED;
  })) << nodes_.Ctl(kUnion, {"health"}).out;
  EXPECT_EQ(nodes_.Ctl(kUnion, {"health", "--require-peers", "--wait", "60"}).exit_code, 0);
  ASSERT_TRUE(nodes_.AwaitRosterVersion(kMinistry, 2));
  EXPECT_TRUE(Eventually([&] {
    return nodes_.PeerState(kMinistry, kInspectorate) == v1::PEER_STATE_UNSPECIFIED;
  })) << nodes_.Ctl(kMinistry, {"health"}).out;
  // Nothing is sent to it any more.
  r = Refer(kUnion, CreateCase(kUnion, kInspectorate), kInspectorate);
  EXPECT_NE(r.exit_code, 0) << r.out;
  EXPECT_TRUE(absl::StrContains(r.err, "is not a member in the roster in force (version 2)"))
      << r.err;
  EXPECT_TRUE(Inbox(kInspectorate).empty());
}

TEST_F(LifecycleTest, SigningKeyRotatedAndOldKeyRevokedWhileReferralsFlow) {
  fed_.AddOrg(kUnion, v1::ORG_KIND_UNION);
  fed_.AddOrg(kMinistry, v1::ORG_KIND_MINISTRY);
  nodes_.Configure(kUnion);
  nodes_.Configure(kMinistry);
  ASSERT_TRUE(nodes_.Start(kUnion));
  ASSERT_TRUE(nodes_.Start(kMinistry));
  // A new signing key, made as an org admin would; roster v2 lists it active
  // and union-sg-1 retired (valid a week more).
  const std::string key_dir = fed_.org(kUnion).dir + "/key-2";
  CommandResult made = RunCommand({BinaryPath("corridorctl"), "pki", "signing-key", "--org", kUnion,
                                   "--out", key_dir, "--key-id", "union-sg-2"});
  ASSERT_EQ(made.exit_code, 0) << made.err;
  ASSERT_OK_AND_ASSIGN(Ed25519PrivateKey next,
                       Ed25519PrivateKey::FromPemFile(key_dir + "/signing.key"));
  ASSERT_EQ(ReadFileToString(key_dir + "/signing.pub").value_or(""),
            Base64Encode(next.public_key().raw()) + "\n");
  const std::string id = CreateCase(kUnion, kMinistry);
  // Referrals flow from union-sg to the ministry the whole time.
  std::atomic<bool> stop{false};
  std::atomic<int> acknowledged_after_reload{0};
  std::atomic<bool> reloaded{false};
  absl::Mutex mu;
  std::set<std::string> acknowledged;
  std::vector<std::string> refused;
  std::thread flow([&] {
    while (!stop) {
      CommandResult r = Refer(kUnion, id, kMinistry);
      absl::MutexLock l(&mu);
      if (r.exit_code != 0) {
        refused.push_back(r.err);
        continue;
      }
      acknowledged.insert(JsonValues(r.out, "referral_id").at(0));
      if (reloaded) ++acknowledged_after_reload;
    }
  });
  struct JoinOnExit {
    std::atomic<bool>& stop;
    std::thread& thread;
    ~JoinOnExit() {
      stop = true;
      if (thread.joinable()) thread.join();
    }
  } join_flow{stop, flow};
  v1::Roster v2 = fed_.MakeRoster(2);
  v1::SigningKey* old_key = MemberOf(v2, kUnion)->mutable_signing_keys(0);
  old_key->set_status(v1::KEY_STATUS_RETIRED);
  old_key->set_valid_until(
      absl::FormatTime(absl::RFC3339_sec, absl::Now() + absl::Hours(24 * 7), absl::UTCTimeZone()));
  v1::SigningKey* new_key = MemberOf(v2, kUnion)->add_signing_keys();
  new_key->set_key_id("union-sg-2");
  new_key->set_public_key(Base64Encode(next.public_key().raw()));
  new_key->set_status(v1::KEY_STATUS_ACTIVE);
  CommandResult r = nodes_.PushRoster(kUnion, fed_.Sign(v2, fed_.threshold()));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_TRUE(nodes_.AwaitRosterVersion(kMinistry, 2));
  // The node takes the new key from its config on SIGHUP, and says so.
  EditFile(nodes_.config(kUnion), "key_id: union-sg-1", "key_id: union-sg-2");
  EditFile(nodes_.config(kUnion), "key_file: signing.key", "key_file: key-2/signing.key");
  Hangup(kUnion);
  const std::string line =
      nodes_.AwaitLogLine(kUnion, {"\"event\":\"node.reloaded\"", "signing_key"});
  EXPECT_FALSE(line.empty()) << nodes_.process(kUnion).Log();
  reloaded = true;
  EXPECT_TRUE(Eventually([&] { return acknowledged_after_reload >= 3; }));
  stop = true;
  flow.join();
  {
    absl::MutexLock l(&mu);
    EXPECT_TRUE(refused.empty()) << refused.size() << " refused, first: " << refused.front();
  }
  // Every acknowledged referral arrived once, none failed.
  const v1::ListOutboxResponse outbox = nodes_.AwaitOutboxSettled(kUnion);
  for (const v1::OutboxEntry& e : outbox.entries()) {
    EXPECT_EQ(e.state(), "delivered") << e.DebugString();
  }
  std::vector<std::string> inbox = Inbox(kMinistry);
  EXPECT_EQ(std::set<std::string>(inbox.begin(), inbox.end()).size(), inbox.size());
  EXPECT_EQ(std::set<std::string>(inbox.begin(), inbox.end()), acknowledged);

  // v3 revokes union-sg-1 at the ministry: referrals still arrive (so they
  // are signed with union-sg-2), and an envelope signed with the old key is
  // refused.
  v1::Roster v3 = v2;
  v3.set_version(3);
  MemberOf(v3, kUnion)->mutable_signing_keys(0)->set_status(v1::KEY_STATUS_REVOKED);
  r = nodes_.PushRoster(kMinistry, fed_.Sign(v3, fed_.threshold()));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = Refer(kUnion, id, kMinistry);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string after = JsonValues(r.out, "referral_id").at(0);
  EXPECT_TRUE(Eventually([&] {
    auto now = Inbox(kMinistry);
    return std::count(now.begin(), now.end(), after) == 1;
  })) << nodes_.Ctl(kUnion, {"outbox"}).out;
  auto peer = Channel(NodeIdentity(kUnion, kMinistry), kMinistry);
  grpc::Status s =
      Deliver(peer, Envelope(kUnion, kMinistry, fed_.org(kUnion).key_id, fed_.org(kUnion).signing));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED) << s.error_message();
  EXPECT_TRUE(absl::StrContains(s.error_message(), "revoked")) << s.error_message();
  s = Deliver(peer, Envelope(kUnion, kMinistry, "union-sg-2", next));
  EXPECT_TRUE(s.ok()) << s.error_message();
  // union-sg has not restarted: its checkpoints are still signed with union-sg-1,
  // which v3 revokes. An auditor is told exactly that, not "no signature".
  const std::string v3_file = fed_.root() + "/roster-v3-audit.json";
  ASSERT_OK(WriteFileAtomically(v3_file, fed_.Sign(v3, fed_.threshold())));
  const std::string exported = fed_.root() + "/union-sg.export";
  // The export checks the checkpoint with the roster's keys as it arrives: refused, but
  // written (it is evidence).
  r = nodes_.CtlAs(
      kUnion, nodes_.auditor(kUnion),
      {"audit", "export", "--out", exported, "--roster", v3_file, "--org", kUnion, "--stewards",
       fed_.org(kUnion).dir + "/node.yaml", "--state", fed_.root() + "/audit-state"});
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_TRUE(absl::StrContains(r.err, "lists as revoked")) << r.err;
  r = RunCommand({BinaryPath("corridorctl"), "audit", "verify", exported, "--roster", v3_file,
                  "--org", kUnion, "--stewards", fed_.WriteStewardsFile()});
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_TRUE(absl::StrContains(r.err, "signed with key \"union-sg-1\"")) << r.err;
  EXPECT_TRUE(absl::StrContains(r.err, "lists as revoked")) << r.err;
}

// A node with union-sg alone, its users cw (caseworker) and adm (admin).
class ReloadTest : public LifecycleTest {
 protected:
  void SetUp() override {
    fed_.AddOrg(kUnion, v1::ORG_KIND_UNION);
    nodes_.Configure(kUnion);
    ASSERT_TRUE(nodes_.Start(kUnion));
  }
  // Whether `prefix`'s user may list cases at union-sg (a fresh connection).
  int ListCases(const std::string& prefix) {
    return nodes_.CtlAs(kUnion, prefix, {"case", "list"}).exit_code;
  }
  // The config's tls block with `serial` revoked.
  void RevokeInConfig(const std::string& serial) {
    EditFile(nodes_.config(kUnion), "  ca_file: ca.crt\n",
             "  ca_file: ca.crt\n  revoked_serials: [\"" + serial + "\"]\n");
  }
};

TEST_F(ReloadTest, RevokedUserCertificateIsRefusedAfterSighup) {
  const pid_t pid = nodes_.process(kUnion).pid();
  auto open = Channel(UserIdentity(kUnion, nodes_.user(kUnion)), kUnion);
  ASSERT_TRUE(Whoami(open).ok());
  ASSERT_EQ(ListCases(nodes_.user(kUnion)), 0);
  RevokeInConfig(SerialOf(nodes_.user(kUnion)));
  Hangup(kUnion);
  EXPECT_FALSE(
      nodes_.AwaitLogLine(kUnion, {"\"event\":\"node.reloaded\"", "revoked_serials"}).empty())
      << nodes_.process(kUnion).Log();
  // Refused on the connection it already had, and on a new one.
  const grpc::Status s = Whoami(open);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED) << s.error_message();
  EXPECT_TRUE(absl::StrContains(s.error_message(), "revoked")) << s.error_message();
  CommandResult r = nodes_.Ctl(kUnion, {"case", "list"});
  EXPECT_EQ(r.exit_code, 1) << r.out;
  EXPECT_TRUE(absl::StrContains(r.err, "revoked")) << r.err;
  // Nobody else is affected, and the node was not restarted.
  EXPECT_EQ(nodes_.CtlAsAdmin(kUnion, {"whoami"}).exit_code, 0);
  EXPECT_EQ(nodes_.process(kUnion).pid(), pid);
  EXPECT_TRUE(nodes_.process(kUnion).running());
}

TEST_F(ReloadTest, UsersRolesAndSuspensionTakeEffectAfterSighup) {
  const std::string newcomer = fed_.IssueUser(kUnion, "newcomer");
  EXPECT_NE(ListCases(newcomer), 0);  // not in users: refused
  ASSERT_EQ(ListCases(nodes_.user(kUnion)), 0);
  EditFile(nodes_.config(kUnion), "users:\n", "users:\n  newcomer: {roles: [caseworker]}\n");
  EditFile(nodes_.config(kUnion), "cw: {roles: [caseworker]}",
           "cw: {roles: [caseworker], suspended: true}");
  Hangup(kUnion);
  const std::string line = nodes_.AwaitLogLine(kUnion, {"\"event\":\"node.reloaded\"", "users"});
  EXPECT_FALSE(line.empty()) << nodes_.process(kUnion).Log();
  EXPECT_EQ(ListCases(newcomer), 0);
  CommandResult r = nodes_.Ctl(kUnion, {"case", "list"});
  EXPECT_EQ(r.exit_code, 1) << r.out;
  EXPECT_TRUE(absl::StrContains(r.err, "suspended")) << r.err;
}

// A restart-only field changed together with a revoked serial: the reload is
// refused as a whole, naming the field, and the serial is not applied.
TEST_F(ReloadTest, ReloadChangingARestartOnlyFieldIsRefusedAndChangesNothing) {
  const std::string dir = fed_.org(kUnion).dir;
  const std::string original = ReadFileToString(nodes_.config(kUnion)).value();
  for (const std::string file : {"node.crt", "master.key", "roster.json"}) {
    ASSERT_OK(WriteFileAtomically(dir + "/copy-" + file, ReadFileToString(dir + "/" + file).value(),
                                  0600));
  }
  struct Change {
    std::string field, from, to;
  };
  const std::vector<Change> changes = {
      {"listen", absl::StrCat("listen: 127.0.0.1:", fed_.org(kUnion).port),
       absl::StrCat("listen: 127.0.0.1:", testing::PickFreePort())},
      {"data_dir", "data_dir: data", "data_dir: data-elsewhere"},
      {"master_key_file", "master_key_file: master.key", "master_key_file: copy-master.key"},
      {"cert_file", "cert_file: node.crt", "cert_file: copy-node.crt"},
      {"roster", "file: roster.json", "file: copy-roster.json"},
      {"limits", "peer_call_timeout_seconds: 2", "peer_call_timeout_seconds: 3"},
  };
  const std::string serial = SerialOf(nodes_.user(kUnion));
  int refusals = 0;
  for (const Change& c : changes) {
    SCOPED_TRACE(c.field);
    ASSERT_OK(WriteFileAtomically(nodes_.config(kUnion), original, 0644));
    EditFile(nodes_.config(kUnion), c.from, c.to);
    RevokeInConfig(serial);
    Hangup(kUnion);
    ++refusals;
    EXPECT_TRUE(Eventually([&] {
      return CountLines(nodes_.process(kUnion).Log(), "\"event\":\"node.reload_refused\"") >=
             refusals;
    })) << nodes_.process(kUnion).Log();
    std::string last;
    for (absl::string_view l : absl::StrSplit(nodes_.process(kUnion).Log(), '\n')) {
      if (absl::StrContains(l, "\"event\":\"node.reload_refused\"")) last = std::string(l);
    }
    EXPECT_TRUE(absl::StrContains(last, c.field)) << last;
    EXPECT_TRUE(absl::StrContains(last, "restart")) << last;
    // Nothing changed: the revoked serial is not applied, the node still
    // answers where it did.
    EXPECT_EQ(ListCases(nodes_.user(kUnion)), 0);
  }
  EXPECT_EQ(CountLines(nodes_.process(kUnion).Log(), "\"event\":\"node.reloaded\""), 0)
      << nodes_.process(kUnion).Log();
}

// corridord --check-config on a configuration that would not start: exit 1
// and a message naming the cause, for each misconfiguration; the good one
// passes.
TEST_F(LifecycleTest, CheckConfigRefusesEachMisconfiguration) {
  fed_.AddOrg(kUnion, v1::ORG_KIND_UNION);
  fed_.AddOrg(kMinistry, v1::ORG_KIND_MINISTRY);
  const std::string config = nodes_.Configure(kUnion);
  const std::string dir = fed_.org(kUnion).dir;
  const std::string original = ReadFileToString(config).value();
  auto write = [&](const std::string& name, const std::string& data) {
    EXPECT_OK(WriteFileAtomically(dir + "/" + name, data, 0600));
  };
  // Files the misconfigurations point at.
  write("roster-one-signature.json", fed_.Sign(fed_.MakeRoster(1), 1));
  v1::Roster revoked = fed_.MakeRoster(1);
  MemberOf(revoked, kUnion)->mutable_signing_keys(0)->set_status(v1::KEY_STATUS_REVOKED);
  write("roster-key-revoked.json", fed_.Sign(revoked, fed_.threshold()));
  pki::LeafOptions leaf;
  leaf.spiffe_uri = pki::NodeSpiffeUri(fed_.federation(), kUnion);
  leaf.common_name = "union-sg node";
  leaf.dns_names = {"localhost"};
  leaf.ip_addresses = {"127.0.0.1"};
  leaf.server_auth = true;
  auto foreign = pki::IssueLeaf(fed_.org(kMinistry).ca, leaf);
  ASSERT_OK(foreign.status());
  write("foreign-node.crt", foreign->cert_pem);
  write("foreign-node.key", foreign->key_pem);
  write("master-garbage.key", "this is not a master key\n");
  ASSERT_EQ(mkdir((dir + "/master-dir.key").c_str(), 0700), 0);

  struct Case {
    std::string name;
    std::vector<std::pair<std::string, std::string>> edits;  // from → to in the config
    std::vector<std::string> cause;                          // every one of these is in the message
  };
  std::vector<Case> cases = {
      {"roster signed by fewer stewards than the threshold",
       {{"file: roster.json", "file: roster-one-signature.json"}},
       {"roster-one-signature.json", "requires 2"}},
      {"threshold higher than the roster's signatures",
       {{"threshold: 2", "threshold: 3"}},
       {"requires 3"}},
      {"signing key id not in the roster",
       {{"key_id: union-sg-1", "key_id: union-sg-9"}},
       {"union-sg-9"}},
      {"signing key revoked",
       {{"file: roster.json", "file: roster-key-revoked.json"}},
       {"union-sg-1", "revoked"}},
      {"CA not the roster's",
       {{"ca_file: ca.crt", "ca_file: ../ministry-id/ca.crt"}},
       {"tls.ca_file"}},
      {"certificate not issued by the CA",
       {{"cert_file: node.crt", "cert_file: foreign-node.crt"},
        {"key_file: node.key", "key_file: foreign-node.key"}},
       {"tls.cert_file"}},
      {"master key not a key",
       {{"master_key_file: master.key", "master_key_file: master-garbage.key"}},
       {"master_key_file"}},
      {"master key a directory",
       {{"master_key_file: master.key", "master_key_file: master-dir.key"}},
       {"master_key_file", "is a directory"}},
  };
  // A file the node may not read (root reads it anyway: then not a case).
  write("master-unreadable.key", ReadFileToString(dir + "/master.key").value());
  ASSERT_EQ(chmod((dir + "/master-unreadable.key").c_str(), 0), 0);
  if (geteuid() != 0) {
    cases.push_back({"master key not readable",
                     {{"master_key_file: master.key", "master_key_file: master-unreadable.key"}},
                     {"master_key_file"}});
  }
  auto check = [&] {
    return RunCommand({BinaryPath("corridord"), "--config", config, "--check-config"});
  };
  CommandResult good = check();
  EXPECT_EQ(good.exit_code, 0) << good.out << good.err;
  EXPECT_TRUE(absl::StrContains(good.out, "is valid")) << good.out;
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    ASSERT_OK(WriteFileAtomically(config, original, 0644));
    for (const auto& [from, to] : c.edits) EditFile(config, from, to);
    CommandResult r = check();
    EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
    EXPECT_TRUE(absl::StrContains(r.err, "would not start") ||
                absl::StrContains(r.err, "configuration error"))
        << r.err;
    for (const std::string& part : c.cause) {
      EXPECT_TRUE(absl::StrContains(r.err, part)) << "no \"" << part << "\" in: " << r.err;
    }
    EXPECT_FALSE(absl::StrContains(r.out, "is valid")) << r.out;
  }
}

}  // namespace
}  // namespace corridor
