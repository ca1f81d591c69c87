// The auditor's saved checkpoint (client/ctl/audit_state.h, docs/audit.md):
// how two checkpoints of one ledger are compared, from the proof alone; the
// saved state on disk; and corridorctl against a real corridord whose data
// directory is restored from an older copy (ROLLBACK) or rebuilt under the
// same signing key (FORK).
#include "client/ctl/audit_state.h"

#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "ledger/base/file.h"
#include "ledger/crypto/crypto.h"
#include "ledger/merkle.h"
#include "ledger/note.h"
#include "tests/testing/ctl_run.h"
#include "tests/testing/federation.h"
#include "tests/testing/nodes.h"
#include "tests/testing/status_matchers.h"

namespace corridor {
namespace {

using ctl::AuditState;
using ctl::CheckpointRelation;
using ctl::CompareCheckpoints;
using ctl::ConsistencyProofSource;

// A ledger held in memory: its leaves' hashes, its roots and its proofs.
class Tree {
 public:
  explicit Tree(const std::string& prefix, uint64_t size) {
    for (uint64_t i = 0; i < size; ++i)
      leaves_.push_back(merkle::HashLeaf(prefix + std::to_string(i)));
  }
  merkle::NodeSource Nodes() const {
    return [this](int level, uint64_t index) -> absl::StatusOr<merkle::Hash> {
      return Subtree(level, index);
    };
  }
  note::Checkpoint At(uint64_t size) const {
    return note::Checkpoint{
        "corridor.test/union-sg", size, merkle::RootAt(size, Nodes()).value(), {}};
  }
  // The proofs this tree gives, whatever checkpoint they are checked against.
  ConsistencyProofSource Proofs(int* asked = nullptr) const {
    return [this, asked](uint64_t old_size, uint64_t new_size) {
      if (asked != nullptr) ++*asked;
      return merkle::ConsistencyProof(old_size, new_size, Nodes());
    };
  }

