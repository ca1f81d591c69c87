#include "client/ctl/display.h"

#include <string>

#include "gtest/gtest.h"

namespace corridor::ctl {
namespace {

TEST(PrintableTest, KeepsPrintableTextIncludingNonAscii) {
  EXPECT_EQ(Printable("C-3F9A union-sg/user/caseworker1"), "C-3F9A union-sg/user/caseworker1");
  EXPECT_EQ(Printable("Nguyễn Thị Lan → 東京"), "Nguyễn Thị Lan → 東京");
}

TEST(PrintableTest, ShowsEveryControlCharacterVisibly) {
  EXPECT_EQ(Printable("a\nb"), "a\\nb");
  EXPECT_EQ(Printable("\r\t"), "\\r\\t");
  EXPECT_EQ(Printable("\x1b[2J"), "\\x1b[2J");
  EXPECT_EQ(Printable(std::string("\0x", 2)), "\\x00x");
  EXPECT_EQ(Printable("\x7f"), "\\x7f");
  EXPECT_EQ(Printable("\xc2\x85"), "\\u0085");      // C1 next line
  EXPECT_EQ(Printable("\xe2\x80\xae"), "\\u202e");  // right-to-left override
  EXPECT_EQ(Printable("\xe2\x81\xa6"), "\\u2066");  // left-to-right isolate
  EXPECT_EQ(Printable("\xe2\x80\xa8\xe2\x80\xa9"), "\\u2028\\u2029");
  EXPECT_EQ(Printable("\xe2\x80\x8b"), "\\u200b");  // zero-width space
  EXPECT_EQ(Printable("\xef\xbb\xbf"), "\\ufeff");
  EXPECT_EQ(Printable("a\\nb"), "a\\\\nb");  // the value's own backslash
  // Every C0 control and DEL, one by one.
  for (int c = 0; c < 0x20; ++c) {
    std::string shown = Printable(std::string(1, static_cast<char>(c)));
    EXPECT_EQ(shown[0], '\\') << c;
    for (char ch : shown) EXPECT_GE(static_cast<unsigned char>(ch), 0x20) << c;
  }
}

TEST(PrintableTest, ShowsBytesThatAreNotUtf8AsHex) {
  EXPECT_EQ(Printable("ok\xff\xfe"), "ok\\xff\\xfe");
  EXPECT_EQ(Printable("\xc0\xaf"), "\\xc0\\xaf");           // overlong '/'
  EXPECT_EQ(Printable("\xed\xa0\x80"), "\\xed\\xa0\\x80");  // a surrogate
  EXPECT_EQ(Printable("\xe2\x80"), "\\xe2\\x80");           // cut short
  EXPECT_TRUE(IsPrintable("plain"));
  EXPECT_FALSE(IsPrintable("two\nlines"));
}

TEST(JsonQuotedTest, IsValidJsonWhateverTheBytes) {
  EXPECT_EQ(JsonQuoted("a\"b\\c\nd"), "\"a\\\"b\\\\c\\nd\"");
  EXPECT_EQ(JsonQuoted("\x1b\xe2\x80\xae"), "\"\\u001b\\u202e\"");
  EXPECT_EQ(JsonQuoted("x\xffy"), "\"x\\ufffdy\"");
  EXPECT_EQ(JsonQuoted("Lan → 東京"), "\"Lan → 東京\"");
}

TEST(TerminalSafeJsonTest, EscapesWhatProtobufLeavesRaw) {
  EXPECT_EQ(TerminalSafeJson("{\"a\": \"x\xe2\x81\xa6y\"}\n"), "{\"a\": \"x\\u2066y\"}\n");
  EXPECT_EQ(TerminalSafeJson("\"\xff\""), "\"\\ufffd\"");
  EXPECT_EQ(TerminalSafeJson("\"東京\""), "\"東京\"");
}

}  // namespace
}  // namespace corridor::ctl
