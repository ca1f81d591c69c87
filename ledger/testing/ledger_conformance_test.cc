// One suite, run against every Ledger implementation (RocksDbLedger and
// MemoryLedger): what ledger.h promises.
#include <map>
#include <memory>
#include <random>
#include <set>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "ledger/export.h"
#include "ledger/ledger.h"
#include "ledger/rocksdb/rocksdb_ledger.h"
#include "ledger/testing/ledger_test_util.h"
#include "ledger/testing/memory_ledger.h"
#include "tests/testing/status_matchers.h"

namespace corridor::ledger {
namespace {

using ::corridor::ledger::testing::FakeClock;
using ::corridor::ledger::testing::ReferenceRoot;
using ::corridor::ledger::testing::TempDir;

// The key spaces every ledger made here lets changes write.
const std::vector<std::string>& KeySpaces() {
  static const auto* const spaces = new std::vector<std::string>{"cases", "outbox"};
  return *spaces;
}

// Makes ledgers of one implementation; owns whatever they live on.
class Factory {
 public:
  virtual ~Factory() = default;
  virtual absl::StatusOr<std::unique_ptr<Ledger>> Make(LedgerOptions options) = 0;
  // What committed changes left at `key` of `space` in the last ledger's
  // storage: NotFound if nothing.
  virtual absl::StatusOr<std::string> Read(const std::string& space, const std::string& key) = 0;
};

class MemoryFactory : public Factory {
 public:
  absl::StatusOr<std::unique_ptr<Ledger>> Make(LedgerOptions options) override {
    auto l = MemoryLedger::Create(std::move(options), KeySpaces());
    if (!l.ok()) return l.status();
    last_ = l->get();
    return std::unique_ptr<Ledger>(std::move(*l));
  }
  absl::StatusOr<std::string> Read(const std::string& space, const std::string& key) override {
    return last_->key_spaces().Get(space, key);
  }

 private:
  MemoryLedger* last_ = nullptr;
};

class RocksDbFactory : public Factory {
 public:
  absl::StatusOr<std::unique_ptr<Ledger>> Make(LedgerOptions options) override {
    LedgerDbOptions db_options;
    db_options.families = KeySpaces();
    auto db = OpenLedgerDb(absl::StrCat(dir_.path(), "/db", dbs_.size()), std::move(db_options));
    if (!db.ok()) return db.status();
    RocksDbLedgerOptions o;
    static_cast<LedgerOptions&>(o) = std::move(options);
    auto l = RocksDbLedger::Open((*db)->db.get(), (*db)->families, std::move(o));
    dbs_.push_back(std::move(*db));
    if (!l.ok()) return l.status();
    return std::unique_ptr<Ledger>(std::move(*l));
  }
  absl::StatusOr<std::string> Read(const std::string& space, const std::string& key) override {
    const LedgerDb& db = *dbs_.back();
    std::string value;
    rocksdb::Status s = db.db->Get(rocksdb::ReadOptions(), db.families.at(space), key, &value);
    if (!s.ok()) return FromRocksStatus(s, absl::StrCat("reading ", space, "/", key));
    return value;
  }
  ~RocksDbFactory() override {
    // Ledgers are destroyed by the test before the factory (declared later).
  }

 private:
  TempDir dir_;
  std::vector<std::unique_ptr<LedgerDb>> dbs_;
};

class LedgerConformance : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (GetParam() == "memory") {
      factory_ = std::make_unique<MemoryFactory>();
    } else {
      factory_ = std::make_unique<RocksDbFactory>();
    }
  }
  void TearDown() override {
    ledger_.reset();
    factory_.reset();
  }

  LedgerOptions Options() {
    LedgerOptions o;
    o.origin = "corridor.test/union-sg";
    o.signing_key = &key_;
    o.clock = clock_.AsFunction();
    return o;
  }
  Ledger& Make(LedgerOptions o) {
    auto l = factory_->Make(std::move(o));
    EXPECT_TRUE(l.ok()) << l.status();
    ledger_ = std::move(*l);
    return *ledger_;
  }
  Ledger& Make() { return Make(Options()); }

