// Vocab::from_gguf: the tokenizer.ggml.* keys read from small GGUF files written by the test,
// and every rejection naming its key.
#include "tokenizer/vocab.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "core/error.h"
#include "format/gguf_file.h"
#include "test_support.h"
#include "tokenizer/load_tokenizer.h"

namespace kiln {
namespace {

using ::testing::HasSubstr;

// Writes a GGUF v3 file with metadata only (no tensors).
class MetadataWriter {
 public:
  MetadataWriter& string(const std::string& key, const std::string& value) {
    begin(key, GgufType::String);
    str(value);
    return *this;
  }
  MetadataWriter& u32(const std::string& key, std::uint32_t value) {
    begin(key, GgufType::U32);
    put(value);
    return *this;
  }
  MetadataWriter& i32(const std::string& key, std::int32_t value) {
    begin(key, GgufType::I32);
    put(value);
    return *this;
  }
  MetadataWriter& boolean(const std::string& key, bool value) {
    begin(key, GgufType::Bool);
    put(static_cast<std::uint8_t>(value));
    return *this;
  }
  MetadataWriter& strings(const std::string& key, const std::vector<std::string>& values) {
    begin_array(key, GgufType::String, values.size());
    for (const auto& v : values) str(v);
    return *this;
  }
  MetadataWriter& f32s(const std::string& key, const std::vector<float>& values) {
    begin_array(key, GgufType::F32, values.size());
    for (float v : values) put(v);
    return *this;
  }
  MetadataWriter& i32s(const std::string& key, const std::vector<std::int32_t>& values) {
    begin_array(key, GgufType::I32, values.size());
    for (std::int32_t v : values) put(v);
    return *this;
  }

  // Writes the file and opens it.
  std::unique_ptr<GgufFile> open(const std::string& name) const {
    std::vector<std::uint8_t> file;
    auto append = [&](const void* p, std::size_t n) {
      file.insert(file.end(), static_cast<const std::uint8_t*>(p), static_cast<const std::uint8_t*>(p) + n);
    };
    const std::uint32_t magic = 0x46554747, version = 3;
    const std::uint64_t n_tensors = 0;
    append(&magic, 4);
    append(&version, 4);
    append(&n_tensors, 8);
    append(&n_kv_, 8);
    file.insert(file.end(), body_.begin(), body_.end());
    file.resize((file.size() + 31) / 32 * 32, 0);  // the (empty) data section starts aligned
    const std::string path = test::temp_dir() + "/" + name;
    std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(file.data()), file.size());
    return GgufFile::open(path);
  }

 private:
  template <typename T>
  void put(T v) {
    const auto* p = reinterpret_cast<const std::uint8_t*>(&v);
    body_.insert(body_.end(), p, p + sizeof(T));
  }
  void str(const std::string& s) {
    put<std::uint64_t>(s.size());
    body_.insert(body_.end(), s.begin(), s.end());
  }
  void begin(const std::string& key, GgufType type) {
    ++n_kv_;
    str(key);
    put(static_cast<std::uint32_t>(type));
  }
  void begin_array(const std::string& key, GgufType elem, std::size_t n) {
    begin(key, GgufType::Array);
    put(static_cast<std::uint32_t>(elem));
    put<std::uint64_t>(n);
  }

  std::uint64_t n_kv_ = 0;
  std::vector<std::uint8_t> body_;
};

const std::vector<std::string> kTokens = {"<unk>",
                                          "<s>",
                                          "</s>",
                                          "<0x41>",
                                          "\xE2\x96\x81"
                                          "a",
                                          "b",
                                          "ab"};
const std::vector<float> kScores = {0, 0, 0, 0, -1, -2, -3};
const std::vector<std::int32_t> kTypes = {2, 3, 3, 6, 1, 1, 1};

// A valid llama vocabulary; `edit` may add or override keys (later keys must not repeat one).
MetadataWriter base(bool with_tokens = true, bool with_scores = true, bool with_types = true) {
  MetadataWriter w;
  w.string("tokenizer.ggml.model", "llama");
  if (with_tokens) w.strings("tokenizer.ggml.tokens", kTokens);
  if (with_scores) w.f32s("tokenizer.ggml.scores", kScores);
  if (with_types) w.i32s("tokenizer.ggml.token_type", kTypes);
  return w;
}

// Expects Vocab::from_gguf to throw a kiln::Error whose message contains `fragment`.
void expect_rejected(const MetadataWriter& w, const std::string& name, const std::string& fragment) {
  try {
    Vocab::from_gguf(*w.open(name));
    ADD_FAILURE() << name << ": expected an error containing \"" << fragment << "\"";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr(fragment)) << name;
  }
}

