// Online backup, restore and the data format version (issue 13), against real
// corridord processes:
//  - a backup taken while several threads create and read cases on one
//    channel, restored into a fresh data directory: every case the backup's
//    ledger committed is there and readable, the ledger verifies and is the
//    manifest's, the backup holds no worker name in plaintext, the restored
//    node says it was restored and so does its peer's witness (and a restore
//    notice whose backup checkpoint another member signed is not believed);
//  - refused backups (non-admin, relative path, inside the data directory,
//    not empty, too long) are recorded and change nothing; two backups at once;
//  - a data directory of a newer format is refused, byte for byte unchanged;
//  - a data directory written by the format before versions (tests/data/format-v1,
//    made by corridord as it was before this change) opens, serves its cases,
//    verifies, and records its upgrade.
#include "server/node/backup.h"

#include <signal.h>

#include <atomic>
#include <filesystem>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "client/lib/grpc_util.h"
#include "corridor/v1/case.grpc.pb.h"
#include "corridor/v1/node.grpc.pb.h"
#include "google/protobuf/util/json_util.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/security/server_credentials.h"
#include "gtest/gtest.h"
#include "ledger/base/file.h"
#include "ledger/crypto/crypto.h"
#include "ledger/merkle.h"
#include "ledger/note.h"
#include "server/store/store.h"
#include "tests/testing/deadline.h"
#include "tests/testing/federation.h"
#include "tests/testing/load.h"
#include "tests/testing/nodes.h"
#include "tests/testing/process.h"
#include "tests/testing/stopped_db.h"

