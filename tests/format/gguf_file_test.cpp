// GgufFile: the real tiny Llama GGUF, every metadata value type, and every rejection, using
// small GGUF files assembled byte by byte in the test.
#include "format/gguf_file.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "core/error.h"
#include "test_support.h"

namespace kiln {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// Appends little-endian scalars and GGUF strings to a byte buffer.
struct ByteWriter {
  std::vector<std::uint8_t> bytes;

  template <typename T>
  ByteWriter& put(T v) {
    const auto* p = reinterpret_cast<const std::uint8_t*>(&v);
    bytes.insert(bytes.end(), p, p + sizeof(T));
    return *this;
  }
  ByteWriter& u8(std::uint8_t v) { return put(v); }
  ByteWriter& u32(std::uint32_t v) { return put(v); }
  ByteWriter& u64(std::uint64_t v) { return put(v); }
  ByteWriter& str(const std::string& s) {
    u64(s.size());
    bytes.insert(bytes.end(), s.begin(), s.end());
    return *this;
  }
  ByteWriter& type(GgufType t) { return u32(static_cast<std::uint32_t>(t)); }
};

// A GGUF file description that writes itself; fields can be set to invalid values on purpose.
struct GgufBuilder {
  struct Tensor {
    std::string name;
    std::vector<std::uint64_t> ne;
    std::uint32_t type = 0;               // ggml id
    std::optional<std::uint64_t> offset;  // default: packed after the previous tensor, aligned
  };

  std::uint32_t magic = 0x46554747;
  std::uint32_t version = 3;
  std::optional<std::uint64_t> n_kv_override, n_tensors_override;
  std::vector<std::function<void(ByteWriter&)>> kvs;  // each writes key, type and value
  std::vector<Tensor> tensors;
  std::uint64_t alignment = 32;             // used for padding; add the key separately
  std::optional<std::uint64_t> data_bytes;  // default: exactly the tensors' extent

  GgufBuilder& kv(const std::string& key, GgufType t, std::function<void(ByteWriter&)> value) {
    kvs.push_back([key, t, value](ByteWriter& w) {
      w.str(key).type(t);
      value(w);
    });
    return *this;
  }
  GgufBuilder& kv_u32(const std::string& key, std::uint32_t v) {
    return kv(key, GgufType::U32, [v](ByteWriter& w) { w.u32(v); });
  }
  GgufBuilder& kv_string(const std::string& key, const std::string& v) {
    return kv(key, GgufType::String, [v](ByteWriter& w) { w.str(v); });
  }
  GgufBuilder& tensor(const std::string& name, std::vector<std::uint64_t> ne, std::uint32_t type = 0,
                      std::optional<std::uint64_t> offset = std::nullopt) {
    tensors.push_back({name, std::move(ne), type, offset});
    return *this;
  }

  static std::uint64_t tensor_bytes(const Tensor& t) {
    std::uint64_t n = 1;
    for (std::uint64_t d : t.ne) n *= d;
    if (auto tr = dtype_traits(t.type)) return n / tr->block_size * tr->block_bytes;
    return 0;
  }

