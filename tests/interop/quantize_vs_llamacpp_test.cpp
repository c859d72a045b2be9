// kiln quantize against llama.cpp (the npm package node-llama-cpp@3.21.1's prebuilt binaries):
//   1. files kiln quantizes load in llama.cpp and give the same greedy tokens as kiln on them;
//   2. kiln's output is byte for byte the file llama.cpp's own llama_model_quantize writes for the
//      same input and preset (libllama loaded by path, as llama-quantize would run it).
#include <dlfcn.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "format/gguf_file.h"
#include "format/gguf_writer.h"
#include "kernels/matmul.h"
#include "llamacpp_quantize_support.h"
#include "test_support.h"

namespace kiln {
namespace {

using test::LlamaQuantizeApi;
using test::QuantizeParamsBytes;
using test::llama_quantize_api;
using test::write_model;

std::vector<int> parse_ids(const std::string& line) {
  std::vector<int> ids;
  std::stringstream ss(line);
  int v;
  while (ss >> v) ids.push_back(v);
  return ids;
}

std::string source_dir() {
  const char* src = std::getenv("KILN_SOURCE_DIR");
  return src ? src : "";
}

bool have_node_llama_cpp() {
  struct stat st {};
  return ::stat((source_dir() + "/node_modules/node-llama-cpp").c_str(), &st) == 0;
}

// ---- 1. greedy tokens on kiln-quantized files ----------------------------------------------------

class QuantizedGreedy : public ::testing::TestWithParam<std::string> {};

TEST_P(QuantizedGreedy, LlamaCppLoadsItAndAgreesWithKiln) {
  KILN_REQUIRE_DATA(model, "llama-2-tiny-random.gguf");
  if (!have_node_llama_cpp()) GTEST_SKIP() << "node-llama-cpp is not installed (run scripts/install-deps.sh)";
  const std::string type = GetParam();
  const std::string out = test::temp_dir() + "/tiny-" + type + ".gguf";
  std::string log;
  const std::string quantize = test::kiln_binary() + " quantize " + test::shell_quote(model) + " " + test::shell_quote(out) + " " +
                               type + " -t 2";
  ASSERT_EQ(test::run_command(quantize, &log, true), 0) << quantize << "\n" << log;
  // The tiny model's rows are 8 and 32 wide: report what the fallbacks made of it.
  std::printf("kiln quantize %s on llama-2-tiny-random.gguf:\n%s", type.c_str(), log.c_str());

  for (const std::string prompt : {"Hello world", "Once upon a time, in a land far away,"}) {
    SCOPED_TRACE(prompt);
    const int n = 24;
    std::string ref_out;
    const std::string node_cmd = "cd " + test::shell_quote(source_dir()) + " && node tests/interop/llamacpp_greedy.mjs " +
                                 test::shell_quote(out) + " --prompt " + test::shell_quote(prompt) + " -n " + std::to_string(n);
    ASSERT_EQ(test::run_command(node_cmd, &ref_out), 0) << node_cmd << "\n" << ref_out;
    const nlohmann::json ref = nlohmann::json::parse(ref_out);
    const auto ref_prompt = ref["prompt_tokens"].get<std::vector<int>>();
    const auto ref_tokens = ref["tokens"].get<std::vector<int>>();
    std::string kiln_out;
    const std::string kiln_cmd = test::kiln_binary() + " run " + test::shell_quote(out) + " -p " + test::shell_quote(prompt) +
                                 " -n " + std::to_string(n) + " --temp 0 --ignore-eos --echo --print-ids -q -t 2";
    ASSERT_EQ(test::run_command(kiln_cmd, &kiln_out), 0) << kiln_cmd << "\n" << kiln_out;
    const std::vector<int> ids = parse_ids(kiln_out);
    ASSERT_EQ(ids.size(), ref_prompt.size() + ref_tokens.size()) << kiln_out;
    EXPECT_EQ(std::vector<int>(ids.begin() + static_cast<long>(ref_prompt.size()), ids.end()), ref_tokens)
        << "greedy continuation differs on " << type;
  }
}

INSTANTIATE_TEST_SUITE_P(Types, QuantizedGreedy, ::testing::Values("Q8_0", "Q4_0", "Q4_K_M", "Q6_K"));

// ---- 2. whole files against llama.cpp's llama_model_quantize ------------------------------------

// libllama's entry points. llama_model_quantize_params is passed as the bytes that
// llama_model_quantize_default_params() returns (over-allocated), with only its first two fields
// changed: nthread (int32) and ftype (int32), which every llama.cpp version puts first.
// Where two GGUFs first differ, in words: the header, or a named tensor's data.
std::string first_difference(const std::string& a_path, const std::string& b_path) {
  const std::string a = test::read_file(a_path), b = test::read_file(b_path);
  std::size_t i = 0;
  while (i < a.size() && i < b.size() && a[i] == b[i]) ++i;
  std::string where = "sizes " + std::to_string(a.size()) + " and " + std::to_string(b.size()) +
                      ", first difference at byte " + std::to_string(i);
  auto f = GgufFile::open(a_path);
  if (i < f->data_offset()) return where + " (header: metadata or tensor infos)";
  for (const GgufTensorInfo& t : f->tensors())
    if (i >= f->data_offset() + t.offset && i < f->data_offset() + t.offset + t.n_bytes)
      return where + " (tensor " + t.name + ", " + dtype_name_for_id(t.ggml_type) + ")";
  return where;
}

struct FileCase {
  const char* preset;
  std::uint32_t ftype;
};

TEST(QuantizeVsLlamaCpp, WholeFilesAreByteIdentical) {
  const LlamaQuantizeApi* api = llama_quantize_api();
  if (api == nullptr) GTEST_SKIP() << "libllama from node-llama-cpp not found (KILN_GGML_BASE_LIB's folder)";
  const std::string dir = test::temp_dir();
  const std::vector<FileCase> cases = {
      {"Q4_0", 2},    {"Q4_1", 3},    {"Q5_0", 8},    {"Q5_1", 9},    {"Q8_0", 7},    {"Q2_K", 10},
      {"Q3_K_S", 11}, {"Q3_K_M", 12}, {"Q3_K_L", 13}, {"Q4_K_S", 14}, {"Q4_K_M", 15}, {"Q5_K_S", 16},
      {"Q5_K_M", 17}, {"Q6_K", 18},   {"F16", 1},     {"BF16", 32}};
  struct Model {
    std::string name;
    DType type;
    int layers, ffn;
  };
  for (const Model& m : {Model{"f16-8x512", DType::F16, 8, 512}, Model{"f32-3x352", DType::F32, 3, 352}}) {
    const std::string in = write_model(dir + "/" + m.name + ".gguf", m.type, m.layers, m.ffn);
    for (const FileCase& c : cases) {
      SCOPED_TRACE(m.name + " " + c.preset);
      const std::string ours = dir + "/kiln-" + c.preset + ".gguf";
      const std::string theirs = dir + "/llama-" + c.preset + ".gguf";
      std::string log;
      const std::string cmd = test::kiln_binary() + " quantize " + test::shell_quote(in) + " " + test::shell_quote(ours) + " " +
                              c.preset + " -t 2";
      ASSERT_EQ(test::run_command(cmd, &log, true), 0) << cmd << "\n" << log;

      QuantizeParamsBytes params = api->default_params();
      std::int32_t fields[2];
      std::memcpy(fields, params.bytes, sizeof(fields));
      ASSERT_EQ(fields[0], 0) << "unexpected llama_model_quantize_params layout (nthread)";
      ASSERT_EQ(fields[1], 7) << "unexpected llama_model_quantize_params layout (ftype default Q8_0)";
      fields[0] = 2;
      fields[1] = static_cast<std::int32_t>(c.ftype);
      std::memcpy(params.bytes, fields, sizeof(fields));
      ASSERT_EQ(api->quantize(in.c_str(), theirs.c_str(), &params), 0u) << "llama_model_quantize failed";

      EXPECT_TRUE(test::read_file(ours) == test::read_file(theirs)) << first_difference(ours, theirs);
      if (m.ffn == 352 && std::string(c.preset).find("_K") != std::string::npos) {
        EXPECT_NE(log.find("ffn_down.weight: 352 columns are not a multiple of"), std::string::npos) << log;
      }
    }
  }
}

}  // namespace
}  // namespace kiln
