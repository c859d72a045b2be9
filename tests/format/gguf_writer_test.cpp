// GgufWriter: byte-exact round trips (the real tiny Llama GGUF, a file with every metadata type),
// alignment and padding, the temporary file on failure, and every rejected input.
#include "format/gguf_writer.h"

#include <dirent.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "test_support.h"

namespace kiln {
namespace {

using ::testing::HasSubstr;

// A fresh empty directory per test, so listings are exact.
std::string fresh_dir(const std::string& name) {
  const std::string dir = test::temp_dir() + "/" + name;
  ::mkdir(dir.c_str(), 0755);
  for (const std::string& f : test::list_dir(dir)) ::unlink((dir + "/" + f).c_str());
  return dir;
}

// A string with an embedded NUL and multi-byte UTF-8.
const std::string kOddString("nul\0inside, \xc3\xbc" "n\xc3\xaf" "c\xc3\xb6" "d\xc3\xa9", 23);

GgufTensorProducer bytes_of(std::vector<std::uint8_t> data) {
  return [data = std::move(data)](GgufDataSink& out) { out.write(data.data(), data.size()); };
}

std::vector<std::uint8_t> pattern(std::size_t n, std::uint8_t seed) {
  std::vector<std::uint8_t> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<std::uint8_t>(seed + i * 7);
  return v;
}

TEST(GgufWriter, RoundTripOfTheTinyLlamaIsByteIdentical) {
  KILN_REQUIRE_DATA(model, "llama-2-tiny-random.gguf");
  const std::string dir = fresh_dir("roundtrip");
  auto file = GgufFile::open(model);

  // Copy with the file's own offsets.
  GgufWriter copy;
  copy_gguf_into(*file, copy);
  copy.write(dir + "/copy.gguf");
  EXPECT_TRUE(test::read_file(dir + "/copy.gguf") == test::read_file(model)) << "copy_gguf_into differs from the original";

  // Rebuilt through the public API with ggml's packing (no explicit offsets): llama.cpp wrote
  // this file, so its layout must come out the same.
  GgufWriter rebuilt;
  for (const auto& [k, v] : file->metadata()) rebuilt.add_metadata(k, v);
  for (const GgufTensorInfo& t : file->tensors()) {
    const std::uint8_t* src = file->mapped_file().data() + file->data_offset() + t.offset;
    rebuilt.add_tensor(GgufTensorSpec(t.name, *t.dtype, t.n_dims, t.ne),
                       [src, n = t.n_bytes](GgufDataSink& out) { out.write(src, n); });
  }
  rebuilt.write(dir + "/rebuilt.gguf");
  EXPECT_TRUE(test::read_file(dir + "/rebuilt.gguf") == test::read_file(model)) << "ggml packing differs from the original";
  EXPECT_THAT(test::list_dir(dir), ::testing::UnorderedElementsAre("copy.gguf", "rebuilt.gguf"));
}

// A writer holding every metadata value type, nested arrays, extremes, and tensors of several types.
GgufWriter every_type_writer(std::uint32_t alignment) {
  using namespace gguf_value;
  GgufWriter w;
  w.add_metadata("general.architecture", string("llama"));
  w.add_metadata("general.alignment", u32(alignment));
  w.add_metadata("t.u8", u8(255));
  w.add_metadata("t.i8", i8(-128));
  w.add_metadata("t.u16", u16(65535));
  w.add_metadata("t.i16", i16(-32768));
  w.add_metadata("t.u32", u32(0xffffffffu));
  w.add_metadata("t.i32", i32(std::numeric_limits<std::int32_t>::min()));
  w.add_metadata("t.u64", u64(std::numeric_limits<std::uint64_t>::max()));
  w.add_metadata("t.u64small", u64(7));
  w.add_metadata("t.i64", i64(std::numeric_limits<std::int64_t>::min()));
  w.add_metadata("t.f32", f32(-1.5e-7f));
  w.add_metadata("t.f64", f64(3.141592653589793));
  w.add_metadata("t.bool", boolean(true));
  w.add_metadata("t.string", string(kOddString));
  w.add_metadata("t.empty_string", string(""));
  const auto ints = [](GgufType t, std::vector<std::int64_t> v) {
    GgufArray a;
    a.elem_type = t;
    a.ints = std::move(v);
    return a;
  };
  w.add_metadata("a.u8", array(ints(GgufType::U8, {0, 1, 255})));
  w.add_metadata("a.i8", array(ints(GgufType::I8, {-128, 127})));
  w.add_metadata("a.u16", array(ints(GgufType::U16, {65535})));
  w.add_metadata("a.i16", array(ints(GgufType::I16, {-32768, 5})));
  w.add_metadata("a.u32", array(ints(GgufType::U32, {0xffffffffLL, 3})));
  w.add_metadata("a.i32", array(ints(GgufType::I32, {-2147483648LL, 2147483647LL})));
  w.add_metadata("a.u64", array(ints(GgufType::U64, {-1, 9})));  // -1: the bits of UINT64_MAX
  w.add_metadata("a.i64", array(ints(GgufType::I64, {std::numeric_limits<std::int64_t>::min(), 0})));
  w.add_metadata("a.bool", array(ints(GgufType::Bool, {1, 0, 1})));
  GgufArray f32s;
  f32s.elem_type = GgufType::F32;
  f32s.floats = {0.0, -2.5, static_cast<double>(1e-30f), std::numeric_limits<double>::infinity()};
  w.add_metadata("a.f32", array(f32s));
  GgufArray f64s;
  f64s.elem_type = GgufType::F64;
  f64s.floats = {1e300, -0.0};
  w.add_metadata("a.f64", array(f64s));
  GgufArray strings;
  strings.elem_type = GgufType::String;
  strings.strings = {"a", "", "▁the"};
  w.add_metadata("a.string", array(strings));
  GgufArray empty;
  empty.elem_type = GgufType::U32;
  w.add_metadata("a.empty", array(empty));
  // An array of arrays of arrays (of strings, then of ints).
  GgufArray inner;
  inner.elem_type = GgufType::Array;
  inner.arrays = {array(strings), array(ints(GgufType::I16, {1, -1}))};
  GgufArray outer;
  outer.elem_type = GgufType::Array;
  outer.arrays = {array(inner), array(empty)};
  w.add_metadata("a.nested", array(outer));

  w.add_tensor(GgufTensorSpec("norm.weight", DType::F32, 1, {3, 1, 1, 1}), bytes_of(pattern(12, 1)));
  w.add_tensor(GgufTensorSpec("m.f16", DType::F16, 2, {5, 3, 1, 1}), bytes_of(pattern(30, 2)));
  w.add_tensor(GgufTensorSpec("m.q4_0", DType::Q4_0, 2, {64, 2, 1, 1}), bytes_of(pattern(2 * 36, 3)));
  w.add_tensor(GgufTensorSpec("m.q6_k", DType::Q6_K, 3, {256, 1, 2, 1}), bytes_of(pattern(2 * 210, 4)));
  w.add_tensor(GgufTensorSpec("m.bf16", DType::BF16, 4, {1, 2, 1, 3}), bytes_of(pattern(12, 5)));
  return w;
}

TEST(GgufWriter, EveryMetadataTypeReadsBackAndRoundTripsByteForByte) {
  const std::string dir = fresh_dir("every_type");
  for (std::uint32_t alignment : {32u, 64u, 1u}) {
    SCOPED_TRACE(alignment);
    const std::string path = dir + "/every.gguf";
    every_type_writer(alignment).write(path);
    auto f = GgufFile::open(path);
    EXPECT_EQ(f->version(), 3u);
    EXPECT_EQ(f->alignment(), alignment);
    EXPECT_EQ(f->data_offset() % alignment, 0u);
    ASSERT_EQ(f->metadata().size(), 30u);
    EXPECT_EQ(f->get_int("t.u8"), 255);
    EXPECT_EQ(f->get_int("t.i8"), -128);
    EXPECT_EQ(f->get_int("t.u16"), 65535);
    EXPECT_EQ(f->get_int("t.i16"), -32768);
    EXPECT_EQ(f->get_int("t.u32"), 0xffffffffLL);
    EXPECT_EQ(f->get_int("t.i32"), std::numeric_limits<std::int32_t>::min());
    EXPECT_EQ(std::get<std::uint64_t>(f->find("t.u64")->v), std::numeric_limits<std::uint64_t>::max());
    EXPECT_EQ(f->get_int("t.u64small"), 7);
    EXPECT_EQ(f->find("t.u64small")->type, GgufType::U64);
    EXPECT_EQ(f->get_int("t.i64"), std::numeric_limits<std::int64_t>::min());
    EXPECT_EQ(f->get_float("t.f32"), static_cast<double>(-1.5e-7f));
    EXPECT_EQ(f->get_float("t.f64"), 3.141592653589793);
    EXPECT_EQ(f->get_bool("t.bool"), true);
    EXPECT_EQ(f->get_string("t.string"), kOddString);
    EXPECT_EQ(f->get_string("t.empty_string"), "");
    EXPECT_EQ(f->get_array("a.u64")->ints, (std::vector<std::int64_t>{-1, 9}));
    EXPECT_EQ(f->get_array("a.i32")->ints, (std::vector<std::int64_t>{-2147483648LL, 2147483647LL}));
    EXPECT_EQ(f->get_array("a.bool")->ints, (std::vector<std::int64_t>{1, 0, 1}));
    EXPECT_TRUE(std::isinf(f->get_array("a.f32")->floats[3]));
    EXPECT_TRUE(std::signbit(f->get_array("a.f64")->floats[1]));
    EXPECT_EQ(f->get_array("a.string")->strings, (std::vector<std::string>{"a", "", "▁the"}));
    EXPECT_EQ(f->get_array("a.empty")->size(), 0u);
    const GgufArray* nested = f->get_array("a.nested");
    ASSERT_EQ(nested->arrays.size(), 2u);
    const GgufArray* inner = nested->arrays[0].as_array();
    ASSERT_EQ(inner->arrays.size(), 2u);
    EXPECT_EQ(inner->arrays[0].as_array()->strings[2], "▁the");
    EXPECT_EQ(inner->arrays[1].as_array()->ints, (std::vector<std::int64_t>{1, -1}));

    // Tensors: packed in order, each at a multiple of the alignment, bytes intact.
    ASSERT_EQ(f->tensors().size(), 5u);
    std::uint64_t expect_offset = 0;
    for (const GgufTensorInfo& t : f->tensors()) {
      EXPECT_EQ(t.offset, expect_offset) << t.name;
      EXPECT_EQ(t.offset % alignment, 0u);
      expect_offset = (t.offset + t.n_bytes + alignment - 1) / alignment * alignment;
    }
    EXPECT_EQ(f->file_size(), f->data_offset() + expect_offset) << "the last tensor is padded too";
    const GgufTensorInfo* q6 = f->find_tensor("m.q6_k");
    EXPECT_EQ(q6->n_dims, 3);
    EXPECT_EQ(std::memcmp(f->mapped_file().data() + f->data_offset() + q6->offset, pattern(420, 4).data(), 420), 0);

    // Header bytes by hand: magic, version, counts.
    const std::string bytes = test::read_file(path);
    EXPECT_EQ(bytes.substr(0, 4), "GGUF");
    std::uint32_t version;
    std::uint64_t n_tensors, n_kv;
    std::memcpy(&version, bytes.data() + 4, 4);
    std::memcpy(&n_tensors, bytes.data() + 8, 8);
    std::memcpy(&n_kv, bytes.data() + 16, 8);
    EXPECT_EQ(version, 3u);
    EXPECT_EQ(n_tensors, 5u);
    EXPECT_EQ(n_kv, 30u);

    // Read by kiln and written back unchanged: the same bytes.
    GgufWriter again;
    copy_gguf_into(*f, again);
    again.write(dir + "/again.gguf");
    EXPECT_TRUE(test::read_file(dir + "/again.gguf") == bytes);
  }
}

TEST(GgufWriter, ReproducesForeignLayoutsGapsOrderAndUnpaddedEnd) {
  const std::string dir = fresh_dir("foreign");
  GgufWriter w;
  w.add_metadata("general.architecture", gguf_value::string("x"));
  GgufTensorSpec a("a", DType::F32, 1, {3, 1, 1, 1});
  a.offset = 96;  // data after b's, with a gap
  GgufTensorSpec b("b", DType::F32, 1, {2, 1, 1, 1});
  b.offset = 0;
  w.add_tensor(a, bytes_of(pattern(12, 9)));
  w.add_tensor(b, bytes_of(pattern(8, 10)));
  w.set_pad_end(false);
  w.write(dir + "/foreign.gguf");
  auto f = GgufFile::open(dir + "/foreign.gguf");
  EXPECT_EQ(f->find_tensor("a")->offset, 96u);
  EXPECT_EQ(f->tensors()[0].name, "a");
  EXPECT_EQ(f->file_size(), f->data_offset() + 96 + 12) << "no padding after the last tensor";
  GgufWriter again;
  copy_gguf_into(*f, again);
  again.write(dir + "/again.gguf");
  EXPECT_TRUE(test::read_file(dir + "/again.gguf") == test::read_file(dir + "/foreign.gguf"));

  // A v2 file stays v2; a file without tensors ends after its metadata (padded or not, as read).
  GgufWriter v2(2);
  v2.add_metadata("k", gguf_value::u8(1));
  v2.set_pad_end(false);
  v2.write(dir + "/v2.gguf");
  auto f2 = GgufFile::open(dir + "/v2.gguf");
  EXPECT_EQ(f2->version(), 2u);
  EXPECT_EQ(f2->file_size(), 24u + 8 + 1 + 4 + 1);
  GgufWriter again2;
  copy_gguf_into(*f2, again2);
  again2.write(dir + "/again2.gguf");
  EXPECT_TRUE(test::read_file(dir + "/again2.gguf") == test::read_file(dir + "/v2.gguf"));
}

// Runs write() expecting a kiln::Error containing `message`, and no file at all in `dir` except
// those listed in `keep`.
void expect_write_fails(const GgufWriter& w, const std::string& dir, const std::string& message,
                        std::vector<std::string> keep = {}) {
  try {
    w.write(dir + "/out.gguf");
    ADD_FAILURE() << "write succeeded, expected: " << message;
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr(message));
    EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos) << "one line: " << e.what();
  }
  EXPECT_THAT(test::list_dir(dir), ::testing::UnorderedElementsAreArray(keep)) << "temporary file left behind";
}

