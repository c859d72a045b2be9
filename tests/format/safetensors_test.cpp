// safetensors: SafetensorsWriter -> SafetensorsFile round trips for every dtype, sharded
// checkpoints through SafetensorsModel, every rejection of the reader, the index and the writer,
// and files exchanged with an independent writer and reader in Python (json + struct, as the
// format's reference implementation lays files out).
#include <dirent.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdint>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "format/safetensors_file.h"
#include "format/safetensors_model.h"
#include "format/safetensors_writer.h"
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

std::vector<std::uint8_t> pattern(std::size_t n, std::uint8_t seed) {
  std::vector<std::uint8_t> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<std::uint8_t>(seed + i * 7);
  return v;
}

SafetensorsTensorProducer bytes_of(std::vector<std::uint8_t> data) {
  return [data = std::move(data)](SafetensorsDataSink& out) { out.write(data.data(), data.size()); };
}

// A raw file: the u64 header length, the header text as given (no padding), then the data.
std::string raw_file(const std::string& header, const std::string& data = "") {
  std::string out(8, '\0');
  const std::uint64_t n = header.size();
  std::memcpy(out.data(), &n, 8);
  return out + header + data;
}

// Opens a file of `bytes` and expects a one-line kiln::Error naming the file and holding `needle`.
void expect_rejected(const std::string& bytes, const std::string& needle) {
  static int counter = 0;
  const std::string path = test::temp_dir() + "/rejected_" + std::to_string(counter++) + ".safetensors";
  test::write_file(path, bytes);
  try {
    SafetensorsFile::open(path);
    ADD_FAILURE() << "accepted a file that should fail with: " << needle;
  } catch (const Error& e) {
    const std::string message = e.what();
    EXPECT_THAT(message, HasSubstr(path + ": ")) << "the message names the file";
    EXPECT_THAT(message, HasSubstr(needle));
    EXPECT_EQ(message.find('\n'), std::string::npos) << "one line: " << message;
  }
}

// Every dtype name of the format with its element size.
const std::vector<std::pair<std::string, std::size_t>> kAllDTypes = {
    {"F64", 8},     {"F32", 4}, {"F16", 2}, {"BF16", 2}, {"F8_E4M3", 1}, {"F8_E5M2", 1},
    {"F8_E8M0", 1}, {"I64", 8}, {"I32", 4}, {"I16", 2},  {"I8", 1},      {"U64", 8},
    {"U32", 4},     {"U16", 2}, {"U8", 1},  {"BOOL", 1}, {"C64", 8}};

TEST(SafetensorsFile, RoundTripOfEveryDtype) {
  const std::string path = fresh_dir("every_dtype") + "/m.safetensors";
  SafetensorsWriter w;
  w.add_metadata("format", "pt");
  w.add_metadata("note", "\xc3\xbc quoted \" and \\");
  std::vector<std::vector<std::uint8_t>> data;
  for (std::size_t i = 0; i < kAllDTypes.size(); ++i) {
    const auto& [dtype, size] = kAllDTypes[i];
    data.push_back(pattern(3 * 5 * size, static_cast<std::uint8_t>(i)));
    w.add_tensor("t." + dtype, dtype, {3, 5}, bytes_of(data.back()));
  }
  EXPECT_EQ(w.data_bytes(), 15u * (8 + 4 + 2 + 2 + 1 + 1 + 1 + 8 + 4 + 2 + 1 + 8 + 4 + 2 + 1 + 1 + 8));
  w.write(path);

  const std::string bytes = test::read_file(path);
  std::uint64_t header_bytes = 0;
  std::memcpy(&header_bytes, bytes.data(), 8);
  EXPECT_EQ(header_bytes % 8, 0u) << "the header is padded to a multiple of 8";
  EXPECT_EQ(bytes.substr(8, 16), "{\"__metadata__\":") << "metadata comes first, as the reference writes it";

  auto file = SafetensorsFile::open(path);
  EXPECT_EQ(file->data_offset(), 8 + header_bytes);
  EXPECT_EQ(file->metadata().at("format"), "pt");
  EXPECT_EQ(file->metadata().at("note"), "\xc3\xbc quoted \" and \\");
  ASSERT_EQ(file->tensors().size(), kAllDTypes.size());
  for (std::size_t i = 0; i < kAllDTypes.size(); ++i) {
    const auto& [dtype, size] = kAllDTypes[i];
    const SafetensorsTensorInfo& t = file->tensors()[i];  // data order = insertion order
    SCOPED_TRACE(dtype);
    EXPECT_EQ(t.name, "t." + dtype);
    EXPECT_EQ(file->find_tensor(t.name), &t);
    EXPECT_EQ(t.dtype_name, dtype);
    EXPECT_EQ(t.shape, (std::vector<std::int64_t>{3, 5}));
    EXPECT_EQ(t.n_dims, 2);
    EXPECT_EQ(t.ne, (std::array<std::int64_t, 4>{5, 3, 1, 1}));
    EXPECT_EQ(t.n_elements, 15u);
    EXPECT_EQ(t.n_bytes, 15u * size);
    EXPECT_EQ(std::memcmp(file->tensor_data(t), data[i].data(), data[i].size()), 0);
    if (dtype == "F32" || dtype == "F16" || dtype == "BF16") {
      ASSERT_TRUE(t.dtype.has_value());
      const TensorView v = file->tensor_view(t);
      EXPECT_EQ(v.dtype, *safetensors_dtype_to_kiln(dtype));
      EXPECT_EQ(v.n_dims, 2);
      EXPECT_EQ(v.ne[0], 5);
      EXPECT_EQ(v.ne[1], 3);
      EXPECT_EQ(v.nb[1], 5 * size);
      EXPECT_EQ(v.n_bytes(), data[i].size());
      EXPECT_EQ(std::memcmp(v.data, data[i].data(), data[i].size()), 0);
      EXPECT_EQ(v.name, t.name);
    } else {
      EXPECT_FALSE(t.dtype.has_value());
      try {
        file->tensor_view(t);
        ADD_FAILURE() << "a view of a " << dtype << " tensor";
      } catch (const Error& e) {
        EXPECT_THAT(e.what(), HasSubstr("'t." + dtype + "' has dtype " + dtype));
        EXPECT_THAT(e.what(), HasSubstr(path));
      }
    }
  }
  EXPECT_EQ(file->find_tensor("absent"), nullptr);
}