TEST(VocabFromGguf, ReadsKeysAndLlamaDefaults) {
  const Vocab v = Vocab::from_gguf(*base().open("valid.gguf"));
  EXPECT_EQ(v.model, "llama");
  EXPECT_EQ(v.size(), 7);
  EXPECT_EQ(v.tokens[4],
            "\xE2\x96\x81"
            "a");
  EXPECT_FLOAT_EQ(v.scores[6], -3.0f);
  EXPECT_EQ(v.type(3), TokenType::Byte);
  EXPECT_EQ(v.type(1), TokenType::Control);
  EXPECT_EQ(v.unk_id, 0);
  EXPECT_EQ(v.bos_id, 1);
  EXPECT_EQ(v.eos_id, 2);
  EXPECT_EQ(v.pad_id, -1);
  EXPECT_TRUE(v.add_bos);
  EXPECT_FALSE(v.add_eos);
  EXPECT_TRUE(v.add_space_prefix);
  EXPECT_EQ(v.find("ab"), 6);
  EXPECT_EQ(v.find("ba"), -1);
  EXPECT_EQ(v.find(""), -1);
}

TEST(VocabFromGguf, ExplicitKeysOverrideDefaults) {
  MetadataWriter w = base();
  w.u32("tokenizer.ggml.bos_token_id", 2)
      .u32("tokenizer.ggml.eos_token_id", 1)
      .i32("tokenizer.ggml.padding_token_id", -1)
      .u32("tokenizer.ggml.unknown_token_id", 0xFFFFFFFFu)
      .u32("tokenizer.ggml.eot_token_id", 5)
      .boolean("tokenizer.ggml.add_bos_token", false)
      .boolean("tokenizer.ggml.add_eos_token", true)
      .boolean("tokenizer.ggml.add_space_prefix", false);
  const Vocab v = Vocab::from_gguf(*w.open("explicit.gguf"));
  EXPECT_EQ(v.bos_id, 2);
  EXPECT_EQ(v.eos_id, 1);
  EXPECT_EQ(v.pad_id, -1);
  EXPECT_EQ(v.unk_id, -1);
  EXPECT_EQ(v.eot_id, 5);
  EXPECT_FALSE(v.add_bos);
  EXPECT_TRUE(v.add_eos);
  EXPECT_FALSE(v.add_space_prefix);
  // The tokenizer built on it ends generation at EOS and at end of turn.
  const auto tok = make_tokenizer(v);
  EXPECT_TRUE(tok->is_eog(1));
  EXPECT_TRUE(tok->is_eog(5));
  EXPECT_FALSE(tok->is_eog(2));
}

TEST(VocabFromGguf, ScoresAndTypesMayBeAbsent) {
  const Vocab v = Vocab::from_gguf(*base(true, false, false).open("bare.gguf"));
  EXPECT_EQ(v.scores, std::vector<float>(7, 0.0f));
  EXPECT_EQ(v.type(3), TokenType::Normal);
}

TEST(VocabFromGguf, RejectsMissingKeys) {
  expect_rejected(base(false), "no_tokens.gguf", "tokenizer.ggml.tokens is missing");
  MetadataWriter no_model;
  no_model.strings("tokenizer.ggml.tokens", kTokens);
  expect_rejected(no_model, "no_model.gguf", "tokenizer.ggml.model is missing");
}

TEST(VocabFromGguf, RejectsLengthsThatDisagree) {
  MetadataWriter scores = base(true, false);
  scores.f32s("tokenizer.ggml.scores", {0, 0, 0});
  expect_rejected(scores, "short_scores.gguf", "tokenizer.ggml.scores has 3 entries, expected 7");
  MetadataWriter types = base(true, true, false);
  types.i32s("tokenizer.ggml.token_type", {1, 1, 1, 1, 1, 1, 1, 1});
  expect_rejected(types, "long_types.gguf", "tokenizer.ggml.token_type has 8 entries, expected 7");
}

