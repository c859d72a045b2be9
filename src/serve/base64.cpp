#include "serve/base64.h"

#include <cstdint>

namespace kiln::serve {

void append_base64(std::string& out, const void* data, std::size_t n) {
  static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  const auto* b = static_cast<const std::uint8_t*>(data);
  out.reserve(out.size() + (n + 2) / 3 * 4);
  std::size_t i = 0;
  // Three bytes make four characters of six bits each.
  for (; i + 3 <= n; i += 3) {
    const std::uint32_t v = std::uint32_t{b[i]} << 16 | std::uint32_t{b[i + 1]} << 8 | b[i + 2];
    out += kAlphabet[v >> 18];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += kAlphabet[v & 63];
  }
  // One or two bytes left: two or three characters, padded with '=' to four.
  if (i < n) {
    const bool two = i + 1 < n;
    const std::uint32_t v = std::uint32_t{b[i]} << 16 | (two ? std::uint32_t{b[i + 1]} << 8 : 0);
    out += kAlphabet[v >> 18];
    out += kAlphabet[(v >> 12) & 63];
    out += two ? kAlphabet[(v >> 6) & 63] : '=';
    out += '=';
  }
}

}  // namespace kiln::serve