TEST(SafetensorsFile, ScalarsEmptyTensorsAndMoreThanFourDimensions) {
  const std::string path = fresh_dir("shapes") + "/m.safetensors";
  SafetensorsWriter w;
  w.add_tensor("scalar", DType::F32, {}, bytes_of(pattern(4, 1)));
  w.add_tensor("empty", DType::F16, {0, 4}, bytes_of({}));
  w.add_tensor("five", DType::F32, {1, 2, 1, 2, 1}, bytes_of(pattern(16, 2)));
  w.add_tensor("four", DType::BF16, {2, 3, 1, 4}, bytes_of(pattern(48, 3)));
  w.write(path);
  auto file = SafetensorsFile::open(path);

  const TensorView scalar = file->tensor_view(*file->find_tensor("scalar"));
  EXPECT_TRUE(file->find_tensor("scalar")->shape.empty());
  EXPECT_EQ(scalar.n_dims, 1);
  EXPECT_EQ(scalar.n_elements(), 1);

  const SafetensorsTensorInfo& empty = *file->find_tensor("empty");
  EXPECT_EQ(empty.n_bytes, 0u);
  EXPECT_EQ(file->tensor_view(empty).n_elements(), 0);

  const SafetensorsTensorInfo& five = *file->find_tensor("five");
  EXPECT_EQ(five.n_dims, 0);
  EXPECT_EQ(five.n_elements, 4u);
  EXPECT_THROW(
      {
        try {
          file->tensor_view(five);
        } catch (const Error& e) {
          EXPECT_THAT(e.what(), HasSubstr("'five' has 5 dimensions"));
          throw;
        }
      },
      Error);

  const TensorView four = file->tensor_view(*file->find_tensor("four"));
  EXPECT_EQ(four.ne, (std::array<std::int64_t, 4>{4, 1, 3, 2}));  // reversed
  EXPECT_EQ(safetensors_shape(four.ne, four.n_dims), (std::vector<std::int64_t>{2, 3, 1, 4}));
}

TEST(SafetensorsFile, TensorsAreListedInDataOrderWhateverTheHeaderOrder) {
  // Keys sorted "a" < "b" but b's data comes first.
  const std::string header =
      R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[3,5]},"b":{"dtype":"U8","shape":[3],"data_offsets":[0,3]}})";
  const std::string path = test::temp_dir() + "/order.safetensors";
  test::write_file(path, raw_file(header, "bbbaa"));
  auto file = SafetensorsFile::open(path);
  ASSERT_EQ(file->tensors().size(), 2u);
  EXPECT_EQ(file->tensors()[0].name, "b");
  EXPECT_EQ(file->tensors()[1].name, "a");
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(file->tensor_data(file->tensors()[1])), 2), "aa");
  EXPECT_TRUE(file->metadata().empty());
}

