#pragma once
// What `kiln train` records in a monitor::Registry, for Prometheus to scrape from
// --metrics-port while a run goes (docs/metrics.md, "kiln train"): progress (steps and tokens
// done, the schedule's length), the latest training and validation loss, learning rate,
// gradient norm and throughput, how long steps take, and checkpoints written. Handles are
// taken once; recording a step costs a few atomic updates.
#include <string>

#include "monitor/metrics.h"
#include "monitor/registry.h"

namespace kiln::train {

struct TrainMetrics {
  monitor::Counter steps;             // kiln_train_steps_total
  monitor::Counter tokens;            // kiln_train_tokens_total
  monitor::Counter checkpoints;       // kiln_train_checkpoints_total
  monitor::Gauge step;                // kiln_train_step
  monitor::Gauge target_steps;        // kiln_train_target_steps
  monitor::Gauge loss;                // kiln_train_loss
  monitor::Gauge validation_loss;     // kiln_train_validation_loss
  monitor::Gauge learning_rate;       // kiln_train_learning_rate
  monitor::Gauge grad_norm;           // kiln_train_grad_norm
  monitor::Gauge tokens_per_second;   // kiln_train_tokens_per_second
  monitor::Gauge ranks;               // kiln_train_ranks
  monitor::Histogram step_seconds;    // kiln_train_step_duration_seconds

  // Every series labelled with run=<run> (the exported model's name, or the output folder).
  static TrainMetrics create(monitor::Registry& registry, const std::string& run);
};

}  // namespace kiln::train