  std::vector<std::uint8_t> build() const {
    ByteWriter w;
    w.u32(magic).u32(version);
    w.u64(n_tensors_override.value_or(tensors.size()));
    w.u64(n_kv_override.value_or(kvs.size()));
    for (const auto& write_kv : kvs) write_kv(w);
    std::uint64_t next = 0, end = 0;
    for (const Tensor& t : tensors) {
      w.str(t.name).u32(static_cast<std::uint32_t>(t.ne.size()));
      for (std::uint64_t d : t.ne) w.u64(d);
      const std::uint64_t offset = t.offset.value_or(next);
      w.u32(t.type).u64(offset);
      const std::uint64_t n = tensor_bytes(t);
      end = std::max(end, offset + n);
      next = (offset + n + alignment - 1) / alignment * alignment;
    }
    while (w.bytes.size() % alignment != 0) w.u8(0);
    const std::uint64_t data = data_bytes.value_or(end);
    for (std::uint64_t i = 0; i < data; ++i) w.u8(static_cast<std::uint8_t>(i));
    return w.bytes;
  }
};

std::string write_file(const std::vector<std::uint8_t>& bytes, const std::string& name = "t.gguf") {
  const std::string path = test::temp_dir() + "/" + name;
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  return path;
}

// The kiln::Error message of opening these bytes, or "(opened)" if they were accepted.
std::string open_error(const std::vector<std::uint8_t>& bytes) {
  const std::string path = write_file(bytes, "bad.gguf");
  try {
    GgufFile::open(path);
  } catch (const Error& e) {
    const std::string message = e.what();
    EXPECT_THAT(message, HasSubstr(path)) << "the message names the file";
    EXPECT_THAT(message, Not(HasSubstr("\n"))) << "the message is one line";
    return message;
  }
  return "(opened)";
}

std::unique_ptr<GgufFile> open_bytes(const std::vector<std::uint8_t>& bytes) {
  return GgufFile::open(write_file(bytes, "good.gguf"));
}

// A small valid model: one KV, two f32 tensors and a q8_0 tensor.
GgufBuilder small_model() {
  GgufBuilder b;
  b.kv_string("general.architecture", "llama");
  b.tensor("a", {4, 2}, 0).tensor("b", {3}, 0).tensor("q", {32, 2}, 8);
  return b;
}

TEST(GgufFile, OpensTheTinyLlamaFile) {
  KILN_REQUIRE_DATA(path, "llama-2-tiny-random.gguf");
  auto f = GgufFile::open(path);
  EXPECT_EQ(f->version(), 3u);
  EXPECT_EQ(f->alignment(), 32u);
  EXPECT_EQ(f->data_offset() % 32, 0u);
  EXPECT_EQ(f->metadata().size(), 18u);
  EXPECT_EQ(f->metadata().front().first, "general.architecture");
  EXPECT_EQ(f->get_string("general.architecture"), "llama");
  EXPECT_EQ(f->get_int("llama.embedding_length"), 8);
  EXPECT_EQ(f->get_int("llama.block_count"), 1);
  EXPECT_EQ(f->get_int("llama.feed_forward_length"), 32);
  EXPECT_EQ(f->get_int("llama.attention.head_count"), 2);
  EXPECT_NEAR(*f->get_float("llama.attention.layer_norm_rms_epsilon"), 1e-5, 1e-10);
  EXPECT_EQ(f->find("llama.attention.layer_norm_rms_epsilon")->type, GgufType::F32);
  EXPECT_EQ(f->get_int("missing.key"), std::nullopt);

  const GgufArray* tokens = f->get_array("tokenizer.ggml.tokens");
  ASSERT_NE(tokens, nullptr);
  EXPECT_EQ(tokens->elem_type, GgufType::String);
  ASSERT_EQ(tokens->size(), 32000u);
  EXPECT_EQ(tokens->strings[0], "<unk>");
  EXPECT_EQ(tokens->strings[1], "<s>");
  EXPECT_EQ(tokens->strings[3], "<0x00>");
  EXPECT_EQ(f->get_array("tokenizer.ggml.scores")->floats.size(), 32000u);
  const GgufArray* types = f->get_array("tokenizer.ggml.token_type");
  ASSERT_EQ(types->ints.size(), 32000u);
  EXPECT_EQ(types->ints[0], 2);  // unknown
  EXPECT_EQ(types->ints[1], 3);  // control

  // Typed getters name the key when the stored type is another.
  try {
    f->get_int("general.architecture");
    ADD_FAILURE() << "get_int accepted a string";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("general.architecture"));
    EXPECT_THAT(e.what(), HasSubstr("string"));
  }
  EXPECT_THROW(f->get_string("llama.block_count"), Error);
  EXPECT_THROW(f->get_array("general.name"), Error);

  ASSERT_EQ(f->tensors().size(), 12u);
  const GgufTensorInfo* emb = f->find_tensor("token_embd.weight");
  ASSERT_NE(emb, nullptr);
  EXPECT_EQ(emb->dtype, DType::F16);
  EXPECT_EQ(emb->n_dims, 2);
  EXPECT_EQ(emb->ne[0], 8);
  EXPECT_EQ(emb->ne[1], 32000);
  EXPECT_EQ(emb->n_bytes, 8u * 32000u * 2u);
  const TensorView view = f->tensor_view(*emb);
  EXPECT_EQ(view.n_bytes(), emb->n_bytes);
  EXPECT_EQ(static_cast<const std::uint8_t*>(view.data), f->mapped_file().data() + f->data_offset() + emb->offset);