TEST(SafetensorsFile, AcceptsNullMetadataAndAnEmptyHeader) {
  const std::string path = test::temp_dir() + "/null_metadata.safetensors";
  test::write_file(path, raw_file(R"({"__metadata__":null})"));
  EXPECT_TRUE(SafetensorsFile::open(path)->metadata().empty());
  test::write_file(path, raw_file("{}   "));
  EXPECT_TRUE(SafetensorsFile::open(path)->tensors().empty());
}

std::string entry(const std::string& name, const std::string& dtype, const std::string& shape,
                  const std::string& offsets) {
  return "\"" + name + "\":{\"dtype\":\"" + dtype + "\",\"shape\":" + shape + ",\"data_offsets\":" + offsets + "}";
}

TEST(SafetensorsFile, RejectsBadLengthsAndHeaders) {
  expect_rejected("", "only 0 bytes");
  expect_rejected(std::string("\x02\0\0\0", 4), "only 4 bytes");
  std::string huge(8, '\0');
  const std::uint64_t n = SafetensorsFile::kMaxHeaderBytes + 1;
  std::memcpy(huge.data(), &n, 8);
  expect_rejected(huge + "{}", "header length 100000001 exceeds the limit of 100000000 bytes");
  std::string past(8, '\0');
  const std::uint64_t m = 10;
  std::memcpy(past.data(), &m, 8);
  expect_rejected(past + "{}", "header length 10 runs past the end of the 10-byte file");
  expect_rejected(raw_file(""), "header is not valid JSON");
  expect_rejected(raw_file("{\"a\":"), "header is not valid JSON");
  expect_rejected(raw_file("{} x"), "header is not valid JSON");
  expect_rejected(raw_file(std::string("{}\0\0", 4)), "header is not valid JSON: a NUL byte at offset 2");
  expect_rejected(raw_file(std::string("{}\0{\"w\":1}", 10)), "a NUL byte at offset 2");
  expect_rejected(raw_file("{\"\xff\xfe\":1}"), "header is not valid JSON");
  expect_rejected(raw_file("[1,2]"), "header is an array of 2 values (expected a JSON object)");
  expect_rejected(raw_file("{\"a\":{\"dtype\":[[[1]]]}}"), "header nests objects or arrays deeper than 3 levels");
  expect_rejected(raw_file("[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["), "deeper than 3 levels");
  expect_rejected(raw_file("{" + entry("a", "U8", "[0]", "[0,0]") + "," + entry("a", "U8", "[0]", "[0,0]") + "}"),
                  "header has the key 'a' twice in one object");
}

TEST(SafetensorsFile, RejectsBadMetadata) {
  expect_rejected(raw_file(R"({"__metadata__":{"a":1}})"), "__metadata__ 'a' is the integer 1 (expected a string)");
  expect_rejected(raw_file(R"({"__metadata__":["a"]})"), "__metadata__ is an array of 1 values (expected an object");
  expect_rejected(raw_file(R"({"__metadata__":"x"})"), "__metadata__ is the string 'x'");
}