  // Appends `n` entries in requests of random sizes; returns all entries.
  std::vector<std::string> Fill(Ledger& l, size_t n, std::mt19937_64& rng) {
    std::vector<std::string> all;
    while (all.size() < n) {
      const size_t batch = std::min<size_t>(n - all.size(), 1 + rng() % 40);
      std::vector<AppendEntry> req;
      for (size_t i = 0; i < batch; ++i) {
        std::string data = absl::StrCat("event ", all.size() + i, " ", rng());
        data.push_back('\0');  // entries are bytes, not strings
        req.push_back({data, {}});
      }
      auto first = l.Append(req);
      EXPECT_TRUE(first.ok()) << first.status();
      if (!first.ok()) return all;
      EXPECT_EQ(*first, all.size());
      for (auto& e : req) all.push_back(e.data);
    }
    return all;
  }

  Ed25519PrivateKey key_ = Ed25519PrivateKey::Generate();
  FakeClock clock_;
  std::unique_ptr<Factory> factory_;
  std::unique_ptr<Ledger> ledger_;
};

TEST_P(LedgerConformance, EmptyLedgerHasTheEmptyRootAndNoCheckpoint) {
  Ledger& l = Make();
  EXPECT_EQ(l.head().size, 0u);
  EXPECT_EQ(l.head().root, merkle::EmptyRoot());
  EXPECT_TRUE(l.head().checkpoint.empty());
  EXPECT_OK(l.health());
  EXPECT_OK(l.VerifyAll());
  EXPECT_STATUS(l.Entry(0), absl::StatusCode::kOutOfRange, "does not exist");
}

TEST_P(LedgerConformance, OptionsAreValidated) {
  LedgerOptions o = Options();
  o.origin = "";
  EXPECT_STATUS(factory_->Make(o), absl::StatusCode::kInvalidArgument, "origin");
  o = Options();
  o.signing_key = nullptr;
  EXPECT_STATUS(factory_->Make(o), absl::StatusCode::kInvalidArgument, "signing key");
  o = Options();
  o.key_name = "has space";
  EXPECT_STATUS(factory_->Make(o), absl::StatusCode::kInvalidArgument, "key name");
}

TEST_P(LedgerConformance, AppendsGetConsecutiveIndexesAndStoreExactBytes) {
  Ledger& l = Make();
  const std::string binary("\x00\x01\xff\n\x00", 5);
  ASSERT_OK_AND_ASSIGN(uint64_t a, l.Append({{"first", {}}, {binary, {}}, {"", {}}}));
  ASSERT_OK_AND_ASSIGN(uint64_t b, l.Append({{"fourth", {}}}));
  EXPECT_EQ(a, 0u);
  EXPECT_EQ(b, 3u);
  ASSERT_OK_AND_ASSIGN(std::string e1, l.Entry(1));
  EXPECT_EQ(e1, binary);
  ASSERT_OK_AND_ASSIGN(std::vector<std::string> all, l.Entries(0, 4));
  EXPECT_EQ(all, (std::vector<std::string>{"first", binary, "", "fourth"}));
  EXPECT_EQ(l.head().root, ReferenceRoot(all, 0, 4));
  ASSERT_OK_AND_ASSIGN(merkle::Hash leaf, l.SubtreeHash(0, 1));
  EXPECT_EQ(leaf, merkle::HashLeaf(binary));
  EXPECT_STATUS(l.SubtreeHash(3, 0), absl::StatusCode::kOutOfRange, "not complete");
  EXPECT_STATUS(l.SubtreeHash(0, 4), absl::StatusCode::kOutOfRange, "not complete");
  EXPECT_STATUS(l.Entries(2, 5), absl::StatusCode::kOutOfRange, "not within");
}

TEST_P(LedgerConformance, EveryCommitLeavesASignedCheckpointOfTheHead) {
  Ledger& l = Make();
  std::mt19937_64 rng(7);
  std::vector<std::string> all = Fill(l, 50, rng);
  const Head h = l.head();
  ASSERT_OK_AND_ASSIGN(note::Verifier v, note::ParseVerifier(l.verifier().ToString()));
  ASSERT_OK_AND_ASSIGN(note::Checkpoint cp, note::OpenCheckpoint(h.checkpoint, v));
  EXPECT_EQ(cp.origin, "corridor.test/union-sg");
  EXPECT_EQ(cp.size, 50u);
  EXPECT_EQ(cp.root, ReferenceRoot(all, 0, 50));
  EXPECT_EQ(h.root, cp.root);
  EXPECT_TRUE(absl::StartsWith(h.checkpoint, "corridor.test/union-sg\n50\n"));
  // Signed by our key under our key name, not by anyone else's.
  note::Verifier other{"corridor.test/union-sg", 0x01, Ed25519PrivateKey::Generate().public_key()};
  EXPECT_FALSE(note::OpenCheckpoint(h.checkpoint, other).ok());
  EXPECT_OK(l.VerifyAll());
}

