// Witnessing (issue 12, "Accountability that holds against the operator"):
// real corridord processes on loopback witness each other's checkpoints every
// second, cosign them and hand the cosignatures back; an auditor gets a
// checkpoint cosigned by K peers and verifies every cosignature with the
// roster's keys. A node whose ledger is rewritten behind its back (an entry
// changed, the tree recomputed and a fresh checkpoint signed with its own
// key), or whose data directory is rolled back, is flagged as forked by its
// peers, and the evidence they kept verifies as two valid, inconsistent
// checkpoints. Forged cosignatures are refused and change nothing.
#include "server/federation/witness.h"

#include <atomic>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "corridor/v1/case.grpc.pb.h"
#include "corridor/v1/node.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/security/server_credentials.h"
#include "gtest/gtest.h"
#include "ledger/merkle.h"
#include "ledger/note.h"
#include "ledger/rocksdb/rocksdb_ledger.h"
#include "rocksdb/db.h"
#include "tests/testing/channels.h"
#include "tests/testing/ctl_run.h"
#include "tests/testing/federation.h"
#include "tests/testing/nodes.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/stopped_db.h"

namespace corridor {
namespace {

constexpr char kUnion[] = "union-sg";
constexpr char kMinistry[] = "ministry-id";
constexpr char kInspectorate[] = "inspectorate-sg";

class WitnessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    testing::ClearCtlEnvironment();
    fed_.AddOrg(kUnion);
    fed_.AddOrg(kMinistry, v1::ORG_KIND_MINISTRY);
    fed_.AddOrg(kInspectorate, v1::ORG_KIND_INSPECTORATE);
    fed_.limits["witness_interval_seconds"] = "1";
    for (const char* org : {kUnion, kMinistry, kInspectorate}) nodes_.Configure(org);
    stewards_ = fed_.WriteStewardsFile();
  }

  void StartAll() {
    for (const char* org : {kUnion, kMinistry, kInspectorate}) ASSERT_TRUE(nodes_.Start(org));
  }

  // corridorctl as `org`'s auditor, with the roster and the stewards' keys.
  testing::CommandResult Audit(const std::string& org, std::vector<std::string> args) {
    for (const std::string& a : {std::string("--roster"), fed_.org(org).dir + "/roster.json",
                                 std::string("--stewards"), stewards_}) {
      args.push_back(a);
    }
    if (args[1] != "forks") {  // forks keeps no auditor state
      args.push_back("--state");
      args.push_back(fed_.root() + "/audit-state-" + org);
    }
    return nodes_.CtlAs(org, nodes_.auditor(org), args);
  }

  // What `org`'s node shows of `peer`.
  v1::PeerStatus PeerAt(const std::string& org, const std::string& peer) {
    const v1::StatusResponse health = nodes_.Health(org);
    for (const auto& p : health.peers()) {
      if (p.org() == peer) return p;
    }
    return v1::PeerStatus();
  }

  std::string DataDir(const std::string& org) { return fed_.org(org).dir + "/data"; }

  // A channel to `to`'s node presenting `as`'s node certificate.
  std::shared_ptr<grpc::Channel> NodeChannel(const std::string& as, const std::string& to) {
    return testing::OwnChannel(fed_.org(as).node.cert_pem, fed_.org(as).node.key_pem,
                               fed_.org(to).ca.cert_pem, fed_.org(to).endpoint());
  }

