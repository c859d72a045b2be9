#pragma once
// Prometheus' standard process metrics (process_resident_memory_bytes, process_cpu_seconds_total,
// ...; the names every exporter uses, so existing dashboards and alerts apply), read from /proc
// at each collection.
#include "monitor/registry.h"

namespace kiln::monitor {

[[nodiscard]] ScopedCollector add_process_metrics(Registry& registry);

}  // namespace kiln::monitor
