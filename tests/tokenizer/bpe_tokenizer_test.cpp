// BpeTokenizer: the byte mapping and merge rules on small hand-made vocabularies (every merge
// path against the plain rescanning reference), the pre-tokenizer, then the Llama-3.2
// vocabulary against published ids and against an independent Python implementation
// (tests/tokenizer/bpe_reference.py) on hard strings, random strings and all of War and Peace.
#include "tokenizer/bpe_tokenizer.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <functional>
#include <iostream>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "bpe_test_support.h"
#include "core/error.h"
#include "tokenizer/byte_unicode.h"
#include "tokenizer/load_tokenizer.h"
#include "tokenizer/text_stream_decoder.h"
#include "tokenizer/utf8.h"

namespace kiln {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using Ids = std::vector<std::int32_t>;

// ---- the byte mapping ----------------------------------------------------------------------

TEST(ByteUnicode, EveryByteHasItsOwnPrintableCharacter) {
  std::vector<char32_t> seen;
  for (int b = 0; b < 256; ++b) {
    const char32_t cp = byte_unicode::byte_to_code_point(static_cast<std::uint8_t>(b));
    EXPECT_TRUE(cp > 0x20 && cp != 0x7F && !(cp >= 0x80 && cp <= 0xA0) && cp != 0xAD) << "byte " << b;
    seen.push_back(cp);
  }
  std::sort(seen.begin(), seen.end());
  EXPECT_EQ(std::unique(seen.begin(), seen.end()), seen.end());
  EXPECT_EQ(byte_unicode::byte_to_code_point(' '), 0x120u);   // "Ġ"
  EXPECT_EQ(byte_unicode::byte_to_code_point('\n'), 0x10Au);  // "Ċ"
  EXPECT_EQ(byte_unicode::byte_to_code_point('A'), static_cast<char32_t>('A'));
  EXPECT_EQ(byte_unicode::byte_to_code_point(0xA1), 0xA1u);
  EXPECT_EQ(byte_unicode::byte_to_code_point(0xAD), 0x143u);
  EXPECT_EQ(byte_unicode::byte_to_utf8(' '), "\xC4\xA0");
}

TEST(ByteUnicode, DecodeInvertsEncodeAndRejectsOtherCharacters) {
  std::string all;
  for (int b = 0; b < 256; ++b) all.push_back(static_cast<char>(b));
  std::string mapped, back;
  byte_unicode::encode(all, mapped);
  EXPECT_TRUE(utf8::is_valid(mapped));
  EXPECT_TRUE(byte_unicode::decode(mapped, back));
  EXPECT_EQ(back, all);
  std::string out;
  EXPECT_FALSE(byte_unicode::decode("\xE2\x82\xAC", out));  // € is not in the mapping
  EXPECT_FALSE(byte_unicode::decode(" ", out));             // a raw space is not either
  EXPECT_FALSE(byte_unicode::decode("\xC1\x81", out));      // overlong "A"
  EXPECT_FALSE(byte_unicode::decode("\xC4", out));          // truncated
}

// ---- merge rules on hand-made vocabularies ---------------------------------------------------

// A byte-level vocabulary: the 256 byte tokens (ids 0..255 in byte order), then `extra` tokens
// (written in plain ASCII, which maps to itself), with `merges` as "left right" in ASCII.
Vocab make_bpe_vocab(const std::vector<std::string>& extra, const std::vector<std::pair<std::string, std::string>>& merges,
                     const std::string& pre = "gpt-2") {
  Vocab v;
  v.model = "gpt2";
  v.pre = pre;
  for (int b = 0; b < 256; ++b) v.tokens.emplace_back(byte_unicode::byte_to_utf8(static_cast<std::uint8_t>(b)));
  for (const auto& t : extra) v.tokens.push_back(t);
  v.merges = merges;
  v.add_space_prefix = false;
  v.finalize("test vocab");
  return v;
}

std::int32_t id_of(const Tokenizer& tok, const std::string& text) { return tok.vocab().find(text); }

// A string as JSON, with bytes that are not UTF-8 shown as U+FFFD.
std::string escaped(const std::string& s) {
  return nlohmann::json(s).dump(-1, ' ', true, nlohmann::json::error_handler_t::replace);
}

TEST(BpeRules, LowerRankMergesFirstWhateverTheLength) {
  // "abc": the rank-0 rule bc beats ab, then a+bc makes abc.
  BpeTokenizer tok(make_bpe_vocab({"ab", "bc", "abc"}, {{"b", "c"}, {"a", "b"}, {"a", "bc"}}));
  EXPECT_THAT(tok.encode("abc", false, false), ElementsAre(id_of(tok, "abc")));
  // With ab ranked first, abc cannot form (there is no ab+c rule).
  BpeTokenizer tok2(make_bpe_vocab({"ab", "bc", "abc"}, {{"a", "b"}, {"b", "c"}, {"a", "bc"}}));
  EXPECT_THAT(tok2.encode("abc", false, false), ElementsAre(id_of(tok2, "ab"), 'c'));
}

TEST(BpeRules, EqualPairsMergeLeftmostFirst) {
  // "aaa": the pair aa occurs twice at one rank; the leftmost merges.
  BpeTokenizer tok(make_bpe_vocab({"aa"}, {{"a", "a"}}));
  EXPECT_THAT(tok.encode("aaa", false, false), ElementsAre(id_of(tok, "aa"), 'a'));
  EXPECT_THAT(tok.encode("aaaa", false, false), ElementsAre(id_of(tok, "aa"), id_of(tok, "aa")));
}

TEST(BpeRules, WordsNeverMergeAcrossPreTokenizerSplits) {
  // GPT-2's expression cuts "a b" into "a" and " b": the rule "a Ġ" can never apply.
  BpeTokenizer tok(make_bpe_vocab({"a\xC4\xA0"}, {{"a", "\xC4\xA0"}}));
  EXPECT_THAT(tok.encode("a b", false, false), ElementsAre('a', ' ', 'b'));  // byte tokens have the byte's id
}

TEST(BpeRules, IgnoreMergesTakesWholeWordTokens) {
  // "abc" is a token but no rule builds it: llama-bpe (ignore_merges) takes it whole, gpt-2 not.
  const std::vector<std::pair<std::string, std::string>> merges = {{"a", "b"}};
  BpeTokenizer gpt2(make_bpe_vocab({"ab", "abc"}, merges, "gpt-2"));
  BpeTokenizer llama3(make_bpe_vocab({"ab", "abc"}, merges, "llama-bpe"));
  EXPECT_FALSE(gpt2.ignore_merges());
  EXPECT_TRUE(llama3.ignore_merges());
  EXPECT_THAT(gpt2.encode("abc", false, false), ElementsAre(id_of(gpt2, "ab"), 'c'));
  EXPECT_THAT(llama3.encode("abc", false, false), ElementsAre(id_of(llama3, "abc")));
}

TEST(BpeRules, DecodeRestoresBytesAndControlTokensAreInvisible) {
  Vocab v = make_bpe_vocab({"ab", "<|end|>", "<tool>"}, {{"a", "b"}});
  v.types[256 + 1] = TokenType::Control;
  v.types[256 + 2] = TokenType::UserDefined;
  v.finalize("test vocab");
  BpeTokenizer tok(v);
  EXPECT_EQ(tok.decode(Ids{256, 257, 258, ' ', 'x'}), "ab<tool> x");
  EXPECT_EQ(tok.token_to_piece(257), "");
  EXPECT_EQ(tok.token_to_piece(0xFF), "\xFF");
  EXPECT_EQ(tok.decode(Ids{0xE4, 0xB8}), "\xEF\xBF\xBD\xEF\xBF\xBD");  // cut character: U+FFFD per byte
  EXPECT_EQ(tok.decode(Ids{0xE4, 257, 0xB8, 0xAD}), "\xE4\xB8\xAD");    // a control token does not cut it
  EXPECT_THROW(tok.decode(Ids{259}), Error);
  EXPECT_THROW(tok.token_to_piece(-1), Error);
  // User-defined tokens are matched in plain text too; control tokens only when asked.
  EXPECT_THAT(tok.encode("x<tool><|end|>", false, false), ElementsAre('x', 258, '<', '|', 'e', 'n', 'd', '|', '>'));
  EXPECT_THAT(tok.encode("x<tool><|end|>", false, true), ElementsAre('x', 258, 257));
}

TEST(BpeRules, BadMergeListsAndPreTokenizersAreErrors) {
  auto error_of = [](const std::function<void()>& f) {
    try {
      f();
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_THAT(error_of([] { BpeTokenizer t(make_bpe_vocab({"ab"}, {{"a", "zz"}})); }),
              HasSubstr("test vocab: tokenizer.ggml.merges[0] = \"a zz\" names \"zz\", which is not a token"));
  EXPECT_THAT(error_of([] { BpeTokenizer t(make_bpe_vocab({"ab"}, {{"a", "b"}, {"b", "c"}})); }),
              HasSubstr("merges[1] = \"b c\" merges into \"bc\", which is not a token"));
  EXPECT_THAT(error_of([] { BpeTokenizer t(make_bpe_vocab({}, {{"a", "b"}}, "no-such-family")); }),
              HasSubstr("tokenizer.ggml.pre = \"no-such-family\" is not a pre-tokenizer kiln knows"));
  EXPECT_THAT(error_of([] {
                Vocab v = make_bpe_vocab({"ab"}, {{"a", "b"}});
                v.pre_patterns = {"(unclosed"};
                BpeTokenizer t(v);
              }),
              HasSubstr("pre-tokenizer pattern \"(unclosed\""));
  EXPECT_THAT(error_of([] { make_bpe_vocab({"ab", "ab"}, {}); }), HasSubstr("has \"ab\" twice"));
  // A missing byte token needs the unknown token to stand in for it.
  EXPECT_THAT(error_of([] {
                Vocab v = make_bpe_vocab({}, {});
                v.tokens[7] = "seven";
                v.finalize("test vocab");
                BpeTokenizer t(v);
              }),
              HasSubstr("no token for byte 0x07"));
  EXPECT_THAT(error_of([] {
                Vocab v = make_bpe_vocab({}, {});
                v.model = "wordpiece";
                make_tokenizer(v);
              }),
              HasSubstr("tokenizer.ggml.model = \"wordpiece\" is not supported"));
}

// Random merge lists over a few letters, including rules that use a token some later rule also
// makes (so merging can create pairs of lower rank than the one being merged): the heap and the
// rank buckets must give exactly what rescanning after every merge gives.
TEST(BpeRules, EveryMergePathAgreesWithRescanningOnRandomMergeLists) {
  std::mt19937 rng(99);
  const std::string alphabet = "abcd";
  for (int trial = 0; trial < 40; ++trial) {
    std::vector<std::string> tokens;
    std::vector<std::pair<std::string, std::string>> merges;
    std::vector<std::string> pool = {"a", "b", "c", "d"};
    std::set<std::string> known(pool.begin(), pool.end());
    std::set<std::pair<std::string, std::string>> used;
    for (int m = 0; m < 60; ++m) {
      const std::string& l = pool[std::uniform_int_distribution<std::size_t>(0, pool.size() - 1)(rng)];
      const std::string& r = pool[std::uniform_int_distribution<std::size_t>(0, pool.size() - 1)(rng)];
      if (l.size() + r.size() > 8 || !used.insert({l, r}).second) continue;
      merges.emplace_back(l, r);
      if (known.insert(l + r).second) {
        tokens.push_back(l + r);
        pool.push_back(l + r);
      }
    }
    std::shuffle(merges.begin(), merges.end(), rng);  // ranks unrelated to the order tokens appear
    BpeTokenizer tok(make_bpe_vocab(tokens, merges));
    for (int w = 0; w < 30; ++w) {
      std::string word(std::uniform_int_distribution<std::size_t>(2, 300)(rng), 'a');
      for (char& c : word) c = alphabet[std::uniform_int_distribution<std::size_t>(0, 3)(rng)];
      Ids rescan, heap, buckets;
      tok.merge_word(word, rescan, BpeTokenizer::MergePath::Rescan);
      tok.merge_word(word, heap, BpeTokenizer::MergePath::Heap);
      tok.merge_word(word, buckets, BpeTokenizer::MergePath::Buckets);
      ASSERT_EQ(heap, rescan) << "trial " << trial << " word " << word;
      ASSERT_EQ(buckets, rescan) << "trial " << trial << " word " << word;
    }
  }
}

// ---- the pre-tokenizer -----------------------------------------------------------------------

std::vector<std::string> split(const Pretokenizer& p, std::string_view text) {
  std::vector<std::string_view> pieces;
  p.split(text, pieces);
  return {pieces.begin(), pieces.end()};
}

TEST(Pretokenizer, Llama3CutsDigitsInThreesContractionsAndSpaces) {
  const Pretokenizer p(find_pretokenizer_spec("llama-bpe")->patterns);
  EXPECT_THAT(split(p, "1234567"), ElementsAre("123", "456", "7"));
  EXPECT_THAT(split(p, "I'm they'RE it's"), ElementsAre("I", "'m", " they", "'RE", " it", "'s"));
  EXPECT_THAT(split(p, "a   b"), ElementsAre("a", "  ", " b"));
  EXPECT_THAT(split(p, "x  \n\n  y"), ElementsAre("x", "  \n\n", " ", " y"));
  EXPECT_THAT(split(p, "end  "), ElementsAre("end", "  "));
  EXPECT_THAT(split(p, "...!?\n"), ElementsAre("...!?\n"));
  EXPECT_THAT(split(p, ""), IsEmpty());
  // Bytes that are not UTF-8 never match and so stand alone; nothing is lost.
  EXPECT_THAT(split(p, "ab\xFF\xFE cd"), ElementsAre("ab", "\xFF\xFE", " cd"));
  const std::string cyrillic = "\xD0\x9F\xD1\x80\xD0\xB8\xD0\xB2\xD0\xB5\xD1\x82, \xD0\xBC\xD0\xB8\xD1\x80!";
  EXPECT_THAT(split(p, cyrillic), ElementsAre("\xD0\x9F\xD1\x80\xD0\xB8\xD0\xB2\xD0\xB5\xD1\x82", ",",
                                              " \xD0\xBC\xD0\xB8\xD1\x80", "!"));
}

TEST(Pretokenizer, SeveralExpressionsRefineEachOther) {
  const Pretokenizer smollm(find_pretokenizer_spec("smollm")->patterns);
  EXPECT_EQ(smollm.n_patterns(), 2u);
  EXPECT_THAT(split(smollm, "abc 123"), ElementsAre("abc", " ", "1", "2", "3"));
  const Pretokenizer gpt2(find_pretokenizer_spec("gpt-2")->patterns);
  EXPECT_THAT(split(gpt2, "abc 123"), ElementsAre("abc", " 123"));
  // A look-ahead that matches empty only marks cuts.
  const Pretokenizer thousands({R"((?=(\d{3})+(?!\d)))"});
  EXPECT_THAT(split(thousands, "1234567"), ElementsAre("1", "234", "567"));
  EXPECT_FALSE(find_pretokenizer_spec("not-a-family").has_value());
  for (const char* name : {"llama-bpe", "gpt-2", "qwen2", "smollm", "tekken", "deepseek-llm", "deepseek-coder",
                           "deepseek-v3", "falcon", "gpt-4o", "bloom", "viking", "default", "chatglm-bpe"}) {
    ASSERT_TRUE(find_pretokenizer_spec(name).has_value()) << name;
    EXPECT_NO_THROW(Pretokenizer(find_pretokenizer_spec(name)->patterns)) << name;
  }
}

// ---- the Llama-3.2 vocabulary ---------------------------------------------------------------

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
      " \n \n ",
      "emoji \xF0\x9F\xA6\x99\xF0\x9F\x9A\x80 done",
      "\xF0\x9F\x91\xA9\xE2\x80\x8D\xF0\x9F\x91\xA9\xE2\x80\x8D\xF0\x9F\x91\xA7",
      "\xE4\xB8\xAD\xE6\x96\x87\xE5\x88\x86\xE8\xAF\x8D\xE6\xB5\x8B\xE8\xAF\x95",
      "\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E\xE3\x81\xAE\xE3\x83\x86\xE3\x82\xAD\xE3\x82\xB9\xE3\x83\x88",
      "\xED\x95\x9C\xEA\xB5\xAD\xEC\x96\xB4",
      "\xD0\x9F\xD1\x80\xD0\xB8\xD0\xB2\xD0\xB5\xD1\x82, \xD0\xBC\xD0\xB8\xD1\x80!",
      "caf\xC3\xA9 na\xC3\xAFve fa\xC3\xA7"
      "ade",
      "e\xCC\x81 (e + combining acute) vs \xC3\xA9",
      "1234567890",
      "3.14159 and 1,000,000 and 12345678901234567890",
      "I'm sure it's they're we've you'll he'd I'M IT'S 'S",
      "!!!???...",
      "((([[[{{{}}}]]])))",
      "def f(x):\n    return x ** 2  # square",
      "for (int i = 0; i < n; ++i) {\n\tsum += a[i];\n}",
      "Hello world",
      "Hello, World! HELLO hello hElLo",
      "<|begin_of_text|> and <|eot_id|> as plain text",
      "\xEF\xBF\xBD replacement char",
      "\xF4\x8F\xBF\xBF max code point, \xEF\xBF\xBF noncharacter",
      std::string("nul\0inside", 10),
      "https://example.com/path?query=1&x=y#frag",
      "\xE2\x80\x9C"
      "curly quotes\xE2\x80\x9D and \xE2\x80\x94 dashes \xE2\x80\xA6",
      "\xD8\xA7\xD9\x84\xD8\xB9\xD8\xB1\xD8\xA8\xD9\x8A\xD8\xA9 \xD7\xA2\xD7\x91\xD7\xA8\xD7\x99\xD7\xAA",
      "\xE0\xA4\xB9\xE0\xA4\xBF\xE0\xA4\xA8\xE0\xA5\x8D\xE0\xA4\xA6\xE0\xA5\x80",
      "\xE2\x80\x83\xE3\x80\x80 unicode spaces \xC2\xA0 nbsp",
  };
  return strings;
}

// Strings that are not valid UTF-8: no reference tokenizer takes them, but bytes must survive.
const std::vector<std::string>& invalid_utf8_strings() {
  static const std::vector<std::string> strings = {
      "ab\xFF"
      "cd",
      "\xE4\xB8",
      "\xC3",
      "\x80\x80\x80",
      "ok \xED\xA0\x80 surrogate",
      "\xF0\x9F\xA6 cut emoji",
      "\xFE\xFF\xFF\xFE",
  };
  return strings;
}

// Published ids: Meta's llama3 test_tokenizer.py ("This is a test sentence."), its chat-format
// test ("user", "\n\n"), ollama's Llama 3.2 tokenizer tests (emoji, CJK, "I").
TEST(BpeLlama32, PublishedExamples) {
  KILN_REQUIRE_LLAMA32_TOKENIZER(tok);
  auto enc = [&](std::string_view s) { return tok->encode(s, false, false); };
  EXPECT_THAT(enc("Hello world"), ElementsAre(9906, 1917));
  EXPECT_THAT(tok->encode("This is a test sentence.", true, false),
              ElementsAre(128000, 2028, 374, 264, 1296, 11914, 13));
  EXPECT_THAT(enc("user"), ElementsAre(882));
  EXPECT_THAT(enc("system"), ElementsAre(9125));
  EXPECT_THAT(enc("\n\n"), ElementsAre(271));
  EXPECT_THAT(enc("I"), ElementsAre(40));
  EXPECT_THAT(enc("\xE9\x95\x87"), ElementsAre(104643));                             // 镇
  EXPECT_THAT(enc("\xF0\x9F\xA6\x99"), ElementsAre(9468, 99, 247));                  // 🦙
  EXPECT_THAT(enc("\xF0\x9F\xA6\x99\xEA\x99\x8A"), ElementsAre(9468, 99, 247, 166, 247, 232));  // 🦙Ꙋ
  EXPECT_THAT(enc("1234567"), ElementsAre(4513, 10961, 22));  // digits in threes: 123 456 7
  EXPECT_EQ(tok->decode(Ids{128000, 2028, 374, 264, 1296, 11914, 13, 128001}), "This is a test sentence.");
}

TEST(BpeLlama32, VocabularyAndSpecialTokens) {
  KILN_REQUIRE_LLAMA32_TOKENIZER(tok);
  EXPECT_EQ(tok->n_vocab(), 128256);
  EXPECT_EQ(tok->bos_id(), 128000);
  EXPECT_EQ(tok->eos_id(), 128001);
  EXPECT_TRUE(tok->vocab().add_bos);
  EXPECT_TRUE(tok->ignore_merges());
  EXPECT_EQ(tok->n_merges(), 280147u);
  EXPECT_TRUE(tok->is_eog(128001));
  EXPECT_TRUE(tok->is_eog(128009));  // <|eot_id|>
  EXPECT_TRUE(tok->is_eog(128008));  // <|eom_id|>
  EXPECT_FALSE(tok->is_eog(128006));
  EXPECT_EQ(tok->vocab().find("<|start_header_id|>"), 128006);
  EXPECT_EQ(tok->vocab().find("<|end_header_id|>"), 128007);
  EXPECT_EQ(tok->vocab().find("<|python_tag|>"), 128010);
  EXPECT_EQ(tok->vocab().find("<|finetune_right_pad_id|>"), 128004);
  EXPECT_EQ(tok->vocab().find("<|reserved_special_token_2|>"), 128005);
  EXPECT_EQ(tok->vocab().find("<|reserved_special_token_3|>"), 128011);
  EXPECT_EQ(tok->vocab().find("<|reserved_special_token_247|>"), 128255);
  const std::string chat = "<|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|>";
  EXPECT_THAT(tok->encode(chat, true, true), ElementsAre(128000, 128006, 882, 128007, 271, 13347, 0, 128009));
  // Without parse_special the same text is plain text: no id of a special token appears.
  for (std::int32_t id : tok->encode(chat, false, false)) EXPECT_LT(id, 128000);
  EXPECT_EQ(tok->decode(tok->encode(chat, false, false)), chat);
  EXPECT_EQ(tok->decode(tok->encode(chat, false, true)), "user\n\nHi!");  // control tokens are invisible
  EXPECT_EQ(tok->token_to_piece(9906), "Hello");
  EXPECT_EQ(tok->token_to_piece(1917), " world");
  EXPECT_EQ(tok->token_to_piece(128009), "");
}

TEST(BpeLlama32, HardStringsRoundTripByteExactly) {
  KILN_REQUIRE_LLAMA32_TOKENIZER(tok);
  std::vector<std::string> all = hard_strings();
  all.insert(all.end(), invalid_utf8_strings().begin(), invalid_utf8_strings().end());
  for (const std::string& s : all) {
    const Ids ids = tok->encode(s, true, false);
    std::string pieces;
    for (std::int32_t id : ids) pieces += tok->token_to_piece(id);
    EXPECT_EQ(pieces, s) << "pieces of " << escaped(s);
    std::string sanitized;
    utf8::append_sanitized(s, sanitized);
    EXPECT_EQ(tok->decode(ids), sanitized);
  }
}

TEST(BpeLlama32, StreamingDecodeEqualsDecode) {
  KILN_REQUIRE_LLAMA32_TOKENIZER(tok);
  std::vector<std::string> all = hard_strings();
  all.insert(all.end(), invalid_utf8_strings().begin(), invalid_utf8_strings().end());
  for (const std::string& s : all) {
    const Ids ids = tok->encode(s, true, false);
    TextStreamDecoder stream(*tok);
    std::string streamed;
    for (std::int32_t id : ids) {
      const std::string part = stream.push(id);
      EXPECT_TRUE(utf8::is_valid(part));
      streamed += part;
    }
    streamed += stream.finish();
    EXPECT_EQ(streamed, tok->decode(ids));
  }
  // 🦙 is three tokens: nothing shows until the last one.
  TextStreamDecoder stream(*tok);
  EXPECT_EQ(stream.push(9468), "");
  EXPECT_EQ(stream.push(99), "");
  EXPECT_EQ(stream.push(247), "\xF0\x9F\xA6\x99");
}

TEST(BpeLlama32, HardStringsMatchReference) {
  KILN_REQUIRE_LLAMA32_TOKENIZER(tok);
  std::string why;
  const auto expected =
      test::run_bpe_reference("encode " + test::write_json("bpe_hard.json", nlohmann::json(hard_strings())), &why);
  if (!expected) GTEST_SKIP() << why;
  ASSERT_EQ(expected->size(), hard_strings().size());
  for (std::size_t i = 0; i < hard_strings().size(); ++i) {
    EXPECT_EQ(tok->encode(hard_strings()[i], false, false), (*expected)[i].get<Ids>())
        << "string #" << i << ": " << hard_strings()[i];
  }
}


// Random strings over many scripts, digits, punctuation and whitespace kinds. U+180E is left
// out: PCRE2 counts it as \s, Unicode's White_Space (tiktoken, the reference) no longer does.
std::vector<std::string> random_strings(int count, std::uint32_t seed) {
  struct Range {
    char32_t lo, hi;
  };
  const Range ranges[] = {
      {'a', 'z'},       {'A', 'Z'},       {'0', '9'},       {' ', ' '},       {' ', '/'},         {'\t', '\r'},
      {'\'', '\''},     {0x00C0, 0x024F}, {0x0300, 0x036F}, {0x0400, 0x04FF}, {0x0590, 0x06FF},   {0x0900, 0x097F},
      {0x2000, 0x206F}, {0x3000, 0x30FF}, {0x4E00, 0x9FFF}, {0xAC00, 0xD7A3}, {0xFF00, 0xFFEF},   {0x1F300, 0x1F6FF},
      {0x0660, 0x0669}, {0x2160, 0x2188}, {0x00A0, 0x00BF}, {0x017F, 0x017F}, {0x10400, 0x1044F}, {0x1D400, 0x1D7FF},
  };
  std::mt19937 rng(seed);
  std::vector<std::string> strings;
  for (int c = 0; c < count; ++c) {
    std::string s;
    const int length = std::uniform_int_distribution<int>(0, 40)(rng);
    const Range* picks[3];
    for (auto& p : picks) p = &ranges[std::uniform_int_distribution<std::size_t>(0, std::size(ranges) - 1)(rng)];
    for (int i = 0; i < length; ++i) {
      const Range& r = *picks[std::uniform_int_distribution<int>(0, 2)(rng)];
      utf8::append_code_point(std::uniform_int_distribution<char32_t>(r.lo, r.hi)(rng), s);
    }
    strings.push_back(s);
  }
  return strings;
}

TEST(BpeLlama32, RandomStringsMatchReference) {
  KILN_REQUIRE_LLAMA32_TOKENIZER(tok);
  const std::vector<std::string> strings = random_strings(800, 4321);
  std::string why;
  const auto words = test::run_bpe_reference("split " + test::write_json("bpe_random.json", strings), &why);
  if (!words) GTEST_SKIP() << why;
  const auto expected = test::run_bpe_reference("encode " + test::write_json("bpe_random.json", strings), &why);
  ASSERT_TRUE(expected.has_value());
  ASSERT_EQ(words->size(), strings.size());
  ASSERT_EQ(expected->size(), strings.size());
  std::size_t mismatches = 0;
  for (std::size_t i = 0; i < strings.size(); ++i) {
    const auto pieces = split(tok->pretokenizer(), strings[i]);
    const bool same_words = pieces == (*words)[i].get<std::vector<std::string>>();
    const bool same_ids = tok->encode(strings[i], false, false) == (*expected)[i].get<Ids>();
    if ((!same_words || !same_ids) && ++mismatches <= 5) {
      ADD_FAILURE() << "random string #" << i << " " << escaped(strings[i]) << ": words "
                    << (same_words ? "agree" : "differ") << ", ids " << (same_ids ? "agree" : "differ");
    }
  }
  EXPECT_EQ(mismatches, 0u);
}

std::vector<std::string> all_lines(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::string book((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::string> lines;
  for (std::size_t begin = 0;;) {
    const std::size_t end = book.find('\n', begin);
    lines.push_back(book.substr(begin, end - begin));
    if (end == std::string::npos) break;
    begin = end + 1;
  }
  return lines;
}

// Every line of War and Peace: the same ids as the reference, and byte-exact round trips.
TEST(BpeLlama32, WarAndPeaceMatchesReferenceAndRoundTrips) {
  KILN_REQUIRE_LLAMA32_TOKENIZER(tok);
  KILN_REQUIRE_DATA(path, "war-and-peace.txt");
  const std::vector<std::string> lines = all_lines(path);
  std::size_t bad_round_trips = 0, n_ids = 0;
  std::vector<Ids> ids(lines.size());
  for (std::size_t i = 0; i < lines.size(); ++i) {
    ids[i] = tok->encode(lines[i], false, false);
    n_ids += ids[i].size();
    if (tok->decode(ids[i]) != lines[i] && ++bad_round_trips <= 5) ADD_FAILURE() << "line " << i + 1 << " round trip";
  }
  EXPECT_EQ(bad_round_trips, 0u);
  EXPECT_GT(n_ids, lines.size());
  // The whole book as one text too (paragraph breaks, long runs of newlines).
  std::ifstream in(path, std::ios::binary);
  const std::string book((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_TRUE(tok->decode(tok->encode(book, false, false)) == book);

  std::string why;
  const auto expected = test::run_bpe_reference(fmt::format("encode-lines {} 0", path), &why);
  if (!expected) GTEST_SKIP() << why;
  ASSERT_EQ(expected->size(), lines.size());
  std::size_t mismatches = 0;
  for (std::size_t i = 0; i < lines.size(); ++i) {
    if (ids[i] != (*expected)[i].get<Ids>() && ++mismatches <= 5) ADD_FAILURE() << "line " << i + 1 << ": " << lines[i];
  }
  EXPECT_EQ(mismatches, 0u);
}

// The three merge paths on real words: long runs of letters, digits, punctuation and bytes.
TEST(BpeLlama32, MergePathsAgreeOnLongWords) {
  KILN_REQUIRE_LLAMA32_TOKENIZER(tok);
  std::mt19937 rng(5);
  const std::vector<std::string> alphabets = {"abcdefghijklmnopqrstuvwxyz", "etaoinshr", "aaab", "!?.,;:-_",
                                              "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdef"};
  for (int w = 0; w < 60; ++w) {
    const std::string& alphabet = alphabets[static_cast<std::size_t>(w) % alphabets.size()];
    std::string word(std::uniform_int_distribution<std::size_t>(2, 3000)(rng), ' ');
    for (char& c : word) c = alphabet[std::uniform_int_distribution<std::size_t>(0, alphabet.size() - 1)(rng)];
    if (w % 7 == 0) {
      for (char& c : word) c = static_cast<char>(std::uniform_int_distribution<int>(0, 255)(rng));
    }
    Ids rescan, heap, buckets, automatic;
    tok->merge_word(word, rescan, BpeTokenizer::MergePath::Rescan);
    tok->merge_word(word, heap, BpeTokenizer::MergePath::Heap);
    tok->merge_word(word, buckets, BpeTokenizer::MergePath::Buckets);
    tok->merge_word(word, automatic);
    ASSERT_EQ(heap, rescan) << "word #" << w;
    ASSERT_EQ(buckets, rescan) << "word #" << w;
    ASSERT_EQ(automatic, rescan) << "word #" << w;
  }
}

// Not quadratic: a 1 MB word (random letters, or one letter repeated: the Llama 3 pre-tokenizer
// keeps either whole) is merged with work linear in its length. Work is counted, not timed, so
// that a busy machine cannot decide: every merge considers at most two new pairs, so pairs
// considered, candidates taken and merges are each at most about 3 per byte, and the bucket path
// visits each rank once. Timing lives in bench/tokenizer_bench (BM_BpeLongWord).
TEST(BpeLlama32, MegabyteWithoutSpacesIsNotQuadratic) {
  KILN_REQUIRE_LLAMA32_TOKENIZER(tok);
  std::mt19937 rng(7);
  std::string letters(1 << 20, 'a');
  for (char& c : letters) c = static_cast<char>('a' + std::uniform_int_distribution<int>(0, 25)(rng));
  const std::string same(letters.size(), 'a');
  const auto merge_work = [&](const std::string& word) {
    MergeWork work;
    Ids ids;
    tok->merge_word(word, ids, BpeTokenizer::MergePath::Auto, &work);
    EXPECT_EQ(tok->decode(ids), word);
    // The same ids as the encoder gives the whole text (one pre-tokenizer word).
    EXPECT_EQ(tok->encode(word, false, false), ids);
    return work;
  };
  for (const std::string* word : {static_cast<const std::string*>(&letters), &same}) {
    const MergeWork w = merge_work(*word);
    const double per_byte = static_cast<double>(w.pairs_considered + w.candidates_taken + w.merges) / word->size();
    std::cout << fmt::format("[ tokenizer ] 1 MB word ({}): {} pairs considered, {} candidates, {} merges, {} ranks "
                             "walked: {:.2f} per byte\n",
                             word == &same ? "one letter" : "random letters", w.pairs_considered, w.candidates_taken,
                             w.merges, w.ranks_walked, per_byte);
    EXPECT_LE(per_byte, 7.0);
    EXPECT_LE(w.merges, word->size());
    EXPECT_LE(w.ranks_walked, tok->n_merges() + 1);
  }
  // Growth: a sixteenth of the random word takes about a sixteenth of the pair work (quadratic
  // work would take 1/256).
  const MergeWork whole = merge_work(letters);
  const MergeWork part = merge_work(letters.substr(0, letters.size() / 16));
  const double ratio = static_cast<double>(whole.pairs_considered + whole.candidates_taken) /
                       static_cast<double>(part.pairs_considered + part.candidates_taken);
  EXPECT_GT(ratio, 12.0);
  EXPECT_LT(ratio, 20.0);
  // And the measure tells quadratic work apart: the reference path rescans every pair after each
  // merge, about n^2 / 2 lookups on a word of n bytes.
  MergeWork rescan;
  Ids ids;
  tok->merge_word(letters.substr(0, 2048), ids, BpeTokenizer::MergePath::Rescan, &rescan);
  EXPECT_GT(rescan.pairs_considered, std::size_t{2048} * 2048 / 8);
}

}  // namespace
}  // namespace kiln
