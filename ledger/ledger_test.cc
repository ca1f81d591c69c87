// The RocksDB ledger: group commit, atomicity with the caller's change, fail
// closed on a failed commit, proofs against a tree recomputed from scratch,
// reopening without replay, lookups, export, and tampering caught at open or
// by full verification.
#include "ledger/ledger.h"

#include <atomic>
#include <random>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "gtest/gtest.h"
#include "tests/testing/federation.h"
#include "tests/testing/status_matchers.h"

namespace corridor::ledger {
namespace {

std::string Be64(uint64_t v) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>(v >> (56 - 8 * i));
  return s;
}

class LedgerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::MakeTempDir("ledger");
    Reopen();
  }
  void Close() {
    ledger_.reset();
    db_.reset();
  }
  absl::Status TryReopen(LedgerOptions extra = {}) {
    Close();
    auto db = OpenStandaloneDb(dir_);
    if (!db.ok()) return db.status();
    db_ = *std::move(db);
    LedgerOptions o = std::move(extra);
    o.origin = "corridor.test/union-sg";
    o.signing_key = &key_;
    auto l = Ledger::Open(db_->db.get(), db_->families, std::move(o));
    if (!l.ok()) return l.status();
    ledger_ = *std::move(l);
    return absl::OkStatus();
  }
  void Reopen(LedgerOptions extra = {}) { ASSERT_OK(TryReopen(std::move(extra))); }

  static std::vector<AppendEntry> Entries(int n, const std::string& prefix) {
    std::vector<AppendEntry> out;
    for (int i = 0; i < n; ++i) out.push_back({absl::StrCat(prefix, "-", i), {"all"}});
    return out;
  }
  void AppendMany(int n) {
    for (int i = 0; i < n; ++i) ASSERT_OK(ledger_->Append({{absl::StrCat("event-", i), {}}}));
  }
  // Raw RocksDB edits, as an attacker with disk access would make them.
  void RawPut(const char* family, const std::string& key, const std::string& value) {
    ASSERT_TRUE(db_->db->Put(rocksdb::WriteOptions(), db_->families.at(family), key, value).ok());
  }
  void RawDelete(const char* family, const std::string& key) {
    ASSERT_TRUE(db_->db->Delete(rocksdb::WriteOptions(), db_->families.at(family), key).ok());
  }
  std::string RawGet(const char* family, const std::string& key) {
    std::string v;
    EXPECT_TRUE(db_->db->Get(rocksdb::ReadOptions(), db_->families.at(family), key, &v).ok());
    return v;
  }

  std::string dir_;
  Ed25519PrivateKey key_ = Ed25519PrivateKey::Generate();
  std::unique_ptr<StandaloneDb> db_;
  std::unique_ptr<Ledger> ledger_;
};

TEST_F(LedgerTest, AppendsGetConsecutiveIndexesAndSignedCheckpoints) {
  EXPECT_EQ(ledger_->head().size, 0u);
  ASSERT_OK_AND_ASSIGN(uint64_t first, ledger_->Append(Entries(3, "a")));
  EXPECT_EQ(first, 0u);
  ASSERT_OK_AND_ASSIGN(first, ledger_->Append(Entries(2, "b")));
  EXPECT_EQ(first, 3u);
  Head h = ledger_->head();
  EXPECT_EQ(h.size, 5u);
  ASSERT_OK_AND_ASSIGN(note::Checkpoint cp, note::OpenCheckpoint(h.checkpoint, ledger_->verifier()));
  EXPECT_EQ(cp.size, 5u);
  EXPECT_EQ(cp.root, h.root);
  EXPECT_EQ(cp.origin, "corridor.test/union-sg");
  ASSERT_OK_AND_ASSIGN(std::string e, ledger_->Entry(3));
  EXPECT_EQ(e, "b-0");
  EXPECT_STATUS(ledger_->Entry(5), absl::StatusCode::kOutOfRange, "does not exist");
}