TEST_P(LedgerConformance, ProofsForEverySizeVerifyAgainstTreesRecomputedFromScratch) {
  Ledger& l = Make();
  std::mt19937_64 rng(GetParam() == "memory" ? 11 : 12);
  const size_t n = 700;  // spans several 256-leaf tiles
  std::vector<std::string> all = Fill(l, n, rng);
  ASSERT_EQ(l.head().size, n);
  for (int round = 0; round < 150; ++round) {
    const uint64_t size = round < 20 ? round + 1 : 1 + rng() % n;
    SCOPED_TRACE(size);
    const merkle::Hash root = ReferenceRoot(all, 0, size);
    ASSERT_OK_AND_ASSIGN(merkle::Hash got, l.RootAt(size));
    ASSERT_EQ(got, root);
    const uint64_t index = rng() % size;
    ASSERT_OK_AND_ASSIGN(std::vector<merkle::Hash> incl, l.InclusionProof(index, size));
    ASSERT_OK(merkle::VerifyInclusion(index, size, merkle::HashLeaf(all[index]), incl, root));
    merkle::Hash flipped = root;
    flipped[rng() % 32] ^= uint8_t{1} << (rng() % 8);
    EXPECT_FALSE(
        merkle::VerifyInclusion(index, size, merkle::HashLeaf(all[index]), incl, flipped).ok());
    const uint64_t old_size = 1 + rng() % size;
    ASSERT_OK_AND_ASSIGN(std::vector<merkle::Hash> cons, l.ConsistencyProof(old_size, size));
    ASSERT_OK(
        merkle::VerifyConsistency(old_size, size, ReferenceRoot(all, 0, old_size), root, cons));
    if (!cons.empty()) {
      cons[rng() % cons.size()][rng() % 32] ^= uint8_t{1} << (rng() % 8);
      EXPECT_FALSE(
          merkle::VerifyConsistency(old_size, size, ReferenceRoot(all, 0, old_size), root, cons)
              .ok());
    }
  }
  EXPECT_STATUS(l.InclusionProof(0, n + 1), absl::StatusCode::kOutOfRange, "no tree of size");
  EXPECT_STATUS(l.InclusionProof(n, n), absl::StatusCode::kInvalidArgument, "not in a tree");
  EXPECT_STATUS(l.ConsistencyProof(0, n), absl::StatusCode::kInvalidArgument, "0 < old size");
  EXPECT_STATUS(l.ConsistencyProof(5, n + 1), absl::StatusCode::kOutOfRange, "no tree of size");
  EXPECT_OK(l.VerifyAll());
}

TEST_P(LedgerConformance, LookupIsNewestFirstPagedAndExactPerKey) {
  Ledger& l = Make();
  // Entry i is filed under case/<i % 3>; every 4th also under case/10.
  for (int i = 0; i < 40; ++i) {
    std::vector<std::string> keys = {absl::StrCat("case/", i % 3)};
    if (i % 4 == 0) keys.push_back("case/10");
    ASSERT_OK(l.Append({{absl::StrCat("e", i), keys}}));
  }
  ASSERT_OK_AND_ASSIGN(std::vector<uint64_t> page1, l.Lookup("case/1", Ledger::kFromNewest, 5));
  EXPECT_EQ(page1, (std::vector<uint64_t>{37, 34, 31, 28, 25}));
  ASSERT_OK_AND_ASSIGN(std::vector<uint64_t> page2, l.Lookup("case/1", page1.back(), 100));
  EXPECT_EQ(page2, (std::vector<uint64_t>{22, 19, 16, 13, 10, 7, 4, 1}));
  ASSERT_OK_AND_ASSIGN(std::vector<uint64_t> end, l.Lookup("case/1", 1, 100));
  EXPECT_TRUE(end.empty());
  // "case/1" must not match "case/10" (a prefix of the key, not of the index).
  ASSERT_OK_AND_ASSIGN(std::vector<uint64_t> ten, l.Lookup("case/10", Ledger::kFromNewest, 3));
  EXPECT_EQ(ten, (std::vector<uint64_t>{36, 32, 28}));
  ASSERT_OK_AND_ASSIGN(std::vector<uint64_t> none, l.Lookup("case/", Ledger::kFromNewest, 3));
  EXPECT_TRUE(none.empty());
  ASSERT_OK_AND_ASSIGN(std::vector<uint64_t> zero, l.Lookup("case/0", Ledger::kFromNewest, 0));
  EXPECT_TRUE(zero.empty());
}