  // `org`'s published checkpoint, asked as `as`'s node.
  std::string CheckpointOf(const std::string& org, const std::string& as) {
    auto stub = v1::PeerService::NewStub(NodeChannel(as, org));
    v1::PeerCheckpoint resp;
    grpc::Status s =
        stub->GetCheckpoint(testing::ScaledContext().get(), v1::PeerCheckpointRequest(), &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return resp.checkpoint();
  }

  // `note_text` with a cosignature by `key` under `witness_org`'s witness name.
  std::string Cosigned(const std::string& note_text, const std::string& witness_org,
                       const Ed25519PrivateKey& key) {
    auto n = note::ParseNote(note_text);
    auto cp = n.ok() ? note::ParseCheckpointBody(n->body) : n.status();
    EXPECT_TRUE(cp.ok());
    if (!cp.ok()) return "";
    n->signatures.push_back(note::Cosign(*cp, Witness::WitnessName(fed_.federation(), witness_org),
                                         key, absl::ToUnixSeconds(absl::Now())));
    return note::FormatNote(*n);
  }

  grpc::Status AddCosignature(const std::string& to, const std::string& as,
                              const std::string& note_text, uint32_t* count = nullptr) {
    auto stub = v1::PeerService::NewStub(NodeChannel(as, to));
    v1::AddCosignatureRequest req;
    req.set_cosigned_checkpoint(note_text);
    v1::AddCosignatureResponse resp;
    grpc::Status s = stub->AddCosignature(testing::ScaledContext().get(), req, &resp);
    if (count != nullptr) *count = resp.cosignatures();
    return s;
  }

  // Waits until both other nodes show `org` forked; the evidence each kept
  // must verify with `audit forks` as two valid, inconsistent checkpoints.
  void ExpectForkedAtPeers(const std::string& org) {
    for (const char* peer : {kUnion, kMinistry, kInspectorate}) {
      if (peer == org) continue;
      ASSERT_TRUE(
          testing::Eventually([&] { return PeerAt(peer, org).has_fork(); }, absl::Seconds(30)))
          << peer << " did not flag " << org << " as forked; its log:\n"
          << nodes_.process(peer).Log();
      testing::CommandResult forks = Audit(peer, {"audit", "forks", "--save", fed_.root()});
      EXPECT_EQ(forks.exit_code, 0) << forks.out << forks.err;
      EXPECT_TRUE(absl::StrContains(forks.out, "both checkpoints are validly signed by " + org))
          << forks.out;
      testing::CommandResult health = nodes_.Ctl(peer, {"health", "--require-peers"});
      EXPECT_NE(health.exit_code, 0);
      EXPECT_TRUE(absl::StrContains(health.out + health.err, "FORKED")) << health.out;
      EXPECT_FALSE(nodes_.AwaitLogLine(peer, {"witness.fork", org}).empty());
    }
  }

  testing::TestFederation fed_;
  testing::NodeProcesses nodes_{fed_};
  std::string stewards_;
};

TEST_F(WitnessTest, EachCheckpointIsCosignedByTheTwoOthersAndTheAuditorVerifiesThem) {
  StartAll();
  testing::CommandResult r;
  ASSERT_TRUE(testing::Eventually(
      [&] {
        r = Audit(kUnion, {"audit", "checkpoint", "--cosigned", "2"});
        return r.exit_code == 0;
      },
      absl::Seconds(30)))
      << r.out << r.err;
  EXPECT_TRUE(absl::StrContains(r.out, "cosigned by 2 peers")) << r.out;
  EXPECT_TRUE(absl::StrContains(r.out, kMinistry)) << r.out;
  EXPECT_TRUE(absl::StrContains(r.out, kInspectorate)) << r.out;
  // Every node is witnessed by the two others.
  for (const char* org : {kMinistry, kInspectorate}) {
    ASSERT_TRUE(testing::Eventually(
        [&] {
          return Audit(org, {"audit", "checkpoint", "--cosigned", "2"}).exit_code == 0;
        },
        absl::Seconds(30)));
  }
  testing::CommandResult three = Audit(kUnion, {"audit", "checkpoint", "--cosigned", "3"});
  EXPECT_NE(three.exit_code, 0);
  EXPECT_TRUE(absl::StrContains(three.err, "cosigned by at least 3 peers")) << three.err;
  testing::ExpectWords(three.err);
  // The peers show what they witnessed, and no fork.
  const v1::PeerStatus seen = PeerAt(kMinistry, kUnion);
  EXPECT_GT(seen.witnessed_size(), 0u);
  EXPECT_FALSE(seen.has_fork());
  testing::CommandResult forks = Audit(kMinistry, {"audit", "forks"});
  EXPECT_EQ(forks.exit_code, 0) << forks.err;
  EXPECT_TRUE(absl::StrContains(forks.out, "no forks")) << forks.out;
}

// Rewrites the stopped node's ledger: reads every entry, changes entry 1,
// builds the tree again and signs a fresh checkpoint with the node's own key
// (in a scratch database), then replaces the ledger's families with it.
void RewriteLedger(const std::string& data_dir, const std::string& scratch,
                   const std::string& origin, const Ed25519PrivateKey* key) {
  std::vector<ledger::AppendEntry> entries;
  {
    testing::StoppedDb stopped(data_dir);
    ASSERT_TRUE(stopped.ok());
    std::unique_ptr<rocksdb::Iterator> it(
        stopped.db()->NewIterator(rocksdb::ReadOptions(), stopped.family(ledger::kEntriesFamily)));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      ledger::AppendEntry e;
      e.data = it->value().ToString();
      entries.push_back(std::move(e));
    }
  }
  ASSERT_GT(entries.size(), 2u);
  v1::AccessEvent changed;
  ASSERT_TRUE(changed.ParseFromString(entries[1].data));
  changed.set_time_unix_micros(changed.time_unix_micros() + 1);
  entries[1].data = changed.SerializeAsString();
  {
    ASSERT_OK_AND_ASSIGN(auto db, ledger::OpenLedgerDb(scratch));
    ledger::RocksDbLedgerOptions options;
    options.origin = origin;
    options.signing_key = key;
    ASSERT_OK_AND_ASSIGN(auto rewritten,
                         ledger::RocksDbLedger::Open(db->db.get(), db->families, options));
    ASSERT_OK(rewritten->Append(std::move(entries)).status());
  }
  ASSERT_OK_AND_ASSIGN(auto from, ledger::OpenLedgerDb(scratch));
  testing::StoppedDb to(data_dir);
  ASSERT_TRUE(to.ok());
  for (const char* family :
       {ledger::kEntriesFamily, ledger::kTilesFamily, ledger::kStateFamily, ledger::kTimesFamily}) {
    rocksdb::WriteBatch batch;
    std::unique_ptr<rocksdb::Iterator> old(
        to.db()->NewIterator(rocksdb::ReadOptions(), to.family(family)));
    for (old->SeekToFirst(); old->Valid(); old->Next()) batch.Delete(to.family(family), old->key());
    std::unique_ptr<rocksdb::Iterator> now(
        from->db->NewIterator(rocksdb::ReadOptions(), from->families.at(family)));
    for (now->SeekToFirst(); now->Valid(); now->Next()) {
      batch.Put(to.family(family), now->key(), now->value());
    }
    ASSERT_TRUE(to.db()->Write(rocksdb::WriteOptions(), &batch).ok());
  }
}

