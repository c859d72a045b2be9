#pragma once
// One event for the log: a level, a message a person reads, and fields a machine reads, named
// as the Elastic Common Schema names them (event.action, http.request.method, ...; kiln's own
// under kiln.*). log_format.h turns an event into one line of JSON or of text; log_sink.h writes
// the lines. Events are built where something happens and formatted by whoever writes them, so a
// caller on a hot path only fills in a few strings and numbers.
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace kiln::monitor {

enum class LogLevel { debug, info, warn, error };

const char* log_level_name(LogLevel level);                      // "debug", "info", "warn", "error"
std::optional<LogLevel> parse_log_level(std::string_view name);  // the names above; nullopt otherwise

// A field's value: JSON writes strings, integers, reals (null when not finite), booleans and
// arrays of strings as themselves.
using LogValue = std::variant<std::string, std::int64_t, double, bool, std::vector<std::string>>;

struct LogField {
  std::string key;  // dotted ECS name ("url.path") or kiln.*
  LogValue value;
};

struct LogEvent {
  std::chrono::system_clock::time_point time = std::chrono::system_clock::now();  // @timestamp
  LogLevel level = LogLevel::info;
  std::string message;
  // ECS event.*: action names what happened ("http-request", "model-loaded"); category and type
  // are ECS's allowed values ("web"/"access", "process"/"start"); outcome is "success",
  // "failure", "unknown" or empty (left out); duration in nanoseconds, negative: left out.
  std::string action;
  std::string category = "process";
  std::string type = "info";
  std::string outcome;
  std::int64_t duration_ns = -1;
  std::vector<LogField> fields;  // written in this order, after the ones above

  LogEvent() = default;
  LogEvent(LogLevel level_, std::string action_, std::string message_)
      : level(level_), message(std::move(message_)), action(std::move(action_)) {}

  LogEvent& str(std::string key, std::string value) { return add(std::move(key), LogValue(std::move(value))); }
  LogEvent& num(std::string key, std::int64_t value) { return add(std::move(key), LogValue(value)); }
  LogEvent& real(std::string key, double value) { return add(std::move(key), LogValue(value)); }
  LogEvent& flag(std::string key, bool value) { return add(std::move(key), LogValue(value)); }
  LogEvent& list(std::string key, std::vector<std::string> values) {
    return add(std::move(key), LogValue(std::move(values)));
  }

 private:
  LogEvent& add(std::string key, LogValue value) {
    fields.push_back({std::move(key), std::move(value)});
    return *this;
  }
};

}  // namespace kiln::monitor