TEST(VocabFromGguf, RejectsWrongTypes) {
  MetadataWriter tokens;
  tokens.string("tokenizer.ggml.model", "llama").i32s("tokenizer.ggml.tokens", {1, 2, 3});
  expect_rejected(tokens, "int_tokens.gguf", "tokenizer.ggml.tokens holds i32, expected string");
  MetadataWriter scores = base(true, false);
  scores.strings("tokenizer.ggml.scores", kTokens);
  expect_rejected(scores, "string_scores.gguf", "tokenizer.ggml.scores holds string, expected f32");
  MetadataWriter types = base(true, true, false);
  types.f32s("tokenizer.ggml.token_type", kScores);
  expect_rejected(types, "float_types.gguf", "tokenizer.ggml.token_type holds f32, expected i32");
  MetadataWriter bos = base();
  bos.string("tokenizer.ggml.bos_token_id", "1");
  expect_rejected(bos, "string_bos.gguf", "tokenizer.ggml.bos_token_id");
  MetadataWriter flag = base();
  flag.string("tokenizer.ggml.add_bos_token", "yes");
  expect_rejected(flag, "string_flag.gguf", "tokenizer.ggml.add_bos_token");
  MetadataWriter model;
  model.u32("tokenizer.ggml.model", 1).strings("tokenizer.ggml.tokens", kTokens);
  expect_rejected(model, "int_model.gguf", "tokenizer.ggml.model");
}

TEST(VocabFromGguf, RejectsBadValues) {
  MetadataWriter bos = base();
  bos.u32("tokenizer.ggml.bos_token_id", 7);
  expect_rejected(bos, "bos_range.gguf", "tokenizer.ggml.bos_token_id = 7 is out of range (vocabulary has 7 tokens)");
  MetadataWriter eos = base();
  eos.i32("tokenizer.ggml.eos_token_id", -5);
  expect_rejected(eos, "eos_negative.gguf", "tokenizer.ggml.eos_token_id = -5 is not a token id");

  MetadataWriter dup;
  dup.string("tokenizer.ggml.model", "llama").strings("tokenizer.ggml.tokens", {"<unk>", "<s>", "</s>", "a", "a"});
  expect_rejected(dup, "duplicate.gguf", "tokenizer.ggml.tokens has \"a\" twice (ids 3 and 4)");

  MetadataWriter type = base(true, true, false);
  type.i32s("tokenizer.ggml.token_type", {2, 3, 3, 6, 1, 9, 1});
  expect_rejected(type, "type_range.gguf", "tokenizer.ggml.token_type[5] = 9 is not a token type");

  MetadataWriter byte = base(true, true, false);
  byte.i32s("tokenizer.ggml.token_type", {2, 3, 3, 6, 6, 1, 1});
  expect_rejected(byte, "byte_form.gguf", "tokenizer.ggml.tokens[4]");

  MetadataWriter empty = base(false);
  empty.strings("tokenizer.ggml.tokens", {});
  expect_rejected(empty, "empty.gguf", "tokenizer.ggml.tokens is empty");
}

TEST(VocabFromGguf, UnknownModelIsRejectedByName) {
  MetadataWriter w;
  w.string("tokenizer.ggml.model", "no-such-model").strings("tokenizer.ggml.tokens", kTokens);
  try {
    load_tokenizer(*w.open("model.gguf"));
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("tokenizer.ggml.model = \"no-such-model\""));
  }
}

TEST(VocabFromGguf, RealLlama2File) {
  KILN_REQUIRE_DATA(path, "llama-2-tiny-random.gguf");
  const Vocab v = Vocab::from_gguf(*GgufFile::open(path));
  EXPECT_EQ(v.model, "llama");
  EXPECT_EQ(v.size(), 32000);
  EXPECT_EQ(v.tokens[0], "<unk>");
  EXPECT_EQ(v.tokens[3], "<0x00>");
  EXPECT_EQ(v.tokens[29871], "\xE2\x96\x81");
  EXPECT_EQ(v.type(0), TokenType::Unknown);
  EXPECT_EQ(v.type(2), TokenType::Control);
  EXPECT_EQ(v.type(258), TokenType::Byte);
  EXPECT_EQ(v.type(259), TokenType::Normal);
  for (std::int32_t id = 0; id < v.size(); ++id) ASSERT_EQ(v.find(v.tokens[static_cast<std::size_t>(id)]), id);
}

}  // namespace
}  // namespace kiln