TEST_F(WitnessTest, ALedgerRewrittenBehindTheNodesBackIsFlaggedAsForkedByItsPeers) {
  StartAll();
  for (const char* peer : {kMinistry, kInspectorate}) {
    ASSERT_TRUE(testing::Eventually([&] { return PeerAt(peer, kUnion).witnessed_size() > 2; },
                                    absl::Seconds(30)));
  }
  ASSERT_EQ(nodes_.Stop(kUnion, SIGTERM), 0);
  RewriteLedger(DataDir(kUnion), fed_.root() + "/scratch",
                absl::StrCat(fed_.federation(), "/", kUnion), &fed_.org(kUnion).signing);
  ASSERT_TRUE(nodes_.Start(kUnion));
  ExpectForkedAtPeers(kUnion);
  // The fork and its evidence outlive a restart of the witness.
  ASSERT_EQ(nodes_.Stop(kMinistry, SIGTERM), 0);
  ASSERT_TRUE(nodes_.Start(kMinistry));
  EXPECT_TRUE(PeerAt(kMinistry, kUnion).has_fork());
  testing::CommandResult forks = Audit(kMinistry, {"audit", "forks"});
  EXPECT_TRUE(absl::StrContains(forks.out, "both checkpoints are validly signed")) << forks.out;
}

TEST_F(WitnessTest, ARolledBackDataDirectoryIsCaughtByTheWitnesses) {
  StartAll();
  ASSERT_TRUE(testing::Eventually([&] { return PeerAt(kMinistry, kUnion).witnessed_size() > 0; },
                                  absl::Seconds(30)));
  ASSERT_EQ(nodes_.Stop(kUnion, SIGTERM), 0);
  const std::string backup = fed_.root() + "/union-backup";
  std::filesystem::copy(DataDir(kUnion), backup, std::filesystem::copy_options::recursive);
  uint64_t backup_size = 0;
  {
    testing::StoppedDb stopped(backup);
    ASSERT_TRUE(stopped.ok());
    std::unique_ptr<rocksdb::Iterator> it(
        stopped.db()->NewIterator(rocksdb::ReadOptions(), stopped.family(ledger::kEntriesFamily)));
    for (it->SeekToFirst(); it->Valid(); it->Next()) ++backup_size;
  }
  ASSERT_TRUE(nodes_.Start(kUnion));
  // The ledger grows past the copy and both peers witness it.
  for (const char* peer : {kMinistry, kInspectorate}) {
    ASSERT_TRUE(
        testing::Eventually([&] { return PeerAt(peer, kUnion).witnessed_size() > backup_size + 2; },
                            absl::Seconds(30)));
  }
  ASSERT_EQ(nodes_.Stop(kUnion, SIGTERM), 0);
  // What the ministry witnessed survives its restart.
  ASSERT_EQ(nodes_.Stop(kMinistry, SIGTERM), 0);
  ASSERT_TRUE(nodes_.Start(kMinistry));
  EXPECT_GT(PeerAt(kMinistry, kUnion).witnessed_size(), backup_size);
  std::filesystem::remove_all(DataDir(kUnion));
  std::filesystem::rename(backup, DataDir(kUnion));
  ASSERT_TRUE(nodes_.Start(kUnion));
  ExpectForkedAtPeers(kUnion);
}

