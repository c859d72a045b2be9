#include "grammar/grammar_matcher.h"

#include <random>

#include <gtest/gtest.h>

#include "byte_vocabulary.h"
#include "core/error.h"
#include "format/gguf_file.h"
#include "grammar/json_schema_grammar.h"
#include "test_support.h"
#include "tokenizer/load_tokenizer.h"

namespace kiln::grammar {
namespace {

std::unique_ptr<Tokenizer> default_model_tokenizer() {
  const char* src = std::getenv("KILN_SOURCE_DIR");
  const std::string path = std::string(src ? src : ".") + "/models/kiln-default.gguf";
  return load_tokenizer(*GgufFile::open(path));
}

std::vector<std::string> test_grammars() {
  return {
      json_schema_to_gbnf(nlohmann::ordered_json::parse(R"({"type":"object","properties":{
          "name":{"type":"string","maxLength":12},"age":{"type":"integer","minimum":0,"maximum":150},
          "tags":{"type":"array","items":{"enum":["a","b c","\u00e9"]},"maxItems":3},
          "when":{"type":"string","format":"date-time"}},"required":["name","age"]})")),
      json_object_gbnf(),
      regex_to_gbnf("[A-Z][a-z]{1,8}( [A-Z][a-z]{1,8}){0,2}\\."),
      "root ::= (\"The \" | \"A \") [a-z \\u00e0-\\u00ff]{1,40} [.!?]\n",
  };
}

bool bit(const std::vector<std::uint32_t>& m, std::int32_t id) { return (m[static_cast<std::size_t>(id) >> 5] >> (id & 31)) & 1u; }

// Walks each grammar by random allowed tokens; at every step the trie walk's mask (fresh and
// from the cache) equals the token-by-token reference.
void check_masks_against_reference(const std::shared_ptr<const TokenVocabulary>& vocab, int steps, int walks) {
  for (const std::string& gbnf : test_grammars()) {
    auto compiled = std::make_shared<const CompiledGrammar>(parse_gbnf(gbnf), vocab);
    std::mt19937 rng(7);
    for (int w = 0; w < walks; ++w) {
      GrammarMatcher m(compiled);
      std::vector<std::uint32_t> fast(compiled->mask_words()), ref(compiled->mask_words());
      for (int step = 0; step < steps; ++step) {
        m.fill_mask(fast);
        m.fill_mask_reference(ref);
        ASSERT_EQ(fast, ref) << "grammar:\n" << gbnf << "step " << step;
        std::vector<std::int32_t> allowed;
        for (std::int32_t id = 0; id < compiled->n_vocab(); ++id)
          if (bit(fast, id) && !compiled->is_end_token(id)) allowed.push_back(id);
        if (allowed.empty()) {
          EXPECT_TRUE(m.can_end());
          break;
        }
        for (std::int32_t id : compiled->end_tokens()) EXPECT_EQ(bit(fast, id), m.can_end());
        const std::int32_t pick = allowed[std::uniform_int_distribution<std::size_t>(0, allowed.size() - 1)(rng)];
        EXPECT_TRUE(m.allows(pick));
        ASSERT_TRUE(m.accept(pick));
        if (m.is_exhausted()) break;
      }
    }
    EXPECT_GT(compiled->cached_masks(), 0u);
  }
}

TEST(GrammarMatcher, MaskEqualsTokenByTokenReferenceOnTheDefaultVocabulary) {
  auto tokenizer = default_model_tokenizer();
  check_masks_against_reference(TokenVocabulary::from_tokenizer(*tokenizer), 40, 4);
}

TEST(GrammarMatcher, MaskEqualsTokenByTokenReferenceOnLlama2Vocabulary) {
  KILN_REQUIRE_DATA(path, "llama-2-tiny-random.gguf");
  auto tokenizer = load_tokenizer(*GgufFile::open(path));
  check_masks_against_reference(TokenVocabulary::from_tokenizer(*tokenizer), 12, 2);
}

TEST(GrammarMatcher, TrieHoldsEveryTokenOnce) {
  const std::vector<std::string> bytes = {"ab", "a", "", "abc", "b", "ab", "\xFF"};
  const TokenTrie t = TokenTrie::build(bytes);
  // Nodes: a, ab, abc, b, \xFF in preorder.
  ASSERT_EQ(t.byte.size(), 5u);
  EXPECT_EQ(t.subtree_end[0], 3u);
  EXPECT_EQ(t.token_ids.size(), 6u);  // every token with bytes, duplicates ("ab" twice) included
  EXPECT_EQ(t.token_begin[2] - t.token_begin[1], 2u);
}

TEST(GrammarMatcher, EndAndExhaustion) {
  auto g = test::compile_bytes("root ::= \"a\" \"b\"?\n");
  GrammarMatcher m(g);
  EXPECT_FALSE(m.can_end());
  EXPECT_FALSE(m.accept(256));  // the end token, before the grammar is complete
  EXPECT_FALSE(m.accept('b'));
  EXPECT_TRUE(m.accept('a'));
  EXPECT_TRUE(m.can_end());
  EXPECT_FALSE(m.is_exhausted());
  std::vector<std::uint32_t> mask(g->mask_words());
  m.fill_mask(mask);
  EXPECT_TRUE(bit(mask, 'b'));
  EXPECT_TRUE(bit(mask, 256));
  EXPECT_FALSE(bit(mask, 'a'));
  EXPECT_TRUE(m.accept('b'));
  EXPECT_TRUE(m.is_exhausted());
  m.fill_mask(mask);
  for (std::int32_t id = 0; id < 256; ++id) EXPECT_FALSE(bit(mask, id));
  EXPECT_TRUE(bit(mask, 256));
}

TEST(GrammarMatcher, AmbiguityIsBounded) {
  // Each level doubles the parses of the same text; past the limit the matcher refuses.
  std::string g = "root ::= l0\n";
  for (int i = 0; i < 20; ++i) g += "l" + std::to_string(i) + " ::= l" + std::to_string(i + 1) + " | l" + std::to_string(i + 1) + " \"\"\n";
  g += "l20 ::= \"x\"+\n";
  MatcherLimits limits;
  limits.max_stacks = 1000;
  EXPECT_THROW(GrammarMatcher(test::compile_bytes(g), limits), Error);
}

TEST(GrammarMatcher, RightRecursionKeepsStacksShort) {
  auto g = test::compile_bytes("root ::= [a-z]*\n");
  GrammarMatcher m(g);
  ASSERT_TRUE(m.accept_bytes(std::string(100000, 'q')));
  EXPECT_TRUE(m.can_end());
}

}  // namespace
}  // namespace kiln::grammar