// An entry chained under a key names the newest earlier entry under it, in the
// bytes stored and hashed: across groups, within one request, and between
// concurrent appends, every trail is one unbroken line from its first entry.
TEST_P(LedgerConformance, TrailLinksNameTheNewestEarlierEntryUnderEachChainKey) {
  Ledger& l = Make();
  auto chained = [](std::string name, std::vector<std::string> chain) {
    AppendEntry e{name, chain, chain};
    e.index_keys.push_back("all");
    e.link = [name](const std::vector<uint64_t>& previous) {
      std::string data = name;
      for (uint64_t p : previous) {
        absl::StrAppend(&data, " ", p == kNoPrevious ? std::string("-") : absl::StrCat(p));
      }
      return data;
    };
    return e;
  };
  ASSERT_OK(l.Append({{"plain", {"case/1"}}}));
  ASSERT_OK(l.Append({chained("a", {"case/1", "actor/x"}), chained("b", {"case/1"})}));
  ASSERT_OK(l.Append({chained("c", {"case/2", "actor/x"})}));
  ASSERT_OK_AND_ASSIGN(std::vector<std::string> got, l.Entries(0, 4));
  EXPECT_EQ(got, (std::vector<std::string>{"plain", "a 0 -", "b 1", "c - 1"}));
  EXPECT_EQ(l.head().root, ReferenceRoot(got, 0, 4));
  // Concurrent appends under one key: each links to exactly the one before it.
  constexpr int kThreads = 6, kPerThread = 30;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        ASSERT_OK(l.Append({chained(absl::StrCat("t", t, "/", i), {"case/3"})}));
      }
    });
  }
  for (auto& t : threads) t.join();
  ASSERT_OK_AND_ASSIGN(std::vector<uint64_t> trail, l.Lookup("case/3", Ledger::kFromNewest, 1000));
  ASSERT_EQ(trail.size(), size_t{kThreads * kPerThread});
  for (size_t i = 0; i < trail.size(); ++i) {
    ASSERT_OK_AND_ASSIGN(std::string e, l.Entry(trail[i]));
    const std::string want = i + 1 < trail.size() ? absl::StrCat(trail[i + 1]) : "-";
    EXPECT_TRUE(absl::EndsWith(e, " " + want)) << e << " should link to " << want;
  }
  EXPECT_OK(l.VerifyAll());
}

TEST_P(LedgerConformance, EntryTimesFollowTheClockAndFindTimeRanges) {
  Ledger& l = Make();
  const absl::Time t0 = clock_.Now();
  ASSERT_OK(l.Append({{"a", {}}, {"b", {}}}));
  clock_.Advance(absl::Seconds(10));
  ASSERT_OK(l.Append({{"c", {}}}));
  clock_.Advance(absl::Seconds(10));
  ASSERT_OK(l.Append({{"d", {}}}));
  ASSERT_OK_AND_ASSIGN(absl::Time t1, l.EntryTime(1));
  EXPECT_EQ(t1, t0);
  ASSERT_OK_AND_ASSIGN(absl::Time t3, l.EntryTime(3));
  EXPECT_EQ(t3, t0 + absl::Seconds(20));
  ASSERT_OK_AND_ASSIGN(uint64_t i, l.FirstIndexAtOrAfter(t0 + absl::Seconds(5)));
  EXPECT_EQ(i, 2u);
  ASSERT_OK_AND_ASSIGN(uint64_t first, l.FirstIndexAtOrAfter(t0 - absl::Hours(1)));
  EXPECT_EQ(first, 0u);
  ASSERT_OK_AND_ASSIGN(uint64_t past, l.FirstIndexAtOrAfter(t0 + absl::Hours(1)));
  EXPECT_EQ(past, 4u);
  EXPECT_STATUS(l.EntryTime(4), absl::StatusCode::kOutOfRange, "does not exist");
}

