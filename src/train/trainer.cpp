#include "train/trainer.h"

#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "data/data_shard.h"
#include "eval/svg_plot.h"
#include "tokenizer/load_tokenizer.h"
#include "tokenizer/tokenizer.h"
#include "train/data_parallel.h"
#include "train/gguf_export.h"
#include "train/parameter_init.h"

namespace kiln::train {
namespace {

std::size_t sz(std::int64_t n) { return static_cast<std::size_t>(n); }

const char* precision_name(kernels::GemmPrecision p) { return p == kernels::GemmPrecision::BF16 ? "bf16" : "f32"; }

kernels::GemmPrecision precision_from_name(const std::string& s) {
  if (s == "f32") return kernels::GemmPrecision::F32;
  if (s == "bf16") return kernels::GemmPrecision::BF16;
  fail("precision '{}' is not f32 or bf16", s);
}

// MemAvailable of /proc/meminfo in bytes, or nothing where it cannot be read.
std::optional<std::uint64_t> available_memory() {
  std::ifstream in("/proc/meminfo");
  std::string key;
  std::uint64_t kib = 0;
  std::string unit;
  while (in >> key >> kib >> unit)
    if (key == "MemAvailable:") return kib * 1024;
  return std::nullopt;
}

std::string gib(std::uint64_t bytes) { return fmt::format("{:.2f} GiB", static_cast<double>(bytes) / (1ull << 30)); }

// The split's windows, or nothing when the folder (whose manifest `m` is, already read) has too
// few tokens of it for one window.
std::optional<TokenWindows> open_optional_split(const data::Manifest& m, const std::string& dir,
                                                const std::string& split, int context) {
  if (m.split_tokens(split) < static_cast<std::uint64_t>(context) + 1) return std::nullopt;
  return TokenWindows::open(dir, split, context);
}

std::string table_size_string(const LlamaConfig& config) {
  const double n = static_cast<double>(ParameterTable(config).total());
  return n >= 1e9 ? fmt::format("{:.2f}B", n / 1e9) : fmt::format("{:.1f}M", n / 1e6);
}

void append_line(const std::string& path, const std::string& line) {
  std::FILE* f = std::fopen(path.c_str(), "ab");
  if (f == nullptr) fail("{}: cannot open for appending", path);
  const bool ok = std::fwrite(line.data(), 1, line.size(), f) == line.size() && std::fputc('\n', f) != EOF;
  const bool closed = std::fclose(f) == 0;
  KILN_CHECK(ok && closed, "{}: write failed", path);
}

}  // namespace

nlohmann::json TrainOptions::to_json() const {
  return {{"data_dir", data_dir},     {"batch", batch},
          {"accum", accum},           {"context", context},
          {"steps", steps},           {"lr", lr},
          {"min_lr", min_lr},         {"warmup", warmup},
          {"beta1", adamw.beta1},     {"beta2", adamw.beta2},
          {"eps", adamw.eps},         {"weight_decay", adamw.weight_decay},
          {"clip", clip},             {"precision", precision_name(precision)},
          {"eval_every", eval_every}, {"eval_windows", eval_windows},
          {"save_every", save_every}, {"seed", seed},
          {"export_type", std::string(dtype_name(export_type))}, {"name", name}};
}

TrainOptions TrainOptions::from_json(const nlohmann::json& j) {
  TrainOptions o;
  auto get = [&](const char* key, auto& out) {
    KILN_CHECK(j.contains(key), "the run's options have no '{}'", key);
    try {
      j.at(key).get_to(out);
    } catch (const nlohmann::json::exception&) {
      fail("the run's option '{}' has the wrong type", key);
    }
  };
  std::string precision, export_type;
  get("data_dir", o.data_dir), get("batch", o.batch), get("accum", o.accum), get("context", o.context);
  get("steps", o.steps), get("lr", o.lr), get("min_lr", o.min_lr), get("warmup", o.warmup);
  get("beta1", o.adamw.beta1), get("beta2", o.adamw.beta2), get("eps", o.adamw.eps);
  get("weight_decay", o.adamw.weight_decay), get("clip", o.clip), get("precision", precision);
  get("eval_every", o.eval_every), get("eval_windows", o.eval_windows), get("save_every", o.save_every);
  get("seed", o.seed), get("export_type", export_type), get("name", o.name);
  o.precision = precision_from_name(precision);
  const std::optional<DType> t = parse_dtype(export_type);
  KILN_CHECK(t.has_value(), "the run's export type '{}' is not a type", export_type);
  o.export_type = *t;
  return o;
}

TrainPaths TrainPaths::in(const std::string& out_dir) {
  const std::filesystem::path d(out_dir);
  return {(d / "checkpoint.kiln").string(), (d / "model.gguf").string(), (d / "loss.svg").string(),
          (d / "train_log.jsonl").string()};
}

std::uint64_t training_memory_bytes(const LlamaConfig& c, int rows_per_rank, int context) {
  const ParameterTable table(c);
  const std::uint64_t n = static_cast<std::uint64_t>(rows_per_rank) * static_cast<std::uint64_t>(context);
  const std::uint64_t E = sz(c.n_embd), F = sz(c.n_ff), qd = sz(c.q_dim()), kvd = sz(c.kv_dim());
  const std::uint64_t scores = sz(c.n_head) * sz(context);
  // Kept per layer: x_in, xn1, x_mid, xn2 (E each), q, attn, k, v, gate, up, h, the attention
  // probabilities and two rstd; then the final norm's rows and the logits.
  const std::uint64_t per_layer = 4 * E + 2 * qd + 2 * kvd + 3 * F + scores + 2;
  const std::uint64_t kept = per_layer * sz(c.n_layer) + 2 * E + 1 + sz(c.n_vocab);
  // Backward scratch: one layer's gradients of the same rows.
  const std::uint64_t scratch = 2 * E + 2 * qd + 2 * kvd + 3 * F + scores;
  const std::uint64_t activations = (kept + scratch) * n * sizeof(float);
  const std::uint64_t state = static_cast<std::uint64_t>(table.total()) * 16;  // params, grads, m, v
  return state + activations;
}

Trainer::Trainer(const TrainOptions& options, const LlamaConfig& config, ThreadPool& pool)
    : options_(options),
      paths_(TrainPaths::in(options.out_dir)),
      pool_(pool),
      train_windows_(TokenWindows::open(options.data_dir, "train", options.context)),
      val_windows_(open_optional_split(train_windows_.manifest(), options.data_dir, "val", options.context)),
      sampler_(train_windows_.n_windows(), options.seed) {
  DataParallel& dp = DataParallel::instance();
  rank_ = dp.rank(), ranks_ = dp.size();
  const TrainOptions& o = options_;
  KILN_CHECK(o.batch > 0 && o.accum > 0, "--batch and --accum must be positive");
  KILN_CHECK(o.context >= 2, "--context must be at least 2 tokens");
  KILN_CHECK(o.steps > 0, "--steps must be positive");
  KILN_CHECK(o.warmup >= 0 && o.warmup <= o.steps, "--warmup ({}) must be between 0 and --steps ({})", o.warmup,
             o.steps);
  KILN_CHECK(std::isfinite(o.lr) && o.lr > 0 && o.min_lr >= 0 && o.min_lr <= o.lr,
             "the learning rates must satisfy 0 <= --min-lr <= --lr, with --lr > 0");
  KILN_CHECK(o.batch % ranks_ == 0, "--batch {} must divide evenly over {} ranks", o.batch, ranks_);
  KILN_CHECK(o.context <= config.n_ctx_train, "--context {} is longer than the model's context {}", o.context,
             config.n_ctx_train);
  const data::Manifest& m = train_windows_.manifest();
  KILN_CHECK(m.vocab_size <= static_cast<std::uint32_t>(config.n_vocab),
             "{}: the data's vocabulary has {} tokens, more than the model's {}", o.data_dir, m.vocab_size,
             config.n_vocab);
  dp.check_same(train_windows_.n_tokens(), "the training split's token count (the same data folder on every rank)");
  local_batch_ = o.batch / ranks_;

  const std::uint64_t need = training_memory_bytes(config, local_batch_, o.context);
  if (const std::optional<std::uint64_t> avail = available_memory()) {
    // Every rank of this host needs its own; ranks on other hosts check their own memory.
    KILN_CHECK(need <= *avail, "training needs about {} per process ({} parameters and the activations of {} x {} "
               "tokens) but {} is available: lower --batch or --context, or use --accum",
               gib(need), table_size_string(config), local_batch_, o.context, gib(*avail));
  }
  std::error_code ec;
  std::filesystem::create_directories(o.out_dir, ec);
  KILN_CHECK(!ec, "{}: cannot create the output folder ({})", o.out_dir, ec.message());

  model_ = std::make_unique<LlamaTrainingModel>(config, o.precision, pool_);
  optimizer_ = std::make_unique<AdamW>(model_->table(), o.adamw);
  tokens_.resize(sz(local_batch_) * sz(o.context));
  targets_.resize(tokens_.size());
}

Trainer::~Trainer() = default;

Trainer::DataSummary Trainer::data_summary() const {
  return {train_windows_.n_tokens(), val_windows_ ? val_windows_->n_tokens() : 0};
}

void Trainer::init_random() {
  init_parameters(model_->table(), model_->config(), options_.seed, model_->params());
  share_root_state(false);
}

void Trainer::init_from_gguf(const GgufFile& gguf) {
  load_parameters(gguf, model_->table(), model_->params());
  share_root_state(false);
}

void Trainer::share_root_state(bool with_moments) {
  // Every rank starts from rank 0's numbers, bit for bit, whatever each read or drew.
  DataParallel& dp = DataParallel::instance();
  if (ranks_ > 1) {
    const std::int64_t bytes = model_->table().total() * static_cast<std::int64_t>(sizeof(float));
    dp.broadcast(model_->params(), bytes);
    if (with_moments) {
      dp.broadcast(optimizer_->first_moment(), bytes);
      dp.broadcast(optimizer_->second_moment(), bytes);
    }
    dp.check_same(static_cast<std::uint64_t>(step_), "the step a run resumes at");
    dp.check_same(sampler_.cursor().epoch * 0x9e3779b97f4a7c15ull ^ sampler_.cursor().position,
                  "the data cursor a run resumes at");
  }
  initialized_ = true;
}

void Trainer::resume(const std::string& path) {
  const CheckpointState state = read_checkpoint_state(path);
  read_checkpoint_tensors(path, model_->table(), model_->params(), optimizer_->first_moment(),
                          optimizer_->second_moment());
  KILN_CHECK(state.seed == options_.seed, "{}: was written with seed {}, not {}", path, state.seed, options_.seed);
  const std::string hash = data::hash_hex(train_windows_.manifest().tokenizer_hash);
  KILN_CHECK(state.run.value("tokenizer_hash", hash) == hash,
             "{}: was trained on data of another tokenizer than {}", path, options_.data_dir);
  step_ = state.step;
  optimizer_->set_steps(state.step);
  sampler_.set_cursor(state.cursor);
  train_curve_.clear(), val_curve_.clear();
  if (state.run.contains("history")) {
    const nlohmann::json& h = state.run["history"];
    for (const auto& p : h.value("train", nlohmann::json::array())) train_curve_.emplace_back(p[0], p[1]);
    for (const auto& p : h.value("val", nlohmann::json::array())) val_curve_.emplace_back(p[0], p[1]);
  }
  share_root_state(true);
}

void Trainer::fill_micro_batch() {
  const int T = options_.context;
  const RankSlice mine = rank_slice(options_.batch, rank_, ranks_);
  window_ids_.resize(sz(options_.batch));
  for (int i = 0; i < options_.batch; ++i) window_ids_[sz(i)] = sampler_.next();
  for (int i = 0; i < mine.count; ++i)
    train_windows_.read_window(window_ids_[sz(mine.begin + i)], tokens_.data() + sz(i) * sz(T),
                               targets_.data() + sz(i) * sz(T));
}

StepRecord Trainer::train_step() {
  using clock = std::chrono::steady_clock;
  const auto t0 = clock::now();
  DataParallel& dp = DataParallel::instance();
  StepRecord r;
  r.lr = warmup_cosine_lr(step_, options_.warmup, options_.steps, options_.lr, options_.min_lr);
  model_->zero_grads();
  // (objective, cross-entropy, KL) summed over the micro-batches.
  double sums[3] = {0, 0, 0};
  const float scale = 1.0f / static_cast<float>(options_.accum);
  const RankSlice mine = rank_slice(options_.batch, rank_, ranks_);
  for (int a = 0; a < options_.accum; ++a) {
    fill_micro_batch();
    const TokenBatch batch{local_batch_, options_.context, tokens_.data(), targets_.data()};
    loss_->prepare(train_windows_, window_ids_.data() + mine.begin, batch);
    float* logits = model_->forward_logits(batch);
    const LossValue v = loss_->apply(batch, logits, model_->config().n_vocab, scale, true, pool_);
    sums[0] += v.loss, sums[1] += v.ce, sums[2] += v.kl;
    if (!std::isnan(v.loss)) model_->backward_from_logits(batch);
  }
  for (double& s : sums) s /= options_.accum;
  const std::int64_t n = model_->table().total();
  if (ranks_ > 1) {
    dp.average(model_->grads(), n);
    dp.average(sums, 3);
  }
  r.loss = sums[0], r.ce = sums[1], r.kl = sums[2];
  r.grad_norm = clip_gradient_norm(model_->grads(), n, options_.clip, pool_);
  if (!std::isfinite(r.loss) || !std::isfinite(r.grad_norm)) return r;
  optimizer_->step(model_->params(), model_->grads(), r.lr, pool_);
  ++step_;
  r.step = step_;
  const double seconds = std::chrono::duration<double>(clock::now() - t0).count();
  r.tokens_per_second = static_cast<double>(options_.tokens_per_step()) / std::max(seconds, 1e-9);
  return r;
}

double Trainer::validation_loss() { return validation().ce; }

LossValue Trainer::validation() {
  KILN_CHECK(val_windows_.has_value(), "{}: has no validation split", options_.data_dir);
  const TokenWindows& val = *val_windows_;
  std::uint64_t n = val.n_windows();
  if (options_.eval_windows > 0) n = std::min<std::uint64_t>(n, static_cast<std::uint64_t>(options_.eval_windows));
  const RankSlice mine = rank_slice(static_cast<int>(n), rank_, ranks_);
  const int T = options_.context;
  // (objective, cross-entropy, KL, each × tokens; tokens), summed over ranks: every window has
  // T targets.
  double totals[4] = {0, 0, 0, 0};
  std::vector<std::uint64_t> ids(sz(local_batch_));
  for (int done = 0; done < mine.count;) {
    const int b = std::min(local_batch_, mine.count - done);
    for (int i = 0; i < b; ++i) {
      ids[sz(i)] = static_cast<std::uint64_t>(mine.begin + done + i);
      val.read_window(ids[sz(i)], tokens_.data() + sz(i) * sz(T), targets_.data() + sz(i) * sz(T));
    }
    const TokenBatch batch{b, T, tokens_.data(), targets_.data()};
    loss_->prepare(val, ids.data(), batch);
    const LossValue v = loss_->apply(batch, model_->forward_logits(batch), model_->config().n_vocab, 0.0f, false, pool_);
    const double weight = static_cast<double>(b) * T;
    totals[0] += v.loss * weight, totals[1] += v.ce * weight, totals[2] += v.kl * weight;
    totals[3] += weight;
    done += b;
  }
  DataParallel::instance().sum(totals, 4);
  return {totals[0] / totals[3], totals[1] / totals[3], totals[2] / totals[3]};
}

nlohmann::json Trainer::history_json() const {
  nlohmann::json train = nlohmann::json::array(), val = nlohmann::json::array();
  for (const auto& [s, l] : train_curve_) train.push_back({s, l});
  for (const auto& [s, l] : val_curve_) val.push_back({s, l});
  return {{"train", train}, {"val", val}};
}

void Trainer::write_loss_svg() const {
  if (train_curve_.empty()) return;
  eval::Plot plot;
  plot.title = options_.name.empty() ? "training loss" : "training loss: " + options_.name;
  plot.x_label = "step";
  plot.y_label = "cross-entropy (nats per token)";
  eval::PlotLine train{"train", {}}, val{"validation", {}};
  for (const auto& [s, l] : train_curve_) train.points.emplace_back(static_cast<double>(s), l);
  for (const auto& [s, l] : val_curve_) val.points.emplace_back(static_cast<double>(s), l);
  plot.lines.push_back(std::move(train));
  if (!val.points.empty()) plot.lines.push_back(std::move(val));
  eval::write_svg(paths_.loss_svg, plot);
}

void Trainer::set_metrics(const TrainMetrics& metrics) {
  metrics_ = metrics;
  metrics_.target_steps.set(static_cast<double>(options_.steps));
  metrics_.step.set(static_cast<double>(step_));
  metrics_.ranks.set(ranks_);
}

void Trainer::save_checkpoint() {
  if (rank_ != 0) return;
  CheckpointState state;
  state.config = model_->config();
  state.step = step_;
  state.seed = options_.seed;
  state.cursor = sampler_.cursor();
  state.run = {{"options", options_.to_json()},
               {"tokenizer_hash", data::hash_hex(train_windows_.manifest().tokenizer_hash)},
               {"loss", loss_->to_json()},
               {"history", history_json()}};
  write_checkpoint(paths_.checkpoint, state, model_->table(), model_->params(), optimizer_->first_moment(),
                   optimizer_->second_moment());
  metrics_.checkpoints.inc();
  write_loss_svg();
}

void Trainer::export_model() {
  if (rank_ != 0) return;
  const data::Manifest& m = train_windows_.manifest();
  GgufExportOptions e;
  e.type = options_.export_type;
  e.name = options_.name;
  std::unique_ptr<Tokenizer> tokenizer;
  if (!m.tokenizer_path.empty()) {
    tokenizer = load_tokenizer_file(m.tokenizer_path);
    KILN_CHECK(data::tokenizer_hash(tokenizer->vocab()) == m.tokenizer_hash,
               "{}: the tokenizer at {} is not the one the data was prepared with", options_.data_dir,
               m.tokenizer_path);
    e.vocab = &tokenizer->vocab();
  }
  export_gguf(*model_, paths_.model, e);
}

TrainResult Trainer::run(monitor::Progress& progress, const std::function<void(const StepRecord&)>& on_step,
                         std::int64_t stop_after) {
  KILN_CHECK(initialized_, "the trainer's weights were not initialised");
  using clock = std::chrono::steady_clock;
  const auto t0 = clock::now();
  const std::int64_t first_step = step_;
  const bool root = rank_ == 0;
  const std::int64_t tps = options_.tokens_per_step();
  progress.stage("train", options_.steps * tps, "tokens");
  progress.set(step_ * tps);
  TrainResult result;
  if (root && first_step > 0)
    append_line(paths_.log, nlohmann::json{{"event", "resume"}, {"step", first_step}}.dump());
  const std::int64_t end = stop_after > 0 ? std::min(stop_after, options_.steps) : options_.steps;
  while (step_ < end) {
    StepRecord r = train_step();
    if (!std::isfinite(r.loss) || !std::isfinite(r.grad_norm)) {
      const bool saved = std::filesystem::exists(paths_.checkpoint);
      fail("step {}: the loss is {} and the gradient norm {}; training stopped without applying it. {}", step_ + 1,
           r.loss, r.grad_norm,
           saved ? fmt::format("The last checkpoint, {}, is as it was", paths_.checkpoint)
                 : std::string("No checkpoint was written (--save-every keeps one)"));
    }
    train_curve_.emplace_back(r.step, r.loss);
    result.last_loss = r.loss;
    const bool last = step_ == options_.steps;
    if (val_windows_ && ((options_.eval_every > 0 && step_ % options_.eval_every == 0) || last)) {
      r.val = validation();
      r.val_loss = r.val->ce;
      val_curve_.emplace_back(r.step, *r.val_loss);
      result.last_val_loss = r.val_loss;
    }
    metrics_.steps.inc();
    metrics_.tokens.inc(static_cast<double>(tps));
    metrics_.step.set(static_cast<double>(r.step));
    metrics_.loss.set(r.loss);
    metrics_.learning_rate.set(r.lr);
    metrics_.grad_norm.set(r.grad_norm);
    metrics_.tokens_per_second.set(r.tokens_per_second);
    metrics_.step_seconds.observe(static_cast<double>(tps) / std::max(r.tokens_per_second, 1e-9));
    if (r.val_loss) metrics_.validation_loss.set(*r.val_loss);
    if (root) {
      nlohmann::json line{{"step", r.step}, {"loss", r.loss}, {"lr", r.lr}, {"grad_norm", r.grad_norm},
                          {"tokens_per_second", r.tokens_per_second}};
      if (r.val_loss) line["val_loss"] = *r.val_loss;
      if (loss_->distills()) {
        line["ce"] = r.ce, line["kl"] = r.kl;
        if (r.val) line["val_kl"] = r.val->kl, line["val_distill_loss"] = r.val->loss;
      }
      append_line(paths_.log, line.dump());
      progress.set(step_ * tps);
      progress.detail(fmt::format("step {}/{} loss {:.4f}{}{} lr {:.2e}", step_, options_.steps, r.loss,
                                  loss_->distills() ? fmt::format(" (ce {:.4f} kl {:.4f})", r.ce, r.kl) : std::string(),
                                  val_curve_.empty() ? std::string() : fmt::format(" val {:.4f}", val_curve_.back().second),
                                  r.lr));
      if (on_step) on_step(r);
    }
    if (options_.save_every > 0 && step_ % options_.save_every == 0 && step_ < end) save_checkpoint();
  }
  progress.end_stage();
  save_checkpoint();
  export_model();
  result.steps_done = step_;
  result.seconds = std::chrono::duration<double>(clock::now() - t0).count();
  result.tokens_per_second = static_cast<double>((step_ - first_step) * tps) / std::max(result.seconds, 1e-9);
  if (!result.last_val_loss && !val_curve_.empty()) result.last_val_loss = val_curve_.back().second;
  return result;
}

}  // namespace kiln::train