 private:
  merkle::Hash Subtree(int level, uint64_t index) const {
    if (level == 0) return leaves_[index];
    return merkle::HashChildren(Subtree(level - 1, 2 * index), Subtree(level - 1, 2 * index + 1));
  }
  std::vector<merkle::Hash> leaves_;
};

TEST(CompareCheckpointsTest, TellsEachRelationFromTheProofAndTheSignedRootsAlone) {
  const Tree honest("entry-", 40), rewritten("other-", 40);
  const note::Checkpoint empty{"corridor.test/union-sg", 0, merkle::EmptyRoot(), {}};
  const note::Checkpoint not_empty{"corridor.test/union-sg", 0, honest.At(5).root, {}};
  struct Case {
    const char* what;
    note::Checkpoint saved, current;
    ConsistencyProofSource prove;
    CheckpointRelation want;
  };
  const std::vector<Case> cases = {
      {"unchanged", honest.At(17), honest.At(17), honest.Proofs(), CheckpointRelation::kSame},
      {"grown", honest.At(17), honest.At(40), honest.Proofs(), CheckpointRelation::kExtends},
      {"grown by one", honest.At(1), honest.At(2), honest.Proofs(), CheckpointRelation::kExtends},
      {"grown from empty", empty, honest.At(3), honest.Proofs(), CheckpointRelation::kExtends},
      {"shrunk", honest.At(40), honest.At(17), honest.Proofs(), CheckpointRelation::kRollback},
      {"same size, other root", honest.At(17), rewritten.At(17), rewritten.Proofs(),
       CheckpointRelation::kFork},
      // The rewritten ledger's own proof does not lead from the saved root.
      {"grown from another ledger", honest.At(17), rewritten.At(40), rewritten.Proofs(),
       CheckpointRelation::kFork},
      // An honest proof does not make a rewritten new root consistent.
      {"honest proof, rewritten root", honest.At(17), rewritten.At(40), honest.Proofs(),
       CheckpointRelation::kFork},
      {"empty with a wrong root", not_empty, honest.At(3), honest.Proofs(),
       CheckpointRelation::kFork},
  };
  for (const Case& c : cases) {
    auto got = CompareCheckpoints(c.saved, c.current, c.prove);
    ASSERT_TRUE(got.ok()) << c.what << ": " << got.status();
    EXPECT_EQ(*got, c.want) << c.what;
  }
}

TEST(CompareCheckpointsTest, AsksForAProofOnlyWhenTheLedgerGrewAndPassesTheNodesErrorOn) {
  const Tree tree("entry-", 9);
  int asked = 0;
  ASSERT_OK(CompareCheckpoints(tree.At(9), tree.At(9), tree.Proofs(&asked)).status());
  ASSERT_OK(CompareCheckpoints(tree.At(9), tree.At(4), tree.Proofs(&asked)).status());
  EXPECT_EQ(asked, 0);
  auto refused = CompareCheckpoints(tree.At(4), tree.At(9), [](uint64_t, uint64_t) {
    return absl::StatusOr<std::vector<merkle::Hash>>(absl::UnavailableError("node gone"));
  });
  EXPECT_TRUE(absl::IsUnavailable(refused.status())) << refused.status();
}

// AuditState on files, with checkpoints signed here.
class AuditStateFilesTest : public ::testing::Test {
 protected:
  std::string Sign(const note::Checkpoint& cp) const {
    return note::SignCheckpoint(cp, "corridor.test/union-sg", key_);
  }
  note::Verifier Verifier() const {
    return note::Verifier{"corridor.test/union-sg", 0x01, key_.public_key()};
  }
  absl::StatusOr<ctl::TrackedCheckpoint> Track(const Tree& tree, uint64_t size, std::ostream& err) {
    const note::Checkpoint cp = tree.At(size);
    return state_->Track({Verifier()}, ctl::OpenedCheckpoint{cp, Verifier()}, Sign(cp),
                         tree.Proofs(), absl::FromUnixSeconds(1800000000 + size), err);
  }
  std::vector<std::string> Files() const {
    std::vector<std::string> names;
    for (const auto& e : std::filesystem::directory_iterator(dir_)) {
      names.push_back(e.path().filename().string());
    }
    std::sort(names.begin(), names.end());
    return names;
  }

