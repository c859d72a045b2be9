#pragma once
// The training loop behind `kiln train`: windows of a prepared data folder (train/
// token_windows.h) through LlamaTrainingModel's forward and backward, gradients accumulated
// over micro-batches and averaged over the ranks of a data-parallel run (train/data_parallel.h),
// clipped, and applied by AdamW on a warmup + cosine schedule; validation loss every N steps;
// checkpoints that resume bit-exactly (train/checkpoint.h); the loss curves as an SVG; and the
// trained model as a GGUF with the data's tokenizer.
//
// What one optimizer step sees: `accum` micro-batches of `batch` windows of `context` tokens,
// every rank drawing the same windows from the seeded sampler and running its own slice of each
// micro-batch, so that a run of N ranks computes the same mean gradient as one process.
#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/thread_pool.h"
#include "kernels/dense_gemm.h"
#include "model/llama_config.h"
#include "monitor/progress.h"
#include "train/adamw.h"
#include "train/checkpoint.h"
#include "train/llama_training_model.h"
#include "train/token_windows.h"
#include "train/train_metrics.h"
#include "train/training_loss.h"

namespace kiln::train {

struct TrainOptions {
  std::string data_dir;        // a folder `kiln data prepare` wrote
  std::string out_dir;         // checkpoint, model, loss curves and log go here
  int batch = 8;               // windows per micro-batch, over all ranks
  int accum = 1;               // micro-batches per optimizer step
  int context = 256;           // tokens per window
  std::int64_t steps = 1000;   // optimizer steps in all
  float lr = 1e-3f;            // peak learning rate
  float min_lr = 1e-4f;        // where the cosine ends
  std::int64_t warmup = 100;   // steps of linear warmup
  AdamWOptions adamw;
  double clip = 1.0;           // global gradient norm bound; 0: none
  kernels::GemmPrecision precision = kernels::GemmPrecision::F32;
  std::int64_t eval_every = 100;  // steps between validation losses; 0: at the end only
  int eval_windows = 64;          // validation windows per evaluation; 0: every one
  std::int64_t save_every = 0;    // steps between checkpoints; 0: at the end only
  std::uint64_t seed = 1;         // weights (when made from a config) and the data order
  DType export_type = DType::F32;
  std::string name;               // general.name of the exported model

  nlohmann::json to_json() const;
  // Reads what to_json wrote; throws kiln::Error naming a missing or mistyped field.
  static TrainOptions from_json(const nlohmann::json& j);
  std::int64_t tokens_per_step() const { return static_cast<std::int64_t>(batch) * accum * context; }
};

// The files of a run, inside out_dir.
struct TrainPaths {
  std::string checkpoint, model, loss_svg, log;
  static TrainPaths in(const std::string& out_dir);
};

// One optimizer step, as the log and the progress line report it.
struct StepRecord {
  std::int64_t step = 0;  // 1-based: steps done after this one
  double loss = 0;        // mean training loss (the objective) over the step's tokens
  double ce = 0, kl = 0;  // its terms (kl: NaN unless the loss distills)
  double grad_norm = 0;   // before clipping
  float lr = 0;
  double tokens_per_second = 0;  // of this step, over all ranks
  std::optional<double> val_loss;  // when this step evaluated: the student's cross-entropy
  std::optional<LossValue> val;    // ... and every term of the loss
};

struct TrainResult {
  std::int64_t steps_done = 0;
  double last_loss = 0;
  std::optional<double> last_val_loss;
  double tokens_per_second = 0;  // over the run's steps
  double seconds = 0;
};

// An estimate of the resident memory training needs: parameters, gradients and both moments
// (16 bytes per parameter) and the activations one micro-batch of `rows_per_rank` sequences
// keeps for backward, with the scratch of backward.
std::uint64_t training_memory_bytes(const LlamaConfig& config, int rows_per_rank, int context);

class Trainer {
 public:
  // Opens the data (train and val splits), builds the model for `config` and its optimizer.
  // Throws kiln::Error before anything runs when the options are inconsistent (the batch not
  // divisible by the ranks, a context longer than the model's, a vocabulary smaller than the
  // data's) or when the estimate of memory exceeds what the machine has available.
  Trainer(const TrainOptions& options, const LlamaConfig& config, ThreadPool& pool);
  ~Trainer();

  // Where the weights start (exactly one, before run()).
  void init_random();                          // init_parameters with options.seed
  void init_from_gguf(const GgufFile& gguf);   // continue training a model
  void resume(const std::string& checkpoint);  // weights, moments, step, data cursor, history

  // Trains up to options.steps (or to step stop_after, when > 0: a run in parts, continued by
  // resume()), calling on_step after every step (rank 0 only, as every output). Evaluates every
  // eval_every steps and at the end of the schedule, writes a checkpoint every save_every steps
  // and where it stops, the loss curves with every checkpoint, and the GGUF where it stops. A
  // step whose loss or gradient is not finite stops the run with a kiln::Error naming the step,
  // leaving the last checkpoint as it was.
  TrainResult run(monitor::Progress& progress, const std::function<void(const StepRecord&)>& on_step = {},
                  std::int64_t stop_after = 0);

  // The mean validation cross-entropy over the first eval_windows windows of the val split.
  double validation_loss();
  // Every term of the loss over the same windows.
  LossValue validation();

  // The loss to minimise from now on (not owned; default: the cross-entropy). Set before run()
  // and before resume(), whose checkpoint records the loss it was written with.
  void set_loss(TrainingLoss& loss) { loss_ = &loss; }
  const TrainingLoss& loss_policy() const { return *loss_; }

  struct DataSummary {
    std::uint64_t train_tokens = 0, val_tokens = 0;
  };
  DataSummary data_summary() const;

  LlamaTrainingModel& model() { return *model_; }
  std::int64_t step() const { return step_; }
  const TrainOptions& options() const { return options_; }
  const TrainPaths& paths() const { return paths_; }

  // Records every step into these handles from now on (rank 0 records; the handles must outlive
  // the trainer's use of them).
  void set_metrics(const TrainMetrics& metrics);

  // Writes the checkpoint (and the loss curves) now; rank 0 only.
  void save_checkpoint();
  void export_model();

 private:
  // One optimizer step; returns its record (loss NaN when it failed).
  StepRecord train_step();
  void fill_micro_batch();
  void write_loss_svg() const;
  // After the weights are set: rank 0's parameters (and moments) go to every rank.
  void share_root_state(bool with_moments);
  nlohmann::json history_json() const;

  TrainOptions options_;
  TrainPaths paths_;
  ThreadPool& pool_;
  TokenWindows train_windows_;
  std::optional<TokenWindows> val_windows_;  // none when the data has no validation split
  WindowSampler sampler_;
  std::unique_ptr<LlamaTrainingModel> model_;
  std::unique_ptr<AdamW> optimizer_;
  CrossEntropyLoss cross_entropy_;
  TrainingLoss* loss_ = &cross_entropy_;
  TrainMetrics metrics_;  // records nothing until set_metrics
  std::int64_t step_ = 0;
  bool initialized_ = false;
  int rank_ = 0, ranks_ = 1;
  int local_batch_ = 0;             // this rank's windows per micro-batch
  std::vector<int> tokens_, targets_;  // (local_batch, context)
  std::vector<std::uint64_t> window_ids_;  // (batch) the micro-batch's windows, every rank's
  // The curves: (step, loss) of every step, and of every validation.
  std::vector<std::pair<std::int64_t, double>> train_curve_, val_curve_;
};

}  // namespace kiln::train
