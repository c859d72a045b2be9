#include "tokenizer/utf8.h"

namespace kiln::utf8 {
namespace {

// The allowed range of the second byte for a lead byte, and the total length. The third and
// fourth bytes are always 0x80..0xBF (Unicode Table 3-7).
struct LeadRule {
  unsigned char length;  // 0 for bytes that never start a character
  unsigned char second_lo;
  unsigned char second_hi;
};

constexpr LeadRule lead_rule(unsigned char b) {
  if (b < 0x80) return {1, 0, 0};
  if (b < 0xC2) return {0, 0, 0};  // continuation bytes, and C0/C1 which are always overlong
  if (b < 0xE0) return {2, 0x80, 0xBF};
  if (b == 0xE0) return {3, 0xA0, 0xBF};
  if (b == 0xED) return {3, 0x80, 0x9F};  // excludes the surrogates D800..DFFF
  if (b < 0xF0) return {3, 0x80, 0xBF};
  if (b == 0xF0) return {4, 0x90, 0xBF};
  if (b < 0xF4) return {4, 0x80, 0xBF};
  if (b == 0xF4) return {4, 0x80, 0x8F};  // nothing above U+10FFFF
  return {0, 0, 0};
}

}  // namespace

Prefix scan_prefix(std::string_view s) {
  const auto lead = static_cast<unsigned char>(s[0]);
  const LeadRule rule = lead_rule(lead);
  if (rule.length == 0) return {PrefixKind::Invalid, 1};
  if (rule.length == 1) return {PrefixKind::Complete, 1};
  for (std::size_t i = 1; i < rule.length; ++i) {
    if (i >= s.size()) return {PrefixKind::Incomplete, s.size()};
    const auto b = static_cast<unsigned char>(s[i]);
    const unsigned char lo = i == 1 ? rule.second_lo : 0x80;
    const unsigned char hi = i == 1 ? rule.second_hi : 0xBF;
    if (b < lo || b > hi) return {PrefixKind::Invalid, 1};
  }
  return {PrefixKind::Complete, rule.length};
}

bool is_valid(std::string_view s) {
  while (!s.empty()) {
    const Prefix p = scan_prefix(s);
    if (p.kind != PrefixKind::Complete) return false;
    s.remove_prefix(p.length);
  }
  return true;
}

std::size_t char_length_from_lead(unsigned char lead, std::size_t available) {
  static constexpr unsigned char kLengthByHighNibble[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
  const std::size_t n = kLengthByHighNibble[lead >> 4];
  return n < available ? n : available;
}

void append_sanitized(std::string_view s, std::string& out) {
  while (!s.empty()) {
    const Prefix p = scan_prefix(s);
    if (p.kind == PrefixKind::Complete) {
      out.append(s.substr(0, p.length));
      s.remove_prefix(p.length);
    } else {
      out.append(kReplacementCharacter);
      s.remove_prefix(1);
    }
  }
}

void drain_complete(std::string& pending, std::string& out, bool flush) {
  std::string_view rest = pending;
  while (!rest.empty()) {
    const Prefix p = scan_prefix(rest);
    if (p.kind == PrefixKind::Complete) {
      out.append(rest.substr(0, p.length));
      rest.remove_prefix(p.length);
    } else if (p.kind == PrefixKind::Incomplete && !flush) {
      break;
    } else {
      out.append(kReplacementCharacter);
      rest.remove_prefix(1);
    }
  }
  pending.erase(0, pending.size() - rest.size());
}

void append_code_point(std::uint32_t cp, std::string& out) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

}  // namespace kiln::utf8
