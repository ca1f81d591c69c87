// Court bundles (issue 12): `corridorctl audit bundle CASE --out FILE` writes a
// case's whole trail with inclusion proofs, the signed checkpoint, the
// receivers' signed receipts and the roster into one file, and `corridorctl
// audit verify FILE --stewards stewards.yaml` checks it with no node and no
// network, naming the first part that fails. Two real nodes, a referral
// between them (so the bundle holds a receipt), then the file attacked.
#include <fstream>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "client/ctl/case_bundle.h"
#include "google/protobuf/stubs/logging.h"
#include "gtest/gtest.h"
#include "ledger/base/file.h"
#include "tests/testing/ctl_run.h"
#include "tests/testing/federation.h"
#include "tests/testing/nodes.h"

namespace corridor {
namespace {

using testing::CtlRun;

constexpr char kWorkerName[] = "Siti Rahayu Bundlecheck";

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool kSanitized = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
constexpr bool kSanitized = true;
#else
constexpr bool kSanitized = false;
#endif
#else
constexpr bool kSanitized = false;
#endif

void WriteRaw(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f << bytes;
}

// The parts a failure may name: a line and its part, or a part by name.
bool NamesAPart(const std::string& err) {
  for (const char* part : {"line ", "entry ", "the checkpoint", "its roster", "the end"}) {
    if (absl::StrContains(err, part)) return true;
  }
  return false;
}

class BundleTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    testing::ClearCtlEnvironment();
    fed_ = new testing::TestFederation();
    fed_->AddOrg("union-sg");
    fed_->AddOrg("ministry-id", v1::ORG_KIND_MINISTRY);
    fed_->limits["witness_interval_seconds"] = "1";  // so that a checkpoint gets cosigned
    nodes_ = new testing::NodeProcesses(*fed_);
    for (const char* org : {"union-sg", "ministry-id"}) {
      nodes_->Configure(org);
      ASSERT_TRUE(nodes_->Start(org));
    }
    stewards_ = new std::string(fed_->WriteStewardsFile());
    case_id_ = new std::string(MakeReferredCase());
    bundle_file_ = new std::string(fed_->root() + "/case.bundle");
    CtlRun made = Bundle(*case_id_, *bundle_file_);
    ASSERT_EQ(made.code, 0) << made;
    bundle_ = new std::string(ReadFileToString(*bundle_file_).value_or(""));
  }
  static void TearDownTestSuite() {
    delete nodes_;
    delete fed_;
  }

