#include "monitor/log_event.h"

namespace kiln::monitor {

const char* log_level_name(LogLevel level) {
  switch (level) {
    case LogLevel::debug:
      return "debug";
    case LogLevel::info:
      return "info";
    case LogLevel::warn:
      return "warn";
    case LogLevel::error:
      return "error";
  }
  return "info";
}

std::optional<LogLevel> parse_log_level(std::string_view name) {
  for (LogLevel l : {LogLevel::debug, LogLevel::info, LogLevel::warn, LogLevel::error})
    if (name == log_level_name(l)) return l;
  return std::nullopt;
}

}  // namespace kiln::monitor
