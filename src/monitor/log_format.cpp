#include "monitor/log_format.h"

#include <fmt/format.h>

#include <cmath>
#include <ctime>
#include <iterator>

namespace kiln::monitor {

namespace {

// The length of the valid UTF-8 sequence at the start of `s` (1 to 4), or 0 when the first byte
// does not start one: a stray continuation byte, an overlong form, a surrogate, a code point
// beyond U+10FFFF, or a sequence cut short.
std::size_t utf8_sequence_length(std::string_view s) {
  const auto b = [&](std::size_t i) { return static_cast<unsigned char>(s[i]); };
  const unsigned char c = b(0);
  if (c < 0x80) return 1;
  std::size_t n = 0;
  unsigned char lo = 0x80, hi = 0xBF;  // the allowed range of the second byte
  if (c >= 0xC2 && c <= 0xDF)
    n = 2;
  else if (c == 0xE0)
    n = 3, lo = 0xA0;
  else if (c >= 0xE1 && c <= 0xEC)
    n = 3;
  else if (c == 0xED)
    n = 3, hi = 0x9F;  // no UTF-16 surrogates
  else if (c >= 0xEE && c <= 0xEF)
    n = 3;
  else if (c == 0xF0)
    n = 4, lo = 0x90;
  else if (c >= 0xF1 && c <= 0xF3)
    n = 4;
  else if (c == 0xF4)
    n = 4, hi = 0x8F;  // nothing beyond U+10FFFF
  else
    return 0;
  if (s.size() < n) return 0;
  if (b(1) < lo || b(1) > hi) return 0;
  for (std::size_t i = 2; i < n; ++i)
    if (b(i) < 0x80 || b(i) > 0xBF) return 0;
  return n;
}

void append_json_value(std::string& out, const LogValue& value) {
  if (const auto* s = std::get_if<std::string>(&value)) {
    append_json_string(out, *s);
  } else if (const auto* i = std::get_if<std::int64_t>(&value)) {
    fmt::format_to(std::back_inserter(out), "{}", *i);
  } else if (const auto* d = std::get_if<double>(&value)) {
    if (std::isfinite(*d))
      fmt::format_to(std::back_inserter(out), "{}", *d);
    else
      out += "null";
  } else if (const auto* f = std::get_if<bool>(&value)) {
    out += *f ? "true" : "false";
  } else if (const auto* list = std::get_if<std::vector<std::string>>(&value)) {
    out += '[';
    for (std::size_t k = 0; k < list->size(); ++k) {
      if (k > 0) out += ',';
      append_json_string(out, (*list)[k]);
    }
    out += ']';
  }
}

void append_key(std::string& out, std::string_view key) {
  out += ',';
  append_json_string(out, key);
  out += ':';
}

}  // namespace

const char* log_format_name(LogFormat format) { return format == LogFormat::json ? "json" : "text"; }

std::optional<LogFormat> parse_log_format(std::string_view name) {
  if (name == "text") return LogFormat::text;
  if (name == "json") return LogFormat::json;
  return std::nullopt;
}

std::string rfc3339_utc_ms(std::chrono::system_clock::time_point time) {
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(time.time_since_epoch()).count();
  // Floor division: a time before 1970 still gets a milliseconds part in 0..999.
  const std::time_t seconds = static_cast<std::time_t>(ms >= 0 ? ms / 1000 : (ms - 999) / 1000);
  const int millis = static_cast<int>(ms - static_cast<long long>(seconds) * 1000);
  std::tm tm{};
  ::gmtime_r(&seconds, &tm);
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                     tm.tm_hour, tm.tm_min, tm.tm_sec, millis);
}

void append_json_string(std::string& out, std::string_view text) {
  out += '"';
  std::size_t i = 0;
  while (i < text.size()) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c >= 0x80) {
      const std::size_t n = utf8_sequence_length(text.substr(i));
      if (n == 0) {
        out += "\\ufffd";
        ++i;
      } else {
        out.append(text.data() + i, n);
        i += n;
      }
      continue;
    }
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      default:
        // DEL too: valid in JSON, but a terminal showing the raw log would act on it.
        if (c < 0x20 || c == 0x7F)
          fmt::format_to(std::back_inserter(out), "\\u{:04x}", c);
        else
          out += static_cast<char>(c);
    }
    ++i;
  }
  out += '"';
}

void append_text_escaped(std::string& out, std::string_view text) {
  std::size_t i = 0;
  while (i < text.size()) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c >= 0x80) {
      const std::size_t n = utf8_sequence_length(text.substr(i));
      if (n == 0) {
        fmt::format_to(std::back_inserter(out), "\\x{:02x}", c);
        ++i;
      } else {
        out.append(text.data() + i, n);
        i += n;
      }
      continue;
    }
    if (c == '\n')
      out += "\\n";
    else if (c == '\r')
      out += "\\r";
    else if (c == '\t')
      out += "\\t";
    else if (c < 0x20 || c == 0x7F)
      fmt::format_to(std::back_inserter(out), "\\x{:02x}", c);
    else
      out += static_cast<char>(c);
    ++i;
  }
}

std::string format_json_line(const LogEvent& e, const LogContext& context) {
  std::string out;
  out.reserve(512);
  out += "{\"@timestamp\":\"";
  out += rfc3339_utc_ms(e.time);
  out += "\",\"log.level\":\"";
  out += log_level_name(e.level);
  out += '"';
  append_key(out, "message");
  append_json_string(out, e.message);
  append_key(out, "ecs.version");
  append_json_string(out, kEcsVersion);
  append_key(out, "service.name");
  append_json_string(out, context.service_name);
  if (!context.service_version.empty()) {
    append_key(out, "service.version");
    append_json_string(out, context.service_version);
  }
  if (context.pid > 0) {
    append_key(out, "process.pid");
    fmt::format_to(std::back_inserter(out), "{}", context.pid);
  }
  out += ",\"event.kind\":\"event\"";
  if (!e.category.empty()) {
    append_key(out, "event.category");
    append_json_value(out, std::vector<std::string>{e.category});
  }
  if (!e.type.empty()) {
    append_key(out, "event.type");
    append_json_value(out, std::vector<std::string>{e.type});
  }
  if (!e.action.empty()) {
    append_key(out, "event.action");
    append_json_string(out, e.action);
  }
  if (!e.outcome.empty()) {
    append_key(out, "event.outcome");
    append_json_string(out, e.outcome);
  }
  if (e.duration_ns >= 0) {
    append_key(out, "event.duration");
    fmt::format_to(std::back_inserter(out), "{}", e.duration_ns);
  }
  for (const LogField& f : e.fields) {
    append_key(out, f.key);
    append_json_value(out, f.value);
  }
  out += "}\n";
  return out;
}

std::string format_text_line(const LogEvent& e, const LogContext& context) {
  std::string out = rfc3339_utc_ms(e.time);
  out += ' ';
  out += context.text_prefix;
  if (e.level == LogLevel::warn)
    out += "warning: ";
  else if (e.level == LogLevel::error)
    out += "error: ";
  append_text_escaped(out, e.message);
  out += '\n';
  return out;
}

std::string format_line(LogFormat format, const LogEvent& event, const LogContext& context) {
  return format == LogFormat::json ? format_json_line(event, context) : format_text_line(event, context);
}

}  // namespace kiln::monitor
