// The ONNX file kiln export onnx writes, read back with the ONNX protobuf messages: the graph's
// inputs and outputs (Optimum's names, types and dynamic axes), the initializers (transposed
// matrices, q/k rows of an interleaved-rope model in the halves order, f16 storage), external
// data (location, 4096-aligned offsets and lengths inside the data file), no temporary files
// left, and a clean kiln::Error for a file that is not a model. What the graph computes is
// checked against ONNX Runtime in tests/interop/onnx_export_vs_onnxruntime_test.
#include "convert/onnx_export.h"

#include <gtest/gtest.h>
#include <onnx/onnx_pb.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "convert/random_llama_gguf.h"
#include "core/error.h"
#include "core/half.h"
#include "format/gguf_file.h"
#include "test_support.h"

namespace kiln {
namespace {

namespace fs = std::filesystem;

onnx::ModelProto read_model(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  onnx::ModelProto m;
  EXPECT_TRUE(m.ParseFromIstream(&in)) << path;
  return m;
}

// "dim" or "name" per dimension of a graph input or output.
std::vector<std::string> dims_of(const onnx::ValueInfoProto& v) {
  std::vector<std::string> dims;
  for (const auto& d : v.type().tensor_type().shape().dim())
    dims.push_back(d.has_dim_value() ? std::to_string(d.dim_value()) : d.dim_param());
  return dims;
}

std::map<std::string, const onnx::TensorProto*> initializers(const onnx::ModelProto& m) {
  std::map<std::string, const onnx::TensorProto*> by_name;
  for (const onnx::TensorProto& t : m.graph().initializer()) by_name[t.name()] = &t;
  return by_name;
}

std::vector<std::string> files_in(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

TEST(OnnxExport, GraphHasOptimumsInputsAndOutputs) {
  test::RandomLlamaSpec spec;  // 2 layers, 4 heads over 2 kv heads of 16, vocabulary 48
  const std::string dir = test::temp_dir() + "/interface";
  fs::create_directories(dir);
  test::write_random_llama_gguf(spec, dir + "/m.gguf");
  const convert::OnnxExportReport r = convert::export_llama_onnx(dir + "/m.gguf", dir + "/m.onnx", {});
  EXPECT_TRUE(r.data_path.empty());
  EXPECT_EQ(files_in(dir), (std::vector<std::string>{"m.gguf", "m.onnx"}));

  const onnx::ModelProto m = read_model(dir + "/m.onnx");
  ASSERT_EQ(m.opset_import_size(), 1);
  EXPECT_EQ(m.opset_import(0).version(), 17);
  const onnx::GraphProto& g = m.graph();
  std::vector<std::string> inputs, outputs;
  for (const auto& v : g.input()) inputs.push_back(v.name());
  for (const auto& v : g.output()) outputs.push_back(v.name());
  EXPECT_EQ(inputs,
            (std::vector<std::string>{"input_ids", "attention_mask", "position_ids", "past_key_values.0.key",
                                      "past_key_values.0.value", "past_key_values.1.key", "past_key_values.1.value"}));
  EXPECT_EQ(outputs, (std::vector<std::string>{"logits", "present.0.key", "present.0.value", "present.1.key",
                                               "present.1.value"}));
  EXPECT_EQ(g.input(0).type().tensor_type().elem_type(), onnx::TensorProto::INT64);
  EXPECT_EQ(dims_of(g.input(0)), (std::vector<std::string>{"batch_size", "sequence_length"}));
  EXPECT_EQ(dims_of(g.input(1)), (std::vector<std::string>{"batch_size", "past_sequence_length + sequence_length"}));
  EXPECT_EQ(g.input(3).type().tensor_type().elem_type(), onnx::TensorProto::FLOAT);
  EXPECT_EQ(dims_of(g.input(3)), (std::vector<std::string>{"batch_size", "2", "past_sequence_length", "16"}));
  EXPECT_EQ(dims_of(g.output(0)), (std::vector<std::string>{"batch_size", "sequence_length", "48"}));
  EXPECT_EQ(dims_of(g.output(1)),
            (std::vector<std::string>{"batch_size", "2", "past_sequence_length + sequence_length", "16"}));

  // Every weight inside the graph, f32; matrices transposed to (n_in, n_out) for MatMul.
  const auto inits = initializers(m);
  std::int64_t n = 0;
  for (const auto& [name, t] : inits) {
    EXPECT_EQ(t->data_type(), onnx::TensorProto::FLOAT) << name;
    EXPECT_NE(t->data_location(), onnx::TensorProto::EXTERNAL) << name;
    std::int64_t count = 1;
    for (std::int64_t d : t->dims()) count *= d;
    EXPECT_EQ(t->raw_data().size(), static_cast<std::size_t>(count) * 4) << name;
    n += count;
  }
  EXPECT_EQ(n, r.n_weights);
  ASSERT_TRUE(inits.count("blk.1.attn_k.weight"));
  const auto* wk = inits.at("blk.1.attn_k.weight");
  EXPECT_EQ(std::vector<std::int64_t>(wk->dims().begin(), wk->dims().end()), (std::vector<std::int64_t>{64, 32}));
  const auto* embd = inits.at("token_embd.weight");
  EXPECT_EQ(std::vector<std::int64_t>(embd->dims().begin(), embd->dims().end()), (std::vector<std::int64_t>{48, 64}));
  EXPECT_TRUE(inits.count("output.weight"));
}

// GGUF's llama ropes pairs (2i, 2i+1) of each head; the graph ropes (i, i + n_rot/2). Column j
// of the transposed q projection is GGUF row 2j (j < n_rot/2) or 2(j - n_rot/2) + 1 of its head.
TEST(OnnxExport, QueryRowsOfAnInterleavedModelAreInHalvesOrder) {
  test::RandomLlamaSpec spec;
  spec.n_rot = 8;  // of 16: rows 8..15 of each head are not rotated and keep their place
  const std::string dir = test::temp_dir() + "/rope";
  fs::create_directories(dir);
  test::write_random_llama_gguf(spec, dir + "/m.gguf");
  convert::export_llama_onnx(dir + "/m.gguf", dir + "/m.onnx", {});
  const onnx::ModelProto m = read_model(dir + "/m.onnx");
  const onnx::TensorProto& wq = *initializers(m).at("blk.0.attn_q.weight");
  const auto* exported = reinterpret_cast<const float*>(wq.raw_data().data());  // (E, q_dim)

  const auto gguf = GgufFile::open(dir + "/m.gguf");
  const GgufTensorInfo* info = gguf->find_tensor("blk.0.attn_q.weight");
  ASSERT_NE(info, nullptr);
  const auto* stored = static_cast<const float*>(gguf->tensor_view(*info).data);  // (q_dim, E)
  const int E = spec.n_embd, QD = spec.n_head * spec.head_dim, half = spec.n_rot / 2;
  int mismatches = 0;
  for (int h = 0; h < spec.n_head; ++h)
    for (int j = 0; j < spec.head_dim; ++j) {
      const int from = j >= spec.n_rot ? j : j < half ? 2 * j : 2 * (j - half) + 1;
      for (int i = 0; i < E; ++i)
        mismatches += exported[i * QD + h * spec.head_dim + j] != stored[(h * spec.head_dim + from) * E + i];
    }
  EXPECT_EQ(mismatches, 0);
}

TEST(OnnxExport, ExternalDataAndF16) {
  test::RandomLlamaSpec spec;
  spec.tied_output = true;
  const std::string dir = test::temp_dir() + "/external";
  fs::create_directories(dir);
  test::write_random_llama_gguf(spec, dir + "/m.gguf");
  convert::OnnxExportOptions options;
  options.storage = convert::WeightStorage::f16;
  options.external_data = true;
  const convert::OnnxExportReport r = convert::export_llama_onnx(dir + "/m.gguf", dir + "/m.onnx", options);
  EXPECT_EQ(r.data_path, dir + "/m.onnx.data");
  EXPECT_EQ(files_in(dir), (std::vector<std::string>{"m.gguf", "m.onnx", "m.onnx.data"}));
  const std::uint64_t data_size = fs::file_size(dir + "/m.onnx.data");

  const onnx::ModelProto m = read_model(dir + "/m.onnx");
  const auto inits = initializers(m);
  EXPECT_FALSE(inits.count("output.weight")) << "a tied output reuses the embedding";
  for (const auto& [name, t] : inits) {
    ASSERT_EQ(t->data_location(), onnx::TensorProto::EXTERNAL) << name;
    EXPECT_TRUE(t->raw_data().empty()) << name;
    std::map<std::string, std::string> ext;
    for (const auto& e : t->external_data()) ext[e.key()] = e.value();
    EXPECT_EQ(ext["location"], "m.onnx.data") << name;
    const std::uint64_t offset = std::stoull(ext["offset"]), length = std::stoull(ext["length"]);
    EXPECT_EQ(offset % 4096, 0u) << name;
    EXPECT_LE(offset + length, data_size) << name;
    std::uint64_t count = 1;
    for (std::int64_t d : t->dims()) count *= static_cast<std::uint64_t>(d);
    const bool matrix = t->dims_size() == 2;
    EXPECT_EQ(t->data_type(), matrix ? onnx::TensorProto::FLOAT16 : onnx::TensorProto::FLOAT) << name;
    EXPECT_EQ(length, count * (matrix ? 2 : 4)) << name;
  }

  // The embedding's first value, read back from the data file as a half.
  const onnx::TensorProto& embd = *inits.at("token_embd.weight");
  std::uint64_t offset = 0;
  for (const auto& e : embd.external_data())
    if (e.key() == "offset") offset = std::stoull(e.value());
  std::ifstream data(dir + "/m.onnx.data", std::ios::binary);
  data.seekg(static_cast<std::streamoff>(offset));
  std::uint16_t h = 0;
  data.read(reinterpret_cast<char*>(&h), sizeof h);
  const auto gguf = GgufFile::open(dir + "/m.gguf");
  const float first = *static_cast<const float*>(gguf->tensor_view(*gguf->find_tensor("token_embd.weight")).data);
  EXPECT_EQ(h, f32_to_f16(first));
}

TEST(OnnxExport, NotAModelIsACleanErrorAndLeavesNoFiles) {
  const std::string dir = test::temp_dir() + "/bad";
  fs::create_directories(dir);
  { std::ofstream(dir + "/junk.gguf") << "this is not a model"; }
  EXPECT_THROW(convert::export_llama_onnx(dir + "/junk.gguf", dir + "/m.onnx", {}), Error);
  EXPECT_EQ(files_in(dir), (std::vector<std::string>{"junk.gguf"}));
}

}  // namespace
}  // namespace kiln