TEST(GgufWriter, FailuresLeaveNoTemporaryFileAndKeepTheOldOutput) {
  const std::string dir = fresh_dir("failures");
  GgufWriter throws;
  throws.add_tensor(GgufTensorSpec("t", DType::F32, 1, {4, 1, 1, 1}), [](GgufDataSink& out) {
    const float x[2] = {1, 2};
    out.write(x, sizeof(x));  // half written, then the producer fails
    fail("producer gave up");
  });
  expect_write_fails(throws, dir, "producer gave up");

  GgufWriter short_data;
  short_data.add_tensor(GgufTensorSpec("t", DType::F32, 1, {4, 1, 1, 1}), bytes_of(pattern(12, 0)));
  expect_write_fails(short_data, dir, "tensor 't': data producer wrote 12 of the tensor's 16 bytes");

  GgufWriter long_data;
  long_data.add_tensor(GgufTensorSpec("t", DType::F32, 1, {4, 1, 1, 1}), bytes_of(pattern(20, 0)));
  expect_write_fails(long_data, dir, "wrote more than the tensor's 16 bytes");

  // An existing output stays as it was when a rewrite fails.
  test::write_file(dir + "/out.gguf", "previous contents");
  expect_write_fails(throws, dir, "producer gave up", {"out.gguf"});
  EXPECT_EQ(test::read_file(dir + "/out.gguf"), "previous contents");

  // A directory that does not exist: the error names the path.
  GgufWriter ok;
  ok.add_metadata("k", gguf_value::u8(1));
  try {
    ok.write(dir + "/missing/out.gguf");
    ADD_FAILURE() << "write into a missing directory succeeded";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr(dir + "/missing/out.gguf"));
    EXPECT_THAT(e.what(), HasSubstr("No such file or directory"));
  }
  // And a successful write replaces the old output.
  ok.write(dir + "/out.gguf");
  EXPECT_EQ(test::read_file(dir + "/out.gguf").substr(0, 4), "GGUF");
  EXPECT_THAT(test::list_dir(dir), ::testing::UnorderedElementsAre("out.gguf"));
}