TEST(SafetensorsFile, RejectsBadTensorEntries) {
  expect_rejected(raw_file(R"({"w":[1]})"), "tensor 'w' is an array of 1 values (expected an object)");
  expect_rejected(raw_file(R"({"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1],"extra":0}})", "x"),
                  "tensor 'w' has unknown field 'extra'");
  expect_rejected(raw_file(R"({"w":{"dtype":"U8","data_offsets":[0,1]}})", "x"), "tensor 'w' has no shape");
  expect_rejected(raw_file(R"({"w":{"shape":[1],"data_offsets":[0,1]}})", "x"), "tensor 'w' has no dtype");
  expect_rejected(raw_file(R"({"w":{"dtype":"U8","shape":[1]}})", "x"), "tensor 'w' has no data_offsets");
  expect_rejected(raw_file("{" + entry("", "U8", "[1]", "[0,1]") + "}", "x"), "a tensor has an empty name");
  expect_rejected(raw_file("{" + entry("w", "F4", "[2]", "[0,1]") + "}", "x"), "tensor 'w' has unknown dtype 'F4'");
  expect_rejected(raw_file("{" + entry("w", "f32", "[1]", "[0,4]") + "}", "xxxx"), "unknown dtype 'f32'");
  expect_rejected(raw_file(R"({"w":{"dtype":5,"shape":[1],"data_offsets":[0,1]}})", "x"),
                  "tensor 'w' dtype is the integer 5 (expected a string)");
  expect_rejected(raw_file("{" + entry("w", "U8", "3", "[0,3]") + "}", "xxx"), "tensor 'w' shape is the integer 3");
  expect_rejected(raw_file("{" + entry("w", "U8", "[-1]", "[0,0]") + "}"),
                  "tensor 'w' shape[0] is the integer -1 (expected a non-negative integer)");
  expect_rejected(raw_file("{" + entry("w", "U8", "[1.0]", "[0,1]") + "}", "x"), "shape[0] is the number 1");
  expect_rejected(raw_file("{" + entry("w", "U8", "[18446744073709551615]", "[0,1]") + "}", "x"),
                  "shape[0] = 18446744073709551615 does not fit a signed 64-bit integer");
  expect_rejected(raw_file("{" + entry("w", "U8", "[4294967296,4294967296]", "[0,1]") + "}", "x"),
                  "tensor 'w' shape overflows the element count");
  expect_rejected(raw_file("{" + entry("w", "F64", "[2305843009213693952]", "[0,1]") + "}", "x"),
                  "tensor 'w' byte size overflows");
  // A zero dimension does not excuse an overflow of the others (a view forms their products).
  expect_rejected(raw_file("{" + entry("w", "U8", "[0,4294967296,4294967296]", "[0,0]") + "}"),
                  "shape overflows the element count");
  expect_rejected(raw_file("{" + entry("w", "U8", "[1]", "[0]") + "}", "x"),
                  "tensor 'w' data_offsets is an array of 1 values (expected [begin, end])");
  expect_rejected(raw_file("{" + entry("w", "U8", "[1]", "[0,-1]") + "}", "x"), "data_offsets[1] is the integer -1");
  expect_rejected(raw_file("{" + entry("w", "U8", "[0]", "[1,0]") + "}", "x"),
                  "data_offsets [1, 0] end before they begin");
}

TEST(SafetensorsFile, RejectsSizesThatDoNotMatchTheDtype) {
  expect_rejected(raw_file("{" + entry("w", "F32", "[2,3]", "[0,12]") + "}", std::string(12, 'x')),
                  "tensor 'w' data_offsets [0, 12] hold 12 bytes, but 6 F32 elements take 24");
  expect_rejected(raw_file("{" + entry("w", "BF16", "[3]", "[0,3]") + "}", "xxx"), "but 3 BF16 elements take 6");
}

TEST(SafetensorsFile, RejectsOffsetsOutsideTheFileOverlapsGapsAndTrailingBytes) {
  expect_rejected(raw_file("{" + entry("w", "U8", "[4]", "[0,4]") + "}", "xxx"),
                  "tensor 'w' data_offsets [0, 4] run past the data section (3 bytes)");
  expect_rejected(raw_file("{" + entry("w", "U8", "[1]", "[18446744073709551615,0]") + "}", "x"),
                  "end before they begin");
  expect_rejected(raw_file("{" + entry("w", "U8", "[2]", "[18446744073709551614,18446744073709551615]") + "}", "x"),
                  "hold 1 bytes, but 2 U8 elements take 2");
  expect_rejected(
      raw_file("{" + entry("a", "U8", "[4]", "[0,4]") + "," + entry("b", "U8", "[4]", "[2,6]") + "}", "xxxxxx"),
      "tensor 'b' data_offsets [2, 6] overlap tensor 'a' [0, 4]");
  expect_rejected(raw_file("{" + entry("a", "U8", "[2]", "[0,2]") + "," + entry("b", "U8", "[2]", "[0,2]") + "}", "xx"),
                  "overlap tensor");
  expect_rejected(
      raw_file("{" + entry("a", "U8", "[2]", "[0,2]") + "," + entry("b", "U8", "[2]", "[3,5]") + "}", "xxxxx"),
      "tensor 'b' data_offsets [3, 5] leave a gap of 1 bytes at data offset 2");
  expect_rejected(raw_file("{" + entry("a", "U8", "[2]", "[1,3]") + "}", "xxx"),
                  "leave a gap of 1 bytes at data offset 0");
  expect_rejected(raw_file("{" + entry("a", "U8", "[2]", "[0,2]") + "}", "xxxx"),
                  "the data section has 4 bytes, but its tensors cover only 2 (2 bytes after the last tensor)");
  expect_rejected(raw_file("{}", "x"), "the data section has 1 bytes, but its tensors cover only 0");
}

TEST(SafetensorsFile, EscapesNamesInMessages) {
  expect_rejected(raw_file("{\"a\\nb\":{\"dtype\":\"X\",\"shape\":[],\"data_offsets\":[0,0]}}"),
                  "tensor 'a\\x0ab' has unknown dtype 'X'");
}

