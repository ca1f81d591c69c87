#include "server/common/edge.h"

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace corridor {
namespace {

TEST(EdgeTest, IdentifiersHaveACharacterSetAndALength) {
  EXPECT_OK(ValidateIdentifier("case id", "C-3F9A0C12D4E7"));
  EXPECT_OK(ValidateIdentifier("id", "ref_1.2:3-x"));
  EXPECT_OK(ValidateIdentifier("id", std::string(kMaxIdentifierBytes, 'a')));
  EXPECT_STATUS(ValidateIdentifier("case id", ""), absl::StatusCode::kInvalidArgument,
                "case id is missing");
  EXPECT_STATUS(ValidateIdentifier("id", std::string(kMaxIdentifierBytes + 1, 'a')),
                absl::StatusCode::kInvalidArgument, "the limit is 128");
  for (std::string bad : {std::string("C-1\0x", 5), std::string("C 1"), std::string("C-1\n"),
                          std::string("C/1"), std::string("C-\xc3\xa9"), std::string("\x1b[0m")}) {
    EXPECT_STATUS(ValidateIdentifier("id", bad), absl::StatusCode::kInvalidArgument,
                  "may only hold");
  }
  EXPECT_OK(ValidateOptionalIdentifier("id", ""));
}

TEST(EdgeTest, PurposesAreCodesNotFreeText) {
  EXPECT_OK(ValidatePurposeCode("case-handling"));
  EXPECT_OK(ValidatePurposeCode("fee.recovery_2"));
  for (std::string bad : {std::string("Case Handling"), std::string("-x"), std::string("a\nb"),
                          std::string(kMaxPurposeBytes + 1, 'a'), std::string("Siti Rahayu")}) {
    EXPECT_STATUS(ValidatePurposeCode(bad), absl::StatusCode::kInvalidArgument,
                  "not a purpose code");
  }
  EXPECT_STATUS(ValidatePurposeCode(""), absl::StatusCode::kInvalidArgument, "required");
}

// What a caller typed into a code field is never repeated in the refusal, which
// is recorded in the ledger: it may be a worker's name.
TEST(EdgeTest, RefusalsOfCodesAndIdsDoNotRepeatWhatWasSent) {
  const std::vector<std::string> vocabulary = {"case-handling", "fee-recovery"};
  EXPECT_OK(CheckPurposeListed("fee-recovery", vocabulary));
  for (std::string typed : {std::string("siti-rahayu"), std::string("Siti Rahayu"),
                            std::string("siti\nrahayu"), std::string(300, 's')}) {
    absl::Status st = CheckPurposeListed(typed, vocabulary);
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << typed;
    EXPECT_FALSE(absl::StrContains(st.message(), "siti")) << st.message();
    EXPECT_FALSE(absl::StrContains(st.message(), "Siti")) << st.message();
    EXPECT_FALSE(absl::StrContains(st.message(), "sss")) << st.message();
  }
  EXPECT_STATUS(CheckPurposeListed("siti-rahayu", vocabulary), absl::StatusCode::kInvalidArgument,
                "use one of: case-handling, fee-recovery");
  for (std::string typed : {std::string("Siti Rahayu"), std::string("siti\nrahayu")}) {
    absl::Status st = ValidateIdentifier("the id", typed);
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_FALSE(absl::StrContains(absl::AsciiStrToLower(st.message()), "siti")) << st.message();
  }
}

TEST(EdgeTest, RequestIdsReachTheLedgerAsDigests) {
  EXPECT_EQ(RequestIdForLedger(""), "");
  const std::string d = RequestIdForLedger("siti-rahayu");
  EXPECT_TRUE(absl::StartsWith(d, "sha256:")) << d;
  EXPECT_EQ(d.size(), 7u + 64u);
  EXPECT_FALSE(absl::StrContains(d, "siti"));
  EXPECT_EQ(d, RequestIdForLedger("siti-rahayu"));  // the caller can find its entries
  EXPECT_NE(d, RequestIdForLedger("siti-rahayv"));
}

TEST(EdgeTest, OnlyMintedIdShapesReachTheLedgerAsTheyAre) {
  // What nodes mint: case, evidence, referral and envelope ids.
  for (const char* id : {"C-0A1B2C3D4E5F", "E-0a1b2c3d4e5f", "REF-0A1B2C3D4E5F",
                         "ENV-0A1B2C3D4E5F6071", "ABCD-12345678"}) {
    EXPECT_TRUE(IsMintedIdShape(id)) << id;
    EXPECT_EQ(IdForLedger(id), id);
  }
  // Words a person types, even ones that fit the identifier alphabet.
  for (const char* id : {"siti-rahayu", "Siti", "C-siti", "C-1234567", "ABCDE-12345678",
                         "c-0A1B2C3D4E5F", "-0A1B2C3D4E5F", "C0A1B2C3D4E5F", "C-0A1B2C3D4E5G",
                         "C-0A1B2C3D-4E5F", "REF-DEADBEEF-siti"}) {
    EXPECT_FALSE(IsMintedIdShape(id)) << id;
    EXPECT_EQ(IdForLedger(id), RequestIdForLedger(id)) << id;
  }
  EXPECT_FALSE(IsMintedIdShape("C-" + std::string(65, 'A')));
  EXPECT_EQ(IdForLedger(""), "");
}

TEST(EdgeTest, ForLedgerEscapesControlsAndInvalidUtf8AndBoundsLength) {
  EXPECT_EQ(ForLedger("plain text"), "plain text");
  EXPECT_EQ(ForLedger("Bahasa \xe2\x80\x94 ok"), "Bahasa \xe2\x80\x94 ok");  // valid UTF-8 kept
  EXPECT_EQ(ForLedger(std::string("a\0b\nc\x1b", 6)), "a\\x00b\\x0Ac\\x1B");
  EXPECT_EQ(ForLedger("\xc3"), "\\xC3");           // truncated sequence
  EXPECT_EQ(ForLedger("\xc0\xaf"), "\\xC0\\xAF");  // overlong
  EXPECT_EQ(ForLedger("\xc2\x85"), "\\xC2\\x85");  // C1 control (NEL)
  const std::string big(10000, 'x');
  const std::string bounded = ForLedger(big, 100);
  // The note of the original length fits within the bound too.
  EXPECT_EQ(bounded,
            std::string(100 - std::string(" …[10000 bytes]").size(), 'x') + " …[10000 bytes]");
  EXPECT_LE(bounded.size(), 100u);
  // Bidirectional overrides and marks are shown, not obeyed, by a terminal.
  EXPECT_EQ(ForLedger("a\xe2\x80\xae"
                      "b"),
            "a\\xE2\\x80\\xAEb");  // U+202E
  EXPECT_EQ(ForLedger("\xe2\x81\xa6"
                      "x"),
            "\\xE2\\x81\\xA6x");                            // U+2066
  EXPECT_EQ(ForLedger("\xe2\x80\x8f"), "\\xE2\\x80\\x8F");  // U+200F
  // A cut never splits an escape or a UTF-8 sequence.
  for (size_t max = 1; max < 20; ++max) {
    const std::string s = ForLedger(std::string("ab\x01\xe2\x80\x94zzzzzzzzzzzzzzzzzzzz"), max);
    const size_t cut = s.find(" …[");
    ASSERT_NE(cut, std::string::npos) << s;
    EXPECT_LE(cut, max);
    const std::string kept = s.substr(0, cut);
    EXPECT_EQ(ForLedger(kept, 1000), kept) << "split UTF-8 sequence: " << s;
    EXPECT_TRUE(absl::StartsWith("ab\\x01\xe2\x80\x94zzzzzzzzzzzzzzzzzzzz", kept))
        << "split escape: " << s;
    EXPECT_FALSE(absl::EndsWith(kept, "\\") || absl::EndsWith(kept, "\\x") ||
                 absl::EndsWith(kept, "\\x0"))
        << s;
  }
}

}  // namespace
}  // namespace corridor
