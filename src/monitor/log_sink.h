#pragma once
// Where a process's log lines go: standard error or a file opened for appending, in JSON or text
// (log_format.h), with a level below which events are dropped. Thread-safe.
//
// Each event becomes one line, formatted on the caller's thread without a lock and written with
// one write(2) of the whole line while holding the sink's lock: lines of concurrent events never
// interleave, and a file opened with O_APPEND gets each line whole at its end even when another
// process appends to it too. reopen() swaps the file under the same lock (logrotate renames the
// file, then signals the process): every line goes whole into the old file or whole into the new
// one, and none is lost.
#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>

#include "monitor/log_event.h"
#include "monitor/log_format.h"

namespace kiln::monitor {

struct LogSinkOptions {
  LogFormat format = LogFormat::text;
  LogLevel level = LogLevel::info;  // events below it are dropped
  std::string path;                 // empty: standard error
  LogContext context;
};

// The format for a log written to `fd` when none is asked for: text for a terminal, JSON for
// anything else (a file, a pipe to a log shipper, a container runtime's log).
LogFormat default_log_format(int fd);

class LogSink {
 public:
  // Opens `path` for appending (created with mode 0644 less the umask); throws kiln::Error
  // naming the file when it cannot.
  explicit LogSink(LogSinkOptions options);
  ~LogSink();
  LogSink(const LogSink&) = delete;
  LogSink& operator=(const LogSink&) = delete;

  bool enabled(LogLevel level) const { return level >= options_.level; }
  // Formats and writes `event` when its level is enabled.
  void write(const LogEvent& event);
  // Opens the path again and writes to the new file from now on. When it cannot be opened, the
  // old file stays in use and `error` (if given) says why. Standard error is never reopened
  // (true, nothing done).
  bool reopen(std::string* error = nullptr);

  const LogSinkOptions& options() const { return options_; }
  bool writes_to_file() const { return !options_.path.empty(); }
  // Lines that could not be written whole (disk full, a closed pipe): dropped, and counted here.
  std::uint64_t lines_dropped() const { return dropped_.load(std::memory_order_relaxed); }

 private:
  void write_line(const std::string& line);

  LogSinkOptions options_;
  std::mutex mutex_;  // the descriptor, and whole lines
  int fd_ = 2;
  bool owns_fd_ = false;
  std::atomic<std::uint64_t> dropped_{0};
};

}  // namespace kiln::monitor