namespace corridor {
namespace {

namespace fs = std::filesystem;
using testing::CommandResult;

constexpr char kOrg[] = "union-sg";
constexpr char kPeer[] = "ministry-id";
// Fictional; only ever sent sealed. Found in plaintext anywhere = a failure.
constexpr char kWorkerName[] = "Dewi Kusumawardhani Backupcanary";

template <typename Message>
Message FromJson(const std::string& json) {
  Message m;
  google::protobuf::util::JsonParseOptions o;
  o.ignore_unknown_fields = true;
  if (!google::protobuf::util::JsonStringToMessage(json, &m, o).ok()) m.Clear();
  return m;
}

// Every file below `dir` with its bytes.
std::map<std::string, std::string> Snapshot(const std::string& dir) {
  std::map<std::string, std::string> out;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    if (e.is_regular_file()) out[e.path().string()] = ReadFileToString(e.path().string()).value();
  }
  return out;
}

std::unique_ptr<grpc::ClientContext> Ctx() {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(absl::ToChronoTime(absl::Now() + testing::ScaledDeadline(absl::Seconds(60))));
  return ctx;
}

// Every case.create entry (allowed) of the node: case id -> ledger index.
std::map<std::string, uint64_t> CreatedCases(v1::AuditService::Stub& audit) {
  std::map<std::string, uint64_t> out;
  v1::QueryEventsRequest req;
  req.set_action("case.create");
  req.set_outcome(v1::ACCESS_OUTCOME_ALLOWED);
  req.set_page_size(500);
  do {
    v1::QueryEventsResponse resp;
    grpc::Status s = audit.QueryEvents(Ctx().get(), req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    if (!s.ok()) break;
    for (const auto& e : resp.events()) out[e.event().case_id()] = e.index();
    req.set_page_token(resp.next_page_token());
  } while (!req.page_token().empty());
  return out;
}

// Events of `action` at the node, oldest last.
std::vector<v1::LoggedEvent> Events(v1::AuditService::Stub& audit, const std::string& action) {
  v1::QueryEventsRequest req;
  req.set_action(action);
  req.set_page_size(500);
  v1::QueryEventsResponse resp;
  grpc::Status s = audit.QueryEvents(Ctx().get(), req, &resp);
  EXPECT_TRUE(s.ok()) << s.error_message();
  return {resp.events().begin(), resp.events().end()};
}

std::set<std::string> ListedCases(v1::CaseService::Stub& cases) {
  std::set<std::string> out;
  v1::ListCasesRequest req;
  req.set_page_size(500);
  do {
    v1::ListCasesResponse resp;
    grpc::Status s = cases.ListCases(Ctx().get(), req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    if (!s.ok()) break;
    for (const auto& c : resp.cases()) out.insert(c.id());
    req.set_page_token(resp.next_page_token());
  } while (!req.page_token().empty());
  return out;
}

v1::CreateCaseRequest NewCase(int n) {
  v1::CreateCaseRequest req;
  v1::Case* c = req.mutable_case_();
  c->set_category(v1::CASE_CATEGORY_WAGE_THEFT);
  c->set_origin_country("ID");
  c->set_destination_country("SG");
  c->mutable_worker()->set_name(absl::StrCat(kWorkerName, " ", n));
  return req;
}

class BackupTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fed_.limits["witness_interval_seconds"] = "1";
    fed_.AddOrg(kOrg);
    fed_.AddOrg(kPeer, v1::ORG_KIND_MINISTRY);
    for (const char* org : {kOrg, kPeer}) nodes_.Configure(org);
    ASSERT_TRUE(nodes_.Start(kOrg));
  }

  std::shared_ptr<grpc::Channel> Channel(const std::string& user_prefix) {
    const std::string ca = fed_.org(kOrg).dir + "/ca.crt";
    auto id = LoadTlsIdentity(user_prefix + ".crt", user_prefix + ".key", ca);
    EXPECT_TRUE(id.ok()) << id.status();
    return testing::MakeDedicatedChannel(*id, fed_.org(kOrg).endpoint());
  }
  std::string DataDir() { return fed_.org(kOrg).dir + "/data"; }
  CommandResult Backup(const std::string& out) {
    return nodes_.CtlAsAdmin(kOrg, {"admin", "backup", "--out", out, "--json"});
  }
  CommandResult Restore(const std::string& dir) {
    return testing::RunCommand(
        {testing::BinaryPath("corridord"), "--restore", dir, "--config", nodes_.config(kOrg)},
        testing::ScaledDeadline(absl::Seconds(120)));
  }

  testing::TestFederation fed_;
  testing::NodeProcesses nodes_{fed_};
};

// Creates and reads cases from `threads` threads on one channel until stopped.
class CaseLoad {
 public:
  CaseLoad(std::shared_ptr<grpc::Channel> channel, int threads)
      : stub_(v1::CaseService::NewStub(channel)) {
    for (int t = 0; t < threads; ++t) {
      threads_.emplace_back([this, t] {
        for (int i = 0; !stop_; ++i) OneRound(t * 100000 + i);
      });
    }
  }
  ~CaseLoad() { Stop(); }
  void Stop() {
    stop_ = true;
    for (auto& t : threads_) {
      if (t.joinable()) t.join();
    }
  }
  std::set<std::string> Acknowledged() {
    std::lock_guard<std::mutex> lock(mu_);
    return acknowledged_;
  }
  int failures() const { return failures_; }

 private:
  void OneRound(int n) {
    v1::Case made;
    grpc::Status s = stub_->CreateCase(Ctx().get(), NewCase(n), &made);
    if (!s.ok()) {
      ++failures_;
      return;
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      acknowledged_.insert(made.id());
    }
    v1::GetCaseRequest get;
    get.set_id(made.id());
    get.set_purpose("case-handling");
    v1::Case read;
    if (!stub_->GetCase(Ctx().get(), get, &read).ok()) ++failures_;
  }

