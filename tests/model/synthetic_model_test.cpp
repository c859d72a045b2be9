// kiln synth's writer: every family it registers writes a model that loads back as that family,
// with the shape asked for, metadata overrides honoured, types that do not divide refused, and the
// same weights for the same seed.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "core/error.h"
#include "format/gguf_file.h"
#include "model/architecture.h"
#include "model/llama_model.h"
#include "model/synthetic_model.h"
#include "test_support.h"

namespace kiln {
namespace {

using ::testing::HasSubstr;

SyntheticModelSpec small_spec(const std::string& arch) {
  SyntheticModelSpec s;
  LlamaConfig& c = s.config;
  c.arch = arch;
  c.n_embd = 64, c.n_layer = 2, c.n_head = 4, c.n_head_kv = 2, c.head_dim = 16, c.n_ff = 96, c.n_ctx_train = 128;
  c.n_rot = 16;
  c.n_vocab = 40;
  return s;
}

TEST(SyntheticModel, EveryFamilyLoadsBackAsItself) {
  for (const Architecture* family : architectures()) {
    SCOPED_TRACE(family->name);
    const std::string path = test::temp_dir() + "/" + family->name + ".gguf";
    const LlamaConfig written = write_synthetic_model(small_spec(family->name), path);
    EXPECT_EQ(written.arch, family->name);
    std::unique_ptr<LlamaModel> m = LlamaModel::load(path);
    EXPECT_EQ(m->config().arch, family->name);
    EXPECT_EQ(m->config().n_layer, 2);
    EXPECT_EQ(m->config().n_head_kv, 2);
    EXPECT_EQ(m->config().n_vocab, 40);
    // A forward runs and gives finite logits.
    ThreadPool pool(1);
    KvCache cache = m->make_kv_cache(16);
    const int seq = cache.add_sequence();
    Batch b;
    for (int t = 0; t < 4; ++t) b.add(t + 1, t, seq, t == 3);
    std::vector<float> logits(40);
    m->forward(b, cache, pool, logits.data());
    for (float v : logits) EXPECT_TRUE(std::isfinite(v));
  }
}

TEST(SyntheticModel, OverridesAreReadBackAndChecked) {
  SyntheticModelSpec s = small_spec("llama");
  s.overrides.push_back({"llama.rope.freq_base", gguf_value::f32(5000.0f)});
  const std::string path = test::temp_dir() + "/override.gguf";
  EXPECT_EQ(write_synthetic_model(s, path).rope_theta, 5000.0f);
  EXPECT_EQ(GgufFile::open(path)->get_float("llama.rope.freq_base").value_or(0), 5000.0);

  s.overrides.push_back({"llama.attention.head_count_kv", gguf_value::u32(3)});  // 4 heads are not groups of 3
  try {
    write_synthetic_model(s, test::temp_dir() + "/bad.gguf");
    FAIL() << "an inconsistent override was written";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("head_count_kv"));
  }
}

TEST(SyntheticModel, RefusesTypesThatDoNotDivideRowsAndUnknownFamilies) {
  SyntheticModelSpec s = small_spec("llama");
  s.config.n_ff = 80;  // ffn_down's rows of 80 are not whole q4_0 blocks
  s.type = DType::Q4_0;
  try {
    write_synthetic_model(s, test::temp_dir() + "/q4.gguf");
    FAIL() << "rows that are not whole blocks were written";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("not a multiple of q4_0's block of 32"));
  }
  s = small_spec("gpt-j");
  try {
    write_synthetic_model(s, test::temp_dir() + "/x.gguf");
    FAIL() << "an unknown family was written";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("architecture 'gpt-j' is not supported"));
  }
}

TEST(SyntheticModel, SameSeedSameBytes) {
  SyntheticModelSpec s = small_spec("qwen3");
  const std::string a = test::temp_dir() + "/a.gguf", b = test::temp_dir() + "/b.gguf", c = test::temp_dir() + "/c.gguf";
  write_synthetic_model(s, a);
  write_synthetic_model(s, b);
  s.seed = 2;
  write_synthetic_model(s, c);
  EXPECT_EQ(test::read_file(a), test::read_file(b));
  EXPECT_NE(test::read_file(a), test::read_file(c));
}

}  // namespace
}  // namespace kiln
