#include "monitor/log_sink.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/error.h"

namespace kiln::monitor {

namespace {

int open_for_append(const std::string& path, std::string* error) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0 && error) *error = fmt::format("cannot open log file '{}' for appending: {}", path, std::strerror(errno));
  return fd;
}

}  // namespace

LogFormat default_log_format(int fd) { return ::isatty(fd) ? LogFormat::text : LogFormat::json; }

LogSink::LogSink(LogSinkOptions options) : options_(std::move(options)) {
  if (options_.path.empty()) return;
  std::string error;
  fd_ = open_for_append(options_.path, &error);
  if (fd_ < 0) throw Error(error);
  owns_fd_ = true;
}

LogSink::~LogSink() {
  if (owns_fd_) ::close(fd_);
}

void LogSink::write(const LogEvent& event) {
  if (!enabled(event.level)) return;
  write_line(format_line(options_.format, event, options_.context));
}

void LogSink::write_line(const std::string& line) {
  std::lock_guard lock(mutex_);
  // One write(2) writes a line to a file whole; a pipe or terminal may take part of a long one,
  // and the rest follows before any other line (the lock is held).
  std::size_t done = 0;
  while (done < line.size()) {
    const ssize_t n = ::write(fd_, line.data() + done, line.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      dropped_.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    done += static_cast<std::size_t>(n);
  }
}

bool LogSink::reopen(std::string* error) {
  if (options_.path.empty()) return true;
  // Opened before the lock: lines go on to the old file meanwhile.
  const int fd = open_for_append(options_.path, error);
  if (fd < 0) return false;
  int old = -1;
  {
    std::lock_guard lock(mutex_);
    old = fd_;
    fd_ = fd;
  }
  ::close(old);
  return true;
}

}  // namespace kiln::monitor