  std::unique_ptr<v1::CaseService::Stub> stub_;
  std::atomic<bool> stop_{false};
  std::atomic<int> failures_{0};
  std::mutex mu_;
  std::set<std::string> acknowledged_;
  std::vector<std::thread> threads_;
};

TEST_F(BackupTest, RoundTripUnderLoadRestoresEveryCommittedCaseAndSaysSo) {
  ASSERT_TRUE(nodes_.Start(kPeer));
  auto cw = Channel(nodes_.user(kOrg));
  auto audit = v1::AuditService::NewStub(Channel(nodes_.auditor(kOrg)));
  CaseLoad load(cw, 6);
  ASSERT_TRUE(testing::Eventually([&] { return load.Acknowledged().size() >= 20; }));
  const std::set<std::string> before_backup = load.Acknowledged();
  const std::string out = fed_.root() + "/backup-1";
  CommandResult made = Backup(out);
  ASSERT_EQ(made.exit_code, 0) << made.err;
  const auto resp = FromJson<v1::BackupResponse>(made.out);
  const size_t acknowledged_at_backup = load.Acknowledged().size();
  ASSERT_TRUE(testing::Eventually(
      [&] { return load.Acknowledged().size() >= acknowledged_at_backup + 10; }));
  load.Stop();
  EXPECT_EQ(load.failures(), 0);

  // The manifest: complete, matching the answer, and every file as listed.
  auto verified = VerifyBackup(out);
  ASSERT_TRUE(verified.ok()) << verified.status();
  const BackupManifest& m = verified->manifest;
  EXPECT_EQ(m.ledger_size, resp.ledger_size());
  EXPECT_GT(m.ledger_size, 2 * before_backup.size());
  EXPECT_EQ(m.org, kOrg);
  EXPECT_EQ(m.data_format, kDataFormatVersion);
  EXPECT_EQ(fs::status(out).permissions() & (fs::perms::group_all | fs::perms::others_all),
            fs::perms::none);
  EXPECT_TRUE(fs::is_directory(out + "/keystore"));
  EXPECT_TRUE(fs::is_directory(out + "/db"));
  EXPECT_FALSE(testing::AnyFileContains(out, kWorkerName));
  // The backup is in the node's ledger, after the entries it holds.
  auto recorded = Events(*audit, "node.backup");
  ASSERT_EQ(recorded.size(), 1u);
  EXPECT_EQ(recorded[0].event().outcome(), v1::ACCESS_OUTCOME_ALLOWED);
  EXPECT_GE(recorded[0].index(), m.ledger_size);
  EXPECT_EQ(recorded[0].index(), resp.recorded_index());
  EXPECT_EQ(recorded[0].event().payload_sha256(), DigestBytes(Sha256(verified->manifest_text)));
  EXPECT_EQ(HexEncode(DigestBytes(Sha256(verified->manifest_text))), resp.manifest_sha256());
  // The peer has witnessed more of this ledger than the backup holds.
  ASSERT_TRUE(testing::Eventually([&] {
    const v1::StatusResponse peer = nodes_.Health(kPeer);
    for (const auto& p : peer.peers()) {
      if (p.org() == kOrg && p.witnessed_size() > m.ledger_size) return true;
    }
    return false;
  }));

  // Restore: refused over the old data directory, then into a fresh one.
  EXPECT_EQ(nodes_.Stop(kOrg, SIGTERM), 0);
  const auto old_files = Snapshot(DataDir());
  CommandResult refused = Restore(out);
  EXPECT_EQ(refused.exit_code, 1);
  EXPECT_TRUE(absl::StrContains(refused.err, "is not empty")) << refused.err;
  EXPECT_EQ(Snapshot(DataDir()), old_files);
  fs::rename(DataDir(), DataDir() + ".before-restore");
  CommandResult restored = Restore(out);
  ASSERT_EQ(restored.exit_code, 0) << restored.err;
  ASSERT_TRUE(nodes_.Start(kOrg));

  // It says so: Status, its ledger (node.restored right after the backup's entries).
  const v1::StatusResponse status = nodes_.Health(kOrg);
  EXPECT_EQ(status.restored().ledger_size(), m.ledger_size);
  EXPECT_EQ(status.restored().backup_unix(), m.created_unix);
  EXPECT_EQ(status.restored().restored_entry_index(), m.ledger_size);
  auto audit2 = v1::AuditService::NewStub(Channel(nodes_.auditor(kOrg)));
  auto restore_entries = Events(*audit2, "node.restored");
  ASSERT_EQ(restore_entries.size(), 1u);
  EXPECT_EQ(restore_entries[0].index(), m.ledger_size);
  EXPECT_TRUE(absl::StrContains(restore_entries[0].event().reason(), m.ledger_root_hex))
      << restore_entries[0].event().reason();
  EXPECT_EQ(restore_entries[0].event().payload_sha256(),
            DigestBytes(Sha256(verified->manifest_text)));
  CommandResult health = nodes_.Ctl(kOrg, {"health"});
  EXPECT_TRUE(absl::StrContains(health.out, "from a backup of")) << health.out;

  // Every case the backup's ledger committed is there, readable; no other.
  const auto created = CreatedCases(*audit2);
  auto cases = v1::CaseService::NewStub(Channel(nodes_.user(kOrg)));
  std::set<std::string> committed;
  for (const auto& [id, index] : created) {
    EXPECT_LT(index, m.ledger_size) << id;
    committed.insert(id);
  }
  EXPECT_EQ(ListedCases(*cases), committed);
  for (const std::string& id : before_backup) EXPECT_EQ(committed.count(id), 1u) << id;
  for (const std::string& id : committed) {
    v1::GetCaseRequest get;
    get.set_id(id);
    get.set_purpose("case-handling");
    v1::Case c;
    grpc::Status s = cases->GetCase(Ctx().get(), get, &c);
    ASSERT_TRUE(s.ok()) << id << ": " << s.error_message();
    EXPECT_TRUE(absl::StartsWith(c.worker().name(), kWorkerName));
  }

  // The ledger verifies, and holds the backup's checkpoint.
  const std::string roster = fed_.org(kOrg).dir + "/roster.json";
  CommandResult exported =
      nodes_.CtlAs(kOrg, nodes_.auditor(kOrg),
                   {"audit", "export", "--out", fed_.root() + "/export.txt", "--roster", roster,
                    "--stewards", nodes_.config(kOrg), "--state", fed_.root() + "/audit-state"});
  EXPECT_EQ(exported.exit_code, 0) << exported.err;
  CommandResult consistent = nodes_.CtlAs(
      kOrg, nodes_.auditor(kOrg),
      {"audit", "consistency", "--from", out + "/" + kCheckpointNoteFile, "--roster", roster,
       "--stewards", nodes_.config(kOrg), "--state", fed_.root() + "/audit-state"});
  EXPECT_EQ(consistent.exit_code, 0) << consistent.out << consistent.err;

  // The peer sees the rollback as a fork, and as this restore.
  ASSERT_TRUE(testing::Eventually([&] {
    const v1::StatusResponse peer = nodes_.Health(kPeer);
    for (const auto& p : peer.peers()) {
      if (p.org() == kOrg && p.fork().restored().ledger_size() == m.ledger_size) return true;
    }
    return false;
  })) << nodes_.Ctl(kPeer, {"peers"}).out;
  EXPECT_TRUE(absl::StrContains(nodes_.Ctl(kPeer, {"peers"}).out, "by a restore"));
}

// Stands in for a node at its endpoint: answers GetCheckpoint with a given
// checkpoint and restore notice.
class RestoredPeer final : public v1::PeerService::Service {
 public:
  RestoredPeer(std::string checkpoint, v1::RestoreInfo notice)
      : checkpoint_(std::move(checkpoint)), notice_(std::move(notice)) {}
  grpc::Status GetCheckpoint(grpc::ServerContext*, const v1::PeerCheckpointRequest*,
                             v1::PeerCheckpoint* resp) override {
    resp->set_checkpoint(checkpoint_);
    *resp->mutable_restored() = notice_;
    return grpc::Status::OK;
  }