TEST_F(WitnessTest, ForgedCosignaturesAreRefusedAndChangeNothing) {
  // Only the union's node runs, witnessing nobody: every cosignature it holds
  // comes from this test.
  ASSERT_TRUE(nodes_.Start(kUnion));
  const std::string checkpoint = CheckpointOf(kUnion, kMinistry);
  ASSERT_FALSE(checkpoint.empty());
  const Ed25519PrivateKey stranger = Ed25519PrivateKey::Generate();
  struct Forgery {
    const char* what;
    std::string note;
    grpc::StatusCode code;
  };
  std::string tampered = Cosigned(checkpoint, kMinistry, fed_.org(kMinistry).signing);
  const size_t root_at = tampered.find('\n', tampered.find('\n') + 1) + 1;
  tampered[root_at] = tampered[root_at] == 'A' ? 'B' : 'A';
  const std::vector<Forgery> forgeries = {
      {"a key the roster does not list", Cosigned(checkpoint, kMinistry, stranger),
       grpc::StatusCode::PERMISSION_DENIED},
      {"another member's key", Cosigned(checkpoint, kInspectorate, fed_.org(kInspectorate).signing),
       grpc::StatusCode::PERMISSION_DENIED},
      {"a checkpoint the node never signed", tampered, grpc::StatusCode::INVALID_ARGUMENT},
      {"no cosignature at all", checkpoint, grpc::StatusCode::PERMISSION_DENIED},
      {"an oversized note",
       Cosigned(checkpoint, kMinistry, fed_.org(kMinistry).signing) + std::string(9000, 'x'),
       grpc::StatusCode::INVALID_ARGUMENT},
      {"not a note", "garbage", grpc::StatusCode::INVALID_ARGUMENT},
  };
  for (const Forgery& f : forgeries) {
    grpc::Status s = AddCosignature(kUnion, kMinistry, f.note);
    EXPECT_EQ(s.error_code(), f.code) << f.what << ": " << s.error_message();
    testing::ExpectWords(s.error_message());
  }
  testing::CommandResult none = Audit(kUnion, {"audit", "checkpoint", "--cosigned", "1"});
  EXPECT_NE(none.exit_code, 0) << none.out;
  testing::CommandResult log = Audit(kUnion, {"audit", "log", "--action", "witness.cosignature"});
  EXPECT_TRUE(absl::StrContains(log.out, "witness.cosignature")) << log.out << log.err;
  // The genuine one is kept and counted, and the auditor verifies it.
  uint32_t count = 0;
  ASSERT_TRUE(AddCosignature(kUnion, kMinistry,
                             Cosigned(checkpoint, kMinistry, fed_.org(kMinistry).signing), &count)
                  .ok());
  EXPECT_EQ(count, 1u);
  testing::CommandResult one = Audit(kUnion, {"audit", "checkpoint", "--cosigned", "1"});
  EXPECT_EQ(one.exit_code, 0) << one.out << one.err;
  EXPECT_TRUE(absl::StrContains(one.out, kMinistry)) << one.out;
}

// A peer that answers GetCheckpoint with its own valid checkpoint and, as
// the checkpoint it witnessed of another org, whatever the test gives it.
class GossipingPeer final : public v1::PeerService::Service {
 public:
  GossipingPeer(std::string own, std::string gossip)
      : own_(std::move(own)), gossip_(std::move(gossip)) {}
  grpc::Status GetCheckpoint(grpc::ServerContext*, const v1::PeerCheckpointRequest*,
                             v1::PeerCheckpoint* resp) override {
    resp->set_checkpoint(own_);
    resp->add_witnessed(gossip_);
    return grpc::Status::OK;
  }
  grpc::Status AddCosignature(grpc::ServerContext*, const v1::AddCosignatureRequest*,
                              v1::AddCosignatureResponse*) override {
    return grpc::Status::OK;
  }

