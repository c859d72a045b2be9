// `kiln distill`: a student trained on a data folder against a teacher's distribution
// (α · cross-entropy + (1 − α) · τ² · KL), the teacher run by kiln's inference forward on every
// batch or read from a top-k cache that `kiln distill cache` writes. The loop is kiln train's
// (src/train/trainer.h) with the loss of src/train/distill_loss.h; this file holds the flags,
// the checks that teacher, student and data share one vocabulary, and the printing.
#include <fmt/format.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "commands.h"
#include "common_options.h"
#include "core/error.h"
#include "core/thread_pool.h"
#include "data/data_shard.h"
#include "data/manifest.h"
#include "format/gguf_file.h"
#include "model/llama_model.h"
#include "monitor/progress.h"
#include "tokenizer/vocab.h"
#include "train/checkpoint.h"
#include "train/data_parallel.h"
#include "train/distill_loss.h"
#include "train/parameter_init.h"
#include "train/teacher_cache.h"
#include "train/teacher_forward.h"
#include "train/token_windows.h"
#include "train/trainer.h"
#include "train_flags.h"

namespace kiln::cli {
namespace {

struct DistillCommand {
  train::TrainOptions options;
  train::DistillOptions distill;
  std::string teacher, student, cache;
  bool resume = false;
  std::string precision = "auto";
  std::string export_type = "f32";
  int threads = 0;
  std::int64_t stop_after = 0;
  monitor::ProgressMode progress = monitor::ProgressMode::automatic;
  std::vector<std::string> given;
};

struct CacheCommand {
  std::string teacher, data_dir, out;
  train::TeacherCacheWriteOptions options;
  int context = 256;
  int threads = 0;
  monitor::ProgressMode progress = monitor::ProgressMode::automatic;
};

bool given(const DistillCommand& cmd, const std::string& name) {
  return std::find(cmd.given.begin(), cmd.given.end(), name) != cmd.given.end();
}

std::string absolute_path(const std::string& p) {
  std::error_code ec;
  const std::filesystem::path abs = std::filesystem::absolute(p, ec);
  return ec ? p : abs.lexically_normal().string();
}

data::Manifest read_data_manifest(const std::string& dir) {
  return data::read_manifest((std::filesystem::path(dir) / data::kManifestName).string());
}

// A GGUF's vocabulary hash and size; none when the file carries no tokenizer.
struct VocabId {
  data::TokenizerHash hash{};
  std::size_t size = 0;
};
std::optional<VocabId> gguf_vocab(const GgufFile& gguf) {
  if (gguf.find("tokenizer.ggml.tokens") == nullptr) return std::nullopt;
  const Vocab v = Vocab::from_gguf(gguf);
  return VocabId{data::tokenizer_hash(v), static_cast<std::size_t>(v.size())};
}

// The teacher's checks against the data, before any work: one tokenizer (the token tables'
// hash, not only their sizes) and a context that covers the windows.
void check_teacher(const std::string& path, const GgufFile& gguf, const LlamaConfig& tc, const data::Manifest& m,
                   const std::string& data_dir, int context) {
  const std::optional<VocabId> v = gguf_vocab(gguf);
  KILN_CHECK(v.has_value(), "distill: the teacher {} has no tokenizer to compare with the data's", path);
  KILN_CHECK(v->hash == m.tokenizer_hash,
             "distill: the teacher {} has another vocabulary ({} tokens, hash {}) than the data {} ({} tokens, hash "
             "{}): teacher, student and data must share one tokenizer",
             path, v->size, data::hash_hex(v->hash).substr(0, 16), data_dir, m.vocab_size,
             data::hash_hex(m.tokenizer_hash).substr(0, 16));
  KILN_CHECK(tc.n_vocab >= static_cast<int>(m.vocab_size), "distill: the teacher's {} logits are fewer than the data's {} tokens",
             tc.n_vocab, m.vocab_size);
  KILN_CHECK(context <= tc.n_ctx_train, "distill: --context {} is longer than the teacher's context {}", context,
             tc.n_ctx_train);
}

// A student's shape from CONFIG.json: kiln train's shape flags as keys.
LlamaConfig student_config_from_json(const std::string& path, int context, int n_vocab) {
  std::ifstream in(path);
  KILN_CHECK(in.good(), "distill: {} cannot be read", path);
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    fail("distill: {}: not JSON ({})", path, e.what());
  }
  KILN_CHECK(j.is_object(), "distill: {}: not a JSON object", path);
  ModelFlags m;
  for (const auto& [key, value] : j.items()) {
    try {
      if (key == "dim") m.dim = value.get<int>();
      else if (key == "layers") m.layers = value.get<int>();
      else if (key == "heads") m.heads = value.get<int>();
      else if (key == "kv_heads") m.kv_heads = value.get<int>();
      else if (key == "ffn") m.ffn = value.get<int>();
      else if (key == "untied") m.untied = value.get<bool>();
      else if (key == "rope_theta") m.rope_theta = value.get<float>();
      else fail("distill: {}: unknown key \"{}\" (dim, layers, heads, kv_heads, ffn, untied, rope_theta)", path, key);
    } catch (const nlohmann::json::exception&) {
      fail("distill: {}: \"{}\" has the wrong type", path, key);
    }
  }
  KILN_CHECK(m.layers > 0 && m.dim > 0, "distill: {}: dim and layers must be positive", path);
  return config_from_flags(m, context, static_cast<std::uint32_t>(n_vocab), "distill");
}

nlohmann::json teacher_identity(const std::string& path, const std::string& sha, const std::string& cache) {
  return {{"path", path}, {"sha256", sha}, {"cache", cache}};
}

void run_distill(DistillCommand cmd) {
  train::TrainOptions& o = cmd.options;
  train::DataParallel& dp = train::DataParallel::instance();
  const bool root = dp.is_root();
  const train::TrainPaths paths = train::TrainPaths::in(o.out_dir);

  LlamaConfig config;
  std::unique_ptr<GgufFile> student_gguf;
  std::optional<train::CheckpointState> checkpoint;
  if (cmd.resume) {
    KILN_CHECK(std::filesystem::exists(paths.checkpoint), "distill: --resume: {} does not exist", paths.checkpoint);
    checkpoint = train::read_checkpoint_state(paths.checkpoint);
    KILN_CHECK(checkpoint->run.contains("options") && checkpoint->run.contains("loss"), "{}: has no run options",
               paths.checkpoint);
    const nlohmann::json& loss = checkpoint->run["loss"];
    KILN_CHECK(loss.value("kind", "") == "distill", "distill: {} is a kiln train run; continue it with kiln train",
               paths.checkpoint);
    for (const char* fixed : {"--data", "--student", "--cache", "--alpha", "--temperature", "--top-k", "--batch",
                              "--accum", "--context", "--lr", "--min-lr", "--warmup", "--weight-decay", "--clip",
                              "--precision", "--seed", "--beta1", "--beta2"})
      KILN_CHECK(!given(cmd, fixed), "distill: {} cannot change when a run resumes (it continues with the checkpoint's)",
                 fixed);
    train::TrainOptions saved = train::TrainOptions::from_json(checkpoint->run["options"]);
    saved.out_dir = o.out_dir;
    if (given(cmd, "--steps")) saved.steps = o.steps;
    if (given(cmd, "--eval-every")) saved.eval_every = o.eval_every;
    if (given(cmd, "--eval-windows")) saved.eval_windows = o.eval_windows;
    if (given(cmd, "--save-every")) saved.save_every = o.save_every;
    if (given(cmd, "--export-type")) saved.export_type = o.export_type;
    if (given(cmd, "--name")) saved.name = o.name;
    o = saved;
    cmd.distill.alpha = loss.value("alpha", 0.0f);
    cmd.distill.temperature = loss.value("temperature", 1.0f);
    cmd.distill.top_k = loss.value("top_k", 0);
    const nlohmann::json teacher = loss.value("teacher", nlohmann::json::object());
    if (cmd.teacher.empty()) cmd.teacher = teacher.value("path", "");
    cmd.cache = teacher.value("cache", "");
    config = checkpoint->config;
    KILN_CHECK(checkpoint->step <= o.steps, "distill: {} is at step {}, past --steps {}", paths.checkpoint,
               checkpoint->step, o.steps);
  } else {
    KILN_CHECK(!o.data_dir.empty(), "distill: --data is required");
    KILN_CHECK(!cmd.student.empty(), "distill: --student (CONFIG.json or a GGUF) is required");
    o.data_dir = absolute_path(o.data_dir);
    if (!cmd.cache.empty()) cmd.cache = absolute_path(cmd.cache);
    if (!given(cmd, "--min-lr")) o.min_lr = o.lr / 10;
    if (!given(cmd, "--warmup")) o.warmup = std::min<std::int64_t>(o.warmup, o.steps / 10);
    KILN_CHECK(!std::filesystem::exists(paths.checkpoint),
               "distill: {} already holds a run ({}): continue it with --resume, or choose another --out", o.out_dir,
               paths.checkpoint);
  }
  KILN_CHECK(!cmd.teacher.empty(), "distill: --teacher is required");
  cmd.teacher = absolute_path(cmd.teacher);

  // Every check that needs no teacher forward and no training, before either starts.
  const data::Manifest manifest = read_data_manifest(o.data_dir);
  const std::unique_ptr<GgufFile> teacher_gguf = GgufFile::open(cmd.teacher);
  std::unique_ptr<LlamaModel> teacher = LlamaModel::load(cmd.teacher);
  if (!cmd.resume && cmd.student.ends_with(".json") && !given(cmd, "--context"))
    o.context = std::min(o.context, teacher->config().n_ctx_train);
  check_teacher(cmd.teacher, *teacher_gguf, teacher->config(), manifest, o.data_dir, o.context);
  if (!cmd.resume) {
    if (cmd.student.ends_with(".json")) {
      config = student_config_from_json(cmd.student, o.context, teacher->config().n_vocab);
    } else {
      student_gguf = GgufFile::open(cmd.student);
      config = train::trainable_config_from_gguf(*student_gguf);
      if (const std::optional<VocabId> v = gguf_vocab(*student_gguf))
        KILN_CHECK(v->hash == manifest.tokenizer_hash,
                   "distill: the student {} has another vocabulary ({} tokens) than the teacher and the data: they "
                   "must share one tokenizer",
                   cmd.student, v->size);
      if (!given(cmd, "--context")) o.context = std::min(o.context, config.n_ctx_train);
    }
  }
  KILN_CHECK(config.n_vocab == teacher->config().n_vocab,
             "distill: the student has {} logits and the teacher {}: they must share one vocabulary", config.n_vocab,
             teacher->config().n_vocab);
  const std::string teacher_sha = train::file_sha256_hex(cmd.teacher);
  std::optional<train::TeacherCache> cache;
  if (!cmd.cache.empty()) {
    cache = train::TeacherCache::open(cmd.cache);
    cache->check_matches(teacher_sha, cmd.teacher, manifest, o.data_dir, o.context);
    if (!given(cmd, "--temperature") && !cmd.resume) cmd.distill.temperature = cache->key().temperature;
    KILN_CHECK(!given(cmd, "--top-k"), "distill: --top-k is the cache's ({}) when reading one", cache->key().k);
  }
  if (checkpoint) {
    const std::string saved = checkpoint->run["loss"].value("teacher", nlohmann::json::object()).value("sha256", "");
    KILN_CHECK(saved == teacher_sha, "distill: {} was distilled from another teacher (sha256 {}) than {} (sha256 {})",
               paths.checkpoint, saved.substr(0, 16), cmd.teacher, teacher_sha.substr(0, 16));
  }

  ThreadPool pool(thread_count(cmd.threads));
  train::TeacherForward teacher_forward(*teacher, pool);
  const nlohmann::json identity = teacher_identity(cmd.teacher, teacher_sha, cmd.cache);
  std::unique_ptr<train::DistillLoss> loss =
      cache ? std::make_unique<train::DistillLoss>(cmd.distill, *cache, identity)
            : std::make_unique<train::DistillLoss>(cmd.distill, teacher_forward, identity);
  train::Trainer trainer(o, config, pool);
  trainer.set_loss(*loss);
  if (checkpoint) trainer.resume(paths.checkpoint);
  else if (student_gguf) trainer.init_from_gguf(*student_gguf);
  else trainer.init_random();

  const monitor::ProgressMode mode = root ? cmd.progress : monitor::ProgressMode::none;
  const std::int64_t start_step = trainer.step();
  if (root) {
    print_run_start(o, config, trainer.data_summary(), dp.size(), pool.size(), start_step);
    const LlamaConfig& tc = teacher->config();
    std::printf("teacher: %s: %d layers, dim %d; alpha %.3g, temperature %.3g, %s\n", cmd.teacher.c_str(), tc.n_layer,
                tc.n_embd, cmd.distill.alpha, loss->options().temperature,
                cache ? fmt::format("top {} from the cache {}", cache->key().k, cmd.cache).c_str()
                      : (loss->options().top_k > 0 ? fmt::format("top {} on the fly", loss->options().top_k)
                                                   : std::string("every id on the fly"))
                            .c_str());
    std::fflush(stdout);
  }
  monitor::Progress progress("distill", mode);
  const train::TrainResult r = trainer.run(
      progress,
      [&](const train::StepRecord& s) {
        if (s.val)
          progress.log(fmt::format("step {}: loss {:.4f}, validation: cross-entropy {:.4f} (perplexity {:.2f}), KL "
                                   "{:.4f}, distillation loss {:.4f}; {:.0f} tok/s",
                                   s.step, s.loss, s.val->ce, std::exp(s.val->ce), s.val->kl, s.val->loss,
                                   s.tokens_per_second));
      },
      cmd.stop_after);
  progress.finish();
  if (!root) return;
  const std::int64_t ran = r.steps_done - start_step;
  if (ran > 0)
    std::printf("distilled %lld steps in %.1f s (%.0f tok/s), at step %lld; last loss %.4f",
                static_cast<long long>(ran), r.seconds, r.tokens_per_second, static_cast<long long>(r.steps_done),
                r.last_loss);
  else
    std::printf("no step to run: at step %lld", static_cast<long long>(r.steps_done));
  if (r.last_val_loss)
    std::printf(", validation cross-entropy %.4f (perplexity %.2f)", *r.last_val_loss, std::exp(*r.last_val_loss));
  if (r.steps_done < o.steps)
    std::printf("\nstopped at step %lld of %lld (continue with: kiln distill --out %s --resume)",
                static_cast<long long>(r.steps_done), static_cast<long long>(o.steps), o.out_dir.c_str());
  std::printf("\nwrote %s, %s, %s and %s\n", paths.model.c_str(), paths.checkpoint.c_str(), paths.loss_svg.c_str(),
              paths.log.c_str());
}

void run_cache(const CacheCommand& cmd) {
  KILN_CHECK(!cmd.teacher.empty() && !cmd.data_dir.empty() && !cmd.out.empty(),
             "distill cache: --teacher, --data and --out are required");
  KILN_CHECK(cmd.options.top_k > 0, "distill cache: --top-k must be positive");
  const data::Manifest manifest = read_data_manifest(cmd.data_dir);
  const std::unique_ptr<GgufFile> gguf = GgufFile::open(cmd.teacher);
  std::unique_ptr<LlamaModel> teacher = LlamaModel::load(cmd.teacher);
  check_teacher(cmd.teacher, *gguf, teacher->config(), manifest, cmd.data_dir, cmd.context);
  KILN_CHECK(cmd.options.top_k <= teacher->config().n_vocab, "distill cache: --top-k {} is more than the vocabulary's {}",
             cmd.options.top_k, teacher->config().n_vocab);
  KILN_CHECK(std::isfinite(cmd.options.temperature) && cmd.options.temperature > 0,
             "distill cache: --temperature must be positive");
  std::vector<train::TokenWindows> windows;
  for (const char* split : {"train", "val"})
    if (manifest.split_tokens(split) >= static_cast<std::uint64_t>(cmd.context) + 1)
      windows.push_back(train::TokenWindows::open(cmd.data_dir, split, cmd.context));
  KILN_CHECK(!windows.empty(), "distill cache: {} has no split of {} tokens", cmd.data_dir, cmd.context + 1);
  std::vector<const train::TokenWindows*> splits;
  for (const auto& w : windows) splits.push_back(&w);
  train::TeacherCacheKey key;
  key.teacher_sha256 = train::file_sha256_hex(cmd.teacher);
  const GgufValue* name = gguf->find("general.name");
  key.teacher_name = name != nullptr && name->as_string() != nullptr ? *name->as_string()
                                                                   : std::filesystem::path(cmd.teacher).filename().string();
  key.tokenizer_hash = data::hash_hex(manifest.tokenizer_hash);
  key.n_vocab = teacher->config().n_vocab;
  key.context = cmd.context;
  key.k = cmd.options.top_k;
  key.temperature = cmd.options.temperature;
  ThreadPool pool(thread_count(cmd.threads));
  train::TeacherForward forward(*teacher, pool);
  monitor::Progress progress("distill cache", cmd.progress);
  write_teacher_cache(cmd.out, forward, key, splits, cmd.options, progress);
  progress.finish();
  std::uint64_t total = 0;
  for (const auto* s : splits) total += s->n_windows();
  std::printf("wrote the top %d log-probabilities at temperature %.3g of %s for %llu windows of %d tokens to %s\n",
              key.k, key.temperature, cmd.teacher.c_str(), static_cast<unsigned long long>(total), cmd.context,
              cmd.out.c_str());
}

}  // namespace

