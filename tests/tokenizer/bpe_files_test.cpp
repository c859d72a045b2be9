// The byte-level vocabulary files: GGUF metadata (tokenizer.ggml.model = gpt2), Hugging Face
// tokenizer.json (both merge spellings), encoder.json + vocab.bpe, load_tokenizer_file's
// detection, and one-line errors for malformed files.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "bpe_test_support.h"
#include "core/error.h"
#include "core/mapped_file.h"
#include "tokenizer/bpe_vocab_files.h"
#include "tokenizer/byte_unicode.h"
#include "tokenizer/hf_tokenizer_json.h"
#include "tokenizer/load_tokenizer.h"

namespace kiln {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using nlohmann::json;
using Ids = std::vector<std::int32_t>;

const std::vector<std::string> kSamples = {
    "Hello world",
    "This is a test sentence.",
    "I'm sure it's 1234567 \xF0\x9F\xA6\x99 \xE4\xB8\xAD\xE6\x96\x87 \xD0\x9F\xD1\x80\xD0\xB8\xD0\xB2\xD0\xB5\xD1\x82",
    "  spaces\n\n\ttabs  ",
    "<|begin_of_text|>Hi<|eot_id|>",
};

std::string write_file(const std::string& name, const std::string& text) {
  const std::string path = test::temp_dir() + "/" + name;
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::ofstream(path, std::ios::binary) << text;
  return path;
}

// The Llama-3.2 vocabulary written as a Hugging Face tokenizer.json, as Meta publishes it.
json llama32_tokenizer_json(const Vocab& v, bool merges_as_arrays) {
  json vocab = json::object();
  for (std::int32_t id = 0; id < 128000; ++id) vocab[v.tokens[static_cast<std::size_t>(id)]] = id;
  json merges = json::array();
  for (const auto& [l, r] : v.merges) merges.push_back(merges_as_arrays ? json::array({l, r}) : json(l + " " + r));
  json added = json::array();
  for (std::int32_t id = 128000; id < v.size(); ++id) {
    added.push_back({{"id", id}, {"content", v.tokens[static_cast<std::size_t>(id)]}, {"special", true}});
  }
  const std::string pattern =
      R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
  return {
      {"version", "1.0"},
      {"added_tokens", added},
      {"normalizer", nullptr},
      {"pre_tokenizer",
       {{"type", "Sequence"},
        {"pretokenizers",
         json::array({{{"type", "Split"}, {"pattern", {{"Regex", pattern}}}, {"behavior", "Isolated"}, {"invert", false}},
                      {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", false}}})}}},
      {"post_processor",
       {{"type", "Sequence"},
        {"processors",
         json::array({{{"type", "ByteLevel"}},
                      {{"type", "TemplateProcessing"},
                       {"single", json::array({{{"SpecialToken", {{"id", "<|begin_of_text|>"}, {"type_id", 0}}}},
                                               {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}})}}})}}},
      {"decoder", {{"type", "ByteLevel"}}},
      {"model",
       {{"type", "BPE"}, {"ignore_merges", true}, {"byte_fallback", false}, {"vocab", vocab}, {"merges", merges}}},
  };
}

TEST(BpeFiles, TokenizerJsonGivesTheSameTokenizerAsEncoderFiles) {
  KILN_REQUIRE_LLAMA32_TOKENIZER(reference);
  for (bool arrays : {false, true}) {
    const std::string path =
        write_file(arrays ? "hf_arrays/tokenizer.json" : "hf_strings/tokenizer.json",
                   llama32_tokenizer_json(reference->vocab(), arrays).dump());
    const std::unique_ptr<Tokenizer> tok = load_tokenizer_file(path);
    ASSERT_NE(dynamic_cast<const BpeTokenizer*>(tok.get()), nullptr);
    EXPECT_EQ(tok->n_vocab(), 128256);
    EXPECT_EQ(tok->bos_id(), 128000);
    EXPECT_TRUE(tok->vocab().add_bos);
    EXPECT_EQ(tok->vocab().eot_id, 128009);
    EXPECT_EQ(tok->vocab().eom_id, 128008);
    EXPECT_EQ(tok->vocab().type(128009), TokenType::Control);
    for (const std::string& s : kSamples) {
      EXPECT_EQ(tok->encode(s, true, true), reference->encode(s, true, true)) << s;
      EXPECT_EQ(tok->encode(s, false, false), reference->encode(s, false, false)) << s;
    }
    // The directory works as well, and tokenizer_config.json beside it is read.
    const std::string dir = std::filesystem::path(path).parent_path().string();
    write_file(std::filesystem::path(dir).filename().string() + "/tokenizer_config.json",
               R"({"bos_token": "<|begin_of_text|>", "eos_token": {"content": "<|eot_id|>"}, "add_bos_token": false})");
    const std::unique_ptr<Tokenizer> configured = load_tokenizer_file(dir);
    EXPECT_EQ(configured->eos_id(), 128009);
    EXPECT_FALSE(configured->vocab().add_bos);
  }
}

// A vocabulary-only GGUF written as llama.cpp's converter writes Llama 3's.
TEST(BpeFiles, GgufMetadataGivesTheSameTokenizer) {
  KILN_REQUIRE_LLAMA32_TOKENIZER(reference);
  const Vocab& v = reference->vocab();
  std::vector<std::string> merges;
  for (const auto& [l, r] : v.merges) merges.push_back(l + " " + r);
  std::vector<std::int32_t> types;
  for (TokenType t : v.types) types.push_back(static_cast<std::int32_t>(t));
  const std::string path = test::GgufMetadataWriter()
                               .string("general.architecture", "llama")
                               .string("tokenizer.ggml.model", "gpt2")
                               .string("tokenizer.ggml.pre", "llama-bpe")
                               .strings("tokenizer.ggml.tokens", v.tokens)
                               .i32s("tokenizer.ggml.token_type", types)
                               .strings("tokenizer.ggml.merges", merges)
                               .u32("tokenizer.ggml.bos_token_id", 128000)
                               .u32("tokenizer.ggml.eos_token_id", 128009)
                               .write("llama32-vocab.gguf");
  const std::unique_ptr<Tokenizer> tok = load_tokenizer_file(path);
  ASSERT_NE(dynamic_cast<const BpeTokenizer*>(tok.get()), nullptr);
  EXPECT_TRUE(tok->vocab().add_bos);  // llama-bpe adds BOS when the file does not say
  EXPECT_EQ(tok->eos_id(), 128009);
  for (const std::string& s : kSamples) EXPECT_EQ(tok->encode(s, true, true), reference->encode(s, true, true)) << s;
}

TEST(BpeFiles, Gpt2StyleEncoderFiles) {
  // A tiny GPT-2-style vocabulary: bytes, one merge, <|endoftext|> as BOS and EOS.
  json encoder = json::object();
  std::int32_t id = 0;
  for (int b = 0; b < 256; ++b) encoder[std::string(byte_unicode::byte_to_utf8(static_cast<std::uint8_t>(b)))] = id++;
  encoder["he"] = id++;
  encoder["<|endoftext|>"] = id++;
  write_file("gpt2/encoder.json", encoder.dump());
  write_file("gpt2/vocab.bpe", "#version: 0.2\nh e\n");
  const std::unique_ptr<Tokenizer> tok = load_tokenizer_file(test::temp_dir() + "/gpt2/encoder.json");
  EXPECT_EQ(tok->bos_id(), 257);
  EXPECT_EQ(tok->eos_id(), 257);
  EXPECT_FALSE(tok->vocab().add_bos);
  EXPECT_THAT(tok->encode("hex<|endoftext|>", false, true), ElementsAre(256, 'x', 257));
}

std::string json_error(const std::string& text) {
  try {
    make_tokenizer(read_hf_tokenizer_json(text, "", "tok.json"));
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

std::string encoder_error(const std::string& encoder, const std::string& merges) {
  try {
    read_bpe_vocab_files(encoder, merges, "enc");
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

TEST(BpeFiles, MalformedFilesAreOneLineErrors) {
  const std::string model = R"("model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]})";
  EXPECT_THAT(json_error("{" + model + "}"), HasSubstr("tok.json: byte-level vocabulary has no token for byte 0x00"));
  EXPECT_THAT(json_error("{\"model\": "), HasSubstr("tok.json: tokenizer.json is not valid JSON"));
  EXPECT_THAT(json_error("[]"), HasSubstr("tokenizer.json is not a JSON object"));
  EXPECT_THAT(json_error(R"({"model": {"type": "WordPiece", "vocab": {}}})"),
              HasSubstr("model.type = \"WordPiece\" is not supported"));
  EXPECT_THAT(json_error(R"({"model": {"type": "BPE", "byte_fallback": true, "vocab": {"a": 0}, "merges": []}})"),
              HasSubstr("a byte-fallback tokenizer.json needs spaces as"));
  EXPECT_THAT(json_error(R"({"model": {"type": "BPE", "vocab": {"a": "zero"}, "merges": []}})"),
              HasSubstr("model.vocab[\"a\"] is string, expected an integer id"));
  EXPECT_THAT(json_error(R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 0}, "merges": []}})"),
              HasSubstr("model.vocab gives id 0 to both"));
  EXPECT_THAT(json_error(R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": ["a c"]}})"),
              HasSubstr("merges[0] = \"a c\" names \"c\", which is not a token"));
  EXPECT_THAT(json_error(R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": [["a", "b", "c"]]}})"),
              HasSubstr("model.merges[0] is neither"));
  EXPECT_THAT(json_error(R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": "a b"}})"),
              HasSubstr("model.merges is missing or not an array"));
  EXPECT_THAT(json_error("{" + model + R"(, "added_tokens": [{"id": 1, "content": "<x>"}]})"),
              HasSubstr("added_tokens[0] gives id 1 to \"<x>\", which model.vocab gives to \"b\""));
  EXPECT_THAT(json_error("{" + model + R"(, "pre_tokenizer": {"type": "Metaspace"}})"),
              HasSubstr("pre_tokenizer.type = \"Metaspace\" is not supported"));
  EXPECT_THAT(json_error("{" + model + R"(, "normalizer": {"type": "NFKC"}})"), HasSubstr("normalizer \"NFKC\""));
  EXPECT_THAT(json_error("{" + model +
                         R"(, "pre_tokenizer": {"type": "Split", "pattern": {"Regex": " "}, "behavior": "Removed"}})"),
              HasSubstr("behavior = \"Removed\" is not supported"));

  EXPECT_THAT(encoder_error("{", "a b"), HasSubstr("enc: encoder.json is not valid JSON"));
  EXPECT_THAT(encoder_error(R"({"a": 0, "b": 5})", "a b"), HasSubstr("encoder.json[\"b\"] = 5 is out of range"));
  EXPECT_THAT(encoder_error(R"({"a": 0, "b": 0})", "a b"), HasSubstr("gives id 0 to both"));
  EXPECT_THAT(encoder_error(R"({"a": 0, "b": 1})", "#version: 0.2\nab\n"),
              HasSubstr("vocab.bpe line 2 (\"ab\") is not of the form"));
  EXPECT_THAT(encoder_error(R"({"a": 0, "b": 1})", ""), HasSubstr("vocab.bpe has no merges"));

  // Files that hold no tokenizer at all.
  const std::string text = write_file("not-a-tokenizer.txt", "just some text\n");
  try {
    load_tokenizer_file(text);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("not a GGUF model, tokenizer.json, encoder.json or SentencePiece tokenizer.model"));
    EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos);
  }
  EXPECT_THROW(load_tokenizer_file(test::temp_dir() + "/does-not-exist"), Error);
  std::filesystem::create_directories(test::temp_dir() + "/empty-dir");
  EXPECT_THROW(load_tokenizer_file(test::temp_dir() + "/empty-dir"), Error);
}

}  // namespace
}  // namespace kiln
