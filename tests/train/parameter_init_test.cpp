// Where training's weights start: init_parameters draws the same model from the same seed
// (whatever the table's order), with GPT-2's scales; load_parameters reads a GGUF back into the
// table exactly (F32) or to the stored precision, and refuses a file of another shape. A model
// exported with a vocabulary carries a tokenizer that loads back equal.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "core/error.h"
#include "core/thread_pool.h"
#include "format/gguf_file.h"
#include "test_support.h"
#include "tokenizer/load_tokenizer.h"
#include "tokenizer/tokenizer.h"
#include "train/gguf_export.h"
#include "train/llama_training_model.h"
#include "train/parameter_init.h"
#include "train/tiny_llama_config.h"

namespace kiln::train {
namespace {

template <class Fn>
void expect_one_line_error(Fn&& fn, const std::string& needle) {
  try {
    fn();
    ADD_FAILURE() << "expected an error containing: " << needle;
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find(needle), std::string::npos) << what;
    EXPECT_EQ(what.find('\n'), std::string::npos) << what;
  }
}

LlamaConfig tiny_config(int n_vocab = 64) {
  return test::tiny_llama_config({.n_vocab = n_vocab, .n_embd = 64, .n_layer = 3, .n_ff = 128, .n_ctx = 32, .tied = true});
}

double stddev_of(const float* w, std::int64_t n) {
  double s = 0, s2 = 0;
  for (std::int64_t i = 0; i < n; ++i) s += w[i], s2 += static_cast<double>(w[i]) * w[i];
  const double mean = s / n;
  return std::sqrt(s2 / n - mean * mean);
}

TEST(ParameterInit, SeededScaledAndDeterministic) {
  const LlamaConfig c = tiny_config();
  const ParameterTable table(c);
  std::vector<float> a(static_cast<std::size_t>(table.total())), b(a.size()), other(a.size());
  init_parameters(table, c, 7, a.data());
  init_parameters(table, c, 7, b.data());
  init_parameters(table, c, 8, other.data());
  EXPECT_EQ(a, b);
  EXPECT_NE(a, other);
  for (const ParameterInfo& p : table.entries()) {
    const float* w = a.data() + p.offset;
    if (!p.decay) {
      for (std::int64_t i = 0; i < p.size(); ++i) ASSERT_EQ(w[i], 1.0f) << p.name;
      continue;
    }
    const bool residual = p.name.find("attn_output") != std::string::npos || p.name.find("ffn_down") != std::string::npos;
    const double expected = 0.02 * (residual ? 1.0 / std::sqrt(2.0 * c.n_layer) : 1.0);
    EXPECT_NEAR(stddev_of(w, p.size()), expected, expected * 0.1) << p.name;
  }
  // Two tensors of the same shape draw different values (each its own stream).
  const ParameterInfo& q0 = table.find("blk.0.attn_q.weight");
  const ParameterInfo& q1 = table.find("blk.1.attn_q.weight");
  EXPECT_NE(a[static_cast<std::size_t>(q0.offset)], a[static_cast<std::size_t>(q1.offset)]);
}

TEST(ParameterInit, LoadReadsAnExportBack) {
  ThreadPool pool(2);
  const LlamaConfig c = tiny_config();
  LlamaTrainingModel m(c, kernels::GemmPrecision::F32, pool);
  init_parameters(m.table(), c, 3, m.params());
  const std::string dir = test::temp_dir();
  for (const DType type : {DType::F32, DType::BF16}) {
    const std::string path = dir + "/init-" + std::string(dtype_name(type)) + ".gguf";
    GgufExportOptions o;
    o.type = type;
    export_gguf(m, path, o);
    const auto gguf = GgufFile::open(path);
    const LlamaConfig back = trainable_config_from_gguf(*gguf);
    EXPECT_EQ(back.n_embd, c.n_embd);
    EXPECT_EQ(back.n_head_kv, c.n_head_kv);
    EXPECT_TRUE(back.tied_output);
    std::vector<float> loaded(static_cast<std::size_t>(m.table().total()));
    load_parameters(*gguf, m.table(), loaded.data());
    for (std::size_t i = 0; i < loaded.size(); ++i) {
      const float w = m.params()[i];
      if (type == DType::F32) ASSERT_EQ(loaded[i], w) << i;
      else ASSERT_NEAR(loaded[i], w, std::fabs(w) / 128 + 1e-30) << i;
    }
  }
  // A table of another shape is refused by name.
  LlamaConfig wider = c;
  wider.n_ff = 192;
  const ParameterTable other(wider);
  std::vector<float> buf(static_cast<std::size_t>(other.total()));
  const auto gguf = GgufFile::open(dir + "/init-f32.gguf");
  expect_one_line_error([&] { load_parameters(*gguf, other, buf.data()); }, "blk.0.ffn_gate.weight is");
  LlamaConfig deeper = c;
  deeper.n_layer = 4;
  const ParameterTable deep(deeper);
  buf.resize(static_cast<std::size_t>(deep.total()));
  expect_one_line_error([&] { load_parameters(*gguf, deep, buf.data()); }, "has no tensor blk.3");
}

TEST(ParameterInit, ExportWithAVocabularyCarriesTheTokenizer) {
  KILN_REQUIRE_DATA(tok_path, "llama2-tokenizer.model");
  const auto tok = load_tokenizer_file(tok_path);
  ThreadPool pool(1);
  LlamaConfig c = tiny_config(tok->n_vocab());
  c.n_layer = 1;
  LlamaTrainingModel m(c, kernels::GemmPrecision::F32, pool);
  init_parameters(m.table(), c, 1, m.params());
  const std::string path = test::temp_dir() + "/with-vocab.gguf";
  GgufExportOptions o;
  o.vocab = &tok->vocab();
  export_gguf(m, path, o);
  const auto gguf = GgufFile::open(path);
  const auto back = load_tokenizer(*gguf);
  EXPECT_EQ(back->vocab().tokens, tok->vocab().tokens);
  EXPECT_EQ(back->vocab().scores, tok->vocab().scores);
  EXPECT_EQ(back->vocab().bos_id, tok->vocab().bos_id);
  const std::string text = "Once upon a time, there was a little cat.";
  EXPECT_EQ(back->encode(text, true, false), tok->encode(text, true, false));
  // A model of another vocabulary size is refused.
  LlamaConfig small = tiny_config(64);
  LlamaTrainingModel s(small, kernels::GemmPrecision::F32, pool);
  expect_one_line_error([&] { export_gguf(s, path, o); }, "must be equal");
}

}  // namespace
}  // namespace kiln::train
