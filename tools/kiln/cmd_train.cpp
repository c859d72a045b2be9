// `kiln train`: a Llama trained on a data folder of `kiln data prepare`, from a config of flags,
// from a GGUF it continues, or resumed from its checkpoint; alone or as one rank of
// `mpirun -np N kiln train ...`. The loop lives in src/train/trainer.h; this file holds the
// flags and the printing.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "commands.h"
#include "common_options.h"
#include "core/cpu_features.h"
#include "core/error.h"
#include "core/thread_pool.h"
#include "data/manifest.h"
#include "format/gguf_file.h"
#include "monitor/build_info.h"
#include "monitor/process_metrics.h"
#include "monitor/progress.h"
#include "monitor/registry.h"
#include "monitor/text_format.h"
#include "serve/http_server.h"
#include "train/checkpoint.h"
#include "train/data_parallel.h"
#include "train/parameter_init.h"
#include "train/parameter_table.h"
#include "train/trainer.h"
#include "train_flags.h"

namespace kiln::cli {
namespace {

struct TrainCommand {
  train::TrainOptions options;
  ModelFlags model;
  std::string init;            // a GGUF to continue
  bool resume = false;         // from out/checkpoint.kiln
  std::string precision = "auto";
  std::string export_type = "f32";
  int threads = 0;
  int metrics_port = 0;  // 0: no metrics endpoint
  std::string metrics_host = "127.0.0.1";
  std::int64_t stop_after = 0;  // 0: run the whole schedule
  monitor::ProgressMode progress = monitor::ProgressMode::automatic;
  // Options given on the command line, which a resumed run must not contradict.
  std::vector<std::string> given;
};

// GET /metrics (the Prometheus text format) and /health for a scraper while the run goes, on
// rank 0 alone.
class MetricsEndpoint {
 public:
  MetricsEndpoint(const std::string& host, int port, monitor::Registry& registry) : registry_(registry) {
    serve::HttpServerOptions o;
    o.host = host;
    o.port = port < 0 ? 0 : port;  // -1: any free port
    o.io_threads = 1;
    server_ = std::make_unique<serve::HttpServer>(o, [this](serve::HttpRequest req, std::shared_ptr<serve::HttpExchange> ex) {
      if (req.method != "GET" && req.method != "HEAD")
        return ex->respond({405, "text/plain", "only GET and HEAD\n", {{"Allow", "GET, HEAD"}}});
      if (req.path == "/metrics")
        return ex->respond({200, std::string(monitor::kTextContentType), monitor::to_text(registry_.collect()), {}});
      if (req.path == "/health") return ex->respond({200, "text/plain", "ok\n", {}});
      ex->respond({404, "text/plain", "kiln train answers /metrics and /health\n", {}});
    });
    server_->start();
  }
  ~MetricsEndpoint() { server_->stop(); }
  int port() const { return server_->port(); }

