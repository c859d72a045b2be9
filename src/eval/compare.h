#pragma once
// `kiln eval compare`: several variants of one model (quantized, pruned, ...) side by side
// against the base: file size, bits per weight, perplexity, KL divergence from the base, top-1
// agreement and decode speed. The base runs once; its rows go to a logits file (a temporary
// one unless the caller names it, or one given ready-made) that every variant is compared with.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/thread_pool.h"
#include "eval/chunks.h"
#include "eval/eval_stats.h"
#include "eval/perplexity.h"
#include "eval/svg_plot.h"
#include "model/llama_model.h"

namespace kiln::eval {

// The 2-D weight matrices of a model (embeddings, output, attention and feed-forward
// matrices; not the norms): their element count and stored bytes.
struct MatrixWeights {
  std::int64_t n_params = 0;
  std::uint64_t bytes = 0;
  double bits_per_weight() const { return n_params > 0 ? static_cast<double>(bytes) * 8 / static_cast<double>(n_params) : 0; }
};
MatrixWeights matrix_weights(const LlamaModel& model);

// Decode speed like `kiln bench -p 16 -n N`: a 16-token prompt, then N single-token steps
// (argmax fed back), one warm-up run and the mean rate of `repetitions` timed runs.
double decode_tokens_per_second(LlamaModel& model, ThreadPool& pool, int n_tokens, int repetitions = 3);

struct CompareRow {
  std::string path;
  std::string name;        // the file name without its folder
  bool is_base = false;
  std::uint64_t file_bytes = 0;
  MatrixWeights weights;
  Estimate ppl;
  Estimate kld;            // 0 for the base
  double kld_p99 = 0;
  Estimate same_top;       // 1 for the base
  Estimate ln_ppl_ratio;   // ln(PPL / PPL(base)) ± error of the paired difference
  double decode_tok_s = -1;  // -1: not measured
};

struct CompareOptions {
  int n_batch = 2048;
  int speed_tokens = 32;            // 0: skip the decode measurement
  std::string base_logits;          // read the base from this logits file instead of running it
  std::string save_base_logits;     // keep the base's logits file here (else a temporary file)
};

struct CompareResult {
  int n_ctx = 0;
  int n_chunks = 0;
  std::int64_t n_tokens = 0;  // scored positions per model
  std::vector<CompareRow> rows;  // the base first, then the variants in the order given
};

// `stage` names what runs ("base", a variant's name) for progress reports.
using CompareProgressFn = std::function<void(const std::string& stage, const EvalProgress&)>;

// Runs the comparison. `plan` is the chunks of the text (ignored when options.base_logits is
// set: the file's own chunks are used). The base must be loadable even with base_logits (for
// its size and speed).
CompareResult compare_models(const std::string& base_path, const std::vector<std::string>& variant_paths,
                             const ChunkPlan& plan, ThreadPool& pool, const CompareOptions& options,
                             const CompareProgressFn& progress = nullptr);

// The quality-against-size plot: KLD (log scale; the base, at KLD 0, is left out) or PPL
// (linear, base included) against bits per weight.
Plot compare_plot(const CompareResult& result, bool plot_ppl);

}  // namespace kiln::eval