TEST(SafetensorsWriter, RefusesBadTensorsAndMetadata) {
  SafetensorsWriter w;
  w.add_tensor("a", "U8", {1}, bytes_of({1}));
  auto refused = [](auto&& f, const std::string& needle) {
    try {
      f();
      ADD_FAILURE() << "accepted: " << needle;
    } catch (const Error& e) {
      EXPECT_THAT(e.what(), HasSubstr(needle));
    }
  };
  refused([&] { w.add_tensor("a", "U8", {1}, bytes_of({1})); }, "tensor 'a' is added twice");
  refused([&] { w.add_tensor("", "U8", {1}, bytes_of({1})); }, "tensor name is empty");
  refused([&] { w.add_tensor("__metadata__", "U8", {1}, bytes_of({1})); }, "'__metadata__' cannot name a tensor");
  refused([&] { w.add_tensor("b", "F4", {1}, bytes_of({1})); }, "tensor 'b' has unknown dtype 'F4'");
  refused([&] { w.add_tensor("b", "U8", {2, -1}, bytes_of({1})); }, "tensor 'b' shape[1] = -1");
  refused([&] { w.add_tensor("b", "U8", {1LL << 32, 1LL << 32}, bytes_of({1})); }, "shape overflows");
  refused([&] { w.add_tensor("b", "U8", {1}, nullptr); }, "tensor 'b' has no data producer");
  refused([&] { w.add_tensor("b", DType::Q4_0, {32}, bytes_of({1})); }, "safetensors has no dtype for kiln's q4_0");
  refused([&] { w.add_tensor("\xff", "U8", {1}, bytes_of({1})); }, "tensor name '\xff' is not valid UTF-8");
  w.add_metadata("k", "v");
  refused([&] { w.add_metadata("k", "w"); }, "metadata 'k' is already set");
  refused([&] { w.add_metadata("bad", "\xc3"); }, "metadata 'bad' value");
  refused([&] { w.write_sharded(test::temp_dir() + "/zero_shards", 0); }, "the shard size limit is 0 bytes");
}

TEST(SafetensorsWriter, LeavesNothingBehindWhenAProducerFails) {
  const std::string dir = fresh_dir("producer_fails");
  auto attempt = [&](SafetensorsTensorProducer producer, const std::string& needle) {
    SafetensorsWriter w;
    w.add_tensor("ok", "F32", {2}, bytes_of(pattern(8, 0)));
    w.add_tensor("bad", "F32", {2}, std::move(producer));
    try {
      w.write(dir + "/m.safetensors");
      ADD_FAILURE() << "wrote despite: " << needle;
    } catch (const Error& e) {
      EXPECT_THAT(e.what(), HasSubstr(needle));
    }
    EXPECT_TRUE(test::list_dir(dir).empty()) << "no file and no temporary file is left";
  };
  attempt(bytes_of(pattern(7, 0)), "tensor 'bad': data producer wrote 7 of the tensor's 8 bytes");
  attempt(bytes_of(pattern(9, 0)), "tensor 'bad': data producer wrote more than the tensor's 8 bytes");
  attempt([](SafetensorsDataSink&) { fail("source tensor unreadable"); }, "source tensor unreadable");
}

// Four tensors of 100, 100, 100 and 300 bytes.
SafetensorsWriter four_tensors() {
  SafetensorsWriter w;
  w.add_metadata("format", "pt");
  w.add_tensor("model.layers.0.w", "F32", {5, 5}, bytes_of(pattern(100, 1)));
  w.add_tensor("model.layers.1.w", "F16", {50}, bytes_of(pattern(100, 2)));
  w.add_tensor("model.embed_tokens.weight", "BF16", {10, 5}, bytes_of(pattern(100, 3)));
  w.add_tensor("lm_head.weight", "I8", {3, 100}, bytes_of(pattern(300, 4)));
  return w;
}