TEST_P(LedgerConformance, BadAppendsAreRefusedAndChangeNothing) {
  Ledger& l = Make();
  EXPECT_STATUS(l.Append({}), absl::StatusCode::kInvalidArgument, "nothing to append");
  EXPECT_STATUS(l.Append({{"x", {""}}}), absl::StatusCode::kInvalidArgument, "index keys");
  EXPECT_STATUS(l.Append({{"x", {std::string("a\0b", 3)}}}), absl::StatusCode::kInvalidArgument,
                "index keys");
  EXPECT_STATUS(l.Append({{"x", {"case/1"}, {"case/2"}, [](auto&) { return "y"; }}}),
                absl::StatusCode::kInvalidArgument, "chain key");
  EXPECT_EQ(l.head().size, 0u);
  EXPECT_OK(l.health());
}

TEST_P(LedgerConformance, AFailedCommitFailsTheGroupAndRefusesEveryLaterAppend) {
  absl::Mutex mu;
  bool fail = false;
  LedgerOptions o = Options();
  o.before_commit = [&]() -> absl::Status {
    absl::MutexLock lock(&mu);
    return fail ? absl::InternalError("injected fsync failure") : absl::OkStatus();
  };
  Ledger& l = Make(o);
  ASSERT_OK(l.Append({{"kept", {"case/1"}}}));
  const Head before = l.head();
  {
    absl::MutexLock lock(&mu);
    fail = true;
  }
  EXPECT_STATUS(l.Append({{"lost", {"case/1"}}}), absl::StatusCode::kUnavailable,
                "injected fsync failure");
  // While the fault lasts, every later append is refused.
  EXPECT_STATUS(l.Append({{"later", {}}}), absl::StatusCode::kUnavailable, "refuses");
  EXPECT_STATUS(l.health(), absl::StatusCode::kUnavailable, "refuses");
  // Nothing of the failed group is visible; reads of committed state still work.
  EXPECT_EQ(l.head().size, before.size);
  EXPECT_EQ(l.head().checkpoint, before.checkpoint);
  ASSERT_OK_AND_ASSIGN(std::vector<uint64_t> hits, l.Lookup("case/1", Ledger::kFromNewest, 10));
  EXPECT_EQ(hits, std::vector<uint64_t>{0});
  EXPECT_STATUS(l.Entry(1), absl::StatusCode::kOutOfRange, "does not exist");
  EXPECT_OK(l.VerifyAll());
}

// A change: `n` puts into "cases" and one into "outbox", keys tagged `tag`.
std::unique_ptr<Mutation> CaseChange(const std::string& tag, int n = 1) {
  auto change = std::make_unique<Mutation>();
  for (int i = 0; i < n; ++i) change->Put("cases", absl::StrCat(tag, "/", i), "sealed " + tag);
  change->Put("outbox", tag, "queued " + tag);
  return change;
}

TEST_P(LedgerConformance, AChangeIsAppliedWithItsEntries) {
  Ledger& l = Make();
  ASSERT_OK_AND_ASSIGN(uint64_t first,
                       l.Append({{"case a opened", {"case/a"}}}, CaseChange("a", 3)));
  EXPECT_EQ(first, 0u);
  for (int i = 0; i < 3; ++i) {
    ASSERT_OK_AND_ASSIGN(std::string v, factory_->Read("cases", absl::StrCat("a/", i)));
    EXPECT_EQ(v, "sealed a");
  }
  ASSERT_OK_AND_ASSIGN(std::string queued, factory_->Read("outbox", "a"));
  EXPECT_EQ(queued, "queued a");
  ASSERT_OK_AND_ASSIGN(std::string entry, l.Entry(0));
  EXPECT_EQ(entry, "case a opened");
  // An empty change and no change at all are the same.
  EXPECT_OK(l.Append({{"nothing changed", {}}}, std::make_unique<Mutation>()));
  EXPECT_EQ(l.head().size, 2u);
}

