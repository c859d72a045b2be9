#include "train_flags.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdio>

#include "core/cpu_features.h"
#include "core/error.h"
#include "train/parameter_table.h"

namespace kiln::cli {

kernels::GemmPrecision precision_from_flag(const std::string& p, const char* command) {
  if (p == "f32") return kernels::GemmPrecision::F32;
  if (p == "bf16") return kernels::GemmPrecision::BF16;
  if (p == "auto") {
    const CpuFeatures& f = cpu_features();
    return f.avx512bf16 || f.amx_bf16 ? kernels::GemmPrecision::BF16 : kernels::GemmPrecision::F32;
  }
  fail("{}: --precision must be auto, f32 or bf16, not '{}'", command, p);
}

LlamaConfig config_from_flags(const ModelFlags& m, int context, std::uint32_t default_vocab, const char* command) {
  LlamaConfig c;
  c.arch = "llama";
  c.n_vocab = m.vocab > 0 ? m.vocab : static_cast<int>(default_vocab);
  c.n_embd = m.dim;
  c.n_layer = m.layers;
  c.n_head = m.heads;
  c.n_head_kv = m.kv_heads > 0 ? m.kv_heads : m.heads;
  KILN_CHECK(m.dim > 0 && m.heads > 0 && m.dim % m.heads == 0, "{}: --dim {} must be a multiple of --heads {}",
             command, m.dim, m.heads);
  c.head_dim = m.dim / m.heads;
  KILN_CHECK(c.head_dim % 2 == 0, "{}: the head width ({}) must be even for rope", command, c.head_dim);
  c.n_rot = c.head_dim;
  // SwiGLU's usual width, 8/3 of the model's, rounded up to a multiple of 256.
  c.n_ff = m.ffn > 0 ? m.ffn : (8 * m.dim / 3 + 255) / 256 * 256;
  c.n_ctx_train = context;
  c.rope_theta = m.rope_theta;
  c.tied_output = !m.untied;
  return c;
}

void add_run_options(CLI::App* t, train::TrainOptions& o, std::string& precision, std::string& export_type,
                     const std::function<CLI::Option*(CLI::Option*)>& opt) {
  opt(t->add_option("-c,--context", o.context, "Tokens per training window"))->capture_default_str();
  opt(t->add_option("-b,--batch", o.batch, "Windows per micro-batch (over all ranks)"))->capture_default_str();
  opt(t->add_option("--accum", o.accum, "Micro-batches per optimizer step (gradient accumulation)"))
      ->capture_default_str();
  opt(t->add_option("--steps", o.steps, "Optimizer steps"))->capture_default_str();
  opt(t->add_option("--lr", o.lr, "Peak learning rate"))->capture_default_str();
  opt(t->add_option("--min-lr", o.min_lr, "Learning rate at the end of the cosine (default: --lr / 10)"));
  opt(t->add_option("--warmup", o.warmup, "Steps of linear warmup (default: 100, at most a tenth of --steps)"));
  opt(t->add_option("--weight-decay", o.adamw.weight_decay, "AdamW's decoupled weight decay (matrices only)"))
      ->capture_default_str();
  opt(t->add_option("--beta1", o.adamw.beta1, "AdamW's first-moment decay"))->capture_default_str();
  opt(t->add_option("--beta2", o.adamw.beta2, "AdamW's second-moment decay"))->capture_default_str();
  opt(t->add_option("--clip", o.clip, "Clip the global gradient norm to this (0: no clipping)"))->capture_default_str();
  opt(t->add_option("--precision", precision,
                    "Matrix products: auto (bf16 where the CPU has AVX-512 BF16 or AMX), f32 or bf16 (f32 master "
                    "weights and sums either way)"))
      ->capture_default_str();
  opt(t->add_option("--eval-every", o.eval_every, "Steps between validation losses (0: at the end only)"))
      ->capture_default_str();
  opt(t->add_option("--eval-windows", o.eval_windows, "Validation windows per evaluation (0: all)"))
      ->capture_default_str();
  opt(t->add_option("--save-every", o.save_every, "Steps between checkpoints (0: at the end only)"))
      ->capture_default_str();
  opt(t->add_option("-s,--seed", o.seed, "Seed of the initial weights and of the data order"))->capture_default_str();
  opt(t->add_option("--export-type", export_type, "Type of the exported model's matrices: f32, f16 or bf16"))
      ->capture_default_str();
  opt(t->add_option("--name", o.name, "general.name of the exported model"));
}

void print_run_start(const train::TrainOptions& o, const LlamaConfig& c, const train::Trainer::DataSummary& data,
                 int ranks, int threads, std::int64_t start_step) {
  const train::ParameterTable table(c);
  std::printf("model: %d layers, dim %d, %d/%d heads, ffn %d, vocab %d, context %d, output %s: %.2fM parameters\n",
              c.n_layer, c.n_embd, c.n_head, c.n_head_kv, c.n_ff, c.n_vocab, c.n_ctx_train,
              c.tied_output ? "tied" : "untied", static_cast<double>(table.total()) / 1e6);
  std::printf("data: %s: %llu training tokens, %llu validation tokens\n", o.data_dir.c_str(),
              static_cast<unsigned long long>(data.train_tokens), static_cast<unsigned long long>(data.val_tokens));
  const double epochs = static_cast<double>(o.steps * o.tokens_per_step()) /
                        static_cast<double>(std::max<std::uint64_t>(1, data.train_tokens));
  std::printf("run: %lld steps of %d x %d x %d tokens (%.2f epochs), lr %.3g -> %.3g, warmup %lld, %s, %d rank%s x %d "
              "threads%s\n",
              static_cast<long long>(o.steps), o.batch, o.accum, o.context, epochs, o.lr, o.min_lr,
              static_cast<long long>(o.warmup), o.precision == kernels::GemmPrecision::BF16 ? "bf16" : "f32", ranks,
              ranks == 1 ? "" : "s", threads,
              start_step > 0 ? fmt::format(", resumed at step {}", start_step).c_str() : "");
  std::fflush(stdout);
}

}  // namespace kiln::cli
