// kiln quantize on mixtures of experts against llama.cpp's llama_model_quantize (libllama of the
// npm peer, loaded by path): for a mixtral-style model (8 experts: llama.cpp's rules for 8-expert
// models move attn_v, attn_k and attn_output) and a qwen3moe-style one (16 experts), kiln's
// output is byte for byte llama.cpp's for each preset: the stacked 3-D expert tensors quantized
// row by row, the router kept f32, the same mix rules.
#include <gtest/gtest.h>

#include <cstring>

#include "format/gguf_file.h"
#include "llamacpp_quantize_support.h"
#include "model/synthetic_model.h"
#include "test_support.h"

namespace kiln {
namespace {

struct MoeModelCase {
  const char* name;
  const char* arch;
  int n_expert, n_used;
};

class MoeQuantizeVsLlamaCpp : public ::testing::TestWithParam<MoeModelCase> {};

TEST_P(MoeQuantizeVsLlamaCpp, WholeFilesAreByteIdentical) {
  const test::LlamaQuantizeApi* api = test::llama_quantize_api();
  if (api == nullptr) GTEST_SKIP() << "libllama from node-llama-cpp not found (KILN_GGML_BASE_LIB's folder)";
  const MoeModelCase m = GetParam();
  const std::string dir = test::temp_dir();
  SyntheticModelSpec spec;
  LlamaConfig& c = spec.config;
  c.arch = m.arch;
  c.n_vocab = 512, c.n_embd = 256, c.n_layer = 3, c.n_head = 8, c.n_head_kv = 2, c.head_dim = 32, c.n_ff = 256;
  c.n_rot = 32, c.n_ctx_train = 256, c.rms_eps = 1e-6f;
  c.n_expert = m.n_expert, c.n_expert_used = m.n_used, c.n_ff_exp = 256;
  spec.type = DType::F16;
  const std::string in = dir + "/" + m.name + ".gguf";
  write_synthetic_model(spec, in);

  struct Preset {
    const char* name;
    std::int32_t ftype;
  };
  for (const Preset& p : {Preset{"Q4_0", 2}, Preset{"Q8_0", 7}, Preset{"Q2_K", 10}, Preset{"Q3_K_M", 12},
                          Preset{"Q4_K_S", 14}, Preset{"Q4_K_M", 15}, Preset{"Q6_K", 18}}) {
    SCOPED_TRACE(std::string(m.name) + " " + p.name);
    const std::string ours = dir + "/kiln-" + p.name + ".gguf", theirs = dir + "/llama-" + p.name + ".gguf";
    std::string log;
    const std::string cmd = test::kiln_binary() + " quantize " + test::shell_quote(in) + " " + test::shell_quote(ours) +
                            " " + p.name + " -t 2";
    ASSERT_EQ(test::run_command(cmd, &log, true), 0) << cmd << "\n" << log;
    test::QuantizeParamsBytes params = api->default_params();
    std::int32_t fields[2] = {2, p.ftype};  // nthread, ftype: the first two fields in every version
    std::memcpy(params.bytes, fields, sizeof(fields));
    ASSERT_EQ(api->quantize(in.c_str(), theirs.c_str(), &params), 0u) << "llama_model_quantize failed";
    const std::string a = test::read_file(ours), b = test::read_file(theirs);
    if (a != b) {
      std::size_t i = 0;
      while (i < a.size() && i < b.size() && a[i] == b[i]) ++i;
      std::string where = "first difference at byte " + std::to_string(i);
      const auto f = GgufFile::open(ours);
      for (const GgufTensorInfo& t : f->tensors())
        if (i >= f->data_offset() + t.offset && i < f->data_offset() + t.offset + t.n_bytes) where += " in " + t.name;
      ADD_FAILURE() << "kiln's file differs from llama.cpp's: " << where;
    }
    // The experts are quantized, the router is not.
    const auto f = GgufFile::open(ours);
    const GgufTensorInfo* router = f->find_tensor("blk.0.ffn_gate_inp.weight");
    const GgufTensorInfo* up = f->find_tensor("blk.0.ffn_up_exps.weight");
    ASSERT_TRUE(router != nullptr && up != nullptr);
    EXPECT_EQ(router->ggml_type, 0u);
    EXPECT_NE(up->ggml_type, 1u);
  }
}

INSTANTIATE_TEST_SUITE_P(Families, MoeQuantizeVsLlamaCpp,
                         ::testing::Values(MoeModelCase{"mixtral_8x", "llama", 8, 2},
                                           MoeModelCase{"qwen3moe_16x", "qwen3moe", 16, 4}),
                         [](const auto& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace kiln
