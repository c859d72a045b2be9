// One training step of kiln's LlamaTrainingModel (forward, backward, gradient clipping and
// AdamW) on the two configs ../shared/tools/torch_train_bench.py trains with PyTorch, batch 8
// × context 256, f32 and bf16 products. Counter tok/s: tokens per second of training.
//   small   dim 384, 6 layers, 6/2 heads, ffn 1024, vocab 4096   (~11M parameters)
//   medium  dim 640, 10 layers, 10/5 heads, ffn 1728, vocab 8192 (~51M parameters)
// with the output tied to the embeddings, as there.
// Compare with, in the same session:
//   /usr/bin/python3 ../shared/tools/torch_train_bench.py --threads 2 [--bf16]
//   build/bench/train_step_bench --benchmark_min_time=5
#include <benchmark/benchmark.h>

#include <unistd.h>

#include <cstdio>
#include <random>
#include <vector>

#include "core/thread_pool.h"
#include "train/adamw.h"
#include "train/llama_training_model.h"
#include "train/trainer.h"

namespace {

using namespace kiln;

double resident_mib() {
  std::FILE* f = std::fopen("/proc/self/statm", "r");
  long pages = 0, resident = 0;
  if (f != nullptr) {
    if (std::fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
    std::fclose(f);
  }
  return static_cast<double>(resident) * static_cast<double>(::sysconf(_SC_PAGESIZE)) / (1 << 20);
}
using namespace kiln::train;

LlamaConfig config(int which) {
  LlamaConfig c;
  c.arch = "llama";
  if (which == 0) c.n_embd = 384, c.n_layer = 6, c.n_head = 6, c.n_head_kv = 2, c.n_ff = 1024, c.n_vocab = 4096;
  else c.n_embd = 640, c.n_layer = 10, c.n_head = 10, c.n_head_kv = 5, c.n_ff = 1728, c.n_vocab = 8192;
  c.head_dim = c.n_embd / c.n_head;
  c.n_rot = c.head_dim;
  c.n_ctx_train = 256;
  c.tied_output = true;  // as the PyTorch model: logits through the embedding matrix
  return c;
}

void train_step(benchmark::State& state, int which, kernels::GemmPrecision precision) {
  const int threads = static_cast<int>(state.range(0));
  const int B = 8, T = 256;
  ThreadPool pool(threads);
  LlamaTrainingModel m(config(which), precision, pool);
  std::mt19937 rng(1);
  std::normal_distribution<float> dist(0.0f, 0.02f);
  for (const ParameterInfo& p : m.table().entries())
    for (std::int64_t i = 0; i < p.size(); ++i) m.params()[p.offset + i] = p.decay ? dist(rng) : 1.0f;
  std::vector<int> tokens(static_cast<std::size_t>(B * T)), targets(static_cast<std::size_t>(B * T));
  std::uniform_int_distribution<int> tok(0, m.config().n_vocab - 1);
  for (int& t : tokens) t = tok(rng);
  for (int& t : targets) t = tok(rng);
  const TokenBatch batch{B, T, tokens.data(), targets.data()};
  AdamW opt(m.table(), AdamWOptions{});
  // One step outside the timing: the first touches every activation and scratch buffer.
  m.zero_grads();
  m.forward_backward(batch, 1.0f);
  for (auto _ : state) {
    m.zero_grads();
    benchmark::DoNotOptimize(m.forward_backward(batch, 1.0f));
    clip_gradient_norm(m.grads(), m.table().total(), 1.0, pool);
    opt.step(m.params(), m.grads(), 1e-3f, pool);
  }
  state.counters["tok/s"] = benchmark::Counter(static_cast<double>(B * T), benchmark::Counter::kIsIterationInvariantRate);
  state.counters["params"] = static_cast<double>(m.table().total());
  // Work of the products per step: forward 2 and backward 4 flops per weight and token for every
  // matrix (the output's included, the embedding lookup not), and the attention's four T x T
  // products per layer (QKᵀ and PV forward, twice as much backward), counted whole.
  const LlamaConfig& c = m.config();
  double matrix_weights = static_cast<double>(c.n_vocab) * c.n_embd;  // the output
  for (const ParameterInfo& p : m.table().entries())
    if (p.decay && p.name != "token_embd.weight" && p.name != "output.weight") matrix_weights += static_cast<double>(p.size());
  const double flops = 6.0 * B * T * matrix_weights + 12.0 * c.n_layer * B * static_cast<double>(T) * T * c.q_dim();
  state.counters["GFLOP/s"] = benchmark::Counter(flops / 1e9, benchmark::Counter::kIsIterationInvariantRate);
  // Memory: resident now (the process's, so the largest config run so far sets it) against
  // Trainer's estimate (16 bytes per parameter and the activations of the batch).
  state.counters["rss_MiB"] = resident_mib();
  state.counters["estimate_MiB"] = static_cast<double>(training_memory_bytes(c, B, T)) / (1 << 20);
}

BENCHMARK_CAPTURE(train_step, small_f32, 0, kernels::GemmPrecision::F32)->Arg(2)->ArgName("threads")->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(train_step, small_bf16, 0, kernels::GemmPrecision::BF16)->Arg(2)->ArgName("threads")->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(train_step, medium_f32, 1, kernels::GemmPrecision::F32)->Arg(2)->ArgName("threads")->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(train_step, medium_bf16, 1, kernels::GemmPrecision::BF16)->Arg(2)->ArgName("threads")->UseRealTime()->Unit(benchmark::kMillisecond);

}  // namespace
