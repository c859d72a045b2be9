#pragma once
// A LogEvent as one line (ending in '\n'):
//   - JSON: one object per line, Elastic Common Schema names as flat dotted keys (the way ECS
//     loggers write them, and Elasticsearch, Filebeat and Loki read them): @timestamp (RFC 3339,
//     UTC, milliseconds), log.level, message, ecs.version, service.*, process.pid, event.*, then
//     the event's own fields in order. Strings are escaped so that the line stays one valid line
//     of JSON whatever they hold: control characters as \n, \t, \u00XX, and each byte that is not
//     part of valid UTF-8 as \ufffd (U+FFFD, the replacement character).
//   - text, for a terminal: "<timestamp> <prefix><level: >message", the level written only for
//     warnings and errors; control characters and bytes that are not valid UTF-8 are written as
//     \n, \t, \xNN, so that one event is one line.
// docs/operations.md lists every field kiln serve writes.
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "monitor/log_event.h"

namespace kiln::monitor {

enum class LogFormat { text, json };

const char* log_format_name(LogFormat format);                     // "text", "json"
std::optional<LogFormat> parse_log_format(std::string_view name);  // the names above; nullopt otherwise

// The ECS version whose field names the JSON lines use.
inline constexpr std::string_view kEcsVersion = "8.11.0";

// What every line of one process says about where it comes from.
struct LogContext {
  std::string service_name = "kiln";  // service.name
  std::string service_version;        // service.version; empty: left out
  std::int64_t pid = 0;               // process.pid; 0: left out
  std::string text_prefix;            // text lines: after the timestamp, e.g. "kiln serve: "
};

std::string format_json_line(const LogEvent& event, const LogContext& context);
std::string format_text_line(const LogEvent& event, const LogContext& context);
std::string format_line(LogFormat format, const LogEvent& event, const LogContext& context);

// RFC 3339 in UTC with milliseconds: "2025-01-31T23:59:59.123Z".
std::string rfc3339_utc_ms(std::chrono::system_clock::time_point time);

// `text` as a JSON string literal (quotes included), appended to `out`; see above.
void append_json_string(std::string& out, std::string_view text);
// `text` for one line of the text format, appended to `out`; see above.
void append_text_escaped(std::string& out, std::string_view text);

}  // namespace kiln::monitor