void register_distill_command(CLI::App& app) {
  auto cmd = std::make_shared<DistillCommand>();
  train::TrainOptions& o = cmd->options;
  CLI::App* t = app.add_subcommand(
      "distill",
      "Distill a teacher GGUF into a student (a new model from CONFIG.json, or a GGUF such as a pruned one) on a "
      "folder of `kiln data prepare`: alpha x cross-entropy + (1 - alpha) x T^2 x KL(teacher_T || student_T), "
      "the teacher run on the fly or read from a top-k cache (kiln distill cache)");
  std::vector<CLI::Option*> options;
  auto opt = [&](CLI::Option* option) {
    options.push_back(option);
    return option;
  };
  opt(t->add_option("--teacher", cmd->teacher, "The teacher: a llama GGUF of any stored type, with its tokenizer"));
  opt(t->add_option("--student", cmd->student,
                    "The student: CONFIG.json (keys dim, layers, heads, kv_heads, ffn, untied, rope_theta: a new "
                    "model, seeded) or a llama GGUF to start from (its shape)"));
  opt(t->add_option("--data", o.data_dir, "Folder of token shards and manifest.json (the teacher's tokenizer)"));
  opt(t->add_option("--out", o.out_dir, "Output folder: checkpoint.kiln, model.gguf, loss.svg, train_log.jsonl"));
  opt(t->add_flag("--resume", cmd->resume, "Continue the run whose checkpoint is in --out, with its options"));
  opt(t->add_option("--cache", cmd->cache, "Read the teacher's top-k from this folder (kiln distill cache) instead of "
                                           "running it"));
  opt(t->add_option("--alpha", cmd->distill.alpha, "Weight of the cross-entropy with the data; 1 - alpha weighs the KL"))
      ->capture_default_str();
  opt(t->add_option("--temperature", cmd->distill.temperature,
                    "Softmax temperature T of teacher and student in the KL term (scaled by T^2); default: 1, or "
                    "the cache's"))
      ->capture_default_str();
  opt(t->add_option("--top-k", cmd->distill.top_k,
                    "On the fly: compare the teacher's top k ids and its remaining mass as one bucket (0: every id)"))
      ->capture_default_str();
  add_run_options(t, o, cmd->precision, cmd->export_type, opt);
  opt(t->add_option("--stop-after", cmd->stop_after,
                    "Stop after this step of the schedule with a checkpoint and a model (continue with --resume)"));
  add_threads_option(t, cmd->threads, "per rank");
  add_progress_options(t, cmd->progress);

  auto cache_cmd = std::make_shared<CacheCommand>();
  CLI::App* c = t->add_subcommand(
      "cache", "Run a teacher over every window of a data folder once and write its top-k log-probabilities at "
               "temperature T to a sharded cache folder, for kiln distill --cache");
  c->add_option("--teacher", cache_cmd->teacher, "The teacher GGUF")->required();
  c->add_option("--data", cache_cmd->data_dir, "Folder of kiln data prepare (the teacher's tokenizer)")->required();
  c->add_option("--out", cache_cmd->out, "Cache folder to create (shards train-NNNNN.topk, val-NNNNN.topk)")->required();
  c->add_option("-c,--context", cache_cmd->context, "Tokens per window (the student runs' --context)")
      ->capture_default_str();
  c->add_option("--top-k", cache_cmd->options.top_k, "Log-probabilities kept per position")->capture_default_str();
  c->add_option("--temperature", cache_cmd->options.temperature, "Temperature T of the teacher's softmax")
      ->capture_default_str();
  c->add_option("--windows-per-shard", cache_cmd->options.windows_per_shard, "Windows per shard file")
      ->capture_default_str();
  add_threads_option(c, cache_cmd->threads);
  add_progress_options(c, cache_cmd->progress);
  c->callback([cache_cmd] { run_cache(*cache_cmd); });
  t->require_subcommand(0, 1);
  t->footer(
      "Examples:\n"
      "  kiln distill --teacher teacher.gguf --student student.json --data data/ --out run/ --steps 500\n"
      "  kiln distill cache --teacher teacher.gguf --data data/ --out cache/ --top-k 32 -c 256\n"
      "  kiln distill --teacher teacher.gguf --student pruned.gguf --data data/ --cache cache/ --out run/\n"
      "  kiln distill --teacher teacher.gguf --out run/ --resume --steps 1000\n"
      "Defaults alpha 0, T 1: the forward KL alone, as Minitron distils and as measured best on kiln's default\n"
      "model; --alpha 0.5 --temperature 2 is Hinton et al.'s mix (docs/training.md, \"Distillation\").");
  t->callback([cmd, options, c] {
    if (c->parsed()) return;
    cmd->given.clear();
    for (const CLI::Option* op : options)
      if (op->count() > 0) cmd->given.push_back(op->get_name());
    KILN_CHECK(!cmd->options.out_dir.empty(), "distill: --out is required");
    cmd->options.precision = precision_from_flag(cmd->precision, "distill");
    const std::optional<DType> type = parse_dtype(cmd->export_type);
    KILN_CHECK(type && (*type == DType::F32 || *type == DType::F16 || *type == DType::BF16),
               "distill: --export-type must be f32, f16 or bf16, not '{}'", cmd->export_type);
    cmd->options.export_type = *type;
    train::DataParallel::instance().run([&] { run_distill(*cmd); });
  });
}

}  // namespace kiln::cli
