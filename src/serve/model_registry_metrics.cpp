#include "serve/model_registry_metrics.h"

namespace kiln::serve {

monitor::ScopedCollector add_model_registry_metrics(monitor::Registry& registry, const ModelRegistry& models) {
  return registry.add_collector([&models](monitor::Collection& c) {
    int loaded = 0;
    for (const ModelStatus& s : models.status()) {
      const monitor::Labels m = {{"model", s.name}};
      loaded += s.loaded ? 1 : 0;
      c.gauge("kiln_model_loaded", "1 while the model is loaded.", s.loaded ? 1 : 0, m);
      c.gauge("kiln_model_loading", "1 while the model is being loaded.", s.loading ? 1 : 0, m);
      c.gauge("kiln_model_active_requests", "Requests holding the model (it is not unloaded while any does).", s.active,
              m);
      c.gauge("kiln_model_memory_bytes",
              "Weights and KV pool of the loaded model, as counted against the memory budget.",
              static_cast<double>(s.memory_bytes), m);
      c.gauge("kiln_model_idle_seconds", "Time since the model's last request ended (0 while it has requests).",
              s.idle_seconds, m);
      c.counter("kiln_model_loads_total", "Times the model was loaded.", static_cast<double>(s.loads), m);
      c.counter("kiln_model_unloads_total", "Times the model was unloaded (idle TTL, memory budget, shutdown).",
                static_cast<double>(s.unloads), m);
      c.counter("kiln_model_load_failures_total", "Loads of the model that failed.",
                static_cast<double>(s.load_failures), m);
      c.gauge("kiln_model_consecutive_load_failures", "Loads of the model that failed in a row (0 once one succeeds).",
              s.failed_loads, m);
      if (s.loads > 0)
        c.gauge("kiln_model_load_seconds", "How long the model's last successful load took.", s.load_seconds, m);
      if (s.loaded) {
        c.gauge("kiln_model_parameters", "Parameters of the loaded model.", static_cast<double>(s.parameters), m);
        c.gauge("kiln_model_weight_bytes", "Bytes of the loaded model's weights.", static_cast<double>(s.weight_bytes),
                m);
      }
    }
    c.gauge("kiln_models_loaded", "Models loaded.", loaded);
    c.gauge("kiln_models_memory_bytes",
            "Bytes of the loaded models and of loads in progress, against the memory budget.",
            static_cast<double>(models.loaded_bytes()));
    c.gauge("kiln_models_memory_budget_bytes", "The memory budget for models (--memory-budget); 0: none.",
            static_cast<double>(models.memory_budget()));
  });
}

}  // namespace kiln::serve
