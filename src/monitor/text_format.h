#pragma once
// The Prometheus text exposition format (version 0.0.4), what GET /metrics answers and what
// Prometheus and promtool read. prometheus-cpp's TextSerializer writes it: HELP and TYPE lines,
// label values escaped (backslash, double quote, newline), a histogram as its _count, its _sum
// and cumulative _bucket series whose le label ends with +Inf. Its version 1.0.1 (Debian 12)
// writes HELP text as given, so to_text escapes backslashes and newlines in it first, as the
// format requires (a newline would otherwise end the line and corrupt the page).
#include <string>
#include <string_view>

#include "monitor/registry.h"

namespace kiln::monitor {

inline constexpr std::string_view kTextContentType = "text/plain; version=0.0.4; charset=utf-8";

std::string to_text(Families families);

}  // namespace kiln::monitor