  const GgufTensorInfo* norm = f->find_tensor("blk.0.attn_norm.weight");
  ASSERT_NE(norm, nullptr);
  EXPECT_EQ(norm->dtype, DType::F32);
  EXPECT_EQ(norm->n_dims, 1);
  const auto* w = static_cast<const float*>(f->tensor_view(*norm).data);
  for (int i = 0; i < 8; ++i) EXPECT_TRUE(std::isfinite(w[i]));
  EXPECT_EQ(f->find_tensor("no.such.tensor"), nullptr);

  // The tensors tile the data section up to the end of the file.
  std::uint64_t end = 0;
  for (const GgufTensorInfo& t : f->tensors()) end = std::max(end, t.offset + t.n_bytes);
  EXPECT_EQ(f->data_offset() + end, f->file_size());
}

TEST(GgufFile, ReadsEveryValueType) {
  GgufBuilder b;
  b.kv("u8", GgufType::U8, [](ByteWriter& w) { w.u8(200); });
  b.kv("i8", GgufType::I8, [](ByteWriter& w) { w.put<std::int8_t>(-5); });
  b.kv("u16", GgufType::U16, [](ByteWriter& w) { w.put<std::uint16_t>(65535); });
  b.kv("i16", GgufType::I16, [](ByteWriter& w) { w.put<std::int16_t>(-30000); });
  b.kv("u32", GgufType::U32, [](ByteWriter& w) { w.u32(4000000000u); });
  b.kv("i32", GgufType::I32, [](ByteWriter& w) { w.put<std::int32_t>(-2000000000); });
  b.kv("f32", GgufType::F32, [](ByteWriter& w) { w.put<float>(0.25f); });
  b.kv("bool", GgufType::Bool, [](ByteWriter& w) { w.u8(1); });
  b.kv("string", GgufType::String, [](ByteWriter& w) { w.str("h\xc3\xa9llo"); });
  b.kv("u64", GgufType::U64, [](ByteWriter& w) { w.u64(18446744073709551615ull); });
  b.kv("u64small", GgufType::U64, [](ByteWriter& w) { w.u64(7); });
  b.kv("i64", GgufType::I64, [](ByteWriter& w) { w.put<std::int64_t>(-9000000000000000000ll); });
  b.kv("f64", GgufType::F64, [](ByteWriter& w) { w.put<double>(-1.5e300); });
  b.kv("arr_i16", GgufType::Array, [](ByteWriter& w) {
    w.type(GgufType::I16).u64(3).put<std::int16_t>(-1).put<std::int16_t>(2).put<std::int16_t>(-3);
  });
  b.kv("arr_u64", GgufType::Array,
       [](ByteWriter& w) { w.type(GgufType::U64).u64(2).u64(1).u64(18446744073709551615ull); });
  b.kv("arr_bool", GgufType::Array, [](ByteWriter& w) { w.type(GgufType::Bool).u64(2).u8(0).u8(1); });
  b.kv("arr_f32", GgufType::Array, [](ByteWriter& w) { w.type(GgufType::F32).u64(2).put<float>(1.5f).put<float>(-2); });
  b.kv("arr_f64", GgufType::Array, [](ByteWriter& w) { w.type(GgufType::F64).u64(1).put<double>(3.25); });
  b.kv("arr_str", GgufType::Array, [](ByteWriter& w) { w.type(GgufType::String).u64(3).str("a").str("").str("ccc"); });
  b.kv("arr_empty", GgufType::Array, [](ByteWriter& w) { w.type(GgufType::U8).u64(0); });
  b.kv("arr_nested", GgufType::Array, [](ByteWriter& w) {
    w.type(GgufType::Array).u64(2);
    w.type(GgufType::U8).u64(2).u8(9).u8(8);
    w.type(GgufType::String).u64(1).str("x");
  });
  auto f = open_bytes(b.build());

  EXPECT_EQ(f->get_int("u8"), 200);
  EXPECT_EQ(f->get_int("i8"), -5);
  EXPECT_EQ(f->get_int("u16"), 65535);
  EXPECT_EQ(f->get_int("i16"), -30000);
  EXPECT_EQ(f->get_int("u32"), 4000000000ll);
  EXPECT_EQ(f->get_int("i32"), -2000000000);
  EXPECT_EQ(f->get_float("f32"), 0.25);
  EXPECT_EQ(f->get_bool("bool"), true);
  EXPECT_EQ(f->get_string("string"), "h\xc3\xa9llo");
  EXPECT_EQ(f->get_int("u64small"), 7);
  EXPECT_EQ(f->get_int("i64"), -9000000000000000000ll);
  EXPECT_EQ(f->get_float("f64"), -1.5e300);
  for (const char* key : {"u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "u64", "i64", "f64"})
    EXPECT_EQ(gguf_type_name(f->find(key)->type), key);

  // A u64 above INT64_MAX keeps its value but is not an int64.
  const GgufValue* big = f->find("u64");
  EXPECT_EQ(std::get<std::uint64_t>(big->v), 18446744073709551615ull);
  EXPECT_EQ(big->as_int(), std::nullopt);
  EXPECT_THAT(
      [&] {
        try {
          f->get_int("u64");
        } catch (const Error& e) {
          return std::string(e.what());
        }
        return std::string("(no error)");
      }(),
      HasSubstr("'u64'"));
  EXPECT_EQ(f->get_float("u64"), 18446744073709551615.0);

  EXPECT_EQ(f->get_array("arr_i16")->ints, (std::vector<std::int64_t>{-1, 2, -3}));
  EXPECT_EQ(static_cast<std::uint64_t>(f->get_array("arr_u64")->ints[1]), 18446744073709551615ull);
  EXPECT_EQ(f->get_array("arr_bool")->ints, (std::vector<std::int64_t>{0, 1}));
  EXPECT_EQ(f->get_array("arr_bool")->elem_type, GgufType::Bool);
  EXPECT_EQ(f->get_array("arr_f32")->floats, (std::vector<double>{1.5, -2.0}));
  EXPECT_EQ(f->get_array("arr_f64")->floats, (std::vector<double>{3.25}));
  EXPECT_EQ(f->get_array("arr_str")->strings, (std::vector<std::string>{"a", "", "ccc"}));
  EXPECT_EQ(f->get_array("arr_empty")->size(), 0u);
  const GgufArray* nested = f->get_array("arr_nested");
  ASSERT_EQ(nested->size(), 2u);
  EXPECT_EQ(nested->arrays[0].as_array()->ints, (std::vector<std::int64_t>{9, 8}));
  EXPECT_EQ(nested->arrays[1].as_array()->strings, (std::vector<std::string>{"x"}));

  // Metadata keeps file order.
  EXPECT_EQ(f->metadata()[0].first, "u8");
  EXPECT_EQ(f->metadata().back().first, "arr_nested");

  // Wrong-type getters name the key.
  for (const char* key : {"string", "arr_str"}) {
    try {
      f->get_float(key);
      ADD_FAILURE() << key;
    } catch (const Error& e) {
      EXPECT_THAT(e.what(), HasSubstr(key));
    }
  }
  EXPECT_THROW(f->get_bool("u8"), Error);  // 200 is no bool
  EXPECT_THROW(f->get_bool("arr_empty"), Error);
  EXPECT_EQ(f->get_bool("missing"), std::nullopt);
  EXPECT_THROW(f->get_int("f32"), Error);
  EXPECT_THROW(f->get_string("u8"), Error);
  EXPECT_THROW(f->get_array("u8"), Error);
}

TEST(GgufFile, AcceptsVersion2AndHonoursAlignment) {
  GgufBuilder b = small_model();
  b.version = 2;
  b.alignment = 64;
  b.kv_u32("general.alignment", 64);
  auto f = open_bytes(b.build());
  EXPECT_EQ(f->version(), 2u);
  EXPECT_EQ(f->alignment(), 64u);
  EXPECT_EQ(f->data_offset() % 64, 0u);
  EXPECT_EQ(f->find_tensor("b")->offset, 64u);
  EXPECT_EQ(f->find_tensor("q")->offset, 128u);
  EXPECT_EQ(f->find_tensor("q")->n_bytes, 2u * 34u);
  const TensorView a = f->tensor_view(*f->find_tensor("a"));
  EXPECT_EQ(a.ne[0], 4);
  EXPECT_EQ(a.ne[1], 2);
  EXPECT_EQ(a.nb[1], 16u);
}

TEST(GgufFile, OpensAFileWithoutTensors) {
  GgufBuilder b;
  b.kv_string("general.name", "empty");
  auto bytes = b.build();
  // An unpadded end right after the metadata is accepted when there are no tensors.
  ByteWriter w;
  w.u32(0x46554747).u32(3).u64(0).u64(1).str("k").type(GgufType::U8).u8(1);
  auto f = open_bytes(w.bytes);
  EXPECT_TRUE(f->tensors().empty());
  EXPECT_EQ(f->data_offset(), w.bytes.size());
  EXPECT_EQ(open_bytes(bytes)->get_string("general.name"), "empty");
}

TEST(GgufFile, RejectsBadMagicAndVersions) {
  GgufBuilder b = small_model();
  b.magic = 0x4c4d4747;  // "GGML"
  EXPECT_THAT(open_error(b.build()), HasSubstr("not a GGUF file (magic 0x4c4d4747"));
  EXPECT_THAT(open_error({'G', 'G'}), HasSubstr("not a GGUF file"));
  EXPECT_THAT(open_error({}), HasSubstr("not a GGUF file"));
  b = small_model();
  b.version = 1;
  EXPECT_THAT(open_error(b.build()), HasSubstr("version 1 is not supported (expected 2 or 3)"));
  b.version = 4;
  EXPECT_THAT(open_error(b.build()), HasSubstr("version 4 is not supported"));
  b.version = 0x03000000;
  EXPECT_THAT(open_error(b.build()), HasSubstr("big-endian"));
}

TEST(GgufFile, RejectsEveryTruncation) {
  // The last tensor ends exactly at the end of the file, so every proper prefix is invalid.
  GgufBuilder b = small_model();
  b.kv("arr", GgufType::Array, [](ByteWriter& w) { w.type(GgufType::String).u64(2).str("xy").str("z"); });
  const std::vector<std::uint8_t> full = b.build();
  ASSERT_NO_THROW(open_bytes(full));
  for (std::size_t n = 0; n < full.size(); ++n) {
    const std::vector<std::uint8_t> prefix(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(n));
    EXPECT_NE(open_error(prefix), "(opened)") << "prefix of " << n << " bytes";
  }
  // Spot checks that the message names the section where the file ends.
  auto cut = [&](std::size_t n) { return std::vector<std::uint8_t>(full.begin(), full.begin() + n); };
  EXPECT_THAT(open_error(cut(6)), HasSubstr("version"));
  EXPECT_THAT(open_error(cut(12)), HasSubstr("n_tensors"));
  EXPECT_THAT(open_error(cut(20)), HasSubstr("n_kv"));
  EXPECT_THAT(open_error(cut(30)), HasSubstr("n_kv = 2 cannot fit in the 6 bytes left"));
  EXPECT_THAT(open_error(cut(24 + 8 + 20 + 4 + 3)), HasSubstr("metadata 'general.architecture' value"));
  EXPECT_THAT(open_error(cut(full.size() - 1)), HasSubstr("runs past the data section"));
  GgufBuilder long_key;
  long_key.kv_string(std::string(100, 'k'), "v");
  const std::vector<std::uint8_t> long_full = long_key.build();
  EXPECT_THAT(open_error(std::vector<std::uint8_t>(long_full.begin(), long_full.begin() + 24 + 8 + 50)),
              HasSubstr("metadata #0 key is truncated at offset 32 (needs 100 bytes, 50 left)"));
}

TEST(GgufFile, RejectsHugeCounts) {
  GgufBuilder b = small_model();
  b.n_kv_override = 1ull << 60;
  EXPECT_THAT(open_error(b.build()), HasSubstr("n_kv"));
  b = small_model();
  b.n_tensors_override = 0xffffffffffffffffull;
  EXPECT_THAT(open_error(b.build()), HasSubstr("n_tensors"));
  b = small_model();
  b.kv("tokens", GgufType::Array, [](ByteWriter& w) { w.type(GgufType::String).u64(1ull << 62); });
  EXPECT_THAT(open_error(b.build()), HasSubstr("metadata 'tokens' value"));
  b = small_model();
  b.kv("ints", GgufType::Array, [](ByteWriter& w) { w.type(GgufType::U64).u64(0x2000000000000001ull).u64(1); });
  EXPECT_THAT(open_error(b.build()), HasSubstr("metadata 'ints' value"));
  b = small_model();
  b.kv("s", GgufType::String, [](ByteWriter& w) { w.u64(0xfffffffffffffff0ull); });
  EXPECT_THAT(open_error(b.build()), HasSubstr("metadata 's' value"));
  ByteWriter w;
  w.u32(0x46554747).u32(3).u64(0).u64(1).u64(1ull << 63).u64(0);  // key length, then a few bytes
  EXPECT_THAT(open_error(w.bytes), HasSubstr("metadata #0 key"));
}

TEST(GgufFile, RejectsBadMetadata) {
  GgufBuilder b = small_model();
  b.kv("bad", static_cast<GgufType>(13), [](ByteWriter& w) { w.u8(0); });
  EXPECT_THAT(open_error(b.build()), HasSubstr("metadata 'bad' type has unknown value type 13"));
  b = small_model();
  b.kv("arr", GgufType::Array, [](ByteWriter& w) { w.u32(99).u64(0); });
  EXPECT_THAT(open_error(b.build()), HasSubstr("metadata 'arr' value has unknown value type 99"));
  b = small_model();
  b.kv("flag", GgufType::Bool, [](ByteWriter& w) { w.u8(2); });
  EXPECT_THAT(open_error(b.build()), HasSubstr("metadata 'flag' value is a bool stored as 2"));
  b = small_model();
  b.kv_u32("general.architecture", 1);
  EXPECT_THAT(open_error(b.build()), HasSubstr("'general.architecture' appears twice"));
  b = small_model();
  b.kv_u32("a\nb", 1).kv_u32("a\nb", 2);  // control bytes are escaped: the message stays one line
  EXPECT_THAT(open_error(b.build()), HasSubstr("metadata 'a\\x0ab' appears twice"));
  b = small_model();
  b.kv_u32("", 1);
  EXPECT_THAT(open_error(b.build()), HasSubstr("key is empty"));
  b = small_model();
  b.kv("deep", GgufType::Array, [](ByteWriter& w) {
    for (int i = 0; i < 100; ++i) w.type(GgufType::Array).u64(1);
    w.type(GgufType::U8).u64(0);
  });
  EXPECT_THAT(open_error(b.build()), HasSubstr("metadata 'deep' value nests arrays deeper"));
}

TEST(GgufFile, RejectsBadAlignment) {
  for (std::uint32_t bad : {0u, 3u, 48u}) {
    GgufBuilder b = small_model();
    b.kv_u32("general.alignment", bad);
    EXPECT_THAT(open_error(b.build()), HasSubstr("'general.alignment' = " + std::to_string(bad)));
  }
  GgufBuilder b = small_model();
  b.kv_string("general.alignment", "32");
  EXPECT_THAT(open_error(b.build()), HasSubstr("'general.alignment' has type string"));
}

TEST(GgufFile, RejectsBadTensorShapes) {
  GgufBuilder b;
  b.tensor("t", {}, 0);
  EXPECT_THAT(open_error(b.build()), HasSubstr("tensor 't' n_dims = 0"));
  b.tensors = {};
  b.tensor("t", {1, 1, 1, 1, 1}, 0);
  EXPECT_THAT(open_error(b.build()), HasSubstr("tensor 't' n_dims = 5"));
  b.tensors = {};
  b.tensor("t", {4, 0}, 0, 0);
  EXPECT_THAT(open_error(b.build()), HasSubstr("tensor 't' ne[1] = 0"));
  b.tensors = {};
  b.tensor("t", {1ull << 63, 1}, 0, 0);
  EXPECT_THAT(open_error(b.build()), HasSubstr("tensor 't' ne[0]"));
  b.tensors = {};
  b.tensor("t", {1ull << 40, 1ull << 40}, 0, 0);
  b.data_bytes = 0;
  EXPECT_THAT(open_error(b.build()), HasSubstr("tensor 't' shape overflows"));
  b = GgufBuilder();
  b.tensor("t", {1ull << 61, 2}, 0, 0);  // element count fits, byte size does not
  b.data_bytes = 0;
  EXPECT_THAT(open_error(b.build()), HasSubstr("tensor 't' byte size overflows"));
  b = GgufBuilder();
  b.tensor("q", {16, 2}, 2);  // q4_0 rows must hold whole 32-element blocks
  EXPECT_THAT(open_error(b.build()), HasSubstr("tensor 'q' ne[0] = 16 is not a multiple of q4_0's block size 32"));
  b = GgufBuilder();
  b.tensor("", {4}, 0);
  EXPECT_THAT(open_error(b.build()), HasSubstr("tensor #0 name is empty"));
}

TEST(GgufFile, RejectsBadTensorPlacement) {
  GgufBuilder b = small_model();
  b.tensors[1].offset = 4;
  EXPECT_THAT(open_error(b.build()), HasSubstr("tensor 'b' offset 4 is not a multiple of the alignment 32"));
  b = small_model();
  b.tensors[1].offset = 0;
  EXPECT_THAT(open_error(b.build()), HasSubstr("overlaps tensor"));
  b = small_model();
  b.tensor("a", {4}, 0);
  EXPECT_THAT(open_error(b.build()), HasSubstr("tensor 'a' appears twice"));
  b = small_model();
  b.tensors[2].offset = 1ull << 40;
  b.data_bytes = 200;
  EXPECT_THAT(open_error(b.build()),
              HasSubstr("tensor 'q' offset 1099511627776 + 68 bytes runs past the data section"));
  b = small_model();
  b.tensors[2].offset = 0xffffffffffffffe0ull;  // offset + size wraps around 2^64
  b.data_bytes = 200;
  EXPECT_THAT(open_error(b.build()), HasSubstr("tensor 'q' offset"));
  b = small_model();
  b.data_bytes = 0;  // tensor infos promise data that is not there
  EXPECT_THAT(open_error(b.build()), HasSubstr("runs past the data section"));
}

TEST(GgufFile, RecordsUnknownTensorTypes) {
  GgufBuilder b = small_model();
  b.tensor("iq", {256, 2}, 16, 192);  // iq2_xxs: 66 bytes per 256 elements
  b.tensor("future", {8}, 99, 352);
  b.data_bytes = 384;
  auto f = open_bytes(b.build());
  const GgufTensorInfo* iq = f->find_tensor("iq");
  ASSERT_NE(iq, nullptr);
  EXPECT_EQ(iq->ggml_type, 16u);
  EXPECT_FALSE(iq->dtype.has_value());
  EXPECT_EQ(iq->n_bytes, 132u);
  try {
    f->tensor_view(*iq);
    ADD_FAILURE() << "tensor_view accepted iq2_xxs";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("iq2_xxs"));
    EXPECT_THAT(e.what(), HasSubstr("'iq'"));
  }
  const GgufTensorInfo* future = f->find_tensor("future");
  EXPECT_FALSE(future->dtype.has_value());
  EXPECT_THROW(f->tensor_view(*future), Error);

  // Known-geometry foreign types are still checked for bounds and overlap.
  b.tensors[3].offset = 128;
  EXPECT_THAT(open_error(b.build()), HasSubstr("overlaps"));
  b = small_model();
  b.tensor("iq", {255}, 16);
  EXPECT_THAT(open_error(b.build()), HasSubstr("iq2_xxs's block size 256"));
  // A tensor of unknown size must still start inside the data section.
  b = small_model();
  b.tensor("future", {8}, 99, 4096);
  EXPECT_THAT(open_error(b.build()), HasSubstr("tensor 'future' offset 4096"));
}

}  // namespace
}  // namespace kiln