TEST_F(LedgerTest, ConcurrentCallersAreGroupCommittedWithDistinctIndexes) {
  constexpr int kThreads = 16, kPerThread = 40;
  std::vector<std::thread> threads;
  std::mutex mu;
  std::set<uint64_t> indexes;
  std::atomic<int> failures{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        auto idx = ledger_->Append({{absl::StrCat("t", t, "-", i), {absl::StrCat("thread/", t)}}});
        if (!idx.ok()) {
          ++failures;
          continue;
        }
        std::lock_guard<std::mutex> lock(mu);
        indexes.insert(*idx);
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  ASSERT_EQ(indexes.size(), size_t{kThreads * kPerThread});
  EXPECT_EQ(*indexes.rbegin(), uint64_t{kThreads * kPerThread - 1});
  EXPECT_OK(ledger_->VerifyAll());
  // Each thread's entries are found under its key, newest first.
  ASSERT_OK_AND_ASSIGN(std::vector<uint64_t> hits, ledger_->Lookup("thread/3", 0, 1000));
  ASSERT_EQ(hits.size(), size_t{kPerThread});
  EXPECT_TRUE(std::is_sorted(hits.rbegin(), hits.rend()));
  ASSERT_OK_AND_ASSIGN(std::string last, ledger_->Entry(hits[0]));
  EXPECT_EQ(last, absl::StrCat("t3-", kPerThread - 1));
}

TEST_F(LedgerTest, ProofsFromStorageVerifyAgainstRecomputedRoots) {
  std::mt19937_64 rng(7);
  std::vector<std::string> all;
  std::vector<Head> heads;
  while (all.size() < 1500) {
    std::vector<AppendEntry> batch;
    const int n = 1 + rng() % 90;
    for (int i = 0; i < n; ++i) {
      all.push_back(absl::StrCat("entry ", all.size(), " ", rng()));
      batch.push_back({all.back(), {}});
    }
    ASSERT_OK(ledger_->Append(std::move(batch)));
    heads.push_back(ledger_->head());
  }
  merkle::CompactRange reference;
  std::map<uint64_t, merkle::Hash> roots;
  for (const std::string& e : all) {
    reference.Push(merkle::HashLeaf(e));
    roots[reference.size()] = reference.Root();
  }
  for (const Head& h : heads) {
    ASSERT_EQ(h.root, roots.at(h.size));
    for (int k = 0; k < 8; ++k) {
      const uint64_t i = rng() % h.size;
      ASSERT_OK_AND_ASSIGN(auto proof, ledger_->InclusionProof(i, h.size));
      EXPECT_OK(merkle::VerifyInclusion(i, h.size, merkle::HashLeaf(all[i]), proof, h.root));
    }
    const Head& old = heads[rng() % heads.size()];
    if (old.size <= h.size) {
      ASSERT_OK_AND_ASSIGN(auto proof, ledger_->ConsistencyProof(old.size, h.size));
      EXPECT_OK(merkle::VerifyConsistency(old.size, h.size, old.root, h.root, proof));
    }
  }
  // Reopening restores the tree without replaying it, and appends continue.
  Reopen();
  EXPECT_EQ(ledger_->head().root, heads.back().root);
  ASSERT_OK(ledger_->Append({{"after reopen", {}}}));
  reference.Push(merkle::HashLeaf("after reopen"));
  EXPECT_EQ(ledger_->head().root, reference.Root());
  EXPECT_OK(ledger_->VerifyAll());
}

TEST_F(LedgerTest, CallersChangeCommitsInTheSameBatch) {
  auto change = std::make_unique<rocksdb::WriteBatch>();
  change->Put(db_->families.at("default"), "case/1", "opened");
  ASSERT_OK(ledger_->Append({{"case.create 1", {"case/1"}}}, std::move(change)));
  EXPECT_EQ(RawGet("default", "case/1"), "opened");
}

TEST_F(LedgerTest, FailedCommitFailsTheGroupWritesNothingAndRefusesUntilReopened) {
  std::atomic<bool> fail{false};
  LedgerOptions o;
  o.commit = [&](rocksdb::DB* db, rocksdb::WriteBatch* b) {
    if (fail) return rocksdb::Status::IOError("injected: disk full");
    rocksdb::WriteOptions wo;
    wo.sync = true;
    return db->Write(wo, b);
  };
  Reopen(std::move(o));
  ASSERT_OK(ledger_->Append(Entries(3, "ok")));
  const Head before = ledger_->head();
  fail = true;
  auto change = std::make_unique<rocksdb::WriteBatch>();
  change->Put(db_->families.at("default"), "case/2", "should not exist");
  EXPECT_STATUS(ledger_->Append({{"lost", {}}}, std::move(change)), absl::StatusCode::kUnavailable,
                "disk full");
  fail = false;
  // Refusing now, even though the disk would work again.
  EXPECT_STATUS(ledger_->Append({{"later", {}}}), absl::StatusCode::kUnavailable, "refuses");
  EXPECT_FALSE(ledger_->health().ok());
  EXPECT_EQ(ledger_->head().size, before.size);
  std::string v;
  EXPECT_TRUE(db_->db->Get(rocksdb::ReadOptions(), db_->families.at("default"), "case/2", &v).IsNotFound());
  Reopen();
  EXPECT_EQ(ledger_->head().root, before.root);
  ASSERT_OK(ledger_->Append({{"after", {}}}));
  EXPECT_OK(ledger_->VerifyAll());
}

TEST_F(LedgerTest, LookupPagesNewestFirst) {
  for (int i = 0; i < 10; ++i) {
    ASSERT_OK(ledger_->Append({{absl::StrCat(i), {i % 2 ? "odd" : "even", "all"}}}));
  }
  ASSERT_OK_AND_ASSIGN(auto page1, ledger_->Lookup("odd", 0, 3));
  EXPECT_EQ(page1, (std::vector<uint64_t>{9, 7, 5}));
  ASSERT_OK_AND_ASSIGN(auto page2, ledger_->Lookup("odd", page1.back(), 3));
  EXPECT_EQ(page2, (std::vector<uint64_t>{3, 1}));
  ASSERT_OK_AND_ASSIGN(auto none, ledger_->Lookup("od", 0, 3));
  EXPECT_TRUE(none.empty());
  EXPECT_STATUS(ledger_->Append({{"x", {std::string("bad\0key", 7)}}}),
                absl::StatusCode::kInvalidArgument, "NUL");
}

TEST_F(LedgerTest, ExportVerifiesOfflineAndTamperingIsCaught) {
  AppendMany(37);
  ASSERT_OK_AND_ASSIGN(std::string exp, ledger_->Export(10, 20));
  ASSERT_OK_AND_ASSIGN(VerifiedExport v, VerifyExport(exp, ledger_->verifier()));
  EXPECT_EQ(v.first_index, 10u);
  ASSERT_EQ(v.entries.size(), 10u);
  EXPECT_EQ(v.entries[0], "event-10");
  EXPECT_EQ(v.checkpoint.size, 37u);
  for (auto [b, e] : std::vector<std::pair<int, int>>{{0, 37}, {0, 1}, {36, 37}, {5, 6}}) {
    ASSERT_OK_AND_ASSIGN(std::string x, ledger_->Export(b, e));
    EXPECT_OK(VerifyExport(x, ledger_->verifier()));
  }
  // A changed entry, another node's key, a dropped connecting hash.
  std::string changed = absl::StrReplaceAll(exp, {{Base64Encode("event-12"), Base64Encode("event-99")}});
  EXPECT_STATUS(VerifyExport(changed, ledger_->verifier()), absl::StatusCode::kDataLoss, "do not lead");
  Ed25519PrivateKey other = Ed25519PrivateKey::Generate();
  EXPECT_STATUS(VerifyExport(exp, note::Verifier{"corridor.test/union-sg", 0x01, other.public_key()}),
                absl::StatusCode::kPermissionDenied, "checkpoint");
  const size_t h = exp.find("\nhash ");
  std::string dropped = exp.substr(0, h) + exp.substr(exp.find('\n', h + 1));
  EXPECT_FALSE(VerifyExport(dropped, ledger_->verifier()).ok());
  EXPECT_STATUS(ledger_->Export(30, 40), absl::StatusCode::kOutOfRange, "the ledger has 37");
}

// ---- tampering directly in RocksDB ------------------------------------------

TEST_F(LedgerTest, ChangedEntryIsCaughtAndLocated) {
  AppendMany(20);
  Close();
  ASSERT_OK(TryReopen());
  RawPut(kEntriesFamily, Be64(5), "event-5 (edited)");
  EXPECT_STATUS(ledger_->VerifyAll(), absl::StatusCode::kDataLoss,
                "entry 5 does not match its stored leaf hash");
  // The last entry is checked at open itself.
  RawPut(kEntriesFamily, Be64(19), "event-19 (edited)");
  EXPECT_STATUS(TryReopen(), absl::StatusCode::kDataLoss, "entry 19 (the last one) does not match");
}

TEST_F(LedgerTest, DroppedEntryIsCaughtAndLocated) {
  AppendMany(20);
  RawDelete(kEntriesFamily, Be64(7));
  EXPECT_STATUS(ledger_->VerifyAll(), absl::StatusCode::kDataLoss, "entry 7 is missing");
  RawDelete(kEntriesFamily, Be64(19));
  EXPECT_STATUS(TryReopen(), absl::StatusCode::kDataLoss, "entry 19 (the last one) is missing");
}

TEST_F(LedgerTest, ReorderedEntriesAreCaughtAndLocated) {
  AppendMany(20);
  RawPut(kEntriesFamily, Be64(3), "event-4");
  RawPut(kEntriesFamily, Be64(4), "event-3");
  EXPECT_STATUS(ledger_->VerifyAll(), absl::StatusCode::kDataLoss, "entry 3 does not match");
}

TEST_F(LedgerTest, ChangedSubtreeHashIsCaught) {
  AppendMany(300);  // tiles 0/0 (full), 0/1 (partial) and 1/0
  // A node below the root path: full verification finds it and says where.
  std::string key0(1, '\0');
  key0 += Be64(0);
  std::string tile = RawGet(kTilesFamily, key0);
  tile[2 + 256 * 32 + 5] ^= 1;  // row 1, first hash: level 1, index 0
  RawPut(kTilesFamily, key0, tile);
  ASSERT_OK(TryReopen());  // not on the root path: open's quick check passes
  EXPECT_STATUS(ledger_->VerifyAll(), absl::StatusCode::kDataLoss,
                "stored subtree hash at level 1, index 0 does not match");
  // A node on the root path (level 8, index 0, in tile 1/0): open refuses.
  std::string key1(1, '\1');
  key1 += Be64(0);
  std::string top = RawGet(kTilesFamily, key1);
  top[2 + 3] ^= 1;
  RawPut(kTilesFamily, key1, top);
  EXPECT_STATUS(TryReopen(), absl::StatusCode::kDataLoss,
                "does not match the root computed from the stored subtree hashes");
}

TEST_F(LedgerTest, ChangedHeadOrCheckpointIsCaughtAtOpen) {
  AppendMany(10);
  const std::string head = RawGet(kStateFamily, "head");
  const std::string cp = RawGet(kStateFamily, "checkpoint");
  std::string bad_head = head;
  bad_head[7] = 9;  // claims 9 entries
  RawPut(kStateFamily, "head", bad_head);
  EXPECT_STATUS(TryReopen(), absl::StatusCode::kDataLoss, "does not match");
  RawPut(kStateFamily, "head", head);
  std::string bad_cp = absl::StrReplaceAll(cp, {{"\n10\n", "\n11\n"}});
  RawPut(kStateFamily, "checkpoint", bad_cp);
  EXPECT_STATUS(TryReopen(), absl::StatusCode::kDataLoss, "checkpoint does not verify");
  RawPut(kStateFamily, "checkpoint", cp);
  EXPECT_OK(TryReopen());
  // An entry smuggled in beyond the head.
  RawPut(kEntriesFamily, Be64(10), "smuggled");
  EXPECT_STATUS(TryReopen(), absl::StatusCode::kDataLoss, "beyond the stored tree head");
}

TEST_F(LedgerTest, ACheckpointFromAnotherKeyIsRefusedAtOpen) {
  AppendMany(4);
  Close();
  Ed25519PrivateKey other = Ed25519PrivateKey::Generate();
  auto db = OpenStandaloneDb(dir_);
  ASSERT_OK(db);
  LedgerOptions o;
  o.origin = "corridor.test/union-sg";
  o.signing_key = &other;
  EXPECT_STATUS(Ledger::Open((*db)->db.get(), (*db)->families, std::move(o)),
                absl::StatusCode::kDataLoss, "checkpoint does not verify");
}

}  // namespace
}  // namespace corridor::ledger
