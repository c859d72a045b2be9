#include "monitor/progress_render.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <vector>

namespace kiln::monitor {

namespace {

constexpr int kMinBarCells = 10;
constexpr int kMaxBarCells = 40;

// Terminal cells of UTF-8 text, counted as code points (stage names may be file names); wide
// characters are rare enough in them to be ignored.
int display_width(std::string_view text) {
  int n = 0;
  for (unsigned char c : text) n += (c & 0xC0) != 0x80;
  return n;
}

// The longest prefix of `text` that takes at most `cells`, cut between code points.
std::string cut_to_width(std::string_view text, int cells) {
  int n = 0;
  std::size_t i = 0;
  for (; i < text.size(); ++i) {
    if ((static_cast<unsigned char>(text[i]) & 0xC0) != 0x80 && n++ == cells) break;
  }
  return std::string(text.substr(0, i));
}

bool is_bytes(std::string_view unit) { return unit == "bytes"; }

// Three significant digits of a scaled value: "1.23", "12.3", "123".
std::string three_digits(double v) {
  if (v < 9.995) return fmt::format("{:.2f}", v);
  if (v < 99.95) return fmt::format("{:.1f}", v);
  return fmt::format("{:.0f}", v);
}

// A JSON number, or null for what is not a finite number.
std::string json_number(std::optional<double> v, int decimals) {
  if (!v || !std::isfinite(*v)) return "null";
  return fmt::format("{:.{}f}", *v, decimals);
}

void append_json_string(std::string& out, std::string_view s) {
  out += '"';
  for (char ch : s) {
    const unsigned char c = static_cast<unsigned char>(ch);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += ch;
    } else if (c == '\n') {
      out += "\\n";
    } else if (c < 0x20 || c == 0x7F) {
      out += fmt::format("\\u{:04x}", c);
    } else {
      out += ch;
    }
  }
  out += '"';
}

// The numbers of the bar line are padded to their widest usual form, so that the bar keeps its
// width while they change.
std::string pad_left(std::string text, int cells) {
  const int width = display_width(text);
  return width >= cells ? text : std::string(static_cast<std::size_t>(cells - width), ' ') + text;
}

int number_cells(std::string_view unit) { return is_bytes(unit) ? 8 : 5; }  // "1023 KiB", "12.3K"

std::string counts_text(const ProgressSnapshot& s) {
  std::string done = format_progress_count(static_cast<double>(s.done), s.unit);
  if (!s.total) return is_bytes(s.unit) || s.unit.empty() ? done : done.append(" ").append(s.unit);
  const std::string total = format_progress_count(static_cast<double>(*s.total), s.unit);
  std::string text = pad_left(std::move(done), display_width(total));
  text.append("/").append(total);
  if (!is_bytes(s.unit) && !s.unit.empty()) text.append(" ").append(s.unit);
  return text;
}

std::string rate_text(const ProgressSnapshot& s) {
  std::string text = pad_left(s.rate ? format_progress_count(*s.rate, s.unit) : "--", number_cells(s.unit));
  if (!is_bytes(s.unit) && !s.unit.empty()) text.append(" ").append(s.unit);
  return text.append("/s");
}

std::string bar_cells(double percent, int cells) {
  const int filled = std::clamp(static_cast<int>(percent / 100.0 * cells), 0, cells);
  std::string bar(static_cast<std::size_t>(filled), '=');
  if (filled < cells) {
    bar += '>';
    bar.append(static_cast<std::size_t>(cells - filled - 1), ' ');
  }
  return "[" + bar + "]";
}

}  // namespace

std::optional<double> ProgressSnapshot::percent() const {
  if (!total) return std::nullopt;
  if (*total <= 0) return 100.0;
  return std::clamp(100.0 * static_cast<double>(done) / static_cast<double>(*total), 0.0, 100.0);
}

std::string_view progress_event_name(ProgressEvent event) {
  switch (event) {
    case ProgressEvent::start:
      return "start";
    case ProgressEvent::progress:
      return "progress";
    case ProgressEvent::end:
      return "end";
  }
  return "progress";
}