TEST_P(LedgerConformance, AChangesOperationsApplyInOrder) {
  Ledger& l = Make();
  auto change = std::make_unique<Mutation>();
  change->Put("cases", "kept", "1");
  change->Put("cases", "replaced", "old");
  change->Put("cases", "replaced", "new");
  change->Put("cases", "put then deleted", "x");
  change->Delete("cases", "put then deleted");
  change->Delete("cases", "deleted then put");
  change->Put("cases", "deleted then put", "back");
  for (const char* k : {"r/1", "r/2", "r/3", "s"}) change->Put("cases", k, "in range?");
  ASSERT_OK(l.Append({{"first", {}}}, std::move(change)));
  change = std::make_unique<Mutation>();
  change->DeleteRange("cases", "r/", "r0");  // every "r/..." key, not "s"
  change->Delete("outbox", "never written");
  ASSERT_OK(l.Append({{"second", {}}}, std::move(change)));
  EXPECT_EQ(*factory_->Read("cases", "kept"), "1");
  EXPECT_EQ(*factory_->Read("cases", "replaced"), "new");
  EXPECT_EQ(factory_->Read("cases", "put then deleted").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(*factory_->Read("cases", "deleted then put"), "back");
  for (const char* k : {"r/1", "r/2", "r/3"}) {
    EXPECT_EQ(factory_->Read("cases", k).status().code(), absl::StatusCode::kNotFound) << k;
  }
  EXPECT_EQ(*factory_->Read("cases", "s"), "in range?");
}

TEST_P(LedgerConformance, AFailedCommitAppliesNeitherTheChangeNorTheEntries) {
  bool fail = false;
  LedgerOptions o = Options();
  o.before_commit = [&] { return fail ? absl::InternalError("injected") : absl::OkStatus(); };
  Ledger& l = Make(o);
  ASSERT_OK(l.Append({{"a", {}}}, CaseChange("a")));
  fail = true;
  auto change = CaseChange("b");
  change->Delete("cases", "a/0");
  EXPECT_STATUS(l.Append({{"b", {"case/b"}}}, std::move(change)), absl::StatusCode::kUnavailable,
                "injected");
  EXPECT_EQ(l.head().size, 1u);
  EXPECT_EQ(factory_->Read("cases", "b/0").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(factory_->Read("outbox", "b").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(*factory_->Read("cases", "a/0"), "sealed a");
  ASSERT_OK_AND_ASSIGN(std::vector<uint64_t> hits, l.Lookup("case/b", Ledger::kFromNewest, 10));
  EXPECT_TRUE(hits.empty());
  // Refused while broken: a later change is not applied either.
  EXPECT_STATUS(l.Append({{"c", {}}}, CaseChange("c")), absl::StatusCode::kUnavailable, "refuses");
  EXPECT_EQ(factory_->Read("outbox", "c").status().code(), absl::StatusCode::kNotFound);
}

TEST_P(LedgerConformance, ARefusedAppendAppliesNoneOfItsChange) {
  Ledger& l = Make();
  // A key space the ledger was not given, after one it was.
  auto change = CaseChange("a");
  change->Put("nowhere", "k", "v");
  EXPECT_STATUS(l.Append({{"a", {}}}, std::move(change)), absl::StatusCode::kInvalidArgument,
                "key space \"nowhere\", which this ledger was not given");
  // A bad index key.
  EXPECT_STATUS(l.Append({{"b", {""}}}, CaseChange("b")), absl::StatusCode::kInvalidArgument,
                "index keys");
  // No entries.
  EXPECT_STATUS(l.Append({}, CaseChange("c")), absl::StatusCode::kInvalidArgument,
                "nothing to append");
  for (const char* tag : {"a", "b", "c"}) {
    EXPECT_EQ(factory_->Read("cases", absl::StrCat(tag, "/0")).status().code(),
              absl::StatusCode::kNotFound);
    EXPECT_EQ(factory_->Read("outbox", tag).status().code(), absl::StatusCode::kNotFound);
  }
  EXPECT_EQ(l.head().size, 0u);
  EXPECT_OK(l.health());
}

TEST_P(LedgerConformance, ConcurrentChangesEachLandWithTheirOwnEntry) {
  Ledger& l = Make();
  constexpr int kThreads = 8;
  constexpr int kPerThread = 40;
  absl::Mutex mu;
  std::map<std::string, uint64_t> index_of;  // tag -> index of its entry
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        const std::string tag = absl::StrCat("t", t, "-", i);
        auto index = l.Append({{"entry " + tag, {}}}, CaseChange(tag));
        ASSERT_TRUE(index.ok()) << index.status();
        absl::MutexLock lock(&mu);
        index_of[tag] = *index;
      }
    });
  }
  for (auto& t : threads) t.join();
  ASSERT_EQ(index_of.size(), size_t{kThreads * kPerThread});
  for (const auto& [tag, index] : index_of) {
    EXPECT_EQ(*l.Entry(index), "entry " + tag);
    EXPECT_EQ(*factory_->Read("cases", tag + "/0"), "sealed " + tag);
    EXPECT_EQ(*factory_->Read("outbox", tag), "queued " + tag);
  }
  EXPECT_OK(l.VerifyAll());
}

