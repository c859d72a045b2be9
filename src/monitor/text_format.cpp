#include "monitor/text_format.h"

#include <prometheus/text_serializer.h>

#include <sstream>

namespace kiln::monitor {

namespace {

std::string escape_help(const std::string& help) {
  std::string out;
  out.reserve(help.size());
  for (char c : help) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  return out;
}

}  // namespace

std::string to_text(Families families) {
  for (prometheus::MetricFamily& f : families) f.help = escape_help(f.help);
  std::ostringstream out;
  prometheus::TextSerializer().Serialize(out, families);
  return std::move(out).str();
}

}  // namespace kiln::monitor
