#pragma once
// The model registry's state as metrics, read at each collection (docs/metrics.md): per model
// whether it is loaded or loading, its requests, memory, idle time, loads, unloads and failures,
// how long its last load took and its size; over all models how many are loaded and the memory
// they take against the budget.
#include "monitor/registry.h"
#include "serve/model_registry.h"

namespace kiln::serve {

// `models` must outlive the returned handle.
[[nodiscard]] monitor::ScopedCollector add_model_registry_metrics(monitor::Registry& registry,
                                                                  const ModelRegistry& models);

}  // namespace kiln::serve