 private:
  const std::string checkpoint_;
  const v1::RestoreInfo notice_;
};

// A restore notice is believed only if its backup checkpoint is signed by the
// org itself: one signed by another member's key is ignored (the rollback is
// still a fork, without the notice); a genuine one is attached to the fork.
TEST_F(BackupTest, APeerBelievesARestoreNoticeOnlyWithTheOrgsSignedCheckpoint) {
  ASSERT_TRUE(nodes_.Start(kPeer));
  auto peer_view = [&] {
    const v1::StatusResponse s = nodes_.Health(kPeer);
    for (const auto& p : s.peers()) {
      if (p.org() == kOrg) return p;
    }
    return v1::PeerStatus();
  };
  ASSERT_TRUE(testing::Eventually([&] { return peer_view().witnessed_size() > 2; }));
  ASSERT_EQ(nodes_.Stop(kOrg, SIGTERM), 0);
  const std::string origin = absl::StrCat(fed_.federation(), "/", kOrg);
  note::Checkpoint small{origin, 1, merkle::HashLeaf("restored"), {}};
  v1::RestoreInfo notice;
  notice.set_ledger_size(1);
  notice.set_backup_unix(1);
  notice.set_restored_unix(2);
  notice.set_manifest_sha256(std::string(64, 'a'));
  // Signed under the org's origin, but with the other member's key.
  notice.set_backup_checkpoint(note::SignCheckpoint(small, origin, fed_.org(kPeer).signing));
  RestoredPeer fake(note::SignCheckpoint(small, origin, fed_.org(kOrg).signing), notice);
  grpc::SslServerCredentialsOptions tls(GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_BUT_DONT_VERIFY);
  tls.pem_key_cert_pairs.push_back({fed_.org(kOrg).node.key_pem, fed_.org(kOrg).node.cert_pem});
  grpc::ServerBuilder builder;
  builder.AddListeningPort(fed_.org(kOrg).endpoint(), grpc::SslServerCredentials(tls));
  builder.RegisterService(&fake);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ASSERT_NE(server, nullptr);
  ASSERT_TRUE(testing::Eventually([&] { return peer_view().has_fork(); }));
  server->Shutdown();
  const v1::PeerStatus seen = peer_view();
  EXPECT_EQ(seen.fork().kind(), "smaller");
  EXPECT_FALSE(seen.fork().has_restored());
  EXPECT_FALSE(seen.has_restored());
  EXPECT_FALSE(nodes_.AwaitLogLine(kPeer, {"witness.restore_notice_refused", kOrg}).empty());
}

TEST_F(BackupTest, RefusedBackupsAreRecordedAndChangeNothing) {
  const std::string out = fed_.root() + "/backup-ok";
  ASSERT_EQ(Backup(out).exit_code, 0);
  const auto kept = Snapshot(out);
  const auto cwd_before = Snapshot(fs::current_path().string());
  struct Case {
    std::string name;
    std::vector<std::string> args;
    bool as_admin;
    std::string says;
  };
  const std::vector<Case> cases = {
      {"not an admin", {"admin", "backup", "--out", fed_.root() + "/b2"}, false, "may not call"},
      {"relative", {"admin", "backup", "--out", "relative-backup"}, true, "absolute path"},
      {"in the data dir", {"admin", "backup", "--out", DataDir() + "/b3"}, true, "inside"},
      {"the data dir", {"admin", "backup", "--out", DataDir()}, true, "inside"},
      {"not empty", {"admin", "backup", "--out", out}, true, "not empty"},
      {"dot-dot", {"admin", "backup", "--out", fed_.root() + "/x/../b4"}, true, "\"..\""},
      {"too long", {"admin", "backup", "--out", "/" + std::string(1100, 'a')}, true, "longer"},
      {"no parent", {"admin", "backup", "--out", fed_.root() + "/none/b5"}, true, "parent"},
  };
  for (const Case& c : cases) {
    CommandResult r = c.as_admin ? nodes_.CtlAsAdmin(kOrg, c.args) : nodes_.Ctl(kOrg, c.args);
    EXPECT_NE(r.exit_code, 0) << c.name;
    EXPECT_TRUE(absl::StrContains(r.err, c.says)) << c.name << ": " << r.err;
  }
  EXPECT_EQ(Snapshot(out), kept);
  EXPECT_FALSE(fs::exists(fed_.root() + "/b2"));
  EXPECT_FALSE(fs::exists(DataDir() + "/b3"));
  EXPECT_FALSE(fs::exists(fed_.root() + "/b4"));
  EXPECT_EQ(Snapshot(fs::current_path().string()), cwd_before);
  auto audit = v1::AuditService::NewStub(Channel(nodes_.auditor(kOrg)));
  int allowed = 0, refused = 0;
  for (const auto& e : Events(*audit, "node.backup")) {
    (e.event().outcome() == v1::ACCESS_OUTCOME_ALLOWED ? allowed : refused)++;
    EXPECT_FALSE(absl::StrContains(e.event().reason(), fed_.root())) << e.event().reason();
  }
  EXPECT_EQ(allowed, 1);
  EXPECT_EQ(refused, static_cast<int>(cases.size()));
}

// Two backups asked for at once: the node makes one at a time; a second asked
// for while one is being made is refused (recorded), never interleaved. Both
// may also succeed one after the other; each backup written is complete.
TEST_F(BackupTest, TwoBackupsAtOnceAreEachCompleteOrRefused) {
  CaseLoad load(Channel(nodes_.user(kOrg)), 4);
  ASSERT_TRUE(testing::Eventually([&] { return load.Acknowledged().size() >= 10; }));
  std::vector<CommandResult> results(2);
  std::vector<std::thread> threads;
  for (int i = 0; i < 2; ++i) {
    threads.emplace_back([&, i] { results[i] = Backup(absl::StrCat(fed_.root(), "/twin-", i)); });
  }
  for (auto& t : threads) t.join();
  load.Stop();
  int made = 0;
  for (int i = 0; i < 2; ++i) {
    const std::string dir = absl::StrCat(fed_.root(), "/twin-", i);
    if (results[i].exit_code == 0) {
      ++made;
      auto verified = VerifyBackup(dir);
      EXPECT_TRUE(verified.ok()) << verified.status();
      EXPECT_EQ(verified->manifest.ledger_size,
                FromJson<v1::BackupResponse>(results[i].out).ledger_size());
    } else {
      EXPECT_TRUE(absl::StrContains(results[i].err, "another backup")) << results[i].err;
      EXPECT_FALSE(fs::exists(dir));
    }
  }
  EXPECT_GE(made, 1);
  BackupGate gate;
  ASSERT_TRUE(gate.TryEnter().ok());
  EXPECT_TRUE(absl::IsFailedPrecondition(gate.TryEnter()));
  gate.Leave();
  EXPECT_TRUE(gate.TryEnter().ok());
}

TEST_F(BackupTest, RestoreRefusesABackupThatDiffersFromItsManifest) {
  const std::string out = fed_.root() + "/backup-x";
  ASSERT_EQ(Backup(out).exit_code, 0);
  EXPECT_EQ(nodes_.Stop(kOrg, SIGTERM), 0);
  fs::rename(DataDir(), DataDir() + ".old");
  // A file added, then a byte of a listed file changed.
  ASSERT_TRUE(WriteFileAtomically(out + "/db/extra", "x").ok());
  CommandResult r = Restore(out);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(absl::StrContains(r.err, "not the ones its manifest lists")) << r.err;
  fs::remove(out + "/db/extra");
  const std::string note = ReadFileToString(out + "/" + kCheckpointNoteFile).value();
  ASSERT_TRUE(WriteFileAtomically(out + "/" + kCheckpointNoteFile, note + " ").ok());
  r = Restore(out);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(absl::StrContains(r.err, "differs from its manifest")) << r.err;
  EXPECT_FALSE(fs::exists(DataDir()));
}

TEST_F(BackupTest, NewerDataFormatIsRefusedAndLeftUnchanged) {
  EXPECT_EQ(nodes_.Stop(kOrg, SIGTERM), 0);
  {
    testing::StoppedDb db(DataDir());
    ASSERT_TRUE(db.ok());
    ASSERT_TRUE(db.db()
                    ->Put(rocksdb::WriteOptions(), db.family(NodeStore::kMetaFamily),
                          kFormatVersionKey, std::to_string(kDataFormatVersion + 1))
                    .ok());
  }
  const auto before = Snapshot(DataDir());
  CommandResult r =
      testing::RunCommand({testing::BinaryPath("corridord"), "--config", nodes_.config(kOrg)},
                          testing::ScaledDeadline(absl::Seconds(60)));
  EXPECT_EQ(r.exit_code, 1);
  const std::string newer = absl::StrCat("data format version ", kDataFormatVersion + 1);
  EXPECT_TRUE(absl::StrContains(r.err, newer)) << r.err;
  EXPECT_TRUE(absl::StrContains(r.err, absl::StrCat("up to ", kDataFormatVersion))) << r.err;
  EXPECT_TRUE(absl::StrContains(r.err, "Install the newer corridord")) << r.err;
  EXPECT_EQ(Snapshot(DataDir()), before);
}

// tests/data/format-v1/union-sg.tar.gz: a node directory (config, keys,
// certificates, roster, data/) written by corridord before data format
// versions existed (commit 59a6700); see tests/data/format-v1/README.md.
TEST(DataFormatTest, DirectoryOfThePreviousFormatOpensServesAndVerifies) {
  const std::string root = testing::MakeTempDir("corridor-format-v1");
  CommandResult untar = testing::RunCommand(
      {"/bin/tar", "-xzf",
       std::string(CORRIDOR_SOURCE_DIR) + "/tests/data/format-v1/union-sg.tar.gz", "-C", root});
  ASSERT_EQ(untar.exit_code, 0) << untar.err;
  const std::string dir = root + "/union-sg";
  auto facts = ReadFileToString(dir + "/fixture.txt");
  ASSERT_TRUE(facts.ok());
  {
    auto meta = PeekDatabase(dir + "/data", NodeStore::kMetaFamily, {kFormatVersionKey});
    ASSERT_TRUE(meta.ok()) << meta.status();
    EXPECT_TRUE(meta->empty()) << "the fixture must be of the unversioned format";
  }
  // A port of today.
  const int port = testing::PickFreePort();
  std::string yaml = ReadFileToString(dir + "/node.yaml").value();
  const size_t at = yaml.find("listen: ");
  yaml.replace(at, yaml.find('\n', at) - at, absl::StrCat("listen: 127.0.0.1:", port));
  ASSERT_TRUE(WriteFileAtomically(dir + "/node.yaml", yaml).ok());
  testing::Subprocess node({testing::BinaryPath("corridord"), "--config", dir + "/node.yaml"},
                           dir + "/corridord.log");
  auto ctl = [&](const std::string& user, std::vector<std::string> args) {
    std::vector<std::string> argv = {testing::BinaryPath("corridorctl")};
    argv.insert(argv.end(), args.begin(), args.end());
    for (const std::string& a :
         {std::string("--node"), absl::StrCat("127.0.0.1:", port), std::string("--cert"),
          dir + "/" + user + ".crt", std::string("--key"), dir + "/" + user + ".key",
          std::string("--ca"), dir + "/ca.crt"}) {
      argv.push_back(a);
    }
    return testing::RunCommand(argv, testing::ScaledDeadline(absl::Seconds(120)));
  };
  CommandResult up = ctl("cw", {"health", "--wait", "60", "--json"});
  ASSERT_EQ(up.exit_code, 0) << up.err << node.Log();
  EXPECT_EQ(FromJson<v1::StatusResponse>(up.out).data_format_version(), kDataFormatVersion);
  // Its cases, read back with their (sealed) personal data.
  std::vector<std::string> ids =
      testing::JsonValues(ctl("cw", {"case", "list", "--json"}).out, "id");
  EXPECT_EQ(ids.size(), 3u);
  for (const std::string& id : ids) {
    CommandResult shown = ctl("cw", {"case", "show", id, "--purpose", "case-handling"});
    EXPECT_EQ(shown.exit_code, 0) << shown.err;
    EXPECT_TRUE(absl::StrContains(shown.out, "Fixture Worker")) << shown.out;
  }
  // The upgrade is recorded, once; the whole ledger verifies.
  CommandResult upgraded = ctl("aud", {"audit", "log", "--action", "store.format", "--json"});
  EXPECT_EQ(upgraded.exit_code, 0) << upgraded.err;
  EXPECT_TRUE(absl::StrContains(upgraded.out, "no format version")) << upgraded.out;
  CommandResult exported = ctl(
      "aud", {"audit", "export", "--out", root + "/export.txt", "--roster", dir + "/roster.json",
              "--stewards", dir + "/node.yaml", "--state", root + "/audit-state"});
  EXPECT_EQ(exported.exit_code, 0) << exported.err;
  EXPECT_EQ(node.Stop(SIGTERM), 0);
  auto meta = PeekDatabase(dir + "/data", NodeStore::kMetaFamily, {kFormatVersionKey});
  ASSERT_TRUE(meta.ok());
  EXPECT_EQ((*meta)[kFormatVersionKey], std::to_string(kDataFormatVersion));
  std::error_code ignored;
  fs::remove_all(root, ignored);
}

// Writes tests/data/format-v1/union-sg.tar.gz with the corridord and
// corridorctl in $CORRIDOR_FIXTURE_BIN_DIR (a build of the commit before data
// format versions) into $CORRIDOR_FIXTURE_OUT. Run by hand; see the README there.
TEST(DataFormatTest, DISABLED_WriteFormatV1Fixture) {
  const char* bin = getenv("CORRIDOR_FIXTURE_BIN_DIR");
  const char* out = getenv("CORRIDOR_FIXTURE_OUT");
  ASSERT_TRUE(bin != nullptr && out != nullptr);
  testing::TestFederation fed;
  fed.AddOrg(kOrg);
  testing::NodeProcesses nodes(fed);
  const std::string config = nodes.Configure(kOrg);
  const std::string dir = fed.org(kOrg).dir;
  {
    testing::Subprocess node({std::string(bin) + "/corridord", "--config", config},
                             dir + "/corridord.log");
    ASSERT_EQ(nodes.Ctl(kOrg, {"health", "--wait", "60"}).exit_code, 0) << node.Log();
    for (int i = 0; i < 3; ++i) {
      CommandResult r = nodes.Ctl(
          kOrg, {"case", "create", "--category", "wage-theft", "--origin", "id", "--destination",
                 "sg", "--worker-name", absl::StrCat("Fixture Worker ", i)});
      ASSERT_EQ(r.exit_code, 0) << r.err;
    }
    ASSERT_EQ(node.Stop(SIGTERM), 0);
  }
  ASSERT_TRUE(
      WriteFileAtomically(dir + "/fixture.txt", absl::StrCat("written by ", bin, "/corridord\n"))
          .ok());
  CommandResult tar = testing::RunCommand(
      {"/bin/tar", "--exclude=union-sg/data/space-reserve", "--exclude=union-sg/data/LOG*",
       "--exclude=union-sg/data/keystore/LOG*", "--exclude=union-sg/corridord.log", "-czf", out,
       "-C", fed.root(), "union-sg"});
  ASSERT_EQ(tar.exit_code, 0) << tar.err;
}

}  // namespace
}  // namespace corridor