TEST(SafetensorsModel, ShardedRoundTrip) {
  const std::string dir = fresh_dir("sharded");
  const SafetensorsWriteResult written = four_tensors().write_sharded(dir, 250);
  // 100 + 100 fit 250, the third opens a shard, the 300-byte tensor exceeds the limit alone.
  EXPECT_EQ(written.files,
            (std::vector<std::string>{"model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors",
                                      "model-00003-of-00003.safetensors"}));
  EXPECT_EQ(written.index, "model.safetensors.index.json");
  EXPECT_EQ(test::list_dir(dir),
            (std::vector<std::string>{"model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors",
                                      "model-00003-of-00003.safetensors", "model.safetensors.index.json"}));
  EXPECT_EQ(test::read_file(dir + "/model.safetensors.index.json"),
            "{\n"
            "  \"metadata\": {\n"
            "    \"total_size\": 600\n"
            "  },\n"
            "  \"weight_map\": {\n"
            "    \"lm_head.weight\": \"model-00003-of-00003.safetensors\",\n"
            "    \"model.embed_tokens.weight\": \"model-00002-of-00003.safetensors\",\n"
            "    \"model.layers.0.w\": \"model-00001-of-00003.safetensors\",\n"
            "    \"model.layers.1.w\": \"model-00001-of-00003.safetensors\"\n"
            "  }\n"
            "}\n");

  auto model = SafetensorsModel::open(dir);
  EXPECT_EQ(model->index_path(), dir + "/model.safetensors.index.json");
  EXPECT_EQ(model->index_total_size(), 600u);
  ASSERT_EQ(model->files().size(), 3u);
  EXPECT_EQ(model->metadata().at("format"), "pt");
  ASSERT_EQ(model->tensors().size(), 4u);
  const std::vector<std::string> order = {"model.layers.0.w", "model.layers.1.w", "model.embed_tokens.weight",
                                          "lm_head.weight"};
  for (std::size_t i = 0; i < order.size(); ++i) {
    const SafetensorsModel::Tensor& t = model->tensors()[i];
    EXPECT_EQ(t.info->name, order[i]);
    EXPECT_EQ(model->find_tensor(order[i]), &t);
    const std::vector<std::uint8_t> expected = pattern(t.info->n_bytes, static_cast<std::uint8_t>(i + 1));
    EXPECT_EQ(std::memcmp(t.file->tensor_data(*t.info), expected.data(), expected.size()), 0) << order[i];
  }
  EXPECT_EQ(model->find_tensor("model.embed_tokens.weight")->file->path(), dir + "/model-00002-of-00003.safetensors");
  const TensorView embd = model->tensor_view(*model->find_tensor("model.embed_tokens.weight"));
  EXPECT_EQ(embd.dtype, DType::BF16);
  EXPECT_EQ(embd.ne[0], 5);
  EXPECT_EQ(embd.ne[1], 10);
  EXPECT_EQ(model->find_tensor("absent"), nullptr);

  // Writing the same checkpoint as one file into that folder would leave a second layout there.
  try {
    four_tensors().write_sharded(dir, 1000);
    ADD_FAILURE() << "wrote model.safetensors beside an index";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("holds model.safetensors.index.json of a sharded checkpoint"));
  }
}

TEST(SafetensorsModel, OneFileWhenEverythingFits) {
  const std::string dir = fresh_dir("unsharded");
  const SafetensorsWriteResult written = four_tensors().write_sharded(dir, 600);
  EXPECT_EQ(written.files, std::vector<std::string>{"model.safetensors"});
  EXPECT_EQ(written.index, "");
  EXPECT_EQ(test::list_dir(dir), std::vector<std::string>{"model.safetensors"});
  auto model = SafetensorsModel::open(dir);
  EXPECT_EQ(model->index_path(), "");
  EXPECT_EQ(model->tensors().size(), 4u);
  // The file opened directly reads the same.
  EXPECT_EQ(SafetensorsModel::open(dir + "/model.safetensors")->tensors().size(), 4u);
  try {
    four_tensors().write_sharded(dir, 100);
    ADD_FAILURE() << "wrote shards beside model.safetensors";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("holds model.safetensors of an unsharded checkpoint"));
  }
}

// Writes `index` into a fresh folder beside the shards of four_tensors() split at 250 bytes,
// and expects SafetensorsModel::open to refuse the folder with a message holding `needle`.
void expect_index_rejected(const std::string& name, const std::string& index, const std::string& needle,
                           bool keep_second_shard = true) {
  const std::string dir = fresh_dir(name);
  four_tensors().write_sharded(dir, 250);
  if (!keep_second_shard) ::unlink((dir + "/model-00002-of-00003.safetensors").c_str());
  if (!index.empty()) test::write_file(dir + "/model.safetensors.index.json", index);
  try {
    SafetensorsModel::open(dir);
    ADD_FAILURE() << "accepted a folder that should fail with: " << needle;
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr(needle));
    EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos) << e.what();
  }
}

const std::string kShard1 = "model-00001-of-00003.safetensors";
const std::string kShard2 = "model-00002-of-00003.safetensors";
const std::string kShard3 = "model-00003-of-00003.safetensors";

std::string index_of(const std::string& weight_map) {
  return R"({"metadata":{"total_size":600},"weight_map":)" + weight_map + "}";
}

