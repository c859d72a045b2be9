// The BPE trainer: merges on tiny corpora worked out by hand, tie-breaking and the minimum
// frequency, determinism (also across thread counts and block cuts), and the trained vocabulary
// loaded by BpeTokenizer: it re-derives on every training word exactly the segmentation training
// left, round-trips arbitrary bytes, and reads back identically from tokenizer.json and GGUF.
#include "tokenizer/bpe_trainer.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "test_support.h"
#include "tokenizer/bpe_tokenizer.h"
#include "tokenizer/load_tokenizer.h"
#include "tokenizer/pretokenizer.h"

namespace kiln {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using Merge = std::pair<std::string, std::string>;

BpeTrainResult train_text(std::string_view text, std::int32_t vocab_size, std::uint64_t min_frequency = 2,
                          const std::string& pre = "llama-bpe") {
  BpeWordCounts counts(pre);
  counts.add_text(text);
  BpeTrainOptions options;
  options.vocab_size = vocab_size;
  options.min_frequency = min_frequency;
  return train_bpe(counts, options);
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST(BpeTrainer, LearnsTheMergesWorkedOutByHand) {
  // Words "abab" x2, "ab" x1, "\n" x3: (a,b) occurs 5 times, (b,a) 2 -> "ab"; then the words are
  // [ab ab] x2 and [ab]: (ab,ab) occurs 2 times -> "abab"; then no pair is left.
  const BpeTrainResult r = train_text("abab\nabab\nab\n", 1000);
  EXPECT_THAT(r.vocab.merges, ElementsAre(Merge{"a", "b"}, Merge{"ab", "ab"}));
  ASSERT_EQ(r.vocab.size(), 256 + 2 + 2);
  EXPECT_EQ(r.vocab.tokens[256], "ab");
  EXPECT_EQ(r.vocab.tokens[257], "abab");
  EXPECT_EQ(r.vocab.tokens[258], "<|begin_of_text|>");
  EXPECT_EQ(r.vocab.tokens[259], "<|end_of_text|>");
  EXPECT_EQ(r.vocab.type(258), TokenType::Control);
  EXPECT_EQ(r.vocab.bos_id, 258);
  EXPECT_EQ(r.vocab.eos_id, 259);
  EXPECT_EQ(r.vocab.pre, "llama-bpe");
  EXPECT_TRUE(r.vocab.add_bos);
  // Every byte is a token, id = byte, in GPT-2's alphabet: ' ' is "Ġ", '\n' is "Ċ".
  EXPECT_EQ(r.vocab.tokens[' '], "Ġ");
  EXPECT_EQ(r.vocab.tokens['\n'], "Ċ");
  EXPECT_EQ(r.vocab.tokens['a'], "a");
}

TEST(BpeTrainer, StopsAtTheVocabularySize) {
  const BpeTrainResult r = train_text("abab\nabab\nab\n", 256 + 1 + 2);
  EXPECT_THAT(r.vocab.merges, ElementsAre(Merge{"a", "b"}));
}

TEST(BpeTrainer, SpacesBecomeTheByteAlphabetInMerges) {
  // "hi" once and " hi" three times (the llama3 expression keeps the space with the word):
  // (h,i) occurs 4 times, (' ',h) 3 -> "hi"; then (' ',hi) 3 times -> " hi", written "Ġhi".
  const BpeTrainResult r = train_text("hi hi hi hi", 1000);
  EXPECT_THAT(r.vocab.merges, ElementsAre(Merge{"h", "i"}, Merge{"Ġ", "hi"}));
  EXPECT_EQ(r.vocab.tokens[257], "Ġhi");
}

TEST(BpeTrainer, TiesGoToTheSmallerPairAndMinimumFrequencyStops) {
  // (c,d) and (a,b) both occur twice: (a,b) has the smaller ids and comes first whatever the order.
  EXPECT_THAT(train_text("cd\nab\ncd\nab\n", 1000).vocab.merges, ElementsAre(Merge{"a", "b"}, Merge{"c", "d"}));
  EXPECT_THAT(train_text("ab\ncd\nab\ncd\n", 1000).vocab.merges, ElementsAre(Merge{"a", "b"}, Merge{"c", "d"}));
  // Seen once: not merged at the default minimum of 2, merged at 1.
  EXPECT_TRUE(train_text("ab\n", 1000).vocab.merges.empty());
  EXPECT_THAT(train_text("ab\n", 1000, 1).vocab.merges, ElementsAre(Merge{"a", "b"}));
}

TEST(BpeTrainer, OverlappingPairsMergeLeftToRight) {
  // "aaa" x4: (a,a) occurs twice in each word (8) -> "aa"; words are [aa a]: (aa,a) -> "aaa".
  const BpeTrainResult r = train_text("aaa\naaa\naaa\naaa\n", 1000);
  EXPECT_THAT(r.vocab.merges, ElementsAre(Merge{"a", "a"}, Merge{"aa", "a"}));
}

TEST(BpeTrainer, RejectsBadOptions) {
  BpeWordCounts counts("llama-bpe");
  counts.add_text("hello");
  BpeTrainOptions o;
  o.vocab_size = 257;
  EXPECT_THROW(train_bpe(counts, o), Error);
  o.vocab_size = 300;
  o.special_tokens = {"<|x|>", "<|x|>"};
  try {
    train_bpe(counts, o);
    FAIL() << "a repeated special token was accepted";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("<|x|>"));
  }
  o.special_tokens = {""};
  EXPECT_THROW(train_bpe(counts, o), Error);
  EXPECT_THROW(bpe_pretokenizer_name("no-such-pattern"), Error);
  EXPECT_EQ(bpe_pretokenizer_name("llama3"), "llama-bpe");
  EXPECT_EQ(bpe_pretokenizer_name("gpt4"), "dbrx");
  EXPECT_EQ(bpe_pretokenizer_name("qwen2"), "qwen2");
  EXPECT_THROW(BpeWordCounts("nope"), Error);
  BpeWordCounts c2("llama-bpe");
  EXPECT_THROW(c2.add_file(test::temp_dir() + "/does-not-exist.txt"), Error);
}

// A text with words of every kind: repeated English, digits, UTF-8 of several lengths.
std::string mixed_corpus(std::size_t n_words, unsigned seed) {
  static const char* const kWords[] = {"the",   "The",  " and",   "lord",   "king's", "2024", "123456",
                                       "naïve", "café", "Привет", "мир",    "日本語", "🙂", "\n",
                                       "  ",    "\t",   "don't",  "x=y+1;", "...",    "Ωmega"};
  std::mt19937 rng(seed);
  std::string text;
  for (std::size_t i = 0; i < n_words; ++i) {
    text += kWords[rng() % (sizeof(kWords) / sizeof(kWords[0]))];
    if (rng() % 3 != 0) text += ' ';
  }
  return text;
}

TEST(BpeTrainer, IsDeterministicAcrossRunsThreadsAndBlocks) {
  const std::string text = mixed_corpus(20000, 7);
  const std::string path = test::temp_dir() + "/mixed.txt";
  std::ofstream(path, std::ios::binary) << text;
  BpeTrainOptions o;
  o.vocab_size = 600;
  BpeWordCounts one("llama-bpe"), two("llama-bpe"), whole("llama-bpe");
  one.add_file(path, 1);
  two.add_file(path, 2);
  whole.add_text(text);
  EXPECT_EQ(one.counts(), whole.counts());
  EXPECT_EQ(two.counts(), whole.counts());
  EXPECT_EQ(two.n_bytes(), text.size());
  const Vocab a = train_bpe(one, o).vocab;
  const Vocab b = train_bpe(two, o).vocab;
  EXPECT_EQ(a.merges, b.merges);
  EXPECT_EQ(a.tokens, b.tokens);
  EXPECT_EQ(a.size(), 600);
}

TEST(BpeTrainer, TokenizerReproducesTrainingAndRoundTripsBytes) {
  const std::string text = mixed_corpus(20000, 11);
  BpeWordCounts counts("llama-bpe");
  counts.add_text(text);
  BpeTrainOptions o;
  o.vocab_size = 700;
  const BpeTrainResult r = train_bpe(counts, o);
  const BpeTokenizer tok(r.vocab);
  EXPECT_EQ(tok.n_merges(), r.vocab.merges.size());
  // Every training word: BPE with the learned ranks gives exactly what training left.
  for (const auto& [word, ids] : r.words) {
    std::vector<std::int32_t> got;
    tok.merge_word(word, got);
    ASSERT_EQ(got, ids) << "word \"" << word << "\"";
  }
  // The whole text: the same ids as the words' segmentations in order, BOS first.
  std::vector<std::int32_t> expected{r.vocab.bos_id};
  std::vector<std::string_view> pieces;
  Pretokenizer(find_pretokenizer_spec("llama-bpe")->patterns).split(text, pieces);
  std::map<std::string, const std::vector<std::int32_t>*> seg;
  for (const auto& [word, ids] : r.words) seg[word] = &ids;
  for (std::string_view p : pieces) {
    const auto& ids = *seg.at(std::string(p));
    expected.insert(expected.end(), ids.begin(), ids.end());
  }
  EXPECT_EQ(tok.encode(text, true, false), expected);

  // Arbitrary bytes (invalid UTF-8 included) and random UTF-8 round-trip through the pieces.
  std::mt19937 rng(3);
  for (int round = 0; round < 200; ++round) {
    std::string s;
    const std::size_t n = rng() % 64;
    for (std::size_t i = 0; i < n; ++i) {
      if (round % 2 == 0) {
        s.push_back(static_cast<char>(rng() & 0xFF));
      } else {
        const std::string utf = mixed_corpus(1, static_cast<unsigned>(rng()));
        s += utf;
      }
    }
    std::string back;
    for (const std::int32_t id : tok.encode(s, false, false)) back += tok.token_to_piece(id);
    ASSERT_EQ(back, s) << "round " << round;
  }
}

TEST(BpeTrainer, TokenizerJsonAndGgufLoadBackTheSameVocabulary) {
  const std::string text = mixed_corpus(5000, 5);
  BpeWordCounts counts("llama-bpe");
  counts.add_text(text);
  BpeTrainOptions o;
  o.vocab_size = 500;
  o.special_tokens.push_back("<|eot_id|>");
  const Vocab v = train_bpe(counts, o).vocab;
  const std::string json_path = test::temp_dir() + "/trained.json";
  const std::string gguf_path = test::temp_dir() + "/trained.gguf";
  write_hf_tokenizer_json(v, json_path);
  write_tokenizer_gguf(v, gguf_path);
  ASSERT_EQ(v.eot_id, v.size() - 1);
  const std::unique_ptr<Tokenizer> original = make_tokenizer(v);
  for (const std::string& path : {json_path, gguf_path}) {
    SCOPED_TRACE(path);
    const Vocab back = load_vocab_file(path);
    EXPECT_EQ(back.model, "gpt2");
    EXPECT_EQ(back.tokens, v.tokens);
    EXPECT_EQ(back.types, v.types);
    EXPECT_EQ(back.merges, v.merges);
    EXPECT_EQ(back.bos_id, v.bos_id);
    EXPECT_EQ(back.add_bos, v.add_bos);
    EXPECT_TRUE(back.ignore_merges || back.pre == "llama-bpe");
    EXPECT_EQ(back.eot_id, v.eot_id);  // <|eot_id|> ends turns wherever it is read from
    const std::unique_ptr<Tokenizer> loaded = make_tokenizer(back);
    const std::string sample = mixed_corpus(300, 9) + "<|eot_id|>";
    EXPECT_EQ(loaded->encode(sample, true, true), original->encode(sample, true, true));
  }
  EXPECT_EQ(load_vocab_file(gguf_path).eos_id, v.eos_id);
  // A directory with tokenizer_config.json beside tokenizer.json names BOS and EOS too.
  const std::string dir = test::temp_dir() + "/trained-dir";
  std::filesystem::create_directories(dir);
  write_hf_tokenizer_json(v, dir + "/tokenizer.json");
  write_hf_tokenizer_config(v, dir + "/tokenizer_config.json");
  const Vocab from_dir = load_vocab_file(dir);
  EXPECT_EQ(from_dir.bos_id, v.bos_id);
  EXPECT_EQ(from_dir.eos_id, v.eos_id);
  EXPECT_EQ(from_dir.add_bos, v.add_bos);
}

}  // namespace
}  // namespace kiln
