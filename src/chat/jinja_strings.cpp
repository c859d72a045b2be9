// Python str semantics over UTF-8 bytes for the chat-template interpreter.
#include "chat/jinja_strings.h"

#include "core/error.h"
#include "tokenizer/utf8.h"

namespace kiln::jinja::text {
namespace {

// Decodes the code point at the start of `s` (non-empty); invalid bytes decode as themselves
// with length 1 so that no input is ever skipped or misread as whitespace.
std::uint32_t decode(std::string_view s, std::size_t* length) {
  const utf8::Prefix p = utf8::scan_prefix(s);
  const auto b = [&](std::size_t i) { return static_cast<std::uint32_t>(static_cast<unsigned char>(s[i])); };
  if (p.kind != utf8::PrefixKind::Complete) {
    *length = 1;
    return 0xDC00 | b(0);  // a lone-surrogate stand-in: never whitespace, never a letter
  }
  *length = p.length;
  switch (p.length) {
    case 1: return b(0);
    case 2: return ((b(0) & 0x1F) << 6) | (b(1) & 0x3F);
    case 3: return ((b(0) & 0x0F) << 12) | ((b(1) & 0x3F) << 6) | (b(2) & 0x3F);
    default: return ((b(0) & 0x07) << 18) | ((b(1) & 0x3F) << 12) | ((b(2) & 0x3F) << 6) | (b(3) & 0x3F);
  }
}

// Python's str.isspace() for one code point.
bool is_space(std::uint32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

// Python's line boundaries for splitlines() (\r\n is handled by the caller).
bool is_line_break(std::uint32_t c) {
  return c == '\n' || c == '\r' || c == 0x0B || c == 0x0C || c == 0x1C || c == 0x1D || c == 0x1E || c == 0x85 ||
         c == 0x2028 || c == 0x2029;
}

struct Char {
  std::size_t begin, end;
  std::uint32_t cp;
};

std::vector<Char> decode_all(std::string_view s) {
  std::vector<Char> out;
  out.reserve(s.size());
  std::size_t i = 0;
  while (i < s.size()) {
    std::size_t len = 1;
    const std::uint32_t cp = decode(s.substr(i), &len);
    out.push_back({i, i + len, cp});
    i += len;
  }
  return out;
}

char ascii_upper(char c) { return (c >= 'a' && c <= 'z') ? static_cast<char>(c - 'a' + 'A') : c; }
char ascii_lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }
bool ascii_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

}  // namespace

std::vector<std::size_t> char_offsets(std::string_view s) {
  std::vector<std::size_t> out;
  out.reserve(s.size() + 1);
  std::size_t i = 0;
  while (i < s.size()) {
    out.push_back(i);
    i += utf8::scan_prefix(s.substr(i)).kind == utf8::PrefixKind::Complete ? utf8::scan_prefix(s.substr(i)).length : 1;
  }
  out.push_back(s.size());
  return out;
}

std::size_t char_count(std::string_view s) { return char_offsets(s).size() - 1; }

std::vector<std::string> chars(std::string_view s) {
  const std::vector<std::size_t> off = char_offsets(s);
  std::vector<std::string> out;
  out.reserve(off.size() - 1);
  for (std::size_t i = 0; i + 1 < off.size(); ++i) out.emplace_back(s.substr(off[i], off[i + 1] - off[i]));
  return out;
}

std::size_t leading_space_bytes(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    std::size_t len = 1;
    if (!is_space(decode(s.substr(i), &len))) break;
    i += len;
  }
  return i;
}

std::size_t trailing_space_bytes(std::string_view s) {
  // Walk back to the start of each code point: continuation bytes are 10xxxxxx.
  std::size_t e = s.size();
  while (e > 0) {
    std::size_t b = e - 1;
    while (b > 0 && e - b < 4 && (static_cast<unsigned char>(s[b]) & 0xC0) == 0x80) --b;
    std::size_t len = 1;
    const std::uint32_t cp = decode(s.substr(b, e - b), &len);
    if (b + len != e) {
      // Not one whole character ending at e: treat the last byte alone (never whitespace).
      break;
    }
    if (!is_space(cp)) break;
    e = b;
  }
  return s.size() - e;
}

std::string strip(std::string_view s, const std::optional<std::string>& strip_chars, bool left, bool right) {
  std::vector<std::uint32_t> set;
  if (strip_chars)
    for (const Char& c : decode_all(*strip_chars)) set.push_back(c.cp);
  const auto strippable = [&](std::uint32_t cp) {
    if (!strip_chars) return is_space(cp);
    for (std::uint32_t x : set)
      if (x == cp) return true;
    return false;
  };
  const std::vector<Char> cs = decode_all(s);
  std::size_t b = 0, e = cs.size();
  if (left)
    while (b < e && strippable(cs[b].cp)) ++b;
  if (right)
    while (e > b && strippable(cs[e - 1].cp)) --e;
  if (b == e) return {};
  return std::string(s.substr(cs[b].begin, cs[e - 1].end - cs[b].begin));
}