TEST(SafetensorsModel, RejectsAMissingShard) {
  const std::string dir = test::temp_dir() + "/missing_shard";
  expect_index_rejected("missing_shard", "",
                        dir + "/" + kShard2 + ": shard '" + kShard2 + "' named by the index " + dir +
                            "/model.safetensors.index.json is missing",
                        false);
}

TEST(SafetensorsModel, RejectsShardNamesOutsideTheFolder) {
  const std::string all = R"("model.layers.0.w":")" + kShard1 + R"(","model.layers.1.w":")" + kShard1 +
                          R"(","lm_head.weight":")" + kShard3 + R"(")";
  for (const std::string& bad :
       {"../" + kShard2, "sub/" + kShard2, "/tmp/" + kShard2, std::string(".."), std::string("")})
    expect_index_rejected("bad_shard_name", index_of("{" + all + R"(,"model.embed_tokens.weight":")" + bad + "\"}"),
                          "weight_map maps tensor 'model.embed_tokens.weight' to '" + bad +
                              "', which is not a file name in the index's folder");
}

TEST(SafetensorsModel, RejectsAnIndexThatDisagreesWithItsShards) {
  const std::string base = R"("model.layers.0.w":")" + kShard1 + R"(","model.layers.1.w":")" + kShard1 +
                           R"(","lm_head.weight":")" + kShard3 + R"(")";
  // The index maps a tensor to a shard that does not hold it.
  expect_index_rejected(
      "wrong_shard",
      index_of("{" + base + R"(,"model.embed_tokens.weight":")" + kShard2 + R"(","ghost":")" + kShard2 + "\"}"),
      "weight_map maps tensor 'ghost' to '" + kShard2 + "', which does not hold it");
  // The first shard holds model.layers.1.w, which the index places in the second.
  expect_index_rejected(
      "moved_tensor",
      index_of(R"({"model.layers.0.w":")" + kShard1 + R"(","model.layers.1.w":")" + kShard2 +
               R"(","model.embed_tokens.weight":")" + kShard2 + R"(","lm_head.weight":")" + kShard3 + "\"}"),
      "tensor 'model.layers.1.w' is in this shard, but the index " + test::temp_dir() +
          "/moved_tensor/model.safetensors.index.json maps it to '" + kShard2 + "'");
  // A shard holds a tensor the index does not list.
  expect_index_rejected("unlisted",
                        index_of(R"({"model.layers.0.w":")" + kShard1 + R"(","lm_head.weight":")" + kShard3 + "\"}"),
                        "tensor 'model.layers.1.w' is not in the index");
}

TEST(SafetensorsModel, RejectsMalformedIndexes) {
  expect_index_rejected("index_not_json", "{\"weight_map\":", "index is not valid JSON");
  expect_index_rejected("index_array", "[]", "index is an array of 0 values (expected a JSON object)");
  expect_index_rejected("no_weight_map", R"({"metadata":{}})", "index has no weight_map");
  expect_index_rejected("weight_map_array", R"({"weight_map":[]})", "weight_map is an array of 0 values");
  expect_index_rejected("weight_map_empty", R"({"weight_map":{}})", "weight_map names no tensors");
  expect_index_rejected("weight_map_number", R"({"weight_map":{"a":1}})",
                        "weight_map maps tensor 'a' to the integer 1");
  expect_index_rejected("metadata_string", R"({"metadata":"x","weight_map":{"a":"b"}})", "metadata is the string 'x'");
  expect_index_rejected("duplicate_tensor", R"({"weight_map":{"a":"b","a":"c"}})", "index has the key 'a' twice");
}

TEST(SafetensorsModel, RejectsAFolderWithoutWeights) {
  const std::string dir = fresh_dir("no_weights");
  try {
    SafetensorsModel::open(dir);
    ADD_FAILURE() << "opened an empty folder";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("the folder holds neither model.safetensors nor model.safetensors.index.json"));
  }
}

// An independent writer and reader in Python, after the format's reference implementation:
// tensors ordered by dtype alignment then name, header padded with spaces, metadata first.
const char* kPythonPeer = R"PY(
import json, struct, sys

def write(path):
    tensors = {
        "b.bf16": ("BF16", [2, 3], struct.pack("<6H", *[0x3f80 + i for i in range(6)])),
        "a.f32": ("F32", [3], struct.pack("<3f", 1.5, -2.0, 3.25)),
        "c.f16": ("F16", [2, 2], struct.pack("<4e", 0.5, 1.0, -1.5, 2.0)),
        "d.i64": ("I64", [2], struct.pack("<2q", -7, 1 << 40)),
        "e.bool": ("BOOL", [3], bytes([1, 0, 1])),
        "s": ("F32", [], struct.pack("<f", 42.0)),
    }
    align = {"BF16": 2, "F32": 4, "F16": 2, "I64": 8, "BOOL": 1}
    order = sorted(tensors, key=lambda n: (-align[tensors[n][0]], n))
    header, offset, data = {"__metadata__": {"format": "pt"}}, 0, b""
    for name in order:
        dtype, shape, raw = tensors[name]
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
        data += raw
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + data)

