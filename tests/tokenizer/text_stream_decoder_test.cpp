// TextStreamDecoder: fed one id at a time it emits only valid UTF-8, and everything it emits
// (finish() included) equals Tokenizer::decode of the whole sequence.
#include "tokenizer/text_stream_decoder.h"

#include <gtest/gtest.h>

#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "tokenizer/utf8.h"
#include "tokenizer_test_support.h"

namespace kiln {
namespace {

using Ids = std::vector<std::int32_t>;

// Streams `ids`, checking each chunk; returns the concatenation.
std::string stream(const Tokenizer& tok, const Ids& ids) {
  TextStreamDecoder decoder(tok);
  std::string text;
  for (std::int32_t id : ids) {
    const std::string chunk = decoder.push(id);
    EXPECT_TRUE(utf8::is_valid(chunk)) << "invalid UTF-8 chunk after id " << id;
    text += chunk;
  }
  const std::string tail = decoder.finish();
  EXPECT_TRUE(utf8::is_valid(tail));
  return text + tail;
}

TEST(TextStreamDecoder, HoldsBackACharacterSplitOverByteTokens) {
  KILN_REQUIRE_LLAMA2_TOKENIZER(tok);
  // 中 is E4 B8 AD: byte tokens 3 + byte value.
  TextStreamDecoder decoder(*tok);
  EXPECT_EQ(decoder.push(15043), "Hello");
  EXPECT_EQ(decoder.push(3 + 0xE4), "");
  EXPECT_EQ(decoder.pending_bytes(), 1u);
  EXPECT_EQ(decoder.push(3 + 0xB8), "");
  EXPECT_EQ(decoder.push(3 + 0xAD), "\xE4\xB8\xAD");
  EXPECT_EQ(decoder.pending_bytes(), 0u);
  EXPECT_EQ(decoder.push(3186), " world");
  EXPECT_EQ(decoder.finish(), "");
}

TEST(TextStreamDecoder, IncompleteBytesBecomeReplacementCharacters) {
  KILN_REQUIRE_LLAMA2_TOKENIZER(tok);
  TextStreamDecoder decoder(*tok);
  EXPECT_EQ(decoder.push(3 + 0xE4), "");
  EXPECT_EQ(decoder.push(3 + 0xB8), "");
  // A word token cuts the byte run: both bytes are invalid on their own.
  EXPECT_EQ(decoder.push(15043), "\xEF\xBF\xBD\xEF\xBF\xBD Hello");
  EXPECT_EQ(decoder.push(3 + 0xF0), "");
  EXPECT_EQ(decoder.finish(), "\xEF\xBF\xBD");
  // finish() starts a new sequence: the dummy-prefix space is dropped again.
  EXPECT_EQ(decoder.push(15043), "Hello");
}

TEST(TextStreamDecoder, FirstSpaceDroppedAsInDecode) {
  KILN_REQUIRE_LLAMA2_TOKENIZER(tok);
  TextStreamDecoder decoder(*tok);
  EXPECT_EQ(decoder.push(1), "");  // <s>
  EXPECT_EQ(decoder.push(15043), "Hello");
  EXPECT_EQ(decoder.push(2), "");  // </s>
  EXPECT_EQ(decoder.push(15043), " Hello");
}

TEST(TextStreamDecoder, PrimedWithPromptKeepsLeadingSpaceOfContinuation) {
  KILN_REQUIRE_LLAMA2_TOKENIZER(tok);
  const Ids prompt = tok->encode("The capital of France is", true, false);
  const Ids continuation = tok->encode("Paris", false, false);  // "▁Paris"
  TextStreamDecoder decoder(*tok);
  decoder.prime(prompt);
  std::string text;
  for (std::int32_t id : continuation) text += decoder.push(id);
  EXPECT_EQ(text, " Paris");
  Ids all = prompt;
  all.insert(all.end(), continuation.begin(), continuation.end());
  EXPECT_EQ(tok->decode(prompt) + text, tok->decode(all));
}

TEST(TextStreamDecoder, RandomSequencesMatchDecode) {
  KILN_REQUIRE_LLAMA2_TOKENIZER(tok);
  std::mt19937 rng(99);
  for (int c = 0; c < 2000; ++c) {
    Ids ids(std::uniform_int_distribution<int>(0, 24)(rng));
    for (auto& id : ids) {
      const int kind = std::uniform_int_distribution<int>(0, 4)(rng);
      if (kind <= 1)
        id = std::uniform_int_distribution<int>(3 + 0x80, 3 + 0xF7)(rng);  // high bytes
      else if (kind == 2)
        id = std::uniform_int_distribution<int>(0, 2)(rng);  // unk, bos, eos
      else
        id = std::uniform_int_distribution<int>(3, 31999)(rng);
    }
    EXPECT_EQ(stream(*tok, ids), tok->decode(ids)) << "case " << c;
  }
}

TEST(TextStreamDecoder, EncodedTextStreamsBackExactly) {
  KILN_REQUIRE_LLAMA2_TOKENIZER(tok);
  const std::vector<std::string> texts = {
      "emoji \xF0\x9F\xA6\x99\xF0\x9F\x9A\x80 done",
      "\xE4\xB8\xAD\xE6\x96\x87\xE5\x88\x86\xE8\xAF\x8D\xE6\xB5\x8B\xE8\xAF\x95",
      "\xF0\x9F\x91\xA9\xE2\x80\x8D\xF0\x9F\x91\xA9\xE2\x80\x8D\xF0\x9F\x91\xA7 family",
      "  two leading spaces",
  };
  for (const std::string& text : texts) {
    const Ids ids = tok->encode(text, true, false);
    EXPECT_EQ(stream(*tok, ids), text);
  }
  const std::string path = test::data_file("war-and-peace.txt");
  if (path.empty()) GTEST_SKIP() << "shared data file war-and-peace.txt not found";
  std::ifstream in(path, std::ios::binary);
  std::string book((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  book.resize(200 * 1024);
  const Ids ids = tok->encode(book, true, false);
  EXPECT_EQ(stream(*tok, ids), book);
}

}  // namespace
}  // namespace kiln