  const std::string dir_ = testing::MakeTempDir("audit-state-") + "/a/b";
  const Ed25519PrivateKey key_ = Ed25519PrivateKey::Generate();
  absl::StatusOr<AuditState> state_ = AuditState::Open(dir_);
};

TEST_F(AuditStateFilesTest, SavesTheFirstCheckpointPrivatelyAndAdvancesOnlyOnConsistentOnes) {
  ASSERT_OK(state_.status());
  struct stat st {};
  ASSERT_EQ(stat(dir_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  const Tree tree("entry-", 30);
  std::ostringstream err;
  auto first = Track(tree, 10, err);
  ASSERT_OK(first.status());
  EXPECT_EQ(first->relation, CheckpointRelation::kFirst);
  EXPECT_EQ(first->path, dir_ + "/corridor.test%2Funion-sg.checkpoint");
  ASSERT_EQ(stat(first->path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(ReadFileToString(first->path).value(), Sign(tree.At(10)));
  auto same = Track(tree, 10, err);
  ASSERT_OK(same.status());
  EXPECT_EQ(same->relation, CheckpointRelation::kSame);
  auto grown = Track(tree, 25, err);
  ASSERT_OK(grown.status());
  EXPECT_EQ(grown->relation, CheckpointRelation::kExtends);
  EXPECT_EQ(grown->saved_size, 10u);
  EXPECT_EQ(ReadFileToString(first->path).value(), Sign(tree.At(25)));
  EXPECT_EQ(err.str(), "");
  EXPECT_EQ(Files(), std::vector<std::string>{"corridor.test%2Funion-sg.checkpoint"});
}

TEST_F(AuditStateFilesTest, RollbackAndForkKeepBothCheckpointsAsEvidenceAndDoNotAdvance) {
  ASSERT_OK(state_.status());
  const Tree tree("entry-", 30), rewritten("other-", 30);
  std::ostringstream ignored;
  ASSERT_OK(Track(tree, 20, ignored).status());
  const std::string saved = ReadFileToString(state_->PathFor("corridor.test/union-sg")).value();
  struct Case {
    const Tree* tree;
    uint64_t size;
    const char* starts;
  };
  for (const Case& c : {Case{&tree, 12, "ROLLBACK"}, Case{&rewritten, 20, "FORK"},
                        Case{&rewritten, 30, "FORK"}, Case{&rewritten, 5, "ROLLBACK"}}) {
    std::ostringstream err;
    auto r = Track(*c.tree, c.size, err);
    EXPECT_TRUE(absl::IsDataLoss(r.status())) << r.status();
    EXPECT_TRUE(absl::StartsWith(r.status().message(), c.starts)) << r.status();
    testing::ExpectWords(std::string(r.status().message()));
    EXPECT_TRUE(absl::StrContains(err.str(), absl::StrCat(c.starts, " DETECTED"))) << err.str();
    const std::string stem = absl::StrCat(
        dir_, "/corridor.test%2Funion-sg-conflict-",
        absl::FormatTime("%Y%m%dT%H%M%E6SZ", absl::FromUnixSeconds(1800000000 + c.size),
                         absl::UTCTimeZone()));
    EXPECT_EQ(ReadFileToString(stem + ".old.checkpoint").value(), saved);
    EXPECT_EQ(ReadFileToString(stem + ".new.checkpoint").value(), Sign(c.tree->At(c.size)));
    EXPECT_TRUE(absl::StrContains(err.str(), stem + ".old.checkpoint")) << err.str();
    EXPECT_TRUE(absl::StrContains(r.status().message(), stem + ".new.checkpoint"));
    EXPECT_EQ(ReadFileToString(state_->PathFor("corridor.test/union-sg")).value(), saved);
  }
  EXPECT_EQ(Files().size(), 1u + 2 * 4);
}

TEST_F(AuditStateFilesTest, ASavedCheckpointThatNoLongerVerifiesIsRefusedNotReplaced) {
  ASSERT_OK(state_.status());
  const Tree tree("entry-", 30);
  std::ostringstream err;
  ASSERT_OK(Track(tree, 20, err).status());
  const std::string path = state_->PathFor("corridor.test/union-sg");
  std::string text = ReadFileToString(path).value();
  // A smaller size written over the saved one, as someone hiding a rollback would.
  text.replace(text.find("\n20\n"), 4, "\n10\n");
  ASSERT_OK(WriteFileAtomically(path, text, 0600));
  auto r = Track(tree, 12, err);
  EXPECT_TRUE(absl::IsDataLoss(r.status())) << r.status();
  EXPECT_TRUE(absl::StrContains(r.status().message(), "does not verify with the roster's keys"))
      << r.status();
  EXPECT_EQ(ReadFileToString(path).value(), text);
}

TEST(AuditStateOpenTest, ADirectoryThatCannotBeUsedIsAClearError) {
  const std::string root = testing::MakeTempDir("audit-state-open-");
  ASSERT_OK(WriteFileAtomically(root + "/file", "x"));
  const std::map<std::string, std::string> cases = {
      {"", "give --state DIR"},
      {root + "/file", "is not a directory"},
      {root + "/file/sub", "cannot be created"},
  };
  for (const auto& [dir, says] : cases) {
    auto st = AuditState::Open(dir);
    EXPECT_TRUE(absl::IsFailedPrecondition(st.status())) << dir << ": " << st.status();
    EXPECT_TRUE(absl::StrContains(st.status().message(), says)) << st.status();
    testing::ExpectWords(std::string(st.status().message()));
  }
}

TEST(AuditStateDirTest, OptionThenEnvironmentThenXdgStateHomeThenHome) {
  struct Case {
    std::vector<std::string> argv;
    const char *state_env, *xdg, *home;
    std::string want;
  };
  const std::vector<Case> cases = {
      {{"--state", "/s/opt"}, "/s/env", "/xdg", "/home/a", "/s/opt"},
      {{}, "/s/env", "/xdg", "/home/a", "/s/env"},
      {{}, nullptr, "/xdg", "/home/a", "/xdg/corridor/audit"},
      {{}, nullptr, nullptr, "/home/a", "/home/a/.local/state/corridor/audit"},
      {{}, nullptr, nullptr, nullptr, ""},
  };
  auto set = [](const char* name, const char* value) {
    if (value == nullptr) {
      unsetenv(name);
    } else {
      setenv(name, value, 1);
    }
  };
  // The test's own environment, put back at the end.
  std::map<const char*, std::optional<std::string>> saved;
  for (const char* name : {"CORRIDOR_AUDIT_STATE", "XDG_STATE_HOME", "HOME"}) {
    const char* v = std::getenv(name);
    saved[name] = v == nullptr ? std::nullopt : std::optional<std::string>(v);
  }
  for (const Case& c : cases) {
    set("CORRIDOR_AUDIT_STATE", c.state_env);
    set("XDG_STATE_HOME", c.xdg);
    set("HOME", c.home);
    auto args = Args::Parse(c.argv, ctl::AuditStateOptions());
    ASSERT_OK(args.status());
    EXPECT_EQ(ctl::AuditStateDirFromOptions(*args), c.want);
  }
  for (const auto& [name, value] : saved) set(name, value ? value->c_str() : nullptr);
}

// corridorctl against a real node of union-sg, as its auditor.
class AuditStateNodeTest : public ::testing::Test {
 protected:
  static constexpr const char* kOrg = "union-sg";

  void SetUp() override {
    fed_.AddOrg(kOrg);
    nodes_.Configure(kOrg);
    ASSERT_TRUE(nodes_.Start(kOrg));
    state_ = fed_.root() + "/audit-state";
  }
  std::string Dir() { return fed_.org(kOrg).dir; }
  // corridorctl ARGS as the auditor, with the roster, the stewards and `state`.
  testing::CommandResult Audit(std::vector<std::string> args, const std::string& state = "") {
    args.insert(args.begin(), "audit");
    for (const std::string& a :
         {std::string("--roster"), Dir() + "/roster.json", std::string("--stewards"),
          Dir() + "/node.yaml", std::string("--org"), std::string(kOrg), std::string("--state"),
          state.empty() ? state_ : state}) {
      args.push_back(a);
    }
    return nodes_.CtlAs(kOrg, nodes_.auditor(kOrg), args);
  }
  // Activity: `n` cases created by the caseworker.
  void Work(int n) {
    for (int i = 0; i < n; ++i) {
      testing::CommandResult r =
          nodes_.Ctl(kOrg, {"case", "create", "--category", "wage-theft", "--origin", "ID",
                            "--destination", "SG", "--worker-name", "Dewi"});
      ASSERT_EQ(r.exit_code, 0) << r.err;
    }
  }
  // The node's checkpoint size, read with a state directory of its own.
  uint64_t Size() {
    testing::CommandResult r =
        Audit({"checkpoint", "--json"}, fed_.root() + "/scratch-" + std::to_string(++scratch_));
    EXPECT_EQ(r.exit_code, 0) << r.err;
    auto sizes = testing::JsonValues(r.out, "size");
    return sizes.empty() ? 0 : std::stoull(sizes[0]);
  }
  void Restart() {
    ASSERT_EQ(nodes_.Stop(kOrg, SIGTERM), 0);
    ASSERT_TRUE(nodes_.Start(kOrg));
  }
  std::string SavedPath() const { return state_ + "/corridor.test%2Funion-sg.checkpoint"; }
  std::vector<std::string> Evidence() const {
    std::vector<std::string> found;
    for (const auto& e : std::filesystem::directory_iterator(state_)) {
      if (absl::StrContains(e.path().string(), "-conflict-")) found.push_back(e.path().string());
    }
    std::sort(found.begin(), found.end());
    return found;
  }
  void ExpectConflict(const testing::CommandResult& r, const std::string& what,
                      const std::string& saved_before) {
    EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
    EXPECT_TRUE(absl::StrContains(r.err, what + " DETECTED")) << r.err;
    EXPECT_TRUE(absl::StrContains(r.err, "corridorctl audit checkpoint: " + what + ": the ledger"))
        << r.err;
    testing::ExpectWords(r.err);
    const std::vector<std::string> evidence = Evidence();
    ASSERT_EQ(evidence.size(), 2u) << r.err;
    EXPECT_TRUE(absl::EndsWith(evidence[1], ".old.checkpoint"));
    EXPECT_EQ(ReadFileToString(evidence[1]).value(), saved_before);
    EXPECT_TRUE(absl::StrContains(r.err, evidence[0])) << r.err;
    // The saved state did not move: the next run says the same.
    EXPECT_EQ(ReadFileToString(SavedPath()).value(), saved_before);
  }

  testing::TestFederation fed_;
  testing::NodeProcesses nodes_{fed_};
  std::string state_;
  int scratch_ = 0;
};

TEST_F(AuditStateNodeTest, FirstRunSavesTheCheckpointAndLaterRunsProveTheLedgerOnlyGrew) {
  testing::CommandResult first = Audit({"checkpoint"});
  ASSERT_EQ(first.exit_code, 0) << first.err;
  EXPECT_TRUE(absl::StrContains(first.out, "signature verified with corridor.test/union-sg"))
      << first.out;
  EXPECT_TRUE(absl::StrContains(first.out, "first checkpoint of this ledger")) << first.out;
  const std::string saved = ReadFileToString(SavedPath()).value();
  EXPECT_TRUE(absl::StartsWith(saved, "corridor.test/union-sg\n")) << saved;
  EXPECT_TRUE(absl::StrContains(first.out, saved.substr(0, saved.find("\n\n")))) << first.out;
  Work(3);
  testing::CommandResult later = Audit({"checkpoint"});
  ASSERT_EQ(later.exit_code, 0) << later.err;
  EXPECT_TRUE(absl::StrContains(later.out, "consistent with the checkpoint this auditor saved"))
      << later.out;
  const std::string advanced = ReadFileToString(SavedPath()).value();
  EXPECT_NE(advanced, saved);
  // prove and export check against it and advance it too.
  testing::CommandResult prove = Audit({"prove", "0"});
  ASSERT_EQ(prove.exit_code, 0) << prove.err;
  EXPECT_TRUE(absl::StrContains(prove.out, "consistent with the checkpoint")) << prove.out;
  const std::string after_prove = ReadFileToString(SavedPath()).value();
  EXPECT_NE(after_prove, advanced);
  testing::CommandResult exported = Audit({"export", "--out", Dir() + "/ledger.export"});
  ASSERT_EQ(exported.exit_code, 0) << exported.err;
  EXPECT_TRUE(absl::StrContains(exported.out, "consistent with the checkpoint")) << exported.out;
  EXPECT_NE(ReadFileToString(SavedPath()).value(), after_prove);
  EXPECT_TRUE(Evidence().empty());
}

TEST_F(AuditStateNodeTest, DataDirectoryRestoredFromAnOlderCopyIsReportedAsARollback) {
  ASSERT_EQ(Audit({"checkpoint"}).exit_code, 0);
  ASSERT_EQ(nodes_.Stop(kOrg, SIGTERM), 0);
  std::filesystem::copy(Dir() + "/data", Dir() + "/data.old",
                        std::filesystem::copy_options::recursive);
  ASSERT_TRUE(nodes_.Start(kOrg));
  Work(8);
  testing::CommandResult seen = Audit({"checkpoint"});
  ASSERT_EQ(seen.exit_code, 0) << seen.err;
  const std::string saved = ReadFileToString(SavedPath()).value();
  ASSERT_EQ(nodes_.Stop(kOrg, SIGTERM), 0);
  std::filesystem::remove_all(Dir() + "/data");
  std::filesystem::rename(Dir() + "/data.old", Dir() + "/data");
  ASSERT_TRUE(nodes_.Start(kOrg));
  testing::CommandResult r = Audit({"checkpoint"});
  ExpectConflict(r, "ROLLBACK", saved);
  EXPECT_TRUE(absl::StrContains(r.err, "restored from an older copy")) << r.err;
  testing::CommandResult again = Audit({"prove", "0"});
  EXPECT_EQ(again.exit_code, 1) << again.out;
  EXPECT_TRUE(absl::StrContains(again.err, "ROLLBACK")) << again.err;
}

TEST_F(AuditStateNodeTest, LedgerRebuiltUnderTheSameKeyIsReportedAsAFork) {
  Work(2);
  ASSERT_EQ(Audit({"checkpoint"}).exit_code, 0);
  const std::string saved = ReadFileToString(SavedPath()).value();
  const uint64_t saved_size = Size() - 1;  // at least: reads are recorded too
  ASSERT_EQ(nodes_.Stop(kOrg, SIGTERM), 0);
  std::filesystem::remove_all(Dir() + "/data");
  ASSERT_TRUE(nodes_.Start(kOrg));
  // A new ledger, signed with the same key, grown past the saved one.
  while (Size() <= saved_size + 2) Work(1);
  ExpectConflict(Audit({"checkpoint"}), "FORK", saved);
}

TEST_F(AuditStateNodeTest, SavedCheckpointFileChecksConsistencyByHandAndATamperedOneIsRefused) {
  const std::string file = Dir() + "/by-hand.checkpoint";
  testing::CommandResult saved = Audit({"checkpoint", "--save", file});
  ASSERT_EQ(saved.exit_code, 0) << saved.err;
  const std::string text = ReadFileToString(file).value();
  EXPECT_EQ(text, ReadFileToString(SavedPath()).value());
  Work(2);
  testing::CommandResult ok = Audit({"consistency", "--from", file});
  ASSERT_EQ(ok.exit_code, 0) << ok.err;
  EXPECT_TRUE(absl::StartsWith(ok.out, "old size ")) << ok.out;
  EXPECT_TRUE(absl::StrContains(ok.out, ": consistent")) << ok.out;
  // Any change to the signed text, here one digit of its size, breaks the signature.
  std::string tampered = text;
  const size_t size_at = tampered.find('\n') + 1;
  tampered[size_at] = tampered[size_at] == '1' ? '2' : '1';
  ASSERT_OK(WriteFileAtomically(Dir() + "/tampered.checkpoint", tampered));
  testing::CommandResult refused = Audit({"consistency", "--from", Dir() + "/tampered.checkpoint"});
  EXPECT_EQ(refused.exit_code, 1) << refused.out;
  EXPECT_TRUE(absl::StrContains(refused.err, "tampered.checkpoint is not trusted")) << refused.err;
  testing::ExpectWords(refused.err);
  // The saved state tampered the same way is refused, not trusted and not replaced.
  ASSERT_OK(WriteFileAtomically(SavedPath(), tampered, 0600));
  testing::CommandResult state = Audit({"checkpoint"});
  EXPECT_EQ(state.exit_code, 1) << state.out;
  EXPECT_TRUE(absl::StrContains(state.err, "does not verify with the roster's keys")) << state.err;
  EXPECT_EQ(ReadFileToString(SavedPath()).value(), tampered);
}

TEST_F(AuditStateNodeTest, CheckpointNeedsTheRosterAndAUsableStateDirectory) {
  testing::CommandResult no_roster =
      nodes_.CtlAs(kOrg, nodes_.auditor(kOrg), {"audit", "checkpoint", "--state", state_});
  EXPECT_EQ(no_roster.exit_code, 1);
  EXPECT_TRUE(absl::StrContains(no_roster.err, "give the roster")) << no_roster.err;
  ASSERT_OK(WriteFileAtomically(Dir() + "/a-file", "x"));
  testing::CommandResult bad = Audit({"checkpoint"}, Dir() + "/a-file/state");
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_TRUE(absl::StrContains(bad.err, "state directory")) << bad.err;
  EXPECT_TRUE(absl::StrContains(bad.err, "cannot be created")) << bad.err;
  testing::ExpectWords(bad.err);
}

}  // namespace
}  // namespace corridor
