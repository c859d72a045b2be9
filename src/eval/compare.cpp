#include "eval/compare.h"

#include <filesystem>
#include <unistd.h>

#include "core/error.h"
#include "eval/kl_divergence.h"
#include "eval/log_softmax.h"
#include "eval/logits_file.h"
#include "eval/speed_bench.h"

namespace kiln::eval {

MatrixWeights matrix_weights(const LlamaModel& model) {
  const LlamaWeights& w = model.weights();
  MatrixWeights m;
  auto add = [&](const TensorView& t) {
    m.n_params += t.n_elements();
    m.bytes += t.n_bytes();
  };
  add(w.token_embd);
  if (!model.config().tied_output) add(w.output);
  for (const LlamaLayerWeights& l : w.layers)
    for (const TensorView* t : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down, &l.ffn_gate_inp,
                                &l.ffn_gate_exps, &l.ffn_up_exps, &l.ffn_down_exps})
      if (t->data != nullptr) add(*t);  // a dense model has no experts, a mixture no dense FFN
  return m;
}

double decode_tokens_per_second(LlamaModel& model, ThreadPool& pool, int n_tokens, int repetitions) {
  KILN_CHECK(n_tokens >= 1 && repetitions >= 1, "decode speed needs at least one token and one repetition");
  // A short prompt first, so that decode attends to a few positions as in generation.
  const SpeedBenchOptions o{.n_prompt = 16, .n_gen = n_tokens, .repetitions = repetitions, .batch = 16};
  KvCache cache = model.make_kv_cache(speed_bench_positions(o));
  return run_speed_bench(model, cache, pool, o).decode.mean;
}

namespace {

std::string file_name(const std::string& path) { return std::filesystem::path(path).filename().string(); }

// Removes a temporary file when it goes out of scope.
struct TempFile {
  std::string path;
  ~TempFile() {
    if (!path.empty()) std::filesystem::remove(path);
  }
};

}  // namespace

CompareResult compare_models(const std::string& base_path, const std::vector<std::string>& variant_paths,
                             const ChunkPlan& plan, ThreadPool& pool, const CompareOptions& options,
                             const CompareProgressFn& progress) {
  KILN_CHECK(!variant_paths.empty(), "compare: give at least one variant besides the base");
  CompareResult result;
  CompareRow base_row;
  base_row.path = base_path;
  base_row.name = file_name(base_path);
  base_row.is_base = true;
  base_row.same_top.value = 1;

  TempFile temp;
  std::string logits_path = options.base_logits;
  int n_vocab = 0;
  {
    std::unique_ptr<LlamaModel> base = LlamaModel::load(base_path);
    n_vocab = base->config().n_vocab;
    base_row.file_bytes = base->source().file_size();
    base_row.weights = matrix_weights(*base);
    if (logits_path.empty()) {
      if (!options.save_base_logits.empty()) {
        logits_path = options.save_base_logits;
      } else {
        logits_path = (std::filesystem::temp_directory_path() /
                       ("kiln-base-logits-" + std::to_string(::getpid()) + ".bin")).string();
        temp.path = logits_path;
      }
      LogitsFileWriter writer(logits_path, plan, n_vocab);
      auto report = [&](const EvalProgress& p) {
        if (progress) progress(base_row.name, p);
      };
      const PerplexityResult ppl = save_base_logits(*base, plan, pool, options.n_batch, writer, report);
      writer.finish();
      base_row.ppl = ppl.ppl;
    }
    if (options.speed_tokens > 0) base_row.decode_tok_s = decode_tokens_per_second(*base, pool, options.speed_tokens);
  }
  const LogitsFile base_logits(logits_path);
  KILN_CHECK(base_logits.n_vocab() == n_vocab, "{}: n_vocab {} differs from the base model {} ({})", logits_path,
             base_logits.n_vocab(), base_path, n_vocab);
  result.n_ctx = base_logits.plan().n_ctx;
  result.n_chunks = base_logits.plan().n_chunks;
  result.n_tokens = static_cast<std::int64_t>(result.n_chunks) * base_logits.plan().n_scored();
  result.rows.push_back(base_row);

  for (const std::string& path : variant_paths) {
    std::unique_ptr<LlamaModel> model = LlamaModel::load(path);
    CompareRow row;
    row.path = path;
    row.name = file_name(path);
    row.file_bytes = model->source().file_size();
    row.weights = matrix_weights(*model);
    auto report = [&](const EvalProgress& p) {
      if (progress) progress(row.name, p);
    };
    const KldResult k = kl_divergence(base_logits, *model, pool, options.n_batch, report);
    row.ppl = k.ppl_model;
    row.kld = k.kld;
    row.kld_p99 = k.kld_p99;
    row.same_top = k.same_top;
    row.ln_ppl_ratio = k.ln_ppl_ratio;
    // With a ready-made base file the base's PPL is known only from the file's rows.
    if (!result.rows[0].ppl.value) result.rows[0].ppl = k.ppl_base;
    if (options.speed_tokens > 0) row.decode_tok_s = decode_tokens_per_second(*model, pool, options.speed_tokens);
    result.rows.push_back(row);
  }
  return result;
}

Plot compare_plot(const CompareResult& result, bool plot_ppl) {
  Plot plot;
  plot.x_label = "bits per weight (2-D weights)";
  if (plot_ppl) {
    plot.title = "Perplexity against size";
    plot.y_label = "perplexity";
  } else {
    plot.title = "KL divergence from " + (result.rows.empty() ? std::string("the base") : result.rows[0].name) +
                 " against size";
    plot.y_label = "mean KL divergence (nats)";
    plot.log_y = true;
  }
  for (const CompareRow& r : result.rows) {
    if (!plot_ppl && r.is_base) continue;
    // A variant identical to the base has KLD 0, which a log scale cannot show: it is drawn at
    // the bottom of the representable range and says so.
    double y = plot_ppl ? r.ppl.value : r.kld.value;
    std::string label = r.name;
    if (!plot_ppl && y <= 0) y = 1e-9, label += " (KLD 0)";
    plot.points.push_back({r.weights.bits_per_weight(), y, label});
  }
  return plot;
}

}  // namespace kiln::eval
