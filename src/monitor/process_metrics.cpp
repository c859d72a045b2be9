#include "monitor/process_metrics.h"

#include <sys/resource.h>

#include "monitor/process_stats.h"

namespace kiln::monitor {

ScopedCollector add_process_metrics(Registry& registry) {
  return registry.add_collector([](Collection& c) {
    c.gauge("process_resident_memory_bytes", "Resident memory size in bytes.", static_cast<double>(resident_bytes()));
    const ProcessTimes t = process_times();
    if (t.valid) {
      c.gauge("process_virtual_memory_bytes", "Virtual memory size in bytes.", static_cast<double>(t.virtual_bytes));
      c.counter("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.", t.cpu_seconds);
      c.gauge("process_start_time_seconds", "Start time of the process since unix epoch in seconds.",
              t.start_unix_seconds);
    }
    if (const int fds = open_file_descriptors(); fds >= 0)
      c.gauge("process_open_fds", "Number of open file descriptors.", fds);
    rlimit limit{};
    if (::getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY)
      c.gauge("process_max_fds", "Maximum number of open file descriptors.", static_cast<double>(limit.rlim_cur));
  });
}

}  // namespace kiln::monitor
