// llama2.c's tokenizer.bin: the Llama-2 tokenizer.model exported as llama2.c's tokenizer.py does
// (llama2c_tokenizer_export.py, run by Debian's python3-sentencepiece) must read back to the
// model's own vocabulary and encode alike; files assembled by hand cover the mapping back of
// spaces and BOS / EOS, load_vocab_file's detection by name, and every malformed case.
#include "tokenizer/llama2c_tokenizer.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include "bpe_test_support.h"
#include "core/error.h"
#include "tokenizer/load_tokenizer.h"
#include "tokenizer/spm_model_file.h"
#include "tokenizer_test_support.h"

namespace kiln {
namespace {

using ::testing::HasSubstr;
using Bytes = std::vector<std::uint8_t>;
using Ids = std::vector<std::int32_t>;

// A tokenizer.bin assembled by hand: (text, score) per token.
struct TokenizerBin {
  Bytes bytes;
  explicit TokenizerBin(std::uint32_t max_length) { put(max_length); }
  template <typename T>
  TokenizerBin& put(T v) {
    const auto* p = reinterpret_cast<const std::uint8_t*>(&v);
    bytes.insert(bytes.end(), p, p + sizeof(T));
    return *this;
  }
  TokenizerBin& token(const std::string& text, float score) {
    put(score).put(static_cast<std::uint32_t>(text.size()));
    bytes.insert(bytes.end(), text.begin(), text.end());
    return *this;
  }
};

TokenizerBin small_bin() {
  TokenizerBin bin(6);
  bin.token("<unk>", 0).token("\n<s>\n", 0).token("\n</s>\n", 0).token("<0x0A>", 0);
  bin.token("a", -1).token("b", -2).token(" a", -3).token("ab", -0.5f).token(" ab", -0.25f);
  return bin;
}

std::string error_of(const Bytes& bytes, std::int32_t vocab_size = -1) {
  try {
    read_llama2c_tokenizer(bytes, vocab_size, "tok.bin");
  } catch (const Error& e) {
    const std::string message = e.what();
    EXPECT_EQ(message.find('\n'), std::string::npos) << message;
    return message;
  }
  ADD_FAILURE() << "no error";
  return "";
}

TEST(Llama2cTokenizer, SmallFileMapsSpacesAndSpecialsBack) {
  const Vocab v = read_llama2c_tokenizer(small_bin().bytes, -1, "tok.bin");
  EXPECT_EQ(v.model, "llama");
  ASSERT_EQ(v.size(), 9);
  EXPECT_EQ(v.tokens[1], "<s>");
  EXPECT_EQ(v.tokens[2], "</s>");
  EXPECT_EQ(v.tokens[6],
            "\xE2\x96\x81"
            "a");
  EXPECT_EQ(v.tokens[8],
            "\xE2\x96\x81"
            "ab");
  EXPECT_EQ(v.type(0), TokenType::Unknown);
  EXPECT_EQ(v.type(1), TokenType::Control);
  EXPECT_EQ(v.type(3), TokenType::Byte);
  EXPECT_EQ(v.type(4), TokenType::Normal);
  EXPECT_EQ(v.scores[7], -0.5f);
  EXPECT_EQ(v.unk_id, 0);
  EXPECT_EQ(v.bos_id, 1);
  EXPECT_EQ(v.eos_id, 2);
  EXPECT_TRUE(v.add_bos);
  EXPECT_TRUE(v.add_space_prefix);
  EXPECT_EQ(read_llama2c_tokenizer(small_bin().bytes, 9, "tok.bin").tokens, v.tokens);
  const auto tok = make_tokenizer(v);
  EXPECT_EQ(tok->encode("ab ab", true, false), (Ids{1, 8, 8}));

  // load_vocab_file takes a .bin by its name, and a directory's tokenizer.bin.
  const std::string dir = test::temp_dir() + "/llama2c";
  std::filesystem::create_directories(dir);
  std::ofstream(dir + "/tokenizer.bin", std::ios::binary)
      .write(reinterpret_cast<const char*>(small_bin().bytes.data()),
             static_cast<std::streamsize>(small_bin().bytes.size()));
  EXPECT_EQ(load_vocab_file(dir + "/tokenizer.bin").tokens, v.tokens);
  EXPECT_EQ(load_vocab_file(dir).tokens, v.tokens);
}

TEST(Llama2cTokenizer, MalformedFilesAreOneLineErrors) {
  EXPECT_THAT(error_of({}), HasSubstr("tok.bin: max_token_length at offset 0 runs past the end of the file"));
  EXPECT_THAT(error_of(TokenizerBin(0).bytes), HasSubstr("max_token_length = 0 is not a plausible token length"));
  EXPECT_THAT(error_of(TokenizerBin(1u << 20).bytes), HasSubstr("max_token_length = 1048576 is not a plausible"));
  EXPECT_THAT(error_of(TokenizerBin(8).bytes), HasSubstr("tok.bin: the file holds no tokens"));
  EXPECT_THAT(error_of(TokenizerBin(2).token("abc", 0).bytes),
              HasSubstr("token 0 is 3 bytes long, more than max_token_length = 2"));
  EXPECT_THAT(error_of(TokenizerBin(8).token("a", std::numeric_limits<float>::quiet_NaN()).bytes),
              HasSubstr("token 0 has score nan"));
  EXPECT_THAT(error_of(TokenizerBin(8).token("a", std::numeric_limits<float>::infinity()).bytes),
              HasSubstr("token 0 has score inf"));
  Bytes truncated = small_bin().bytes;
  truncated.resize(truncated.size() - 2);
  EXPECT_THAT(error_of(truncated), HasSubstr("token 8 (3 bytes at offset"));
  truncated.resize(truncated.size() - 5);
  EXPECT_THAT(error_of(truncated), HasSubstr("token 8 length at offset"));
  EXPECT_THAT(error_of(small_bin().bytes, 8), HasSubstr("11 bytes follow the last of the 8 tokens"));
  EXPECT_THAT(error_of(small_bin().bytes, 10), HasSubstr("token 9 score at offset"));
  EXPECT_THAT(error_of(small_bin().bytes, 1000000), HasSubstr("is too short to hold 1000000 tokens"));
  EXPECT_THAT(error_of(TokenizerBin(8).token("a", 0).token("a", 0).bytes), HasSubstr("has \"a\" twice"));
  EXPECT_THAT(error_of(TokenizerBin(8).token("", 0).bytes), HasSubstr("tokens[0] is empty"));
  // Through load_vocab_file: a .bin that is something else says what kiln took it for.
  const std::string path = test::temp_dir() + "/not_a_tokenizer.bin";
  std::ofstream(path, std::ios::binary) << std::string(100, '\x7f');
  try {
    load_vocab_file(path);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("is read as a llama2.c tokenizer.bin: " + path + ": max_token_length"));
  }
}

TEST(Llama2cTokenizer, SentencePieceExportReadsBackToTheModelsVocabulary) {
  KILN_REQUIRE_DATA(model_path, "llama2-tokenizer.model");
  const std::string python = test::reference_python();
  if (python.empty())
    GTEST_SKIP() << "python3 with the sentencepiece module not found (apt install python3-sentencepiece)";
  const std::string bin = test::temp_dir() + "/llama2-tokenizer.bin";
  ASSERT_EQ(test::run_command(python + " " + test::tokenizer_test_script("llama2c_tokenizer_export.py") + " " +
                                  model_path + " " + bin,
                              nullptr),
            0);
  const Vocab model = load_spm_model_file(model_path);
  for (const std::int32_t vocab_size : {-1, 32000}) {
    const Vocab v = load_llama2c_tokenizer(bin, vocab_size);
    EXPECT_EQ(v.tokens, model.tokens);
    EXPECT_EQ(v.scores, model.scores);
    EXPECT_EQ(v.types, model.types);
    EXPECT_EQ(v.bos_id, model.bos_id);
    EXPECT_EQ(v.eos_id, model.eos_id);
    EXPECT_EQ(v.unk_id, model.unk_id);
    EXPECT_EQ(v.add_bos, model.add_bos);
    EXPECT_EQ(v.add_space_prefix, model.add_space_prefix);
  }
  const auto a = make_tokenizer(model);
  const auto b = load_tokenizer_file(bin);
  for (const char* text : {"Hello world", "  two  spaces", "caf\xC3\xA9 \xF0\x9F\xA6\x99 1234", "<s>x</s>"}) {
    EXPECT_EQ(b->encode(text, true, true), a->encode(text, true, true)) << text;
  }
}

}  // namespace
}  // namespace kiln
