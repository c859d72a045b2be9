#include "format/quoted_name.h"

#include <fmt/format.h>

namespace kiln {

std::string quoted_name(std::string_view s) {
  constexpr std::size_t kMaxShown = 96;
  std::string out = "'";
  for (std::size_t i = 0; i < s.size() && i < kMaxShown; ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x20 || c == 0x7f || c == '\\' || c == '\'')
      out += fmt::format("\\x{:02x}", c);
    else
      out += static_cast<char>(c);
  }
  if (s.size() > kMaxShown)
    out += fmt::format("...' ({} bytes)", s.size());
  else
    out += "'";
  return out;
}

}  // namespace kiln
