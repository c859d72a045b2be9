// read_spm_model: the real Llama-2 tokenizer.model against the GGUF vocabulary and sentencepiece
// itself, small models assembled byte by byte, and every kind of malformed protobuf.
#include "tokenizer/spm_model_file.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "tokenizer/spm_tokenizer.h"
#include "tokenizer/load_tokenizer.h"
#include "tokenizer_test_support.h"

namespace kiln {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using Bytes = std::vector<std::uint8_t>;
using Ids = std::vector<std::int32_t>;

// Protobuf wire format, enough to write ModelProto by hand.
struct Proto {
  Bytes bytes;
  Proto& varint(std::uint64_t v) {
    do {
      bytes.push_back(static_cast<std::uint8_t>((v & 0x7F) | (v >= 0x80 ? 0x80 : 0)));
      v >>= 7;
    } while (v != 0);
    return *this;
  }
  Proto& key(std::uint32_t field, std::uint32_t wire) { return varint((std::uint64_t{field} << 3) | wire); }
  Proto& field_varint(std::uint32_t field, std::int64_t v) { return key(field, 0).varint(static_cast<std::uint64_t>(v)); }
  Proto& field_bytes(std::uint32_t field, const Bytes& b) {
    key(field, 2).varint(b.size());
    bytes.insert(bytes.end(), b.begin(), b.end());
    return *this;
  }
  Proto& field_string(std::uint32_t field, const std::string& s) { return field_bytes(field, Bytes(s.begin(), s.end())); }
  Proto& field_float(std::uint32_t field, float f) {
    key(field, 5);
    const auto* p = reinterpret_cast<const std::uint8_t*>(&f);
    bytes.insert(bytes.end(), p, p + 4);
    return *this;
  }
};

Bytes piece(const std::string& text, float score, int type) {
  Proto p;
  p.field_string(1, text).field_float(2, score);
  if (type != 1) p.field_varint(3, type);
  return p.bytes;
}

// <unk> <s> </s> ▁a b ▁ab, a BPE model with an identity normalizer.
Proto small_model(bool add_dummy_prefix = true) {
  Proto m;
  m.field_bytes(1, piece("<unk>", 0, 2)).field_bytes(1, piece("<s>", 0, 3)).field_bytes(1, piece("</s>", 0, 3));
  m.field_bytes(1, piece("\xE2\x96\x81", -3, 1)).field_bytes(1, piece("a", -3, 1)).field_bytes(1, piece("b", -3, 1));
  m.field_bytes(1, piece("\xE2\x96\x81" "a", -1, 1)).field_bytes(1, piece("\xE2\x96\x81" "ab", -2, 1));
  Proto trainer;
  trainer.field_varint(3, 2).field_varint(40, 0).field_varint(41, 1).field_varint(42, 2).field_varint(43, -1);
  trainer.field_string(7, "ignored string field").field_float(15, 0.5f);
  m.field_bytes(2, trainer.bytes);
  Proto normalizer;
  normalizer.field_string(1, "identity").field_varint(3, add_dummy_prefix ? 1 : 0).field_varint(4, 0);
  m.field_bytes(3, normalizer.bytes);
  return m;
}

std::string error_of(const Bytes& bytes) {
  try {
    read_spm_model(bytes, "bad.model");
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

TEST(SpmModelFile, ReadsHandMadeModel) {
  const Vocab v = read_spm_model(small_model().bytes, "small.model");
  EXPECT_EQ(v.model, "llama");
  ASSERT_EQ(v.size(), 8);
  EXPECT_EQ(v.tokens[6], "\xE2\x96\x81" "a");
  EXPECT_FLOAT_EQ(v.scores[6], -1.0f);
  EXPECT_EQ(v.type(0), TokenType::Unknown);
  EXPECT_EQ(v.type(1), TokenType::Control);
  EXPECT_EQ(v.type(5), TokenType::Normal);
  EXPECT_EQ(v.unk_id, 0);
  EXPECT_EQ(v.bos_id, 1);
  EXPECT_EQ(v.eos_id, 2);
  EXPECT_EQ(v.pad_id, -1);
  EXPECT_TRUE(v.add_bos);
  EXPECT_TRUE(v.add_space_prefix);
  SpmTokenizer tok(v);
  EXPECT_THAT(tok.encode("ab a", true, false), ElementsAre(1, 7, 6));
  // add_dummy_prefix = false: no "▁" before the first word.
  SpmTokenizer plain(read_spm_model(small_model(false).bytes, "small.model"));
  EXPECT_FALSE(plain.vocab().add_space_prefix);
  EXPECT_THAT(plain.encode("ab a", false, false), ElementsAre(4, 5, 6));
}

TEST(SpmModelFile, MalformedModelsAreOneLineErrors) {
  const Bytes good = small_model().bytes;
  // Every truncation: a cut inside a field is a truncated value; a cut between pieces leaves a
  // model without trainer_spec, which defaults to unigram. Either way an error, never a crash.
  // Only the cut right before normalizer_spec (the last field) leaves a complete, valid model.
  const std::size_t normalizer_start = good.size() - (2 + 14);  // key, length, 14 bytes of spec
  ASSERT_EQ(good[normalizer_start], 0x1A);                     // field 3, length-delimited
  for (std::size_t cut = 0; cut < good.size(); ++cut) {
    const std::string e = error_of(Bytes(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(cut)));
    if (cut == normalizer_start) {
      EXPECT_EQ(e, "no error");
      continue;
    }
    EXPECT_THAT(e, HasSubstr("bad.model")) << "cut at " << cut;
    EXPECT_EQ(e.find('\n'), std::string::npos);
  }
  // Random byte flips: errors or valid models, never a crash.
  std::mt19937 rng(3);
  for (int trial = 0; trial < 2000; ++trial) {
    Bytes b = good;
    for (int k = 0; k < 3; ++k) b[std::uniform_int_distribution<std::size_t>(0, b.size() - 1)(rng)] ^= 1u << (rng() % 8);
    try {
      read_spm_model(b, "flipped.model");
    } catch (const Error&) {
    }
  }
  EXPECT_THAT(error_of(Proto().field_varint(1, 5).bytes),
              HasSubstr("bad.model: ModelProto.pieces (field 1) has wire type varint, expected length-delimited"));
  EXPECT_THAT(error_of(Proto().field_bytes(1, Proto().field_varint(1, 7).bytes).bytes),
              HasSubstr("ModelProto.pieces[0].piece (field 1) has wire type varint"));
  EXPECT_THAT(error_of(Proto().field_bytes(1, Proto().field_varint(2, 7).bytes).bytes),
              HasSubstr("ModelProto.pieces[0].score (field 2) has wire type varint, expected fixed32"));
  EXPECT_THAT(error_of(Proto().key(1, 2).varint(1000).bytes), HasSubstr("claims 1000 bytes at offset 3 but only 0 remain"));
  EXPECT_THAT(error_of(Proto().key(1, 2).varint(~0ull).bytes), HasSubstr("but only 0 remain"));
  Bytes long_varint = {0x28};  // field 5 (skipped), varint
  for (int i = 0; i < 11; ++i) long_varint.push_back(0xFF);
  EXPECT_THAT(error_of(long_varint), HasSubstr("longer than"));
  EXPECT_THAT(error_of(Proto().key(9, 3).bytes), HasSubstr("wire type 3, which protobuf 3 does not use"));
  EXPECT_THAT(error_of(Proto().key(0, 0).varint(1).bytes), HasSubstr("field number 0"));
  EXPECT_THAT(error_of(Proto().field_bytes(1, piece("x", 0, 9)).bytes), HasSubstr("ModelProto.pieces[0].type = 9"));
  EXPECT_THAT(error_of(Proto().field_bytes(1, Proto().field_float(2, 1).bytes).bytes),
              HasSubstr("ModelProto.pieces[0] has no piece text"));
  EXPECT_THAT(error_of(Bytes{}), HasSubstr("ModelProto has no pieces"));
  {
    Proto m = small_model();
    m.field_bytes(2, Proto().field_varint(3, 1).bytes);  // a later trainer_spec merges in: unigram
    EXPECT_THAT(error_of(m.bytes), HasSubstr("model_type = 1 is not supported"));
  }
  {
    Proto m = small_model();
    m.field_bytes(2, Proto().field_varint(40, 99).bytes);
    EXPECT_THAT(error_of(m.bytes), HasSubstr("ModelProto.trainer_spec.unk_id = 99 is out of range (8 pieces)"));
  }
  {
    Proto m = small_model();
    m.field_bytes(3, Proto().field_string(1, "nmt_nfkc").bytes);
    EXPECT_THAT(error_of(m.bytes), HasSubstr("normalizer_spec.name = \"nmt_nfkc\" is not supported"));
  }
  {
    Proto m = small_model();
    m.field_bytes(1, piece("a", -3, 1));  // "a" again
    EXPECT_THAT(error_of(m.bytes), HasSubstr("has \"a\" twice"));
  }
  {
    Proto m = small_model();
    m.field_bytes(2, Proto().field_varint(35, 1).bytes);
    EXPECT_THAT(error_of(m.bytes), HasSubstr("byte_fallback is set but the model has no byte pieces"));
  }
}

// The real Llama-2 tokenizer.model gives the very vocabulary the GGUF converter stored.
TEST(SpmModelFile, Llama2ModelEqualsGgufVocabulary) {
  KILN_REQUIRE_DATA(model_path, "llama2-tokenizer.model");
  KILN_REQUIRE_LLAMA2_TOKENIZER(gguf);
  const Vocab v = load_spm_model_file(model_path);
  const Vocab& g = gguf->vocab();
  EXPECT_EQ(v.size(), 32000);
  EXPECT_TRUE(v.tokens == g.tokens);
  EXPECT_TRUE(v.scores == g.scores);
  EXPECT_TRUE(v.types == g.types);
  EXPECT_EQ(v.unk_id, g.unk_id);
  EXPECT_EQ(v.bos_id, g.bos_id);
  EXPECT_EQ(v.eos_id, g.eos_id);
  EXPECT_EQ(v.add_bos, g.add_bos);
  EXPECT_EQ(v.add_space_prefix, g.add_space_prefix);
  // load_tokenizer_file tells it from other kinds by content.
  EXPECT_NE(dynamic_cast<const SpmTokenizer*>(load_tokenizer_file(model_path).get()), nullptr);
}

std::vector<std::string> first_lines(const std::string& path, std::size_t n) {
  std::ifstream in(path, std::ios::binary);
  std::vector<std::string> lines;
  std::string line;
  while (lines.size() < n && std::getline(in, line)) lines.push_back(line);
  return lines;
}

// Same ids as the GGUF vocabulary on all of War and Peace, and as sentencepiece on its start.
TEST(SpmModelFile, Llama2ModelEncodesLikeGgufAndSentencepiece) {
  KILN_REQUIRE_DATA(model_path, "llama2-tokenizer.model");
  KILN_REQUIRE_DATA(path, "war-and-peace.txt");
  KILN_REQUIRE_LLAMA2_TOKENIZER(gguf);
  const SpmTokenizer tok(load_spm_model_file(model_path));
  const std::vector<std::string> lines = first_lines(path, SIZE_MAX);
  std::size_t mismatches = 0;
  for (std::size_t i = 0; i < lines.size(); ++i) {
    if (tok.encode(lines[i], true, false) != gguf->encode(lines[i], true, false) && ++mismatches <= 5) {
      ADD_FAILURE() << "line " << i + 1;
    }
  }
  EXPECT_EQ(mismatches, 0u);
  constexpr std::size_t kLines = 3000;
  std::string why;
  const auto expected = test::run_spm_reference(fmt::format("encode-lines {} {}", path, kLines), &why);
  if (!expected) GTEST_SKIP() << why;
  ASSERT_EQ(expected->size(), kLines);
  for (std::size_t i = 0; i < kLines; ++i) {
    if (tok.encode(lines[i], false, false) != (*expected)[i].get<Ids>() && ++mismatches <= 5) {
      ADD_FAILURE() << "line " << i + 1 << ": " << lines[i];
    }
  }
  EXPECT_EQ(mismatches, 0u);
}

}  // namespace
}  // namespace kiln