def read(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    assert n % 8 == 0, n
    header = json.loads(raw[8:8 + n])
    data = raw[8 + n:]
    assert header.pop("__metadata__") == {"format": "kiln"}
    end = 0
    for name, info in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"]):
        begin, stop = info["data_offsets"]
        assert begin == end, (name, begin, end)
        end = stop
    assert end == len(data), (end, len(data))
    w = header["w"]
    assert w["dtype"] == "F32" and w["shape"] == [2, 2], w
    b, e = w["data_offsets"]
    assert struct.unpack("<4f", data[b:e]) == (1.0, 2.0, 3.0, 4.0)
    h = header["h"]
    assert h["dtype"] == "BF16" and h["shape"] == [3], h
    b, e = h["data_offsets"]
    assert struct.unpack("<3H", data[b:e]) == (0x3f80, 0x4000, 0x4040)
    print("python read ok")

write(sys.argv[1])
read(sys.argv[2])
)PY";

TEST(SafetensorsFile, ExchangesFilesWithAnIndependentPythonPeer) {
  if (::access("/usr/bin/python3", X_OK) != 0)
    GTEST_SKIP() << "/usr/bin/python3 not found: no Python peer to compare with";
  const std::string dir = fresh_dir("python_peer");
  const std::string script = dir + "/peer.py";
  test::write_file(script, kPythonPeer);

  SafetensorsWriter w;
  w.add_metadata("format", "kiln");
  const float f32[4] = {1, 2, 3, 4};
  const std::uint16_t bf16[3] = {0x3f80, 0x4000, 0x4040};  // 1, 2, 3
  w.add_tensor("h", DType::BF16, {3}, [&](SafetensorsDataSink& out) { out.write(bf16, sizeof bf16); });
  w.add_tensor("w", DType::F32, {2, 2}, [&](SafetensorsDataSink& out) { out.write(f32, sizeof f32); });
  w.write(dir + "/kiln.safetensors");

  std::string output;
  const int rc = test::run_command(
      "/usr/bin/python3 " + script + " " + dir + "/python.safetensors " + dir + "/kiln.safetensors", &output, true);
  ASSERT_EQ(rc, 0) << output;
  EXPECT_THAT(output, HasSubstr("python read ok"));

  auto file = SafetensorsFile::open(dir + "/python.safetensors");
  EXPECT_EQ(file->metadata().at("format"), "pt");
  ASSERT_EQ(file->tensors().size(), 6u);
  EXPECT_EQ(file->tensors()[0].name, "d.i64");  // data order: 8-byte dtypes first, then by name
  const std::int64_t* i64 = reinterpret_cast<const std::int64_t*>(file->tensor_data(*file->find_tensor("d.i64")));
  EXPECT_EQ(i64[0], -7);
  EXPECT_EQ(i64[1], std::int64_t{1} << 40);
  const TensorView a = file->tensor_view(*file->find_tensor("a.f32"));
  ASSERT_EQ(a.dtype, DType::F32);
  float a_values[3];
  std::memcpy(a_values, a.data, sizeof a_values);
  EXPECT_EQ(a_values[0], 1.5f);
  EXPECT_EQ(a_values[1], -2.0f);
  EXPECT_EQ(a_values[2], 3.25f);
  const TensorView b = file->tensor_view(*file->find_tensor("b.bf16"));
  EXPECT_EQ(b.dtype, DType::BF16);
  EXPECT_EQ(b.ne[0], 3);
  EXPECT_EQ(b.ne[1], 2);
  std::uint16_t b0 = 0;
  std::memcpy(&b0, b.data, 2);
  EXPECT_EQ(b0, 0x3f80);
  const TensorView c = file->tensor_view(*file->find_tensor("c.f16"));
  EXPECT_EQ(c.dtype, DType::F16);
  std::uint16_t c0 = 0;
  std::memcpy(&c0, c.data, 2);
  EXPECT_EQ(c0, 0x3800);  // 0.5 in IEEE half
  EXPECT_EQ(file->find_tensor("e.bool")->dtype_name, "BOOL");
  EXPECT_EQ(file->tensor_view(*file->find_tensor("s")).n_elements(), 1);
}

}  // namespace
}  // namespace kiln
