// SpmTokenizer: hand-made vocabularies for each rule (merge order, byte fallback, unknown
// folding, user-defined and unused pieces, specials), then the Llama-2 vocabulary from the
// shared GGUF against sentencepiece itself on hard strings and on War and Peace.
#include "tokenizer/spm_tokenizer.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <ctime>
#include <fstream>
#include <iostream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "tokenizer/utf8.h"
#include "tokenizer_test_support.h"

namespace kiln {
namespace {

using test::make_vocab;
using ::testing::ElementsAre;
using ::testing::IsEmpty;
using Ids = std::vector<std::int32_t>;

constexpr TokenType N = TokenType::Normal;

// ---- rules, on small vocabularies ---------------------------------------------------------

TEST(SpmRules, MergesHighestScoringPairFirst) {
  // ids: 3 a, 4 b, 5 c, 6 ab, 7 bc
  SpmTokenizer tok(make_vocab({{"a", -5, N}, {"b", -5, N}, {"c", -5, N}, {"ab", -2, N}, {"bc", -1, N}}, false));
  EXPECT_THAT(tok.encode("abc", false, false), ElementsAre(3, 7));
}

TEST(SpmRules, EqualScoresMergeLeftmostFirst) {
  SpmTokenizer tok(make_vocab({{"a", -5, N}, {"b", -5, N}, {"c", -5, N}, {"ab", -1, N}, {"bc", -1, N}}, false));
  EXPECT_THAT(tok.encode("abc", false, false), ElementsAre(6, 5));
}

TEST(SpmRules, MergesChainThroughIntermediatePieces) {
  // "abcd": ab and cd first, then abcd; "bc" is never reached because ab and cd win.
  SpmTokenizer tok(make_vocab({{"a", -9, N},
                               {"b", -9, N},
                               {"c", -9, N},
                               {"d", -9, N},
                               {"ab", -1, N},
                               {"cd", -2, N},
                               {"bc", -3, N},
                               {"abcd", -4, N}},
                              false));
  EXPECT_THAT(tok.encode("abcd", false, false), ElementsAre(10));
  EXPECT_THAT(tok.encode("abcdab", false, false), ElementsAre(10, 7));
}

TEST(SpmRules, DummyPrefixAndSpacesBecomeMetaSymbol) {
  // ids: 3 ▁, 4 a, 5 ▁a, 6 ▁▁
  SpmTokenizer tok(make_vocab({{"\xE2\x96\x81", -5, N},
                               {"a", -5, N},
                               {"\xE2\x96\x81"
                                "a",
                                -1, N},
                               {"\xE2\x96\x81\xE2\x96\x81", -2, N}}));
  EXPECT_THAT(tok.encode("a a", false, false), ElementsAre(5, 5));
  EXPECT_THAT(tok.encode(" a", false, false), ElementsAre(3, 5));  // ▁▁a: ▁a scores above ▁▁
  EXPECT_THAT(tok.encode("", true, false), ElementsAre(1));        // no dummy prefix for empty text
  EXPECT_EQ(tok.decode(tok.encode(" a  a ", true, false)), " a  a ");
}

TEST(SpmRules, PieceWithSpaceInsideIsStillFound) {
  // "a▁" spans the point before a "▁", so the text must not be cut there.
  // ids: 3 ▁, 4 a, 5 a▁, 6 ▁a
  SpmTokenizer tok(make_vocab({{"\xE2\x96\x81", -5, N},
                               {"a", -5, N},
                               {"a\xE2\x96\x81", -1, N},
                               {"\xE2\x96\x81"
                                "a",
                                -2, N}}));
  EXPECT_THAT(tok.encode("a a", false, false), ElementsAre(3, 5, 4));
}

TEST(SpmRules, ByteFallbackForCharactersWithoutPiece) {
  std::vector<std::tuple<std::string, float, TokenType>> pieces;
  for (int b = 0; b < 256; ++b) pieces.emplace_back(fmt::format("<0x{:02X}>", b), 0, TokenType::Byte);
  pieces.emplace_back("x", -1, N);  // id 259
  SpmTokenizer tok(make_vocab(pieces, false));
  // é is C3 A9; byte ids are 3 + byte value.
  EXPECT_THAT(tok.encode("x\xC3\xA9x", false, false), ElementsAre(259, 3 + 0xC3, 3 + 0xA9, 259));
  // An invalid byte is normalized to U+FFFD (EF BF BD) first, as sentencepiece does.
  EXPECT_THAT(tok.encode("\xFF", false, false), ElementsAre(3 + 0xEF, 3 + 0xBF, 3 + 0xBD));
  EXPECT_EQ(tok.decode(tok.encode("x\xC3\xA9x", false, false)), "x\xC3\xA9x");
}

TEST(SpmRules, UnknownCharactersFoldIntoOneTokenWithoutByteFallback) {
  SpmTokenizer tok(make_vocab({{"x", -1, N}, {"y", -1, N}}, false));
  EXPECT_THAT(tok.encode("x\xC3\xA9\xE2\x82\xACy\xC3\xA9", false, false), ElementsAre(3, 0, 4, 0));
  EXPECT_EQ(tok.decode(Ids{3, 0, 4}), "x \xE2\x81\x87 y");
}

TEST(SpmRules, UserDefinedPiecesAreNeverMerged) {
  // ids: 3 a, 4 b, 5 ab (user-defined), 6 aab
  SpmTokenizer tok(make_vocab({{"a", -5, N}, {"b", -5, N}, {"ab", 0, TokenType::UserDefined}, {"aab", 0, N}}, false));
  EXPECT_THAT(tok.encode("aab", false, false), ElementsAre(3, 5));
  EXPECT_THAT(tok.encode("ba", false, false), ElementsAre(4, 3));
}

TEST(SpmRules, UnusedPiecesAreSplitBackIntoTheirParts) {
  // ids: 3 a, 4 b, 5 c, 6 ab (unused), 7 abc
  SpmTokenizer tok(
      make_vocab({{"a", -5, N}, {"b", -5, N}, {"c", -5, N}, {"ab", -1, TokenType::Unused}, {"abc", -2, N}}, false));
  EXPECT_THAT(tok.encode("ab", false, false), ElementsAre(3, 4));
  EXPECT_THAT(tok.encode("abc", false, false), ElementsAre(7));
}

TEST(SpmRules, RejectsVocabularyWithoutUnknownOrBytes) {
  Vocab v = make_vocab({{"a", -1, N}});
  v.unk_id = -1;
  EXPECT_THROW(SpmTokenizer{v}, Error);
}

// ---- the Llama-2 vocabulary ---------------------------------------------------------------

const std::vector<std::string>& hard_strings() {
  static const std::vector<std::string> strings = {
      "",
      " ",
      "  ",
      "   leading",
      "trailing   ",
      "multiple    spaces  here",
      "tab\there",
      "\t\t",
      "new\nline",
      "\n",
      "\r\n",
      "\n\n\nthree newlines",
      "emoji \xF0\x9F\xA6\x99\xF0\x9F\x9A\x80 done",
      "\xF0\x9F\x91\xA9\xE2\x80\x8D\xF0\x9F\x91\xA9\xE2\x80\x8D\xF0\x9F\x91\xA7",
      "\xE4\xB8\xAD\xE6\x96\x87\xE5\x88\x86\xE8\xAF\x8D\xE6\xB5\x8B\xE8\xAF\x95",
      "\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E\xE3\x81\xAE\xE3\x83\x86\xE3\x82\xAD\xE3\x82\xB9\xE3\x83\x88",
      "\xED\x95\x9C\xEA\xB5\xAD\xEC\x96\xB4",
      "\xD0\x9F\xD1\x80\xD0\xB8\xD0\xB2\xD0\xB5\xD1\x82, \xD0\xBC\xD0\xB8\xD1\x80!",
      "caf\xC3\xA9 na\xC3\xAFve fa\xC3\xA7"
      "ade",
      "\xC3\x85ngstr\xC3\xB6m",
      "e\xCC\x81 (e + combining acute) vs \xC3\xA9",
      "1234567890",
      "3.14159",
      "!!!???...",
      "----====",
      "((([[[{{{}}}]]])))",
      "def f(x):\n    return x ** 2  # square",
      "int main() { return 0; }",
      "for (int i = 0; i < n; ++i) {\n\tsum += a[i];\n}",
      "Hello world",
      "Hello, World! HELLO hello hElLo",
      "mixed: English, \xD0\xA0\xD1\x83\xD1\x81\xD1\x81\xD0\xBA\xD0\xB8\xD0\xB9, \xE4\xB8\xAD\xE6\x96\x87, "
      "\xF0\x9F\xA6\x99 and numbers 42.",
      "a",
      "zz",
      "<s> and </s> and <unk> as text",
      "<0x41> is not a byte token here",
      "\xE2\x96\x81 the meta symbol itself",
      "\xEF\xBF\xBD replacement char",
      "\xF4\x8F\xBF\xBF max code point, \xEF\xBF\xBF noncharacter",
      std::string("nul\0inside", 10),
      "https://example.com/path?query=1&x=y#frag",
      "email@example.com, @handle #hashtag $100 50% 3*4=12",
      "\xE2\x80\x9C"
      "curly quotes\xE2\x80\x9D and \xE2\x80\x94 dashes \xE2\x80\xA6",
      "\xD8\xA7\xD9\x84\xD8\xB9\xD8\xB1\xD8\xA8\xD9\x8A\xD8\xA9 \xD7\xA2\xD7\x91\xD7\xA8\xD7\x99\xD7\xAA",
      "\xE0\xA4\xB9\xE0\xA4\xBF\xE0\xA4\xA8\xE0\xA5\x8D\xE0\xA4\xA6\xE0\xA5\x80",
  };
  return strings;
}

TEST(SpmLlama2, VocabularyFromGguf) {
  KILN_REQUIRE_LLAMA2_TOKENIZER(tok);
  EXPECT_EQ(tok->n_vocab(), 32000);
  EXPECT_EQ(tok->bos_id(), 1);
  EXPECT_EQ(tok->eos_id(), 2);
  EXPECT_EQ(tok->vocab().unk_id, 0);
  EXPECT_TRUE(tok->vocab().add_bos);
  EXPECT_FALSE(tok->vocab().add_eos);
  EXPECT_TRUE(tok->vocab().add_space_prefix);
  EXPECT_TRUE(tok->is_eog(2));
  EXPECT_FALSE(tok->is_eog(1));
  EXPECT_EQ(tok->vocab().find("\xE2\x96\x81Hello"), 15043);
  EXPECT_EQ(tok->vocab().type(3), TokenType::Byte);
  EXPECT_EQ(tok->token_to_piece(15043), " Hello");
  EXPECT_EQ(tok->token_to_piece(13), "\n");  // <0x0A>
  EXPECT_EQ(tok->token_to_piece(1), "");
  EXPECT_THROW(tok->token_to_piece(32000), Error);
  EXPECT_THROW(tok->decode(Ids{-1}), Error);
}

// Literal ids from sentencepiece 0.1.97 with llama2-tokenizer.model, so these cases run (and
// can fail) even where python3-sentencepiece is not installed.
TEST(SpmLlama2, KnownEncodings) {
  KILN_REQUIRE_LLAMA2_TOKENIZER(tok);
  auto enc = [&](std::string_view s) { return tok->encode(s, false, false); };
  EXPECT_THAT(enc(""), IsEmpty());
  EXPECT_THAT(enc(" "), ElementsAre(259));
  EXPECT_THAT(enc("  "), ElementsAre(1678));
  EXPECT_THAT(enc("   leading"), ElementsAre(1678, 8236));
  EXPECT_THAT(enc("trailing   "), ElementsAre(25053, 1678));
  EXPECT_THAT(enc("multiple    spaces  here"), ElementsAre(2999, 1678, 8162, 29871, 1244));
  EXPECT_THAT(enc("tab\there"), ElementsAre(4434, 12, 4150));
  EXPECT_THAT(enc("\t\t"), ElementsAre(29871, 12, 12));
  EXPECT_THAT(enc("new\nline"), ElementsAre(716, 13, 1220));
  EXPECT_THAT(enc("\n"), ElementsAre(29871, 13));
  EXPECT_THAT(enc("\r\n"), ElementsAre(6756, 13));
  EXPECT_THAT(enc("emoji \xF0\x9F\xA6\x99\xF0\x9F\x9A\x80 done"),
              ElementsAre(953, 29877, 2397, 29871, 243, 162, 169, 156, 243, 162, 157, 131, 2309));
  EXPECT_THAT(enc("\xE4\xB8\xAD\xE6\x96\x87\xE5\x88\x86\xE8\xAF\x8D\xE6\xB5\x8B\xE8\xAF\x95"),
              ElementsAre(29871, 30275, 30333, 30748, 235, 178, 144, 31851, 31787));
  EXPECT_THAT(enc("\xD0\x9F\xD1\x80\xD0\xB8\xD0\xB2\xD0\xB5\xD1\x82, \xD0\xBC\xD0\xB8\xD1\x80!"),
              ElementsAre(7203, 7616, 29892, 4157, 29927, 29991));
  EXPECT_THAT(enc("caf\xC3\xA9 na\xC3\xAFve fa\xC3\xA7"
                  "ade"),
              ElementsAre(274, 28059, 1055, 30085, 345, 2258, 30019, 1943));
  EXPECT_THAT(enc("1234567890"),
              ElementsAre(29871, 29896, 29906, 29941, 29946, 29945, 29953, 29955, 29947, 29929, 29900));
  EXPECT_THAT(enc("!!!???..."), ElementsAre(1738, 6824, 28772, 856));
  EXPECT_THAT(enc("def f(x):\n    return x ** 2  # square"),
              ElementsAre(822, 285, 29898, 29916, 1125, 13, 1678, 736, 921, 3579, 29871, 29906, 29871, 396, 6862));
  EXPECT_THAT(enc("Hello world"), ElementsAre(15043, 3186));
  EXPECT_THAT(enc("<s>Hello</s>"), ElementsAre(529, 29879, 29958, 10994, 829, 29879, 29958));
  EXPECT_THAT(enc("ab\xFF"
                  "cd\xE4\xB8"),
              ElementsAre(633, 30140, 2252, 26308));  // invalid bytes -> U+FFFD
  EXPECT_THAT(tok->encode("Hello world", true, false), ElementsAre(1, 15043, 3186));
}

// Known decodings from sentencepiece: the dummy-prefix space is dropped once, control tokens are
// invisible, byte runs are cut by other tokens, stray bytes become U+FFFD.
TEST(SpmLlama2, KnownDecodings) {
  KILN_REQUIRE_LLAMA2_TOKENIZER(tok);
  EXPECT_EQ(tok->decode(Ids{29871, 15043}), " Hello");
  EXPECT_EQ(tok->decode(Ids{1, 15043}), "Hello");
  EXPECT_EQ(tok->decode(Ids{0}), " \xE2\x81\x87 ");
  EXPECT_EQ(tok->decode(Ids{15043, 0, 15043}), "Hello \xE2\x81\x87  Hello");
  EXPECT_EQ(tok->decode(Ids{231, 2, 187, 176}), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(tok->decode(Ids{231, 187, 176}), "\xE4\xB8\xAD");
  EXPECT_EQ(tok->decode(Ids{231, 187}), "\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(tok->decode(Ids{187, 176, 15043}), "\xEF\xBF\xBD\xEF\xBF\xBD Hello");
  EXPECT_EQ(tok->decode(Ids{29871, 29871, 29871}), "  ");
  EXPECT_EQ(tok->decode(Ids{1, 29871, 1, 15043}), " Hello");
  EXPECT_EQ(tok->decode(Ids{3, 29871}), std::string("\0 ", 2));
}

TEST(SpmLlama2, ParseSpecialTurnsControlTextIntoIds) {
  KILN_REQUIRE_LLAMA2_TOKENIZER(tok);
  // As llama.cpp: the dummy prefix is added again after each special token.
  EXPECT_THAT(tok->encode("<s>Hello</s>", false, true), ElementsAre(1, 15043, 2));
  EXPECT_THAT(tok->encode("Hello<s>world", false, true), ElementsAre(15043, 1, 3186));
  EXPECT_THAT(tok->encode("Hello world", true, true), ElementsAre(1, 15043, 3186));
  EXPECT_THAT(tok->encode("</s></s>", false, true), ElementsAre(2, 2));
  EXPECT_THAT(tok->encode("<unk>", false, true), ElementsAre(0));
}

TEST(SpmLlama2, HardStringsMatchSentencepiece) {
  KILN_REQUIRE_LLAMA2_TOKENIZER(tok);
  std::string why;
  const auto expected =
      test::run_spm_reference("encode " + test::write_json("hard_strings.json", nlohmann::json(hard_strings())), &why);
  if (!expected) GTEST_SKIP() << why;
  ASSERT_EQ(expected->size(), hard_strings().size());
  for (std::size_t i = 0; i < hard_strings().size(); ++i) {
    const std::string& s = hard_strings()[i];
    EXPECT_EQ(tok->encode(s, false, false), (*expected)[i].get<Ids>()) << "string #" << i << ": " << s;
  }
}

// decode(encode(x)) == x, except what sentencepiece itself does not preserve: a literal U+2581
// in the text is indistinguishable from an encoded space, and invalid bytes became U+FFFD.
TEST(SpmLlama2, HardStringsRoundTrip) {
  KILN_REQUIRE_LLAMA2_TOKENIZER(tok);
  for (const std::string& s : hard_strings()) {
    std::string sanitized, expected;
    utf8::append_sanitized(s, sanitized);
    for (std::string_view rest = sanitized; !rest.empty();) {
      const bool meta = rest.starts_with("\xE2\x96\x81");
      expected += meta ? ' ' : rest[0];
      rest.remove_prefix(meta ? 3 : 1);
    }
    EXPECT_EQ(tok->decode(tok->encode(s, true, false)), expected);
  }
  EXPECT_EQ(tok->decode(tok->encode("ab\xFF", false, false)), "ab\xEF\xBF\xBD");
}

std::vector<std::string> first_lines(const std::string& path, std::size_t n) {
  std::ifstream in(path, std::ios::binary);
  std::vector<std::string> lines;
  std::string line;
  while (lines.size() < n && std::getline(in, line)) lines.push_back(line);
  return lines;
}

TEST(SpmLlama2, WarAndPeaceMatchesSentencepiece) {
  KILN_REQUIRE_LLAMA2_TOKENIZER(tok);
  KILN_REQUIRE_DATA(path, "war-and-peace.txt");
  constexpr std::size_t kLines = 2000;
  std::string why;
  const auto expected = test::run_spm_reference(fmt::format("encode-lines {} {}", path, kLines), &why);
  if (!expected) GTEST_SKIP() << why;
  const std::vector<std::string> lines = first_lines(path, kLines);
  ASSERT_EQ(expected->size(), lines.size());
  std::size_t mismatches = 0, n_ids = 0;
  for (std::size_t i = 0; i < lines.size(); ++i) {
    const Ids ids = tok->encode(lines[i], false, false);
    n_ids += ids.size();
    if (ids != (*expected)[i].get<Ids>() && ++mismatches <= 5) ADD_FAILURE() << "line " << i + 1 << ": " << lines[i];
    EXPECT_EQ(tok->decode(ids), lines[i]) << "line " << i + 1;
  }
  EXPECT_EQ(mismatches, 0u);
  EXPECT_GT(n_ids, lines.size());
}

// Many lines as one text: newlines, paragraph breaks and long stretches in one merge problem.
TEST(SpmLlama2, WarAndPeaceChunkAsOneTextMatchesSentencepiece) {
  KILN_REQUIRE_LLAMA2_TOKENIZER(tok);
  KILN_REQUIRE_DATA(path, "war-and-peace.txt");
  std::ifstream in(path, std::ios::binary);
  std::string book((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const std::vector<std::string> chunks = {book.substr(0, 300 * 1024), book.substr(book.size() / 2, 100 * 1024)};
  std::string why;
  const auto expected = test::run_spm_reference("encode " + test::write_json("chunks.json", chunks), &why);
  if (!expected) GTEST_SKIP() << why;
  for (std::size_t i = 0; i < chunks.size(); ++i) {
    const Ids ids = tok->encode(chunks[i], false, false);
    EXPECT_TRUE(ids == (*expected)[i].get<Ids>()) << "chunk " << i << ": " << ids.size() << " ids";
  }
}

TEST(SpmLlama2, DecodeMatchesSentencepiece) {
  KILN_REQUIRE_LLAMA2_TOKENIZER(tok);
  // Random id sequences over the tokens where decoding has rules: byte tokens (3..258, often
  // cut mid-character), control and unknown tokens, "▁" alone, and ordinary words.
  std::mt19937 rng(1234);
  const Ids interesting = {0, 1, 2, 29871, 259, 1678, 15043, 3186, 13, 12, 30275, 29892};
  std::vector<Ids> cases;
  for (int c = 0; c < 300; ++c) {
    Ids ids(std::uniform_int_distribution<int>(0, 12)(rng));
    for (auto& id : ids) {
      const int kind = std::uniform_int_distribution<int>(0, 3)(rng);
      if (kind == 0)
        id = interesting[std::uniform_int_distribution<std::size_t>(0, interesting.size() - 1)(rng)];
      else if (kind == 1)
        id = std::uniform_int_distribution<int>(3, 258)(rng);
      else if (kind == 2)
        id = std::uniform_int_distribution<int>(3 + 0x80, 3 + 0xF7)(rng);  // non-ASCII bytes
      else
        id = std::uniform_int_distribution<int>(259, 31999)(rng);
    }
    cases.push_back(ids);
  }
  for (const std::string& s : hard_strings()) cases.push_back(tok->encode(s, true, false));
  std::string why;
  const auto expected = test::run_spm_reference("decode " + test::write_json("decode_cases.json", cases), &why);
  if (!expected) GTEST_SKIP() << why;
  ASSERT_EQ(expected->size(), cases.size());
  for (std::size_t i = 0; i < cases.size(); ++i) {
    EXPECT_EQ(tok->decode(cases[i]), (*expected)[i].get<std::string>())
        << "case #" << i << ": " << nlohmann::json(cases[i]).dump();
  }
}

// Appends code point `cp` as UTF-8.

// Random strings over many scripts and whitespace kinds: characters with and without pieces,
// so merges, byte fallback and the space rules all meet.
TEST(SpmLlama2, RandomStringsMatchSentencepiece) {
  KILN_REQUIRE_LLAMA2_TOKENIZER(tok);
  struct Range {
    char32_t lo, hi;
  };
  const Range ranges[] = {
      {'a', 'z'},       {'A', 'Z'},       {'0', '9'},       {' ', ' '},         {' ', '/'},
      {'\t', '\n'},     {0x00C0, 0x024F}, {0x0300, 0x036F}, {0x0400, 0x04FF},   {0x0590, 0x06FF},
      {0x0900, 0x097F}, {0x2000, 0x206F}, {0x2581, 0x2581}, {0x3040, 0x30FF},   {0x4E00, 0x9FFF},
      {0xAC00, 0xD7A3}, {0xE000, 0xE0FF}, {0xFFF0, 0xFFFF}, {0x1F300, 0x1F6FF}, {0x10FF00, 0x10FFFF},
  };
  std::mt19937 rng(4321);
  std::vector<std::string> strings;
  for (int c = 0; c < 600; ++c) {
    std::string s;
    const int length = std::uniform_int_distribution<int>(0, 40)(rng);
    // Each string draws from a few ranges, so that runs of one script (which merge) occur.
    const Range* picks[3];
    for (auto& p : picks) p = &ranges[std::uniform_int_distribution<std::size_t>(0, std::size(ranges) - 1)(rng)];
    for (int i = 0; i < length; ++i) {
      const Range& r = *picks[std::uniform_int_distribution<int>(0, 2)(rng)];
      utf8::append_code_point(std::uniform_int_distribution<char32_t>(r.lo, r.hi)(rng), s);
    }
    strings.push_back(s);
  }
  std::string why;
  const auto expected = test::run_spm_reference("encode " + test::write_json("random.json", strings), &why);
  if (!expected) GTEST_SKIP() << why;
  ASSERT_EQ(expected->size(), strings.size());
  for (std::size_t i = 0; i < strings.size(); ++i) {
    EXPECT_EQ(tok->encode(strings[i], false, false), (*expected)[i].get<Ids>())
        << "random string #" << i << ": " << nlohmann::json(strings[i]).dump();
  }
}

// Encoding stays O(n log n): 100 KB of letters without a space is one merge problem. Work is
// counted, not timed (a busy machine cannot decide): each merge considers at most two new pairs,
// so pairs considered, candidates taken and merges are each at most about 3 per character, and a
// sixteenth of the text takes about a sixteenth of the work (quadratic work: 1/256). Timing lives
// in bench/tokenizer_bench (BM_SpmLongWord).
TEST(SpmLlama2, LongTextWithoutSpacesEncodesInLinearWork) {
  KILN_REQUIRE_LLAMA2_TOKENIZER(tok);
  const auto* spm = dynamic_cast<const SpmTokenizer*>(tok);
  ASSERT_NE(spm, nullptr);
  std::mt19937 rng(7);
  std::string text(100 * 1024, 'a');
  for (char& c : text) c = static_cast<char>('a' + std::uniform_int_distribution<int>(0, 25)(rng));
  const auto work_of = [&](std::string_view part) {
    MergeWork work;
    Ids out;
    spm->encode_text(part, false, out, &work);
    return work;
  };
  const MergeWork whole = work_of(text), sixteenth = work_of(std::string_view(text).substr(0, text.size() / 16));
  EXPECT_LE(static_cast<double>(whole.pairs_considered + whole.candidates_taken + whole.merges) / text.size(), 7.0);
  const double ratio = static_cast<double>(whole.pairs_considered + whole.candidates_taken) /
                       static_cast<double>(sixteenth.pairs_considered + sixteenth.candidates_taken);
  EXPECT_GT(ratio, 12.0);
  EXPECT_LT(ratio, 20.0);
  const Ids ids = tok->encode(text, false, false);
  EXPECT_GT(ids.size(), text.size() / 8);
  EXPECT_EQ(tok->decode(ids), text);

  // And the same ids as sentencepiece for it, plus a run of one repeated character (the worst
  // case for a naive rescan) and a long run of spaces.
  const std::vector<std::string> long_inputs = {text, std::string(20000, 'x'), std::string(5000, ' ') + "end"};
  std::string why;
  const auto expected = test::run_spm_reference("encode " + test::write_json("long.json", long_inputs), &why);
  if (!expected) GTEST_SKIP() << why;
  for (std::size_t i = 0; i < long_inputs.size(); ++i) {
    EXPECT_EQ(tok->encode(long_inputs[i], false, false), (*expected)[i].get<Ids>()) << "long input #" << i;
  }
}

// All of War and Peace, line by line as spm_encode reads it: the merge work stays linear in the
// bytes (counted, as above; a quadratic regression multiplies it). The throughput is printed for
// information; bench/tokenizer_bench measures it against sentencepiece.
TEST(SpmLlama2, WarAndPeaceMergeWorkIsLinear) {
  KILN_REQUIRE_LLAMA2_TOKENIZER(tok);
  KILN_REQUIRE_DATA(path, "war-and-peace.txt");
  const auto* spm = dynamic_cast<const SpmTokenizer*>(tok);
  ASSERT_NE(spm, nullptr);
  const std::vector<std::string> lines = first_lines(path, SIZE_MAX);
  std::size_t bytes = 0, n_ids = 0;
  for (const auto& l : lines) bytes += l.size() + 1;
  MergeWork work;
  const std::clock_t cpu_start = std::clock();
  for (const auto& l : lines) {
    Ids ids;
    spm->encode_text(l, true, ids, &work);
    n_ids += ids.size();
  }
  const double cpu_seconds = static_cast<double>(std::clock() - cpu_start) / CLOCKS_PER_SEC;
  std::cout << fmt::format(
      "[ tokenizer ] War and Peace: {} lines, {:.2f} MB, {} ids, {} pairs considered, {} merges; {:.2f} MB/s (cpu)\n",
      lines.size(), bytes / 1e6, n_ids, work.pairs_considered, work.merges, bytes / 1e6 / cpu_seconds);
  EXPECT_LE(static_cast<double>(work.pairs_considered + work.candidates_taken + work.merges) / bytes, 7.0);
  EXPECT_LE(work.merges, bytes);
}

}  // namespace
}  // namespace kiln