template <typename Fn>
void expect_error(Fn&& fn, const std::string& message) {
  try {
    fn();
    ADD_FAILURE() << "no error, expected: " << message;
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr(message));
  }
}

TEST(GgufWriter, RejectsBadMetadata) {
  using namespace gguf_value;
  const std::string dir = fresh_dir("bad_metadata");
  GgufWriter w;
  expect_error([&] { w.add_metadata("", u8(1)); }, "metadata key is empty");
  w.add_metadata("k", u8(1));
  expect_error([&] { w.add_metadata("k", u8(2)); }, "metadata 'k' is already set (duplicate key)");
  expect_error([] { GgufWriter bad(4); }, "version 4 is not supported");

  const auto fails = [&](GgufValue v, const std::string& message) {
    GgufWriter one;
    one.add_metadata("x", std::move(v));
    expect_write_fails(one, dir, message);
  };
  GgufValue big = u8(0);
  big.v = std::int64_t{300};
  fails(big, "metadata 'x': value 300 does not fit u8");
  GgufValue neg = u32(0);
  neg.v = std::int64_t{-1};
  fails(neg, "value -1 does not fit u32");
  GgufValue huge_i64 = i64(0);
  huge_i64.v = std::numeric_limits<std::uint64_t>::max();
  fails(huge_i64, "does not fit i64");
  GgufValue str_as_int = string("s");
  str_as_int.type = GgufType::I32;
  fails(str_as_int, "metadata 'x': type i32 but the value holds a string");
  GgufValue float_as_bool = f32(1);
  float_as_bool.type = GgufType::Bool;
  fails(float_as_bool, "type bool but the value holds a float");
  GgufValue bad_type = u8(1);
  bad_type.type = static_cast<GgufType>(13);
  fails(bad_type, "unknown value type 13");

  GgufArray mixed;
  mixed.elem_type = GgufType::String;
  mixed.ints = {1};
  fails(array(mixed), "array of string holds elements of another type");
  GgufArray bad_bool;
  bad_bool.elem_type = GgufType::Bool;
  bad_bool.ints = {2};
  fails(array(bad_bool), "bool array element 2");
  GgufArray bad_i8;
  bad_i8.elem_type = GgufType::I8;
  bad_i8.ints = {200};
  fails(array(bad_i8), "value 200 does not fit i8");
  GgufArray not_array;
  not_array.elem_type = GgufType::Array;
  not_array.arrays = {u8(1)};
  fails(array(not_array), "an element of an array of arrays is not an array");
  // Nine levels: deeper than the reader accepts.
  GgufArray deep;
  deep.elem_type = GgufType::U8;
  for (int i = 0; i < 9; ++i) {
    GgufArray up;
    up.elem_type = GgufType::Array;
    up.arrays = {array(deep)};
    deep = up;
  }
  fails(array(deep), "arrays nest deeper than 8 levels");

  // general.alignment must be an integer power of two.
  GgufWriter align48;
  align48.add_metadata("general.alignment", u32(48));
  expect_write_fails(align48, dir, "'general.alignment' = 48 is not a nonzero power of two");
  GgufWriter align_str;
  align_str.add_metadata("general.alignment", string("32"));
  expect_write_fails(align_str, dir, "'general.alignment' has type string");
}

