#include "tokenizer/byte_unicode.h"

namespace kiln::byte_unicode {
namespace {

struct Tables {
  std::array<char32_t, 256> code_point{};  // byte -> code point
  std::array<char, 256 * 2> utf8{};        // byte -> its UTF-8 text, 2 bytes per entry
  std::array<std::uint8_t, 256> utf8_length{};
  std::array<std::int16_t, 324> byte_of{};  // code point (all < 324) -> byte, or -1

  Tables() {
    byte_of.fill(-1);
    char32_t next_extra = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      const char32_t cp = printable ? static_cast<char32_t>(b) : next_extra++;
      code_point[static_cast<std::size_t>(b)] = cp;
      byte_of[cp] = static_cast<std::int16_t>(b);
      char* text = &utf8[static_cast<std::size_t>(b) * 2];
      if (cp < 0x80) {
        text[0] = static_cast<char>(cp);
        utf8_length[static_cast<std::size_t>(b)] = 1;
      } else {  // every mapped code point is below U+0800: two bytes
        text[0] = static_cast<char>(0xC0 | (cp >> 6));
        text[1] = static_cast<char>(0x80 | (cp & 0x3F));
        utf8_length[static_cast<std::size_t>(b)] = 2;
      }
    }
  }
};

const Tables& tables() {
  static const Tables t;
  return t;
}

}  // namespace

char32_t byte_to_code_point(std::uint8_t b) { return tables().code_point[b]; }

std::string_view byte_to_utf8(std::uint8_t b) {
  const Tables& t = tables();
  return {&t.utf8[static_cast<std::size_t>(b) * 2], t.utf8_length[b]};
}

void encode(std::string_view bytes, std::string& out) {
  const Tables& t = tables();
  for (char c : bytes) {
    const auto b = static_cast<unsigned char>(c);
    out.append(&t.utf8[static_cast<std::size_t>(b) * 2], t.utf8_length[b]);
  }
}

bool decode(std::string_view text, std::string& out) {
  const Tables& t = tables();
  while (!text.empty()) {
    const auto lead = static_cast<unsigned char>(text[0]);
    char32_t cp;
    if (lead < 0x80) {
      cp = lead;
      text.remove_prefix(1);
    } else if ((lead & 0xE0) == 0xC0 && text.size() >= 2 && (static_cast<unsigned char>(text[1]) & 0xC0) == 0x80) {
      cp = (static_cast<char32_t>(lead & 0x1F) << 6) | (static_cast<unsigned char>(text[1]) & 0x3F);
      if (cp < 0x80) return false;  // overlong form of an ASCII character
      text.remove_prefix(2);
    } else {
      return false;  // three- and four-byte characters are never in the mapping
    }
    if (cp >= t.byte_of.size() || t.byte_of[cp] < 0) return false;
    out.push_back(static_cast<char>(t.byte_of[cp]));
  }
  return true;
}

}  // namespace kiln::byte_unicode