TEST_P(LedgerConformance, ConcurrentAppendsCompleteExactlyOnceWithDistinctIndexes) {
  Ledger& l = Make();
  constexpr int kThreads = 8, kPerThread = 40;
  absl::Mutex mu;
  std::map<std::string, std::vector<uint64_t>> results;  // data -> indexes reported
  int completed = 0;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        std::string data = absl::StrCat("t", t, "/", i);
        l.AppendAsync({{data, {absl::StrCat("thread/", t)}}}, nullptr,
                      [&, data](absl::StatusOr<uint64_t> r) {
                        absl::MutexLock lock(&mu);
                        ASSERT_TRUE(r.ok()) << r.status();
                        results[data].push_back(*r);
                        ++completed;
                      });
      }
    });
  }
  for (auto& t : threads) t.join();
  {
    absl::MutexLock lock(&mu);
    auto all_done = [&] { return completed == kThreads * kPerThread; };
    mu.Await(absl::Condition(&all_done));
  }
  absl::MutexLock lock(&mu);
  std::set<uint64_t> indexes;
  for (const auto& [data, idx] : results) {
    ASSERT_EQ(idx.size(), 1u) << data << " completed more than once";
    indexes.insert(idx[0]);
    ASSERT_OK_AND_ASSIGN(std::string stored, l.Entry(idx[0]));
    EXPECT_EQ(stored, data);
  }
  EXPECT_EQ(indexes.size(), size_t{kThreads * kPerThread});
  EXPECT_EQ(*indexes.rbegin(), uint64_t{kThreads * kPerThread - 1});
  ASSERT_OK_AND_ASSIGN(std::vector<uint64_t> t3, l.Lookup("thread/3", Ledger::kFromNewest, 1000));
  EXPECT_EQ(t3.size(), size_t{kPerThread});
  EXPECT_OK(l.VerifyAll());
}

