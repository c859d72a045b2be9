#include "train/train_metrics.h"

namespace kiln::train {

TrainMetrics TrainMetrics::create(monitor::Registry& r, const std::string& run) {
  const monitor::Labels l{{"run", run}};
  TrainMetrics m;
  m.steps = r.counter("kiln_train_steps_total", "Optimizer steps taken by this process since it started", l);
  m.tokens = r.counter("kiln_train_tokens_total", "Training tokens processed (over all ranks) since this process started", l);
  m.checkpoints = r.counter("kiln_train_checkpoints_total", "Checkpoints written", l);
  m.step = r.gauge("kiln_train_step", "Optimizer steps done in the run (a resumed run starts at its checkpoint's)", l);
  m.target_steps = r.gauge("kiln_train_target_steps", "Optimizer steps the run's schedule has", l);
  m.loss = r.gauge("kiln_train_loss", "Mean training loss (nats per token) of the last step", l);
  m.validation_loss = r.gauge("kiln_train_validation_loss", "Mean validation loss (nats per token) of the last evaluation", l);
  m.learning_rate = r.gauge("kiln_train_learning_rate", "Learning rate of the last step", l);
  m.grad_norm = r.gauge("kiln_train_grad_norm", "Global gradient norm of the last step, before clipping", l);
  m.tokens_per_second = r.gauge("kiln_train_tokens_per_second", "Training tokens per second of the last step, over all ranks", l);
  m.ranks = r.gauge("kiln_train_ranks", "Processes training the model together (MPI ranks)", l);
  m.step_seconds = r.histogram("kiln_train_step_duration_seconds", "Wall time of one optimizer step",
                               {0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 60}, l);
  return m;
}

}  // namespace kiln::train