 private:
  monitor::Registry& registry_;
  std::unique_ptr<serve::HttpServer> server_;
};

bool given(const TrainCommand& cmd, const std::string& name) {
  return std::find(cmd.given.begin(), cmd.given.end(), name) != cmd.given.end();
}

void run_train(TrainCommand cmd) {
  train::TrainOptions& o = cmd.options;
  train::DataParallel& dp = train::DataParallel::instance();
  const bool root = dp.is_root();
  const train::TrainPaths paths = train::TrainPaths::in(o.out_dir);

  LlamaConfig config;
  std::unique_ptr<GgufFile> init_gguf;
  std::optional<train::CheckpointState> checkpoint;
  if (cmd.resume) {
    KILN_CHECK(cmd.init.empty(), "train: --resume and --init exclude each other");
    KILN_CHECK(std::filesystem::exists(paths.checkpoint), "train: --resume: {} does not exist", paths.checkpoint);
    checkpoint = train::read_checkpoint_state(paths.checkpoint);
    KILN_CHECK(checkpoint->run.contains("options"), "{}: has no run options", paths.checkpoint);
    // The run continues as it was: its options come from the checkpoint. Only the length of the
    // run and how often it evaluates and saves may change.
    train::TrainOptions saved = train::TrainOptions::from_json(checkpoint->run["options"]);
    for (const char* fixed : {"--data", "--batch", "--accum", "--context", "--lr", "--min-lr", "--warmup",
                              "--weight-decay", "--clip", "--precision", "--seed", "--dim", "--layers", "--heads",
                              "--kv-heads", "--ffn", "--vocab", "--untied", "--beta1", "--beta2", "--rope-theta"})
      KILN_CHECK(!given(cmd, fixed),
                 "train: {} cannot change when a run resumes (it continues with the checkpoint's options)", fixed);
    saved.out_dir = o.out_dir;
    if (given(cmd, "--steps")) saved.steps = o.steps;
    if (given(cmd, "--eval-every")) saved.eval_every = o.eval_every;
    if (given(cmd, "--eval-windows")) saved.eval_windows = o.eval_windows;
    if (given(cmd, "--save-every")) saved.save_every = o.save_every;
    if (given(cmd, "--export-type")) saved.export_type = o.export_type;
    if (given(cmd, "--name")) saved.name = o.name;
    o = saved;
    config = checkpoint->config;
    KILN_CHECK(checkpoint->step <= o.steps, "train: {} is at step {}, past --steps {}", paths.checkpoint,
               checkpoint->step, o.steps);
  } else {
    KILN_CHECK(!o.data_dir.empty(), "train: --data is required");
    // Kept absolute in the checkpoint, so that --resume works from any folder.
    std::error_code ec;
    const std::filesystem::path abs = std::filesystem::absolute(o.data_dir, ec);
    if (!ec) o.data_dir = abs.lexically_normal().string();
    const data::Manifest m =
        data::read_manifest((std::filesystem::path(o.data_dir) / data::kManifestName).string());
    if (!cmd.init.empty()) {
      for (const char* shape : {"--dim", "--layers", "--heads", "--kv-heads", "--ffn", "--vocab", "--untied"})
        KILN_CHECK(!given(cmd, shape), "train: {} does not apply with --init (the model's shape is the GGUF's)", shape);
      init_gguf = GgufFile::open(cmd.init);
      config = train::trainable_config_from_gguf(*init_gguf);
      if (!given(cmd, "--context")) o.context = std::min(o.context, config.n_ctx_train);
    } else {
      config = config_from_flags(cmd.model, o.context, m.vocab_size, "train");
    }
    if (!given(cmd, "--min-lr")) o.min_lr = o.lr / 10;
    if (!given(cmd, "--warmup")) o.warmup = std::min<std::int64_t>(o.warmup, o.steps / 10);
    KILN_CHECK(!std::filesystem::exists(paths.checkpoint),
               "train: {} already holds a run ({}): continue it with --resume, or choose another --out", o.out_dir,
               paths.checkpoint);
  }

  ThreadPool pool(thread_count(cmd.threads));
  train::Trainer trainer(o, config, pool);
  if (checkpoint) trainer.resume(paths.checkpoint);
  else if (init_gguf) trainer.init_from_gguf(*init_gguf);
  else trainer.init_random();

  // Metrics: recorded on every rank (cheap), served by rank 0 when asked for.
  monitor::Registry registry;
  const monitor::ScopedCollector process_metrics = monitor::add_process_metrics(registry);
  const monitor::ScopedCollector build_info = monitor::add_build_info(registry);
  trainer.set_metrics(train::TrainMetrics::create(registry, o.name.empty() ? o.out_dir : o.name));
  std::unique_ptr<MetricsEndpoint> endpoint;
  if (root && cmd.metrics_port != 0) {
    endpoint = std::make_unique<MetricsEndpoint>(cmd.metrics_host, cmd.metrics_port, registry);
    std::printf("metrics: http://%s:%d/metrics\n", cmd.metrics_host.c_str(), endpoint->port());
  }

  const monitor::ProgressMode mode = root ? cmd.progress : monitor::ProgressMode::none;
  const std::int64_t start_step = trainer.step();
  if (root) print_run_start(o, config, trainer.data_summary(), dp.size(), pool.size(), start_step);
  monitor::Progress progress("train", mode);
  const train::TrainResult r = trainer.run(
      progress,
      [&](const train::StepRecord& s) {
        if (s.val_loss)
          progress.log(fmt::format("step {}: loss {:.4f}, validation loss {:.4f} (perplexity {:.2f}), {:.0f} tok/s",
                                   s.step, s.loss, *s.val_loss, std::exp(*s.val_loss), s.tokens_per_second));
      },
      cmd.stop_after);
  progress.finish();
  if (!root) return;
  const std::int64_t ran = r.steps_done - start_step;
  if (ran > 0)
    std::printf("trained %lld steps in %.1f s (%.0f tok/s), at step %lld; last loss %.4f", static_cast<long long>(ran),
                r.seconds, r.tokens_per_second, static_cast<long long>(r.steps_done), r.last_loss);
  else
    std::printf("no step to run: at step %lld", static_cast<long long>(r.steps_done));
  if (r.last_val_loss)
    std::printf(", validation loss %.4f (perplexity %.2f)", *r.last_val_loss, std::exp(*r.last_val_loss));
  if (r.steps_done < o.steps)
    std::printf("\nstopped at step %lld of %lld (continue with: kiln train --out %s --resume)",
                static_cast<long long>(r.steps_done), static_cast<long long>(o.steps), o.out_dir.c_str());
  std::printf("\nwrote %s, %s, %s and %s\n", paths.model.c_str(), paths.checkpoint.c_str(), paths.loss_svg.c_str(),
              paths.log.c_str());
}

}  // namespace

void register_train_command(CLI::App& app) {
  auto cmd = std::make_shared<TrainCommand>();
  train::TrainOptions& o = cmd->options;
  ModelFlags& m = cmd->model;
  CLI::App* t = app.add_subcommand(
      "train",
      "Train a Llama on a folder of `kiln data prepare`: from a config, from a GGUF (--init), or resumed (--resume); "
      "under mpirun, data-parallel over the ranks");
  std::vector<CLI::Option*> options;
  auto opt = [&](CLI::Option* option) {
    options.push_back(option);
    return option;
  };
  opt(t->add_option("--data", o.data_dir, "Folder of token shards and manifest.json (kiln data prepare)"));
  opt(t->add_option("--out", o.out_dir, "Output folder: checkpoint.kiln, model.gguf, loss.svg, train_log.jsonl"))
      ->required();
  opt(t->add_flag("--resume", cmd->resume, "Continue the run whose checkpoint is in --out, with its options"));
  opt(t->add_option("--init", cmd->init, "Continue training this llama GGUF (its shape; any stored type)"));
  // The model's shape, for a new model.
  opt(t->add_option("--dim", m.dim, "Model width"))->capture_default_str();
  opt(t->add_option("--layers", m.layers, "Transformer blocks"))->capture_default_str();
  opt(t->add_option("--heads", m.heads, "Attention heads"))->capture_default_str();
  opt(t->add_option("--kv-heads", m.kv_heads, "Key/value heads (grouped-query attention; default: --heads)"));
  opt(t->add_option("--ffn", m.ffn, "Feed-forward width (default: 8/3 x --dim rounded up to 256)"));
  opt(t->add_option("--vocab", m.vocab, "Vocabulary size (default: the data's tokenizer's)"));
  opt(t->add_flag("--untied", m.untied, "An output matrix of its own (default: tied to the embeddings)"));
  opt(t->add_option("--rope-theta", m.rope_theta, "Rope base frequency"))->capture_default_str();
  // The run.
  add_run_options(t, o, cmd->precision, cmd->export_type, opt);
  opt(t->add_option("--stop-after", cmd->stop_after,
                    "Stop after this step of the schedule with a checkpoint and a model (continue with --resume)"));
  add_threads_option(t, cmd->threads, "per rank");
  t->add_option("--metrics-port", cmd->metrics_port,
                "Serve Prometheus metrics of the run at http://HOST:PORT/metrics (rank 0; -1: any free port; 0: off)")
      ->capture_default_str();
  t->add_option("--metrics-host", cmd->metrics_host, "Address the metrics endpoint listens on")->capture_default_str();
  add_progress_options(t, cmd->progress);
  t->footer(
      "Examples:\n"
      "  kiln tokenizer train --vocab-size 4096 --out tok/ corpus.txt\n"
      "  kiln data prepare --tokenizer tok/tokenizer.gguf --out data/ corpus.txt\n"
      "  kiln train --data data/ --out run/ --dim 256 --layers 4 --heads 8 --steps 2000\n"
      "  kiln train --out run/ --resume --steps 4000\n"
      "  mpirun -np 2 kiln train --data data/ --out run/ -t 1\n"
      "  kiln run run/model.gguf -p \"Once upon a time\"");
  t->callback([cmd, options] {
    cmd->given.clear();
    for (const CLI::Option* op : options)
      if (op->count() > 0) cmd->given.push_back(op->get_name());
    cmd->options.precision = precision_from_flag(cmd->precision, "train");
    const std::optional<DType> type = parse_dtype(cmd->export_type);
    KILN_CHECK(type && (*type == DType::F32 || *type == DType::F16 || *type == DType::BF16),
               "train: --export-type must be f32, f16 or bf16, not '{}'", cmd->export_type);
    cmd->options.export_type = *type;
    // Under mpirun, an error on one rank ends the whole job (naming the rank) instead of leaving
    // the other ranks waiting in a collective.
    train::DataParallel::instance().run([&] { run_train(*cmd); });
  });
}

}  // namespace kiln::cli
