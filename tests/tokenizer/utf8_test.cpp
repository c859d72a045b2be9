// UTF-8 helpers: strict validation by Unicode Table 3-7 and the byte assembly that streaming
// decoding relies on.
#include "tokenizer/utf8.h"

#include <gtest/gtest.h>

#include <string>

namespace kiln::utf8 {
namespace {

TEST(Utf8, ScanPrefixClassifiesWellFormedAndBrokenSequences) {
  struct Case {
    std::string bytes;
    PrefixKind kind;
    std::size_t length;
  };
  const Case cases[] = {
      {"a", PrefixKind::Complete, 1},
      {"\x7F", PrefixKind::Complete, 1},
      {"\xC3\xA9", PrefixKind::Complete, 2},
      {"\xE4\xB8\xAD", PrefixKind::Complete, 3},
      {"\xF0\x9F\xA6\x99", PrefixKind::Complete, 4},
      {"\xF4\x8F\xBF\xBF", PrefixKind::Complete, 4},  // U+10FFFF
      {"\xEF\xBF\xBD", PrefixKind::Complete, 3},      // U+FFFD itself
      {"\xC3", PrefixKind::Incomplete, 1},
      {"\xE4\xB8", PrefixKind::Incomplete, 2},
      {"\xF0\x9F\xA6", PrefixKind::Incomplete, 3},
      {"\x80", PrefixKind::Invalid, 1},              // lone continuation byte
      {"\xC0\x80", PrefixKind::Invalid, 1},          // overlong NUL
      {"\xC1\xBF", PrefixKind::Invalid, 1},          // overlong
      {"\xE0\x80\x80", PrefixKind::Invalid, 1},      // overlong 3-byte
      {"\xE0\x9F", PrefixKind::Invalid, 1},          // overlong, detectable before the end
      {"\xED\xA0\x80", PrefixKind::Invalid, 1},      // surrogate U+D800
      {"\xF0\x8F\xBF\xBF", PrefixKind::Invalid, 1},  // overlong 4-byte
      {"\xF4\x90\x80\x80", PrefixKind::Invalid, 1},  // above U+10FFFF
      {"\xF5\x80\x80\x80", PrefixKind::Invalid, 1},
      {"\xFF", PrefixKind::Invalid, 1},
      {"\xC3"
       "a",
       PrefixKind::Invalid, 1},  // continuation missing
      {"\xE4\xB8"
       "a",
       PrefixKind::Invalid, 1},
  };
  for (const Case& c : cases) {
    const Prefix p = scan_prefix(c.bytes);
    EXPECT_EQ(p.kind, c.kind) << "bytes of length " << c.bytes.size() << " starting 0x" << std::hex
                              << int(static_cast<unsigned char>(c.bytes[0]));
    EXPECT_EQ(p.length, c.length);
  }
}

TEST(Utf8, IsValid) {
  EXPECT_TRUE(is_valid(""));
  EXPECT_TRUE(is_valid("plain ascii"));
  EXPECT_TRUE(is_valid("caf\xC3\xA9 \xE4\xB8\xAD \xF0\x9F\xA6\x99"));
  EXPECT_FALSE(is_valid("caf\xC3"));
  EXPECT_FALSE(is_valid("\xED\xBF\xBF"));
  EXPECT_FALSE(
      is_valid("a\x80"
               "b"));
}

TEST(Utf8, AppendSanitizedReplacesEachInvalidByte) {
  std::string out;
  append_sanitized(
      "a\xFF\xC3\xA9\xE4\xB8"
      "b",
      out);
  EXPECT_EQ(out,
            "a\xEF\xBF\xBD\xC3\xA9\xEF\xBF\xBD\xEF\xBF\xBD"
            "b");
}

TEST(Utf8, DrainCompleteHoldsBackOnlyAPossiblyValidTail) {
  std::string pending = "ab\xE4\xB8";
  std::string out;
  drain_complete(pending, out, false);
  EXPECT_EQ(out, "ab");
  EXPECT_EQ(pending, "\xE4\xB8");
  pending += "\xAD";
  drain_complete(pending, out, false);
  EXPECT_EQ(out, "ab\xE4\xB8\xAD");
  EXPECT_TRUE(pending.empty());

  // A tail that can no longer become valid is replaced at once, byte by byte.
  pending = "\xE0\x80";
  out.clear();
  drain_complete(pending, out, false);
  EXPECT_EQ(out, "\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_TRUE(pending.empty());

  // Flushing turns an incomplete tail into U+FFFD per byte.
  pending = "x\xF0\x9F\xA6";
  out.clear();
  drain_complete(pending, out, true);
  EXPECT_EQ(out, "x\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_TRUE(pending.empty());
}

TEST(Utf8, CharLengthFromLeadCapsAtAvailableBytes) {
  EXPECT_EQ(char_length_from_lead('a', 5), 1u);
  EXPECT_EQ(char_length_from_lead(0xC3, 5), 2u);
  EXPECT_EQ(char_length_from_lead(0xE4, 5), 3u);
  EXPECT_EQ(char_length_from_lead(0xF0, 5), 4u);
  EXPECT_EQ(char_length_from_lead(0xF0, 2), 2u);
  EXPECT_EQ(char_length_from_lead(0x80, 5), 1u);
}

}  // namespace
}  // namespace kiln::utf8