 private:
  const std::string own_, gossip_;
};

// The union shows the inspectorate a checkpoint of the size the ministry
// witnessed with a different root: the ministry learns of it from the
// inspectorate's answer and flags the union as forked.
TEST_F(WitnessTest, ANodeShowingTwoPeersDifferentHistoriesIsCaughtByTheirGossip) {
  ASSERT_TRUE(nodes_.Start(kUnion));
  ASSERT_TRUE(nodes_.Start(kMinistry));
  ASSERT_TRUE(testing::Eventually([&] { return PeerAt(kMinistry, kUnion).witnessed_size() > 0; },
                                  absl::Seconds(30)));
  ASSERT_EQ(nodes_.Stop(kUnion, SIGTERM), 0);  // what the ministry saw of it stays put
  const uint64_t size = PeerAt(kMinistry, kUnion).witnessed_size();
  note::Checkpoint other{
      absl::StrCat(fed_.federation(), "/", kUnion), size, merkle::HashLeaf("x"), {}};
  note::Checkpoint own{
      absl::StrCat(fed_.federation(), "/", kInspectorate), 1, merkle::HashLeaf("y"), {}};
  GossipingPeer fake(note::SignCheckpoint(own, own.origin, fed_.org(kInspectorate).signing),
                     note::SignCheckpoint(other, other.origin, fed_.org(kUnion).signing));
  grpc::SslServerCredentialsOptions tls(GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_BUT_DONT_VERIFY);
  tls.pem_key_cert_pairs.push_back(
      {fed_.org(kInspectorate).node.key_pem, fed_.org(kInspectorate).node.cert_pem});
  grpc::ServerBuilder builder;
  builder.AddListeningPort(fed_.org(kInspectorate).endpoint(), grpc::SslServerCredentials(tls));
  builder.RegisterService(&fake);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ASSERT_NE(server, nullptr);
  ASSERT_TRUE(
      testing::Eventually([&] { return PeerAt(kMinistry, kUnion).has_fork(); }, absl::Seconds(30)));
  server->Shutdown();
  const v1::ForkEvidence fork = PeerAt(kMinistry, kUnion).fork();
  EXPECT_EQ(fork.kind(), "gossip-same-size");
  testing::CommandResult forks = Audit(kMinistry, {"audit", "forks"});
  EXPECT_EQ(forks.exit_code, 0) << forks.out << forks.err;
  EXPECT_TRUE(absl::StrContains(forks.out, "one size two different roots")) << forks.out;
}

TEST_F(WitnessTest, CallsInFlightWhileTheWitnessRunsAllGetAnAnswer) {
  StartAll();
  auto channel = NodeChannel(kMinistry, kUnion);
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      auto stub = v1::PeerService::NewStub(channel);
      for (int i = 0; i < 20; ++i) {
        v1::PeerCheckpointRequest req;
        req.set_witnessed_size(i % 3);
        v1::PeerCheckpoint resp;
        grpc::Status s = stub->GetCheckpoint(testing::ScaledContext().get(), req, &resp);
        if (!s.ok()) {
          ++failures;
          continue;
        }
        if ((i + t) % 4 == 0) {
          v1::AddCosignatureRequest add;
          add.set_cosigned_checkpoint(
              Cosigned(resp.checkpoint(), kMinistry, fed_.org(kMinistry).signing));
          v1::AddCosignatureResponse added;
          if (!stub->AddCosignature(testing::ScaledContext().get(), add, &added).ok()) ++failures;
        }
      }
    });
  }
  for (int i = 0; i < 3; ++i) {
    testing::CommandResult r = Audit(kUnion, {"audit", "checkpoint"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  // The witnesses went on meanwhile and saw one history.
  ASSERT_TRUE(testing::Eventually(
      [&] {
        return Audit(kUnion, {"audit", "checkpoint", "--cosigned", "2"}).exit_code == 0;
      },
      absl::Seconds(30)));
  for (const char* peer : {kMinistry, kInspectorate}) EXPECT_FALSE(PeerAt(peer, kUnion).has_fork());
}

}  // namespace
}  // namespace corridor
