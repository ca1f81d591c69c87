// Signed notes, checkpoints and cosignatures against the C2SP example and
// the Tessera test log.
#include "ledger/note.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "gtest/gtest.h"
#include "ledger/crypto/crypto.h"
#include "tests/testing/status_matchers.h"

namespace corridor::note {
namespace {

const std::string kData = std::string(CORRIDOR_SOURCE_DIR) + "/tests/data";
constexpr char kTesseraKey[] =
    "example.com/log/testdata+33d7b496+AeHTu4Q3hEIMHNqc6fASMsq3rKNx280NI+oO5xCFkkSx";

std::string Read(const std::string& path) { return ReadFileToString(kData + "/" + path).value(); }

TEST(SignedNote, C2spExampleVerifies) {
  const std::string vkey(absl::StripAsciiWhitespace(Read("signed_note_example.vkey")));
  ASSERT_OK_AND_ASSIGN(Verifier v, ParseVerifier(vkey));
  EXPECT_EQ(v.ToString(), vkey);
  ASSERT_OK_AND_ASSIGN(Note n, ParseNote(Read("signed_note_example.txt")));
  EXPECT_OK(VerifyNote(n, v));
  EXPECT_EQ(FormatNote(n), Read("signed_note_example.txt"));
  // A changed body fails; an unknown signature line is ignored, not an error.
  Note changed = n;
  changed.body = "This is an altered message.\n";
  EXPECT_STATUS(VerifyNote(changed, v), absl::StatusCode::kPermissionDenied, "not valid");
  Note extra = n;
  Ed25519PrivateKey other = Ed25519PrivateKey::Generate();
  SignNote(extra, "someone.else/key", other);
  std::swap(extra.signatures[0], extra.signatures[1]);
  ASSERT_OK_AND_ASSIGN(Note reparsed, ParseNote(FormatNote(extra)));
  EXPECT_OK(VerifyNote(reparsed, v));
}

TEST(SignedNote, MalformedNotesAndKeysAreRefused) {
  EXPECT_STATUS(ParseNote("no signatures here\n"), absl::StatusCode::kInvalidArgument,
                "no blank line");
  EXPECT_STATUS(ParseNote("body\n\n- name abc=\n"), absl::StatusCode::kInvalidArgument,
                "does not start");
  EXPECT_STATUS(ParseNote("body\n\n\xe2\x80\x94 name !!!!\n"), absl::StatusCode::kInvalidArgument,
                "base64");
  EXPECT_STATUS(ParseVerifier("name+00000000+AeHTu4Q3hEIMHNqc6fASMsq3rKNx280NI+oO5xCFkkSx"),
                absl::StatusCode::kInvalidArgument, "");
  EXPECT_STATUS(
      ParseVerifier(
          "example.com/log/testdata+33d7b497+AeHTu4Q3hEIMHNqc6fASMsq3rKNx280NI+oO5xCFkkSx"),
      absl::StatusCode::kInvalidArgument, "");
  EXPECT_STATUS(ParseVerifier("just-a-name"), absl::StatusCode::kInvalidArgument, "<name>+");
}

// Tessera's test log: 15 entries appended one at a time, a checkpoint per size.
const std::vector<std::string> kTesseraEntries = {
    "one",  "two", "three",  "four",  "five",     "six",     "seven", "eit",
    "nain", "ten", "ileven", "twelf", "threeten", "fourten", "fivten"};

TEST(Checkpoint, EveryTesseraCheckpointVerifiesAndOurBodiesAreIdentical) {
  ASSERT_OK_AND_ASSIGN(Verifier v, ParseVerifier(kTesseraKey));
  merkle::CompactRange range;
  for (size_t size = 0; size <= kTesseraEntries.size(); ++size) {
    SCOPED_TRACE(size);
    if (size > 0) range.Push(merkle::HashLeaf(kTesseraEntries[size - 1]));
    const std::string text = Read(absl::StrCat("tessera-log/checkpoint.", size));
    ASSERT_OK_AND_ASSIGN(Checkpoint cp, OpenCheckpoint(text, v));
    EXPECT_EQ(cp.origin, "example.com/log/testdata");
    EXPECT_EQ(cp.size, size);
    EXPECT_EQ(cp.root, range.Root());
    Checkpoint ours{"example.com/log/testdata", size, range.Root(), {}};
    ASSERT_OK_AND_ASSIGN(Note theirs, ParseNote(text));
    EXPECT_EQ(ours.Body(), theirs.body);
  }
  // The unnumbered latest checkpoint too: 16 in all.
  ASSERT_OK_AND_ASSIGN(Checkpoint latest, OpenCheckpoint(Read("tessera-log/checkpoint"), v));
  EXPECT_EQ(latest.size, 15u);
}

TEST(Checkpoint, SignedByUsOpensAndRotationKeepsOldOnesVerifiable) {
  Ed25519PrivateKey k1 = Ed25519PrivateKey::Generate();
  Ed25519PrivateKey k2 = Ed25519PrivateKey::Generate();
  Checkpoint cp{"corridor.test/union-sg", 42, merkle::HashLeaf("x"), {}};
  std::string old_note = SignCheckpoint(cp, "corridor.test/union-sg", k1);
  // During rotation a checkpoint carries both keys' signatures.
  ASSERT_OK_AND_ASSIGN(Note both, ParseNote(old_note));
  SignNote(both, "corridor.test/union-sg/2", k2);
  const Verifier v1{"corridor.test/union-sg", 0x01, k1.public_key()};
  const Verifier v2{"corridor.test/union-sg/2", 0x01, k2.public_key()};
  EXPECT_OK(OpenCheckpoint(FormatNote(both), v1));
  EXPECT_OK(OpenCheckpoint(FormatNote(both), v2));
  EXPECT_OK(OpenCheckpoint(old_note, v1));
  EXPECT_STATUS(OpenCheckpoint(old_note, v2), absl::StatusCode::kNotFound, "no signature");
  // Checkpoint body syntax.
  EXPECT_STATUS(ParseCheckpointBody("origin\n012\nAAAA\n"), absl::StatusCode::kInvalidArgument,
                "size");
  EXPECT_STATUS(ParseCheckpointBody("origin\n12\nAAAA\n"), absl::StatusCode::kInvalidArgument,
                "root");
  EXPECT_STATUS(ParseCheckpointBody("origin\n12\n"), absl::StatusCode::kInvalidArgument,
                "fewer than 3");
}

TEST(Cosignature, WitnessCosignatureVerifiesAndBindsTimeAndBody) {
  Ed25519PrivateKey log_key = Ed25519PrivateKey::Generate();
  Ed25519PrivateKey witness = Ed25519PrivateKey::Generate();
  Checkpoint cp{"corridor.test/union-sg", 7, merkle::HashLeaf("y"), {}};
  ASSERT_OK_AND_ASSIGN(Note n, ParseNote(SignCheckpoint(cp, "corridor.test/union-sg", log_key)));
  n.signatures.push_back(Cosign(cp, "witness.ministry-id", witness, 1700000000));
  ASSERT_OK_AND_ASSIGN(Note reparsed, ParseNote(FormatNote(n)));
  const Verifier w{"witness.ministry-id", 0x04, witness.public_key()};
  ASSERT_OK_AND_ASSIGN(Verifier parsed_w, ParseVerifier(w.ToString()));
  ASSERT_OK_AND_ASSIGN(uint64_t t, VerifyCosignature(reparsed, parsed_w));
  EXPECT_EQ(t, 1700000000u);
  // The log's own signature still verifies beside it.
  EXPECT_OK(VerifyNote(reparsed, Verifier{"corridor.test/union-sg", 0x01, log_key.public_key()}));
  // Another checkpoint body under the same cosignature fails.
  Note moved = reparsed;
  moved.body = Checkpoint{"corridor.test/union-sg", 8, merkle::HashLeaf("y"), {}}.Body();
  EXPECT_STATUS(VerifyCosignature(moved, w), absl::StatusCode::kPermissionDenied, "not valid");
  // A changed timestamp fails.
  Note retimed = reparsed;
  retimed.signatures.back().signature[7] ^= 1;
  EXPECT_STATUS(VerifyCosignature(retimed, w), absl::StatusCode::kPermissionDenied, "not valid");
}

}  // namespace
}  // namespace corridor::note
