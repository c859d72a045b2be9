// `kiln export onnx` against ONNX's own checker and ONNX Runtime (npm onnxruntime-node 1.31.1,
// run by tests/interop/onnxruntime_run.mjs): for the shared stories260K (llama2.c, tied output,
// grouped-query attention) and small random GGUFs (llama with grouped-query attention; llama
// with partial rotary, one key/value head and a tied output; qwen2 with q/k/v biases and halves
// rope; llama stored as f16 in external data), the exported graph
//   - passes onnx.checker.check_model(full_check=True) (Debian's python3-onnx);
//   - gives the prompt's logits at every position within 1e-4 of the logit range of kiln's own
//     (LlamaModel::forward over an f32 KV cache), and the same greedy continuation of 12 tokens,
//     decoding through its present/past_key_values cache, each step's logits within the same
//     bound;
//   - gives the same logits for a batch of two rows, each with one pad token masked out by
//     attention_mask (one at the end, one at the start with position_ids shifted).
// Each part skips visibly when its tool is missing (scripts/install-deps.sh --test installs them).
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "convert/onnx_export.h"
#include "convert/random_llama_gguf.h"
#include "core/thread_pool.h"
#include "model/llama_model.h"
#include "test_support.h"

namespace kiln {
namespace {

constexpr int kNewTokens = 12;
constexpr double kRelativeTolerance = 1e-4;  // max |ORT - kiln| / (max - min of kiln's logits)

struct ExportCase {
  std::string name;
  test::RandomLlamaSpec spec;  // unused for stories260K
  bool stories = false;
  std::string cli_flags;  // non-empty: exported through the kiln binary with these flags
  std::vector<int> prompt;
};

std::ostream& operator<<(std::ostream& os, const ExportCase& c) { return os << c.name; }

struct Exported {
  std::string model;  // the kiln model
  std::string onnx;
};

// Exports the case once per process (the checker and the runtime tests share the files).
Exported exported(const ExportCase& c) {
  static std::map<std::string, Exported> done;
  if (auto it = done.find(c.name); it != done.end()) return it->second;
  Exported e;
  e.onnx = test::temp_dir() + "/" + c.name + ".onnx";
  if (c.stories) {
    e.model = test::data_file("stories260K.bin");
  } else {
    e.model = test::temp_dir() + "/" + c.name + ".gguf";
    test::write_random_llama_gguf(c.spec, e.model);
  }
  if (!c.cli_flags.empty() || c.stories) {
    const test::KilnRun r =
        test::run_kiln("export onnx " + test::shell_quote(e.model) + " " + test::shell_quote(e.onnx) + " -q " + c.cli_flags);
    EXPECT_EQ(r.code, 0) << r.out;
  } else {
    convert::export_llama_onnx(e.model, e.onnx, {});
  }
  done[c.name] = e;
  return e;
}

// kiln's logits for the prompt (every position) and its greedy continuation with each decode
// step's logits, over an f32 cache.
struct KilnReference {
  int n_vocab = 0;
  std::vector<float> prompt_logits;  // (T, n_vocab)
  std::vector<int> tokens;
  std::vector<std::vector<float>> step_logits;  // (kNewTokens - 1) x (n_vocab)
};

int argmax(const float* x, int n) { return static_cast<int>(std::max_element(x, x + n) - x); }

KilnReference kiln_reference(const std::string& path, const std::vector<int>& prompt) {
  auto model = LlamaModel::load(path);
  ThreadPool pool(2);
  KvCache cache = model->make_kv_cache(128, DType::F32);
  const int seq = cache.add_sequence();
  KilnReference ref;
  const int V = ref.n_vocab = model->config().n_vocab;
  const int T = static_cast<int>(prompt.size());
  Batch batch;
  for (int t = 0; t < T; ++t) batch.add(prompt[static_cast<std::size_t>(t)], t, seq, true);
  ref.prompt_logits.resize(static_cast<std::size_t>(T) * V);
  model->forward(batch, cache, pool, ref.prompt_logits.data());
  int next = argmax(ref.prompt_logits.data() + static_cast<std::ptrdiff_t>(T - 1) * V, V);
  for (int step = 0; step < kNewTokens; ++step) {
    ref.tokens.push_back(next);
    if (step == kNewTokens - 1) break;
    batch.clear();
    batch.add(next, T + step, seq, true);
    std::vector<float> logits(static_cast<std::size_t>(V));
    model->forward(batch, cache, pool, logits.data());
    next = argmax(logits.data(), V);
    ref.step_logits.push_back(std::move(logits));
  }
  return ref;
}

// max |got - want| relative to the range of want.
double relative_max_diff(const std::vector<float>& got, const std::vector<float>& want) {
  EXPECT_EQ(got.size(), want.size());
  const auto [lo, hi] = std::minmax_element(want.begin(), want.end());
  double diff = 0;
  for (std::size_t i = 0; i < std::min(got.size(), want.size()); ++i)
    diff = std::max(diff, std::fabs(static_cast<double>(got[i]) - want[i]));
  return diff / std::max(1e-12, static_cast<double>(*hi - *lo));
}

class OnnxExport : public ::testing::TestWithParam<ExportCase> {
 protected:
  void SetUp() override {
    if (GetParam().stories && test::data_file("stories260K.bin").empty())
      GTEST_SKIP() << "shared data file stories260K.bin not found (set KILN_DATA_DIR)";
  }
};

TEST_P(OnnxExport, PassesTheOnnxChecker) {
  std::string out;
  if (test::run_command("/usr/bin/python3 -c 'import onnx' 2>&1", &out) != 0)
    GTEST_SKIP() << "python3-onnx is not installed (scripts/install-deps.sh --test): " << out;
  const Exported e = exported(GetParam());
  const std::string cmd =
      "/usr/bin/python3 -c 'import onnx, sys; onnx.checker.check_model(sys.argv[1], full_check=True)' " +
      test::shell_quote(e.onnx);
  EXPECT_EQ(test::run_command(cmd, &out, true), 0) << cmd << "\n" << out;
}

TEST_P(OnnxExport, OnnxRuntimeMatchesKiln) {
  const char* src = std::getenv("KILN_SOURCE_DIR");
  ASSERT_NE(src, nullptr);
  struct stat st {};
  if (::stat((std::string(src) + "/node_modules/onnxruntime-node").c_str(), &st) != 0)
    GTEST_SKIP() << "onnxruntime-node is not installed (scripts/install-deps.sh --test)";
  const ExportCase& c = GetParam();
  const Exported e = exported(c);

  std::string ids;
  for (int id : c.prompt) ids += (ids.empty() ? "" : " ") + std::to_string(id);
  const std::string cmd = "cd " + test::shell_quote(src) + " && node tests/interop/onnxruntime_run.mjs " +
                          test::shell_quote(e.onnx) + " --ids " + test::shell_quote(ids) + " -n " + std::to_string(kNewTokens);
  std::string out;
  ASSERT_EQ(test::run_command(cmd, &out), 0) << cmd << "\n" << out;
  const nlohmann::json ort = nlohmann::json::parse(out);

  const KilnReference ref = kiln_reference(e.model, c.prompt);
  ASSERT_EQ(ort["n_vocab"].get<int>(), ref.n_vocab);
  const double prompt_diff = relative_max_diff(ort["prompt_logits"].get<std::vector<float>>(), ref.prompt_logits);
  EXPECT_LT(prompt_diff, kRelativeTolerance) << "prompt logits";
  EXPECT_EQ(ort["tokens"].get<std::vector<int>>(), ref.tokens) << "greedy continuation";
  const auto steps = ort["step_logits"].get<std::vector<std::vector<float>>>();
  ASSERT_EQ(steps.size(), ref.step_logits.size());
  double step_diff = 0;
  for (std::size_t i = 0; i < steps.size(); ++i)
    step_diff = std::max(step_diff, relative_max_diff(steps[i], ref.step_logits[i]));
  EXPECT_LT(step_diff, kRelativeTolerance) << "decode-step logits (through the KV cache)";
  // The batch's rows against ORT's own batch of one, in absolute terms (same runtime).
  const auto [lo, hi] = std::minmax_element(ref.prompt_logits.begin(), ref.prompt_logits.end());
  EXPECT_LT(ort["batch_max_diff"].get<double>() / (*hi - *lo), kRelativeTolerance) << "padded batch of 2";
  std::printf("%s: prompt %.2e, decode %.2e, batch %.2e of the logit range\n", c.name.c_str(), prompt_diff, step_diff,
              ort["batch_max_diff"].get<double>() / (*hi - *lo));
}

std::vector<ExportCase> cases() {
  std::vector<ExportCase> v;
  v.push_back({"stories260K", {}, true, "", {1, 403, 407, 261, 378, 1000 % 512, 67}});
  const std::vector<int> prompt = {1, 5, 9, 17, 33, 2, 40, 11};
  test::RandomLlamaSpec gqa;  // 4 heads over 2 kv heads, own output
  v.push_back({"llama_gqa", gqa, false, "", prompt});
  test::RandomLlamaSpec partial;
  partial.n_rot = 8, partial.n_head_kv = 1, partial.tied_output = true, partial.seed = 8;
  v.push_back({"llama_partial_rope_tied", partial, false, "", prompt});
  test::RandomLlamaSpec qwen;
  qwen.arch = "qwen2", qwen.seed = 9;
  v.push_back({"qwen2_bias", qwen, false, "", prompt});
  test::RandomLlamaSpec half;
  half.f16_exact = true, half.seed = 10;
  v.push_back({"llama_f16_external", half, false, "--f16 --external-data", prompt});
  return v;
}

INSTANTIATE_TEST_SUITE_P(Models, OnnxExport, ::testing::ValuesIn(cases()),
                         [](const ::testing::TestParamInfo<ExportCase>& info) { return info.param.name; });

}  // namespace
}  // namespace kiln