TEST_P(LedgerConformance, ExportVerifiesOfflineWithOnlyTheFileAndTheKey) {
  Ledger& l = Make();
  std::mt19937_64 rng(3);
  std::vector<std::string> all = Fill(l, 300, rng);
  const std::string vkey = l.verifier().ToString();
  for (auto [a, b] : std::vector<std::pair<uint64_t, uint64_t>>{
           {0, 300}, {0, 1}, {299, 300}, {17, 200}, {256, 257}, {100, 101}, {3, 9}}) {
    SCOPED_TRACE(absl::StrCat(a, "..", b));
    ASSERT_OK_AND_ASSIGN(std::string file, l.Export(a, b));
    ASSERT_OK_AND_ASSIGN(VerifiedExport v, VerifyExport(file, vkey));
    EXPECT_EQ(v.first_index, a);
    EXPECT_EQ(v.checkpoint.size, 300u);
    EXPECT_EQ(v.entries, std::vector<std::string>(all.begin() + a, all.begin() + b));
    EXPECT_EQ(v.checkpoint_note, l.head().checkpoint);
  }
  ASSERT_OK_AND_ASSIGN(std::string file, l.Export(10, 20));
  std::vector<std::string> lines = absl::StrSplit(file, '\n');
  // lines: magic, first, count, hashes, entry x10, hash..., "checkpoint", note
  // A changed entry, its listed leaf hash kept: named.
  {
    std::vector<std::string> bad = lines;
    bad[6] = "entry " + Base64Encode("forged") + bad[6].substr(bad[6].find(' ', 6));
    EXPECT_STATUS(VerifyExport(absl::StrJoin(bad, "\n"), vkey), absl::StatusCode::kDataLoss,
                  "entry 12 (export line 7) does not match the leaf hash listed with it");
  }
  // A changed entry with its leaf hash recomputed (or none listed): the root decides.
  for (bool listed : {true, false}) {
    std::vector<std::string> bad = lines;
    bad[6] = "entry " + Base64Encode("forged");
    if (listed) bad[6] += " " + Base64Encode(merkle::ToBytes(merkle::HashLeaf("forged")));
    EXPECT_STATUS(VerifyExport(absl::StrJoin(bad, "\n"), vkey), absl::StatusCode::kDataLoss,
                  "do not lead to the root");
  }
  // A listed leaf hash that is not one, a third field: malformed.
  {
    std::vector<std::string> bad = lines;
    bad[6] = bad[6].substr(0, bad[6].find(' ', 6)) + " AAAA";
    EXPECT_STATUS(VerifyExport(absl::StrJoin(bad, "\n"), vkey), absl::StatusCode::kInvalidArgument,
                  "export line 7: the entry's leaf hash");
    bad[6] = lines[6] + " x";
    EXPECT_STATUS(VerifyExport(absl::StrJoin(bad, "\n"), vkey), absl::StatusCode::kInvalidArgument,
                  "at most two fields");
  }
  // An export written before entries carried their leaf hash still verifies.
  {
    std::vector<std::string> old = lines;
    for (size_t i = 4; i < 14; ++i) old[i] = old[i].substr(0, old[i].find(' ', 6));
    EXPECT_OK(VerifyExport(absl::StrJoin(old, "\n"), vkey));
  }
  // Two entries swapped.
  {
    std::vector<std::string> bad = lines;
    std::swap(bad[5], bad[6]);
    EXPECT_STATUS(VerifyExport(absl::StrJoin(bad, "\n"), vkey), absl::StatusCode::kDataLoss,
                  "reordered");
  }
  // An entry dropped (header adjusted so it parses): the range no longer fits.
  {
    std::vector<std::string> bad = lines;
    bad.erase(bad.begin() + 13);
    bad[2] = "count 9";
    EXPECT_STATUS(VerifyExport(absl::StrJoin(bad, "\n"), vkey), absl::StatusCode::kInvalidArgument,
                  "connecting hashes");
  }
  // A shifted range claim.
  {
    std::vector<std::string> bad = lines;
    bad[1] = "first 11";
    EXPECT_FALSE(VerifyExport(absl::StrJoin(bad, "\n"), vkey).ok());
  }
  // Another key, a forged checkpoint, garbage.
  Ed25519PrivateKey other = Ed25519PrivateKey::Generate();
  note::Verifier other_v{l.verifier().name, 0x01, other.public_key()};
  EXPECT_STATUS(VerifyExport(file, other_v), absl::StatusCode::kPermissionDenied, "not signed by");
  std::string forged = file;
  const size_t at = forged.find("\ncheckpoint\n") + 12;
  forged.replace(at, forged.size() - at,
                 note::SignCheckpoint(note::Checkpoint{l.verifier().name, 300, l.head().root, {}},
                                      l.verifier().name, other));
  EXPECT_STATUS(VerifyExport(forged, vkey), absl::StatusCode::kPermissionDenied, "");
  EXPECT_STATUS(VerifyExport("hello", vkey), absl::StatusCode::kInvalidArgument,
                "not a Corridor ledger export");
  EXPECT_STATUS(VerifyExport(file, "not-a-key"), absl::StatusCode::kInvalidArgument, "");
  EXPECT_STATUS(l.Export(5, 5), absl::StatusCode::kOutOfRange, "cannot export");
  EXPECT_STATUS(l.Export(0, 301), absl::StatusCode::kOutOfRange, "cannot export");
}

INSTANTIATE_TEST_SUITE_P(Implementations, LedgerConformance, ::testing::Values("memory", "rocksdb"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace corridor::ledger

namespace corridor::ledger {
namespace {

// Every single-bit change anywhere in an export file is rejected.
TEST(Export, EveryBitFlipIsRejected) {
  Ed25519PrivateKey key = Ed25519PrivateKey::Generate();
  LedgerOptions o;
  o.origin = "corridor.test/union-sg";
  o.signing_key = &key;
  ASSERT_OK_AND_ASSIGN(auto l, MemoryLedger::Create(o));
  for (int i = 0; i < 7; ++i) ASSERT_OK(l->Append({{absl::StrCat("event ", i), {}}}));
  ASSERT_OK_AND_ASSIGN(std::string file, l->Export(2, 4));
  const note::Verifier v = l->verifier();
  ASSERT_OK(VerifyExport(file, v));
  int accepted = 0;
  for (size_t byte = 0; byte < file.size(); ++byte) {
    for (int bit = 0; bit < 8; ++bit) {
      std::string bad = file;
      bad[byte] ^= static_cast<char>(1 << bit);
      if (VerifyExport(bad, v).ok()) {
        ++accepted;
        ADD_FAILURE() << "flip of bit " << bit << " in byte " << byte << " ('" << file[byte]
                      << "') was accepted";
      }
    }
  }
  EXPECT_EQ(accepted, 0);
}

}  // namespace
}  // namespace corridor::ledger