TEST(GgufWriter, RejectsBadTensors) {
  const std::string dir = fresh_dir("bad_tensors");
  GgufWriter w;
  const auto data = bytes_of(pattern(16, 0));
  w.add_tensor(GgufTensorSpec("t", DType::F32, 1, {4, 1, 1, 1}), data);
  expect_error([&] { w.add_tensor(GgufTensorSpec("t", DType::F32, 1, {4, 1, 1, 1}), data); },
               "tensor 't' is added twice");
  expect_error([&] { w.add_tensor(GgufTensorSpec("", DType::F32, 1, {4, 1, 1, 1}), data); }, "tensor name is empty");
  expect_error([&] { w.add_tensor(GgufTensorSpec("z", DType::F32, 0, {4, 1, 1, 1}), data); },
               "tensor 'z' n_dims = 0 (expected 1..4)");
  expect_error([&] { w.add_tensor(GgufTensorSpec("z", DType::F32, 5, {4, 1, 1, 1}), data); }, "n_dims = 5");
  expect_error([&] { w.add_tensor(GgufTensorSpec("z", DType::F32, 1, {4, 2, 1, 1}), data); },
               "tensor 'z' ne[1] = 2 beyond its 1 dimensions");
  expect_error([&] { w.add_tensor(GgufTensorSpec("z", DType::F32, 2, {4, 0, 1, 1}), data); },
               "ne[1] = 0 (expected a positive dimension)");
  expect_error([&] { w.add_tensor(GgufTensorSpec("z", DType::Q4_0, 2, {48, 2, 1, 1}), data); },
               "tensor 'z' ne[0] = 48 is not a multiple of q4_0's block size 32");
  GgufTensorSpec iq;
  iq.name = "iq";
  iq.ggml_type = 16;  // iq2_xxs: kiln does not know its size
  iq.n_dims = 1;
  iq.ne = {256, 1, 1, 1};
  expect_error([&] { w.add_tensor(iq, data); }, "tensor 'iq' has type iq2_xxs, whose size kiln does not know");
  GgufTensorSpec wrong_size("z", DType::F32, 1, {4, 1, 1, 1});
  wrong_size.n_bytes = 20;
  expect_error([&] { w.add_tensor(wrong_size, data); }, "is given 20 bytes but 4 f32 elements take 16");
  expect_error([&] { w.add_tensor(GgufTensorSpec("z", DType::F32, 1, {4, 1, 1, 1}), nullptr); },
               "tensor 'z' has no data producer");

  GgufWriter misaligned;
  GgufTensorSpec m("m", DType::F32, 1, {4, 1, 1, 1});
  m.offset = 8;
  misaligned.add_tensor(m, data);
  expect_write_fails(misaligned, dir, "tensor 'm' offset 8 is not a multiple of the alignment 32");

  GgufWriter overlap;
  GgufTensorSpec o1("o1", DType::F32, 2, {4, 16, 1, 1});  // 256 bytes at 0
  GgufTensorSpec o2("o2", DType::F32, 1, {4, 1, 1, 1});
  o2.offset = 128;
  overlap.add_tensor(o1, bytes_of(pattern(256, 0)));
  overlap.add_tensor(o2, data);
  expect_write_fails(overlap, dir, "tensor 'o2' at offset 128 overlaps tensor 'o1'");
}

}  // namespace
}  // namespace kiln