std::vector<std::string> split(std::string_view s, const std::optional<std::string>& sep, std::int64_t maxsplit) {
  std::vector<std::string> out;
  if (sep) {
    KILN_CHECK(!sep->empty(), "split: empty separator");
    std::size_t start = 0;
    while (maxsplit < 0 || static_cast<std::int64_t>(out.size()) < maxsplit) {
      const std::size_t hit = s.find(*sep, start);
      if (hit == std::string_view::npos) break;
      out.emplace_back(s.substr(start, hit - start));
      start = hit + sep->size();
    }
    out.emplace_back(s.substr(start));
    return out;
  }
  const std::vector<Char> cs = decode_all(s);
  std::size_t i = 0;
  while (true) {
    while (i < cs.size() && is_space(cs[i].cp)) ++i;
    if (i == cs.size()) break;
    if (maxsplit >= 0 && static_cast<std::int64_t>(out.size()) == maxsplit) {
      // The rest, with trailing whitespace removed, is the last piece.
      std::size_t e = cs.size();
      while (e > i && is_space(cs[e - 1].cp)) --e;
      out.emplace_back(s.substr(cs[i].begin, cs[e - 1].end - cs[i].begin));
      break;
    }
    const std::size_t b = i;
    while (i < cs.size() && !is_space(cs[i].cp)) ++i;
    out.emplace_back(s.substr(cs[b].begin, cs[i - 1].end - cs[b].begin));
  }
  return out;
}

std::vector<std::string> splitlines(std::string_view s) {
  std::vector<std::string> out;
  const std::vector<Char> cs = decode_all(s);
  std::size_t line_begin = 0;
  for (std::size_t i = 0; i < cs.size(); ++i) {
    if (!is_line_break(cs[i].cp)) continue;
    out.emplace_back(s.substr(line_begin, cs[i].begin - line_begin));
    if (cs[i].cp == '\r' && i + 1 < cs.size() && cs[i + 1].cp == '\n') ++i;
    line_begin = cs[i].end;
  }
  if (line_begin < s.size()) out.emplace_back(s.substr(line_begin));
  return out;
}

std::string replace(std::string_view s, std::string_view old, std::string_view with, std::int64_t count) {
  std::string out;
  std::int64_t done = 0;
  if (old.empty()) {
    // Python inserts `with` before every code point and at the end.
    const std::vector<std::size_t> off = char_offsets(s);
    for (std::size_t i = 0; i + 1 < off.size(); ++i) {
      if (count < 0 || done < count) {
        out += with;
        ++done;
      }
      out += s.substr(off[i], off[i + 1] - off[i]);
    }
    if (count < 0 || done < count) out += with;
    return out;
  }
  std::size_t start = 0;
  while (count < 0 || done < count) {
    const std::size_t hit = s.find(old, start);
    if (hit == std::string_view::npos) break;
    out += s.substr(start, hit - start);
    out += with;
    start = hit + old.size();
    ++done;
  }
  out += s.substr(start);
  return out;
}

std::string upper(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = ascii_upper(c);
  return out;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = ascii_lower(c);
  return out;
}

std::string capitalize(std::string_view s) {
  std::string out = lower(s);
  if (!out.empty()) out[0] = ascii_upper(out[0]);
  return out;
}

std::string python_title(std::string_view s) {
  std::string out(s);
  bool prev_cased = false;
  for (char& c : out) {
    if (ascii_alpha(c)) {
      c = prev_cased ? ascii_lower(c) : ascii_upper(c);
      prev_cased = true;
    } else {
      // Non-ASCII bytes are letters for Python when they are; here they end a word only if
      // ASCII, so multi-byte letters keep the word going (they are left unchanged).
      prev_cased = static_cast<unsigned char>(c) >= 0x80 ? prev_cased : false;
    }
  }
  return out;
}

std::string jinja_title(std::string_view s) {
  // Jinja: "".join(w[0].upper() + w[1:].lower() for w in re.split(r"([-\s({\[<]+)", s) if w)
  const auto is_boundary = [](char c) {
    return c == '-' || c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v' || c == '(' ||
           c == '{' || c == '[' || c == '<';
  };
  std::string out(s);
  bool word_start = true;
  for (char& c : out) {
    if (is_boundary(c)) {
      word_start = true;
      continue;
    }
    c = word_start ? ascii_upper(c) : ascii_lower(c);
    word_start = false;
  }
  return out;
}

}  // namespace kiln::jinja::text
