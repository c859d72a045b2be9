// kiln's training against PyTorch (Debian python3-torch) on the same weights and batch, as
// llm.c checks itself: torch_llama_reference.py builds the same Llama in float64 from kiln's
// parameter buffer. kiln (f32) must give the same loss, logits and every tensor's gradient,
// and five AdamW steps the same losses; kiln's bf16 mode the same to bf16's precision.
// Skips visibly without torch.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "core/thread_pool.h"
#include "test_support.h"
#include "train/adamw.h"
#include "train/llama_training_model.h"

namespace kiln::train {
namespace {

constexpr int kB = 2, kT = 24, kSteps = 5;
constexpr float kLr = 3e-3f;
const AdamWOptions kAdam{0.9f, 0.95f, 1e-8f, 0.1f};

LlamaConfig parity_config(bool tied) {
  LlamaConfig c;
  c.arch = "llama";
  c.n_vocab = 101;
  c.n_embd = 48;
  c.n_layer = 2;
  c.n_head = 6;
  c.n_head_kv = 2;
  c.head_dim = 8;
  c.n_rot = 8;
  c.n_ff = 80;
  c.n_ctx_train = kT;
  c.rope_theta = 10000.0f;
  c.tied_output = tied;
  return c;
}

template <class T>
void write_file(const std::string& path, const T* data, std::size_t n) {
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(n * sizeof(T)));
}

std::vector<float> read_floats(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::vector<char> bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  std::vector<float> v(bytes.size() / sizeof(float));
  std::memcpy(v.data(), bytes.data(), v.size() * sizeof(float));
  return v;
}

// ‖a − b‖ / ‖b‖ over [begin, end).
double relative_error(const float* a, const float* b, std::int64_t n) {
  double diff = 0, norm = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    diff += (static_cast<double>(a[i]) - b[i]) * (static_cast<double>(a[i]) - b[i]);
    norm += static_cast<double>(b[i]) * b[i];
  }
  return std::sqrt(diff / std::max(norm, 1e-300));
}

void check_parity(bool tied) {
  const LlamaConfig config = parity_config(tied);
  ThreadPool pool(2);
  LlamaTrainingModel m(config, kernels::GemmPrecision::F32, pool);
  std::mt19937 rng(tied ? 21 : 20);
  std::normal_distribution<float> dist(0.0f, 0.1f);
  for (const ParameterInfo& p : m.table().entries())
    for (std::int64_t i = 0; i < p.size(); ++i) m.params()[p.offset + i] = p.decay ? dist(rng) : 1.0f + dist(rng);
  std::vector<int> tokens(kB * kT), targets(kB * kT);
  std::uniform_int_distribution<int> tok(0, config.n_vocab - 1);
  for (int& t : tokens) t = tok(rng);
  for (std::size_t i = 0; i < targets.size(); ++i) targets[i] = i % 7 == 3 ? -1 : tok(rng);
  const TokenBatch batch{kB, kT, tokens.data(), targets.data()};

  const std::string dir = test::temp_dir() + (tied ? "/tied" : "/untied");
  std::filesystem::create_directories(dir);
  nlohmann::json cfg = {{"n_vocab", config.n_vocab}, {"n_embd", config.n_embd},   {"n_layer", config.n_layer},
                        {"n_head", config.n_head},   {"n_head_kv", config.n_head_kv}, {"head_dim", config.head_dim},
                        {"n_ff", config.n_ff},       {"n_rot", config.n_rot},     {"rms_eps", config.rms_eps},
                        {"rope_theta", config.rope_theta}, {"tied", tied},      {"B", kB},
                        {"T", kT}};
  cfg["adamw"] = {{"lr", kLr},   {"beta1", kAdam.beta1}, {"beta2", kAdam.beta2},
                  {"eps", kAdam.eps}, {"weight_decay", kAdam.weight_decay}, {"steps", kSteps}};
  for (const ParameterInfo& p : m.table().entries())
    cfg["tensors"].push_back({{"name", p.name}, {"rows", p.rows}, {"cols", p.cols}, {"offset", p.offset}, {"decay", p.decay}});
  std::ofstream(dir + "/config.json") << cfg.dump();
  write_file(dir + "/params.f32", m.params(), static_cast<std::size_t>(m.table().total()));
  write_file(dir + "/tokens.i32", tokens.data(), tokens.size());
  write_file(dir + "/targets.i32", targets.data(), targets.size());

  const std::string script = std::string(std::getenv("KILN_SOURCE_DIR")) + "/tests/interop/torch_llama_reference.py";
  std::string out;
  const int rc = test::run_command("/usr/bin/python3 " + script + " " + dir, &out, true);
  if (rc == 77 * 256 || rc == 77) GTEST_SKIP() << "PyTorch is not installed (Debian python3-torch): " << out;
  ASSERT_EQ(rc, 0) << out;
  const nlohmann::json result = nlohmann::json::parse(std::ifstream(dir + "/result.json"));

  // Loss, logits and gradients of the first step.
  std::vector<float> logits(static_cast<std::size_t>(kB * kT * config.n_vocab));
  m.logits(batch, logits.data());
  const std::vector<float> torch_logits = read_floats(dir + "/logits.f32");
  ASSERT_EQ(torch_logits.size(), logits.size());
  EXPECT_LT(relative_error(logits.data(), torch_logits.data(), static_cast<std::int64_t>(logits.size())), 1e-5);
  m.zero_grads();
  const double loss = m.forward_backward(batch, 1.0f);
  EXPECT_NEAR(loss, result["loss"].get<double>(), 1e-5 * loss);
  const std::vector<float> torch_grads = read_floats(dir + "/grads.f32");
  ASSERT_EQ(static_cast<std::int64_t>(torch_grads.size()), m.table().total());
  for (const ParameterInfo& p : m.table().entries())
    EXPECT_LT(relative_error(m.grads() + p.offset, torch_grads.data() + p.offset, p.size()), 1e-4) << p.name;

  // bf16 products: the same gradients to bf16's precision.
  m.set_precision(kernels::GemmPrecision::BF16);
  m.zero_grads();
  EXPECT_NEAR(m.forward_backward(batch, 1.0f), result["loss"].get<double>(), 1e-2 * loss);
  for (const ParameterInfo& p : m.table().entries())
    EXPECT_LT(relative_error(m.grads() + p.offset, torch_grads.data() + p.offset, p.size()), 5e-2) << p.name << " (bf16)";
  m.set_precision(kernels::GemmPrecision::F32);

  // Five AdamW steps: the loss before each.
  AdamW opt(m.table(), kAdam);
  const auto& torch_losses = result["adamw_losses"];
  ASSERT_EQ(torch_losses.size(), static_cast<std::size_t>(kSteps));
  for (int s = 0; s < kSteps; ++s) {
    m.zero_grads();
    const double l = m.forward_backward(batch, 1.0f);
    EXPECT_NEAR(l, torch_losses[static_cast<std::size_t>(s)].get<double>(), 1e-4 * l) << "step " << s;
    opt.step(m.params(), m.grads(), kLr, pool);
  }
}

TEST(TorchTrainingParity, UntiedOutput) { check_parity(false); }
TEST(TorchTrainingParity, TiedOutput) { check_parity(true); }

}  // namespace
}  // namespace kiln::train