  // A case created, read, and referred to ministry-id, whose receipt is back;
  // accepted and read there, and that read attested back to union-sg.
  static std::string MakeReferredCase() {
    testing::CommandResult r =
        nodes_->Ctl("union-sg", {"case", "create", "--category", "wage-theft", "--origin", "id",
                                 "--destination", "sg", "--worker-name", kWorkerName, "--json"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    auto ids = testing::JsonValues(r.out, "id");
    if (ids.empty()) return "";
    nodes_->Ctl("union-sg", {"case", "show", ids[0], "--purpose", "case-handling"});
    r = nodes_->Ctl("union-sg", {"refer", ids[0], "--to", "ministry-id", "--agreement",
                                 "test-agreement", "--purpose", "case-referral", "--json"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    auto referral = testing::JsonValues(r.out, "referral_id");
    v1::ListOutboxResponse outbox = nodes_->AwaitOutboxSettled("union-sg");
    EXPECT_GT(outbox.entries_size(), 0);
    if (referral.empty()) return "";
    r = nodes_->Ctl("ministry-id", {"accept", referral[0]});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    auto mine =
        testing::JsonValues(nodes_->Ctl("ministry-id", {"case", "list", "--json"}).out, "id");
    EXPECT_EQ(mine.size(), 1u);
    if (!mine.empty()) {
      r = nodes_->Ctl("ministry-id", {"case", "show", mine[0], "--purpose", "case-referral"});
      EXPECT_EQ(r.exit_code, 0) << r.err;
    }
    nodes_->AwaitOutboxSettled("ministry-id");
    nodes_->AwaitOutboxSettled("union-sg");
    nodes_->Ctl("union-sg", {"case", "show", ids[0], "--purpose", "case-handling"});
    return ids[0];
  }

  static std::vector<std::string> Trust(const std::string& state) {
    return {"--roster",   fed_->org("union-sg").dir + "/roster.json",
            "--stewards", *stewards_,
            "--state",    fed_->root() + "/" + state};
  }
  // `audit bundle CASE --out FILE` as union-sg's auditor, in this process.
  static CtlRun Bundle(const std::string& id, const std::string& out,
                       const std::string& state = "audit-state",
                       const std::vector<std::string>& extra = {}) {
    const testing::TestOrg& o = fed_->org("union-sg");
    std::vector<std::string> argv = {"audit", "bundle", id, "--out", out};
    argv.insert(argv.end(), extra.begin(), extra.end());
    const std::string aud = nodes_->auditor("union-sg");
    for (const std::string& a :
         {std::string("--node"), o.endpoint(), std::string("--cert"), aud + ".crt",
          std::string("--key"), aud + ".key", std::string("--ca"), o.dir + "/ca.crt"}) {
      argv.push_back(a);
    }
    for (const std::string& a : Trust(state)) argv.push_back(a);
    return testing::Ctl(argv);
  }
  // `audit verify FILE --stewards` with nothing else: no node, no roster.
  static CtlRun Verify(const std::string& file) {
    return testing::Ctl({"audit", "verify", file, "--stewards", *stewards_});
  }

  static testing::TestFederation* fed_;
  static testing::NodeProcesses* nodes_;
  static std::string* stewards_;
  static std::string* case_id_;
  static std::string* bundle_file_;
  static std::string* bundle_;
};

testing::TestFederation* BundleTest::fed_ = nullptr;
testing::NodeProcesses* BundleTest::nodes_ = nullptr;
std::string* BundleTest::stewards_ = nullptr;
std::string* BundleTest::case_id_ = nullptr;
std::string* BundleTest::bundle_file_ = nullptr;
std::string* BundleTest::bundle_ = nullptr;

TEST_F(BundleTest, ABundleVerifiesOfflineWithOnlyTheStewardsKeys) {
  CtlRun r = Verify(*bundle_file_);
  ASSERT_EQ(r.code, 0) << r;

  for (const std::string& said :
       {std::string("roster: version 1"), std::string("signed by"), std::string("checkpoint: "),
        absl::StrCat("entries about case ", *case_id_), std::string("it is the case's first"),
        std::string("receipts:"), std::string("ministry-id signed that it recorded envelope"),
        std::string("verified: "), std::string("not proven by this bundle")}) {
    EXPECT_TRUE(absl::StrContains(r.out, said)) << said << "\n" << r;
  }
  for (const char* action :
       {"case.create", "case.get", "referral.send", "envelope.receipt", "downstream.access"}) {
    EXPECT_TRUE(absl::StrContains(r.out, action)) << action << "\n" << r;
  }
  // The ledger holds no personal data, and neither does a bundle made of it.
  EXPECT_FALSE(absl::StrContains(*bundle_, kWorkerName));
  auto parsed = ctl::ParseCaseBundle(*bundle_);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  for (const auto& e : parsed->entries) EXPECT_FALSE(absl::StrContains(e.entry, kWorkerName));
}

TEST_F(BundleTest, FlippingAnyByteFailsAndNamesThePart) {
  ASSERT_FALSE(bundle_->empty());
  const std::string file = fed_->root() + "/flipped.bundle";
  // A flipped roster byte makes protobuf log each malformed field: expected here.
  google::protobuf::LogSilencer quiet;
  // Every byte here; under a sanitizer (several times slower) every byte but
  // those of the roster line (most of the file), of which every 16th: `make
  // test` flips them all.
  const size_t roster_begin = bundle_->find("\nroster ");
  const size_t roster_end = bundle_->find('\n', roster_begin + 1);
  size_t tried = 0;
  for (size_t i = 0; i < bundle_->size(); ++i) {
    if (kSanitized && i > roster_begin && i < roster_end && i % 16 != 0) continue;
    std::string flipped = *bundle_;
    flipped[i] = static_cast<char>(flipped[i] ^ 0x01);
    WriteRaw(file, flipped);
    CtlRun r = Verify(file);
    ++tried;
    ASSERT_NE(r.code, 0) << "byte " << i << " flipped still verifies\n" << r;
    // The first line is what makes it a bundle: flipped, it is read as an export.
    if (i < sizeof(ctl::kCaseBundleMagic)) continue;
    ASSERT_TRUE(absl::StrContains(r.err, "does NOT verify")) << "byte " << i << "\n" << r;
    ASSERT_TRUE(NamesAPart(r.err)) << "byte " << i << "\n" << r;
  }
  EXPECT_GT(tried, kSanitized ? bundle_->size() / 4 : bundle_->size() - 1);
}

TEST_F(BundleTest, AnEntryTakenOutOfTheTrailIsNamed) {
  auto parsed = ctl::ParseCaseBundle(*bundle_);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  ASSERT_GE(parsed->entries.size(), 3u);
  const uint64_t removed = parsed->entries[1].index;
  parsed->entries.erase(parsed->entries.begin() + 1);
  const std::string file = fed_->root() + "/short.bundle";
  WriteRaw(file, ctl::FormatCaseBundle(*parsed));  // a fresh digest: only the trail shows it
  CtlRun r = Verify(file);
  EXPECT_EQ(r.code, 1) << r;
  EXPECT_TRUE(absl::StrContains(
      r.err, absl::StrCat("the entry before it about the case is entry ", removed)))
      << r;
}

TEST_F(BundleTest, ARosterNotSignedByTheStewardsIsRefused) {
  auto parsed = ctl::ParseCaseBundle(*bundle_);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  // The roster's payload with its signatures stripped: the keys in it may be anyone's.
  parsed->roster = absl::StrReplaceAll(parsed->roster, {{"\"sig\"", "\"xig\""}});
  const std::string file = fed_->root() + "/forged.bundle";
  WriteRaw(file, ctl::FormatCaseBundle(*parsed));
  CtlRun r = Verify(file);
  EXPECT_EQ(r.code, 1) << r;
  EXPECT_TRUE(absl::StrContains(r.err, "its roster")) << r;
  // And without the stewards' keys nothing is taken from the roster at all.
  CtlRun none = testing::Ctl({"audit", "verify", *bundle_file_});
  EXPECT_EQ(none.code, 1) << none;
  EXPECT_TRUE(absl::StrContains(none.err, "steward keys")) << none;
}

TEST_F(BundleTest, ACaseTheLedgerDoesNotKnowGetsNoBundle) {
  CtlRun r = Bundle("C-000000000000", fed_->root() + "/none.bundle");
  EXPECT_EQ(r.code, 1) << r;
  EXPECT_TRUE(absl::StrContains(r.err, "holds no entry about case C-000000000000")) << r;
}

TEST_F(BundleTest, ABundleAgainstACosignedCheckpointNamesItsCosigner) {
  CtlRun r;
  // The peer cosigns within a few witness intervals of one second each.
  ASSERT_TRUE(testing::Eventually([&] {
    r = Bundle(*case_id_, fed_->root() + "/cosigned.bundle", "cosigned-state", {"--cosigned", "1"});
    return r.code == 0;
  })) << r;
  EXPECT_TRUE(absl::StrContains(r.out, "cosigned by 1 peers (ministry-id)")) << r;
  CtlRun v = Verify(fed_->root() + "/cosigned.bundle");
  EXPECT_EQ(v.code, 0) << v;
  EXPECT_TRUE(absl::StrContains(v.out, "cosigned by 1 peers (ministry-id)")) << v;
  // A cosignature line changed (the digest made again, as anyone editing could):
  // every line on the checkpoint must verify, so the part is named.
  auto parsed = ctl::ParseCaseBundle(ReadFileToString(fed_->root() + "/cosigned.bundle").value());
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  std::string& cp = parsed->checkpoint;
  const size_t line = cp.rfind("corridor.test/ministry-id ");
  ASSERT_NE(line, std::string::npos) << cp;
  // Inside the last line's base64 (the cosignature), in a whole group of four
  // characters: away from the padding, where any letter decodes.
  const size_t at = cp.size() - 8;
  ASSERT_GT(at, line);
  cp[at] = cp[at] == 'A' ? 'B' : 'A';
  WriteRaw(fed_->root() + "/bad-cosignature.bundle", ctl::FormatCaseBundle(*parsed));
  CtlRun bad = Verify(fed_->root() + "/bad-cosignature.bundle");
  EXPECT_EQ(bad.code, 1) << bad;
  EXPECT_TRUE(absl::StrContains(bad.err,
                                "the checkpoint: its signature line by "
                                "corridor.test/ministry-id does not verify"))
      << bad;
  CtlRun two =
      Bundle(*case_id_, fed_->root() + "/two.bundle", "cosigned-state", {"--cosigned", "2"});
  EXPECT_EQ(two.code, 1) << two;
  EXPECT_TRUE(absl::StrContains(two.err, "no checkpoint cosigned by at least 2 peers")) << two;
}

TEST_F(BundleTest, ManyBundlesAtOnceAllVerify) {
  std::vector<std::thread> threads;
  std::vector<CtlRun> runs(6);
  for (size_t t = 0; t < runs.size(); ++t) {
    threads.emplace_back([&, t] {
      runs[t] = Bundle(*case_id_, absl::StrCat(fed_->root(), "/many-", t, ".bundle"),
                       absl::StrCat("state-", t));
    });
  }
  for (auto& t : threads) t.join();
  for (const CtlRun& r : runs) EXPECT_EQ(r.code, 0) << r;
}

}  // namespace
}  // namespace corridor
