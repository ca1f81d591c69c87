// Federation with real corridord processes on loopback: referrals delivered
// after an outage, exactly once through SIGKILLs of the sender and of the
// receiver, and both ledgers verifying afterwards.
#include "tests/testing/federation.h"

#include <signal.h>

#include <atomic>
#include <random>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "ledger/rocksdb/rocksdb_ledger.h"
#include "server/node/config.h"
#include "server/node/node.h"
#include "server/store/store.h"
#include "tests/testing/nodes.h"
#include "tests/testing/process.h"
#include "tests/testing/status_matchers.h"

namespace corridor {
namespace {

using testing::BinaryPath;
using testing::CommandResult;
using testing::JsonValues;
using testing::RunCommand;
using testing::Subprocess;

class FederationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fed_.AddOrg("union-sg", v1::ORG_KIND_UNION);
    fed_.AddOrg("ministry-id", v1::ORG_KIND_MINISTRY);
    fed_.AddOrg("inspectorate-sg", v1::ORG_KIND_INSPECTORATE);
    for (const std::string org : {"union-sg", "ministry-id", "inspectorate-sg"}) {
      configs_[org] = fed_.WriteNodeConfig(org, {{"cw", {"caseworker"}}, {"adm", {"admin"}}});
      users_[org] = fed_.IssueUser(org, "cw");
      admins_[org] = fed_.IssueUser(org, "adm");
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
    CommandResult r = Ctl(org, {"health", "--wait", "60"});
    ASSERT_EQ(r.exit_code, 0) << r.err << nodes_[org]->Log();
  }
  void Kill(const std::string& org) {
    nodes_[org]->Stop(SIGKILL);
    nodes_[org].reset();
  }
  CommandResult Ctl(const std::string& org, std::vector<std::string> args) {
    std::vector<std::string> argv = {BinaryPath("corridorctl")};
    argv.insert(argv.end(), args.begin(), args.end());
    for (const std::string& a :
         {std::string("--node"), fed_.org(org).endpoint(), std::string("--cert"),
          users_[org] + ".crt", std::string("--key"), users_[org] + ".key", std::string("--ca"),
          fed_.org(org).dir + "/ca.crt"}) {
      argv.push_back(a);
    }
    return RunCommand(argv);
  }
  std::string CreateCase() {
    CommandResult r = Ctl("union-sg", {"case", "create", "--json", "--category", "wage-theft",
                                       "--origin", "ID", "--destination", "SG", "--worker-name",
                                       "Dewi", "--consent", "ministry-id:case-referral"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    auto ids = JsonValues(r.out, "id");
    return ids.empty() ? "" : ids[0];
  }
  CommandResult Refer(const std::string& case_id) {
    return Ctl("union-sg",
               {"refer", case_id, "--to", "ministry-id", "--agreement", "test-agreement",
                "--purpose", "case-referral", "--include", "personal-data", "--json"});
  }
  // Waits until the sender's outbox has nothing pending; returns the outbox JSON.
  std::string AwaitDelivered(absl::Duration limit = absl::Seconds(90)) {
    const absl::Time give_up = absl::Now() + limit;
    std::string json;
    while (absl::Now() < give_up) {
      json = Ctl("union-sg", {"outbox", "--json"}).out;
      if (json.find("\"pending\"") == std::string::npos) return json;
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    ADD_FAILURE() << "outbox still pending: " << json;
    return json;
  }
  std::vector<std::string> InboxReferrals() {
    CommandResult r = Ctl("ministry-id", {"inbox", "--json"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return JsonValues(r.out, "referral_id");
  }
  // Opens a stopped node's ledger offline and re-verifies all of it.
  void VerifyLedger(const std::string& org) {
    ASSERT_OK_AND_ASSIGN(v1::NodeConfig config, LoadNodeConfig(configs_[org]));
    ASSERT_OK_AND_ASSIGN(auto store,
                         NodeStore::Open(config.data_dir(), ledger::LedgerColumnFamilyNames()));
    ASSERT_OK_AND_ASSIGN(Ed25519PrivateKey key,
                         Ed25519PrivateKey::FromPemFile(config.signing_key().key_file()));
    ledger::RocksDbLedgerOptions o;
    o.origin = LedgerOrigin(config);
    o.signing_key = &key;
    ASSERT_OK_AND_ASSIGN(auto ledger,
                         ledger::RocksDbLedger::Open(store->db(), store->families(), std::move(o)));
    EXPECT_OK(ledger->VerifyAll());
    EXPECT_GT(ledger->head().size, 0u);
  }

  testing::TestFederation fed_;
  std::map<std::string, std::string> configs_, users_, admins_;
  std::map<std::string, std::unique_ptr<Subprocess>> nodes_;
};

TEST_F(FederationTest, ReferralSentWhileRecipientIsDownIsDeliveredAfterItStarts) {
  Start("union-sg");
  const std::string id = CreateCase();
  CommandResult r = Refer(id);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string referral = JsonValues(r.out, "referral_id").at(0);
  // Until a delivery attempt has failed (tests/integration/backoff_test.cc has
  // the same case in process, on a fake clock).
  std::string outbox;
  for (int i = 0; i < 300 && outbox.find("last_error") == std::string::npos; ++i) {
    if (i > 0) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    outbox = Ctl("union-sg", {"outbox", "--json"}).out;
  }
  EXPECT_NE(outbox.find("\"pending\""), std::string::npos) << outbox;
  EXPECT_NE(outbox.find("last_error"), std::string::npos) << outbox;
  Start("ministry-id");
  outbox = AwaitDelivered();
  EXPECT_NE(outbox.find("\"delivered\""), std::string::npos) << outbox;
  EXPECT_EQ(InboxReferrals(), std::vector<std::string>{referral});
  // Accept, post an outcome, and it shows on the sender's case.
  ASSERT_EQ(Ctl("ministry-id", {"accept", referral}).exit_code, 0);
  std::string mcase = JsonValues(Ctl("ministry-id", {"case", "list", "--json"}).out, "id").at(0);
  ASSERT_EQ(
      Ctl("ministry-id", {"update", mcase, "--outcome", "fees-refunded", "--note", "refunded"})
          .exit_code,
      0);
  std::string shown;
  for (int i = 0; i < 300 && shown.find("fees-refunded") == std::string::npos; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    shown = Ctl("union-sg", {"case", "show", id, "--purpose", "case-handling"}).out;
  }
  EXPECT_NE(shown.find("fees-refunded"), std::string::npos) << shown;
  EXPECT_NE(shown.find("accepted"), std::string::npos) << shown;
}

TEST_F(FederationTest, SenderKilledAtRandomPointsDeliversEveryAcknowledgedReferralExactlyOnce) {
  Start("ministry-id");
  Start("union-sg");
  const std::string id = CreateCase();
  std::mt19937 rng(20261122);
  std::set<std::string> acknowledged;
  for (int round = 0; round < 6; ++round) {
    // Kill the sender at a random moment under a stream of sends, once the
    // round's first send was acknowledged (so a slow machine still sends).
    std::atomic<bool> first_acknowledged{false};
    std::thread killer([&, delay = rng() % 400] {
      while (!first_acknowledged) std::this_thread::sleep_for(std::chrono::milliseconds(5));
      std::this_thread::sleep_for(std::chrono::milliseconds(delay));
      kill(nodes_["union-sg"]->pid(), SIGKILL);
    });
    for (int i = 0; i < 8; ++i) {
      CommandResult r = Refer(id);
      if (r.exit_code == 0) acknowledged.insert(JsonValues(r.out, "referral_id").at(0));
      if (i == 0) first_acknowledged = true;
    }
    killer.join();
    nodes_["union-sg"]->Stop(SIGKILL);
    Start("union-sg");
  }
  ASSERT_GT(acknowledged.size(), 3u);
  AwaitDelivered();
  std::vector<std::string> inbox = InboxReferrals();
  std::set<std::string> unique(inbox.begin(), inbox.end());
  EXPECT_EQ(unique.size(), inbox.size()) << "a referral arrived twice";
  for (const std::string& ref : acknowledged)
    EXPECT_EQ(unique.count(ref), 1u) << ref << " was lost";
  nodes_["union-sg"]->Stop(SIGTERM);
  nodes_["ministry-id"]->Stop(SIGTERM);
  nodes_.clear();
  VerifyLedger("union-sg");
  VerifyLedger("ministry-id");
}

TEST_F(FederationTest, ReceiverKilledMidDeliveryNeverDuplicatesOrLosesAReferral) {
  Start("ministry-id");
  Start("union-sg");
  const std::string id = CreateCase();
  std::set<std::string> acknowledged;
  std::mt19937 rng(7);
  for (int round = 0; round < 4; ++round) {
    for (int i = 0; i < 6; ++i) {
      CommandResult r = Refer(id);
      ASSERT_EQ(r.exit_code, 0) << r.err;
      acknowledged.insert(JsonValues(r.out, "referral_id").at(0));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(rng() % 150));
    Kill("ministry-id");
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    Start("ministry-id");
  }
  AwaitDelivered();
  std::vector<std::string> inbox = InboxReferrals();
  std::set<std::string> unique(inbox.begin(), inbox.end());
  EXPECT_EQ(unique.size(), inbox.size()) << "a referral arrived twice";
  EXPECT_EQ(unique, acknowledged);
  nodes_["union-sg"]->Stop(SIGTERM);
  nodes_["ministry-id"]->Stop(SIGTERM);
  nodes_.clear();
  VerifyLedger("union-sg");
  VerifyLedger("ministry-id");
}

TEST_F(FederationTest, FrozenPeerDoesNotHoldDeliveryToAHealthyPeer) {
  Start("ministry-id");
  Start("inspectorate-sg");
  Start("union-sg");
  const std::string id = CreateCase();
  // Freeze inspectorate-sg: every call to it hangs until its deadline.
  const pid_t frozen = nodes_["inspectorate-sg"]->pid();
  ASSERT_EQ(kill(frozen, SIGSTOP), 0);
  struct Thaw {
    pid_t pid;
    ~Thaw() { kill(pid, SIGCONT); }
  } thaw{frozen};
  for (int i = 0; i < 40; ++i) {
    CommandResult r = Ctl("union-sg", {"refer", id, "--to", "inspectorate-sg", "--agreement",
                                       "test-agreement", "--purpose", "case-referral", "--json"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  std::set<std::string> to_ministry;
  for (int i = 0; i < 20; ++i) {
    CommandResult r = Refer(id);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    to_ministry.insert(JsonValues(r.out, "referral_id").at(0));
  }
  // Every referral reaches the healthy peer while the frozen one is still stopped
  // (one envelope at a time, each waiting out its deadline, would take minutes).
  std::set<std::string> arrived;
  for (int i = 0; i < 600 && arrived != to_ministry; ++i) {
    std::vector<std::string> inbox = InboxReferrals();
    arrived = std::set<std::string>(inbox.begin(), inbox.end());
    if (arrived != to_ministry) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(arrived, to_ministry);
  const std::string outbox = Ctl("union-sg", {"outbox", "--json"}).out;
  std::vector<std::string> states = JsonValues(outbox, "state");
  EXPECT_EQ(std::count(states.begin(), states.end(), "pending"), 40) << outbox;
  // Thawed, the frozen peer gets its referrals too.
  ASSERT_EQ(kill(frozen, SIGCONT), 0);
  AwaitDelivered();
}

TEST_F(FederationTest, PersonalDataTravelsOnlyWithConsentAndReceivedCasesDoNotTravelOn) {
  Start("ministry-id");
  Start("union-sg");
  CommandResult r = Ctl("union-sg", {"case", "create", "--json", "--category", "abuse", "--origin",
                                     "ID", "--destination", "SG", "--worker-name", "Rina"});
  const std::string id = JsonValues(r.out, "id").at(0);
  // No consent recorded: refused with the reason, unless sent de-identified.
  r = Refer(id);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("consent record does not allow"), std::string::npos) << r.err;
  r = Ctl("union-sg",
          {"refer", id, "--to", "ministry-id", "--agreement", "test-agreement", "--purpose",
           "case-referral", "--include", "personal-data", "--deidentify", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string referral = JsonValues(r.out, "referral_id").at(0);
  AwaitDelivered();
  ASSERT_EQ(Ctl("ministry-id", {"accept", referral}).exit_code, 0);
  const std::string mcase =
      JsonValues(Ctl("ministry-id", {"case", "list", "--json"}).out, "id").at(0);
  std::string shown = Ctl("ministry-id", {"case", "show", mcase, "--purpose", "case-handling"}).out;
  EXPECT_EQ(shown.find("Rina"), std::string::npos) << shown;
  // The ministry may not pass it on: the originator's rule is "never".
  r = Ctl("ministry-id", {"refer", mcase, "--to", "union-sg", "--agreement", "test-agreement",
                          "--purpose", "case-referral"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("do not allow sharing it onward"), std::string::npos) << r.err;
  // An agreement that does not exist, or a purpose it does not cover: refused before anything is
  // sent.
  r = Ctl("union-sg", {"refer", id, "--to", "ministry-id", "--agreement", "secret", "--purpose",
                       "case-referral"});
  EXPECT_NE(r.err.find("not in the roster"), std::string::npos) << r.err;
  r = Ctl("union-sg", {"refer", id, "--to", "ministry-id", "--agreement", "test-agreement",
                       "--purpose", "prosecution"});
  EXPECT_NE(r.err.find("does not cover the purpose"), std::string::npos) << r.err;
  // A purpose outside the node's vocabulary is refused before the agreement is looked at.
  r = Ctl("union-sg", {"refer", id, "--to", "ministry-id", "--agreement", "test-agreement",
                       "--purpose", "marketing"});
  EXPECT_NE(r.err.find("not one of this node's purpose codes"), std::string::npos) << r.err;
}

TEST_F(FederationTest, PushedRosterReachesPeersAndRevocationStopsNewEnvelopesAtOnce) {
  Start("ministry-id");
  Start("union-sg");
  auto push = [&](const std::string& org, const v1::Roster& roster, int signers) {
    const std::string file = fed_.root() + "/push.json";
    EXPECT_OK(WriteFileAtomically(file, fed_.Sign(roster, signers)));
    std::swap(users_[org], admins_[org]);
    CommandResult r = Ctl(org, {"roster", "push", "--in", file});
    std::swap(users_[org], admins_[org]);
    return r;
  };
  auto version_at = [&](const std::string& org) {
    std::string json = Ctl(org, {"health", "--json"}).out;
    const size_t p = json.find("\"roster_version\": \"");
    return p == std::string::npos ? std::string()
                                  : json.substr(p + 19, json.find('"', p + 19) - p - 19);
  };
  // Only admins may push; caseworkers are refused.
  EXPECT_EQ(Ctl("union-sg", {"roster", "push", "--in", fed_.org("union-sg").dir + "/roster.json"})
                .exit_code,
            1);
  CommandResult r = push("union-sg", fed_.MakeRoster(2), 2);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(version_at("union-sg"), "2");
  // The ministry fetches it from its peer.
  std::string v;
  for (int i = 0; i < 100 && (v = version_at("ministry-id")) != "2"; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(v, "2");
  // Older, replayed and under-signed rosters are refused.
  r = push("union-sg", fed_.MakeRoster(1), 2);
  EXPECT_NE(r.err.find("is not newer than version 2"), std::string::npos) << r.err;
  r = push("union-sg", fed_.MakeRoster(3), 1);
  EXPECT_NE(r.err.find("requires 2"), std::string::npos) << r.err;
  // Revoking union-sg's signing key at the ministry stops its new envelopes at once.
  v1::Roster revoked = fed_.MakeRoster(3);
  revoked.mutable_members(0)->mutable_signing_keys(0)->set_status(v1::KEY_STATUS_REVOKED);
  ASSERT_EQ(revoked.members(0).org(), "union-sg");
  r = push("ministry-id", revoked, 2);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string id = CreateCase();
  ASSERT_EQ(Refer(id).exit_code, 0);
  std::string outbox;
  for (int i = 0; i < 100 && outbox.find("\"failed\"") == std::string::npos; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    outbox = Ctl("union-sg", {"outbox", "--json"}).out;
  }
  EXPECT_NE(outbox.find("has been revoked"), std::string::npos) << outbox;
  EXPECT_TRUE(InboxReferrals().empty());
}

TEST_F(FederationTest, SigningKeyRotationWithoutRestartKeepsEnvelopesFlowingAndLedgerVerifiable) {
  Start("ministry-id");
  Start("union-sg");
  const std::string id = CreateCase();
  auto push = [&](const std::string& org, const v1::Roster& roster, const std::string& file) {
    EXPECT_OK(WriteFileAtomically(file, fed_.Sign(roster, 2)));
    std::swap(users_[org], admins_[org]);
    CommandResult r = Ctl(org, {"roster", "push", "--in", file});
    std::swap(users_[org], admins_[org]);
    return r;
  };
  auto await_version = [&](const std::string& org, const std::string& v) {
    for (int i = 0; i < 100; ++i) {
      if (Ctl(org, {"health", "--json"}).out.find("\"roster_version\": \"" + v + "\"") !=
          std::string::npos) {
        return true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return false;
  };
  // Roster v2: union-sg-2 active, union-sg-1 retired.
  Ed25519PrivateKey next = Ed25519PrivateKey::Generate();
  ASSERT_OK(WriteFileAtomically(fed_.org("union-sg").dir + "/signing2.key", next.ToPem(), 0600));
  v1::Roster v2 = fed_.MakeRoster(2);
  ASSERT_EQ(v2.members(0).org(), "union-sg");
  v2.mutable_members(0)->mutable_signing_keys(0)->set_status(v1::KEY_STATUS_RETIRED);
  // Envelopes it signed stay acceptable for their lifetime, and no longer.
  v2.mutable_members(0)->mutable_signing_keys(0)->set_valid_until(
      absl::FormatTime(absl::RFC3339_sec, absl::Now() + absl::Hours(24 * 7), absl::UTCTimeZone()));
  v1::SigningKey* k2 = v2.mutable_members(0)->add_signing_keys();
  k2->set_key_id("union-sg-2");
  k2->set_public_key(Base64Encode(next.public_key().raw()));
  k2->set_status(v1::KEY_STATUS_ACTIVE);
  const std::string v2_file = fed_.root() + "/v2.json";
  CommandResult r = push("union-sg", v2, v2_file);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_TRUE(await_version("ministry-id", "2"));
  // Point the config at the new key and tell the running node (SIGHUP): no restart.
  std::string yaml = ReadFileToString(configs_["union-sg"]).value();
  yaml.replace(yaml.find("key_id: union-sg-1"), 18, "key_id: union-sg-2");
  yaml.replace(yaml.find("key_file: signing.key"), 21, "key_file: signing2.key");
  ASSERT_OK(WriteFileAtomically(configs_["union-sg"], yaml));
  kill(nodes_["union-sg"]->pid(), SIGHUP);
  for (int i = 0; i < 100 && nodes_["union-sg"]->Log().find("\"event\":\"node.signing_key\"") ==
                                 std::string::npos;
       ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_NE(nodes_["union-sg"]->Log().find("\"event\":\"node.signing_key\""), std::string::npos)
      << nodes_["union-sg"]->Log();
  // The ministry now refuses the old key outright: a referral still arrives, so it was signed with
  // the new one.
  v1::Roster v3 = v2;
  v3.set_version(3);
  v3.mutable_members(0)->mutable_signing_keys(0)->set_status(v1::KEY_STATUS_REVOKED);
  r = push("ministry-id", v3, fed_.root() + "/v3.json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_EQ(Refer(id).exit_code, 0);
  const std::string outbox = AwaitDelivered();
  EXPECT_NE(outbox.find("\"delivered\""), std::string::npos) << outbox;
  EXPECT_EQ(outbox.find("\"failed\""), std::string::npos) << outbox;
  EXPECT_EQ(InboxReferrals().size(), 1u);
  // A restart moves the ledger's checkpoints to the new key, although the old
  // one is revoked by now (the node fetched v3 from its peer).
  ASSERT_TRUE(await_version("union-sg", "3"));
  nodes_["union-sg"]->Stop(SIGTERM);
  Start("union-sg");
  EXPECT_EQ(Ctl("union-sg", {"case", "show", id, "--purpose", "case-handling"}).exit_code, 0);
  // The ledger re-verifies, and an export checks out against the roster that lists both keys.
  nodes_["union-sg"]->Stop(SIGTERM);
  nodes_.erase("union-sg");
  ASSERT_OK_AND_ASSIGN(v1::NodeConfig config, LoadNodeConfig(configs_["union-sg"]));
  {
    ASSERT_OK_AND_ASSIGN(auto store,
                         NodeStore::Open(config.data_dir(), ledger::LedgerColumnFamilyNames()));
    ledger::RocksDbLedgerOptions o;
    o.origin = LedgerOrigin(config);
    o.signing_key = &next;
    o.previous_verifiers.push_back(
        note::Verifier{LedgerOrigin(config), 0x01, fed_.org("union-sg").signing.public_key()});
    ASSERT_OK_AND_ASSIGN(auto ledger,
                         ledger::RocksDbLedger::Open(store->db(), store->families(), std::move(o)));
    EXPECT_OK(ledger->VerifyAll());
    ASSERT_OK_AND_ASSIGN(std::string exp, ledger->Export(0, ledger->head().size));
    ASSERT_OK(WriteFileAtomically(fed_.root() + "/all.export", exp));
  }
  CommandResult verified = RunCommand({BinaryPath("corridorctl"), "audit", "verify",
                                       fed_.root() + "/all.export", "--roster", v2_file, "--org",
                                       "union-sg", "--stewards", fed_.WriteStewardsFile()});
  EXPECT_EQ(verified.exit_code, 0) << verified.err;
}

TEST_F(FederationTest, OnwardSharingNeedsTheOriginatorsSignedPermission) {
  Start("ministry-id");
  Start("inspectorate-sg");
  Start("union-sg");
  const std::string id = CreateCase();
  CommandResult r =
      Ctl("union-sg", {"refer", id, "--to", "ministry-id", "--agreement", "test-agreement",
                       "--purpose", "case-referral", "--include", "personal-data", "--onward",
                       "with-originator-permission", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string referral = JsonValues(r.out, "referral_id").at(0);
  AwaitDelivered();
  ASSERT_EQ(Ctl("ministry-id", {"accept", referral}).exit_code, 0);
  const std::string mcase =
      JsonValues(Ctl("ministry-id", {"case", "list", "--json"}).out, "id").at(0);
  auto pass_on = [&] {
    return Ctl("ministry-id", {"refer", mcase, "--to", "inspectorate-sg", "--agreement",
                               "test-agreement", "--purpose", "case-referral", "--json"});
  };
  // Without the originator's permission: refused, and told how to get it.
  r = pass_on();
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("needs the signed permission of union-sg"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("corridorctl permit"), std::string::npos) << r.err;
  // The originator signs a permission; once it arrives the onward referral goes through.
  for (int i = 0; i < 100; ++i) {  // the acceptance must reach union-sg first
    if (Ctl("union-sg", {"permit", id, "--referral", referral, "--to", "inspectorate-sg",
                         "--purpose", "case-referral", "--agreement", "test-agreement"})
            .exit_code == 0) {
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  AwaitDelivered();
  for (int i = 0; i < 100 && (r = pass_on()).exit_code != 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::string inbox;
  for (int i = 0; i < 100; ++i) {
    inbox = Ctl("inspectorate-sg", {"inbox", "--json"}).out;
    if (inbox.find("REF-") != std::string::npos) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_NE(inbox.find("\"from_org\": \"ministry-id\""), std::string::npos) << inbox;
  const std::string icase = JsonValues(inbox, "case_id").at(0);
  users_["inspectorate-sg"] = fed_.IssueUser("inspectorate-sg", "cw");
  const std::string shown =
      Ctl("inspectorate-sg", {"case", "show", icase, "--purpose", "case-handling"}).out;
  EXPECT_NE(shown.find("with the permission of union-sg"), std::string::npos) << shown;
}

}  // namespace
}  // namespace corridor