std::string format_progress_count(double value, std::string_view unit) {
  if (!std::isfinite(value) || value < 0) value = 0;
  if (is_bytes(unit)) {
    if (value < 1024) return fmt::format("{:.0f} B", value);
    const char* const units[] = {"KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    value /= 1024;
    while (value >= 999.5 && u < 3) value /= 1024, ++u;
    return three_digits(value) + " " + units[u];
  }
  // Fractions only matter below 10 (a rate of 0.4 repetitions/s); counts are whole.
  if (value < 9.95 && value != std::floor(value)) return fmt::format("{:.1f}", value);
  if (value < 9999.5) return fmt::format("{:.0f}", value);
  const char* const suffixes[] = {"K", "M", "G", "T"};
  int u = 0;
  value /= 1000;
  while (value >= 999.5 && u < 3) value /= 1000, ++u;
  return three_digits(value) + suffixes[u];
}

std::string format_progress_duration(std::optional<double> seconds) {
  if (!seconds || !std::isfinite(*seconds)) return "--:--";
  const long long s = std::llround(std::max(0.0, *seconds));
  if (s < 3600) return fmt::format("{}:{:02d}", s / 60, s % 60);
  return fmt::format("{}:{:02d}:{:02d}", s / 3600, s / 60 % 60, s % 60);
}

std::string render_progress_bar(const ProgressSnapshot& s, int columns) {
  const int limit = columns - 1;
  if (limit <= 0) return "";
  const std::string label = s.stage.empty() ? s.job : s.job + " " + s.stage;
  const std::optional<double> percent = s.percent();
  std::string times = pad_left(format_progress_duration(s.elapsed_s), 5);
  if (s.total) times.append(" ETA ").append(pad_left(format_progress_duration(s.eta_s), 5));

  // Tried in order: everything, then without the detail, the rate, and the bar.
  struct Drop {
    bool detail, rate, bar;
  };
  const Drop drops[] = {{false, false, false}, {true, false, false}, {true, true, false}, {true, true, true}};
  std::string line;
  for (const Drop& d : drops) {
    std::vector<std::string> fields;
    if (percent) fields.push_back(fmt::format("{:3.0f}%", std::floor(*percent)));
    fields.push_back(counts_text(s));
    if (!d.rate) fields.push_back(rate_text(s));
    fields.push_back(times);
    if (!s.detail.empty() && !d.detail) fields.push_back(s.detail);
    std::string rest;
    for (const std::string& f : fields) rest += "  " + f;

    const bool with_bar = percent && !d.bar;
    int cells = 0;
    if (with_bar) {
      cells = std::min(kMaxBarCells, limit - display_width(label) - display_width(rest) - 3);  // " [" "]"
      if (cells < kMinBarCells) continue;
    }
    line = with_bar ? label + " " + bar_cells(*percent, cells) + rest : label + rest;
    if (display_width(line) <= limit) return line;
    if (&d == &drops[3]) {
      // Still too wide: whole fields from the left while they fit, never half a number.
      if (display_width(label) > limit) return cut_to_width(label, limit);
      line = label;
      for (const std::string& f : fields) {
        if (display_width(line) + 2 + display_width(f) > limit) break;
        line += "  " + f;
      }
      return line;
    }
  }
  return line;
}

std::string render_progress_json(const ProgressSnapshot& s, ProgressEvent event) {
  std::string out = "{\"event\":";
  append_json_string(out, progress_event_name(event));
  out += ",\"job\":";
  append_json_string(out, s.job);
  out += ",\"stage\":";
  append_json_string(out, s.stage);
  out += fmt::format(",\"done\":{},\"total\":{}", s.done, s.total ? std::to_string(*s.total) : "null");
  out += ",\"unit\":";
  append_json_string(out, s.unit);
  out += ",\"rate\":" + json_number(s.rate, 3);
  out += ",\"elapsed_s\":" + json_number(s.elapsed_s, 3);
  out += ",\"eta_s\":" + json_number(s.eta_s, 3);
  out += ",\"percent\":" + json_number(s.percent(), 2);
  if (!s.detail.empty()) {
    out += ",\"detail\":";
    append_json_string(out, s.detail);
  }
  out += '}';
  return out;
}

}  // namespace kiln::monitor
