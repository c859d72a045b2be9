#include "grammar/regex_grammar.h"

#include <algorithm>
#include <string>

#include <fmt/format.h>

#include "core/error.h"
#include "tokenizer/utf8.h"
#include "grammar/gbnf.h"
#include "grammar/json_schema_grammar.h"

namespace kiln::grammar {

namespace {

using Ranges = std::vector<std::pair<std::uint32_t, std::uint32_t>>;
constexpr std::uint32_t kMax = 0x10FFFF;

std::string escape_code_point(std::uint32_t cp) {
  if ((cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z') || (cp >= '0' && cp <= '9')) return std::string(1, static_cast<char>(cp));
  if (cp < 0x100) return fmt::format("\\x{:02X}", cp);
  if (cp < 0x10000) return fmt::format("\\u{:04X}", cp);
  return fmt::format("\\U{:08X}", cp);
}

Ranges normalized(Ranges r) {
  std::sort(r.begin(), r.end());
  Ranges out;
  for (const auto& x : r) {
    if (!out.empty() && x.first <= out.back().second + 1) {
      out.back().second = std::max(out.back().second, x.second);
    } else {
      out.push_back(x);
    }
  }
  return out;
}

Ranges complement(const Ranges& in) {
  Ranges r = normalized(in), out;
  std::uint32_t next = 0;
  for (const auto& x : r) {
    if (x.first > next) out.push_back({next, x.first - 1});
    next = x.second + 1;
  }
  if (next <= kMax) out.push_back({next, kMax});
  return out;
}

Ranges subtract(const Ranges& a, const Ranges& b) {
  Ranges keep = complement(b), out;
  for (const auto& x : normalized(a))
    for (const auto& y : keep) {
      const std::uint32_t lo = std::max(x.first, y.first), hi = std::min(x.second, y.second);
      if (lo <= hi) out.push_back({lo, hi});
    }
  return out;
}

// ECMAScript's \s: WhiteSpace and LineTerminator.
const Ranges kSpace = {{0x09, 0x0D}, {0x20, 0x20}, {0xA0, 0xA0}, {0x1680, 0x1680}, {0x2000, 0x200A}, {0x2028, 0x2029},
                       {0x202F, 0x202F}, {0x205F, 0x205F}, {0x3000, 0x3000}, {0xFEFF, 0xFEFF}};
const Ranges kDigit = {{'0', '9'}};
const Ranges kWord = {{'0', '9'}, {'A', 'Z'}, {'_', '_'}, {'a', 'z'}};
const Ranges kLineTerminators = {{0x0A, 0x0A}, {0x0D, 0x0D}, {0x2028, 0x2029}};
// What a JSON string may hold without an escape.
const Ranges kNotInJsonString = {{0x00, 0x1F}, {'"', '"'}, {'\\', '\\'}};

class RegexParser {
 public:
  RegexParser(std::string_view p, bool json) : src_(p), json_(json) {}

  std::string parse() {
    if (peek() == '^') ++pos_;
    std::string e = alternation();
    if (pos_ < src_.size()) error(fmt::format("unexpected '{}'", src_[pos_]));
    return e;
  }

 private:
  [[noreturn]] void error(const std::string& what) const { fail("regex: at offset {}: {}", pos_, what); }
  char peek() const { return pos_ < src_.size() ? src_[pos_] : '\0'; }
  bool eof() const { return pos_ >= src_.size(); }

  std::string alternation() {
    std::vector<std::string> alts{concat()};
    while (peek() == '|') {
      ++pos_;
      alts.push_back(concat());
    }
    if (alts.size() == 1) return alts[0];
    std::string out = "(";
    for (std::size_t i = 0; i < alts.size(); ++i) out += (i ? " | " : "") + (alts[i].empty() ? std::string("\"\"") : alts[i]);
    return out + ")";
  }

  std::string concat() {
    std::string out;
    while (!eof() && peek() != '|' && peek() != ')') {
      if (peek() == '$') {
        ++pos_;
        if (!eof() && peek() != '|' && peek() != ')') error("$ is supported only at the end");
        continue;
      }
      std::string atom_text = atom();
      atom_text += quantifier();
      if (!out.empty()) out += ' ';
      out += atom_text;
    }
    return out;
  }

  std::string quantifier() {
    std::string q;
    const char c = peek();
    if (c == '*' || c == '+' || c == '?') {
      q = std::string(1, c);
      ++pos_;
    } else if (c == '{') {
      const std::size_t close = src_.find('}', pos_);
      if (close == std::string_view::npos) error("unterminated {m,n}");
      const std::string body(src_.substr(pos_ + 1, close - pos_ - 1));
      if (body.empty() || body.find_first_not_of("0123456789,") != std::string::npos || body[0] == ',' ||
          std::count(body.begin(), body.end(), ',') > 1)
        error("a quantifier {m,n} needs numbers");
      // {m,n} with n < m matches nothing in ECMAScript (a SyntaxError there); refuse it here
      // rather than hand the grammar parser a repetition it refuses.
      const std::size_t comma = body.find(',');
      const std::string m = body.substr(0, comma);
      const std::string n = comma == std::string::npos ? m : body.substr(comma + 1);
      if (m.size() > 9 || n.size() > 9) error("a quantifier count above 999999999");
      if (!n.empty() && std::stoul(n) < std::stoul(m)) error(fmt::format("the quantifier {{{}}} has its numbers out of order", body));
      q = "{" + body + "}";
      pos_ = close + 1;
    }
    if (!q.empty() && peek() == '?') ++pos_;  // lazy: the same strings
    if (!q.empty() && (peek() == '*' || peek() == '+' || peek() == '?' || peek() == '{')) error("nested quantifier");
    return q;
  }

  std::string literal(std::uint32_t cp) {
    if (json_) {
      if (cp == '"') return gbnf_literal("\\\"");
      if (cp == '\\') return gbnf_literal("\\\\");
      if (cp < 0x20) return gbnf_literal(fmt::format("\\u{:04x}", cp));
    }
    std::string bytes;
    utf8::append_code_point(cp, bytes);
    return gbnf_literal(bytes);
  }

  std::string class_text(Ranges r) {
    if (json_) r = subtract(r, kNotInJsonString);
    r = normalized(r);
    if (r.empty()) error(json_ ? "a class matches no character a JSON string holds unescaped" : "a class matches no character");
    return gbnf_class(r);
  }

  std::uint32_t utf8_char() {
    const auto c = static_cast<unsigned char>(src_[pos_]);
    const int len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (len == 0 || pos_ + len > src_.size()) error("invalid UTF-8");
    std::uint32_t cp = len == 1 ? c : len == 2 ? (c & 0x1F) : len == 3 ? (c & 0x0F) : (c & 0x07);
    for (int k = 1; k < len; ++k) cp = (cp << 6) | (static_cast<unsigned char>(src_[pos_ + k]) & 0x3F);
    pos_ += len;
    return cp;
  }

  std::uint32_t hex(int n) {
    std::uint32_t v = 0;
    for (int i = 0; i < n; ++i) {
      const char h = peek();
      const int d = h >= '0' && h <= '9' ? h - '0' : h >= 'a' && h <= 'f' ? h - 'a' + 10 : h >= 'A' && h <= 'F' ? h - 'A' + 10 : -1;
      if (d < 0) error("bad hex escape");
      v = v * 16 + static_cast<std::uint32_t>(d);
      ++pos_;
    }
    return v;
  }

  // After a backslash: either a class (\d ...) in `cls`, or one code point.
  bool escape(Ranges& cls, std::uint32_t& cp) {
    if (eof()) error("trailing backslash");
    const char e = src_[pos_++];
    switch (e) {
      case 'd': cls = kDigit; return true;
      case 'D': cls = complement(kDigit); return true;
      case 'w': cls = kWord; return true;
      case 'W': cls = complement(kWord); return true;
      case 's': cls = kSpace; return true;
      case 'S': cls = complement(kSpace); return true;
      case 'n': cp = '\n'; return false;
      case 'r': cp = '\r'; return false;
      case 't': cp = '\t'; return false;
      case 'f': cp = '\f'; return false;
      case 'v': cp = '\v'; return false;
      case '0': cp = 0; return false;
      case 'x': cp = hex(2); return false;
      case 'u': cp = hex(4); return false;
      default:
        if ((e >= '1' && e <= '9') || e == 'b' || e == 'B' || e == 'k' || e == 'p' || e == 'P' || e == 'c')
          error(fmt::format("\\{} is not supported", e));
        if (static_cast<unsigned char>(e) >= 0x80 || std::isalnum(static_cast<unsigned char>(e)))
          error(fmt::format("unknown escape \\{}", e));
        cp = static_cast<unsigned char>(e);
        return false;
    }
  }

  std::string atom() {
    const char c = peek();
    if (c == '(') {
      ++pos_;
      if (peek() == '?') {
        if (src_.substr(pos_, 2) != "?:") error("lookaround and named groups are not supported");
        pos_ += 2;
      }
      if (++depth_ > 64) error("groups nested deeper than 64");
      std::string inner = alternation();
      --depth_;
      if (peek() != ')') error("unclosed group");
      ++pos_;
      return "(" + (inner.empty() ? std::string("\"\"") : inner) + ")";
    }
    if (c == '[') return char_class();
    if (c == '.') {
      ++pos_;
      return class_text(complement(kLineTerminators));
    }
    if (c == '\\') {
      ++pos_;
      Ranges cls;
      std::uint32_t cp = 0;
      if (escape(cls, cp)) return class_text(cls);
      return literal(cp);
    }
    if (c == '*' || c == '+' || c == '?' || c == '{') error(fmt::format("'{}' follows nothing it could repeat", c));
    if (c == '^') error("^ is supported only at the start");
    return literal(utf8_char());
  }

  std::string char_class() {
    ++pos_;  // [
    bool negated = false;
    if (peek() == '^') {
      negated = true;
      ++pos_;
    }
    Ranges r;
    bool first = true;
    while (true) {
      if (eof()) error("unterminated class");
      if (peek() == ']' && !first) break;
      first = false;
      Ranges cls;
      std::uint32_t lo = 0;
      if (peek() == '\\') {
        ++pos_;
        if (escape(cls, lo)) {
          r.insert(r.end(), cls.begin(), cls.end());
          continue;
        }
      } else {
        lo = utf8_char();
      }
      std::uint32_t hi = lo;
      if (peek() == '-' && pos_ + 1 < src_.size() && src_[pos_ + 1] != ']') {
        ++pos_;
        if (peek() == '\\') {
          ++pos_;
          if (escape(cls, hi)) error("a class escape cannot end a range");
        } else {
          hi = utf8_char();
        }
        if (hi < lo) error("reversed range in a class");
      }
      r.push_back({lo, hi});
    }
    ++pos_;  // ]
    return class_text(negated ? complement(r) : r);
  }

  std::string_view src_;
  bool json_;
  std::size_t pos_ = 0;
  int depth_ = 0;
};

}  // namespace

std::string gbnf_literal(std::string_view bytes) {
  std::string out = "\"";
  for (char ch : bytes) {
    const auto b = static_cast<unsigned char>(ch);
    if (b == '"' || b == '\\') {
      out += '\\';
      out += ch;
    } else if (b < 0x20 || b == 0x7F) {
      out += fmt::format("\\x{:02X}", b);
    } else {
      out += ch;  // UTF-8 passes through: GBNF literals are code points
    }
  }
  return out + "\"";
}

std::string gbnf_class(std::vector<std::pair<std::uint32_t, std::uint32_t>> ranges) {
  ranges = normalized(std::move(ranges));
  KILN_CHECK(!ranges.empty(), "grammar: an empty character class");
  std::string out = "[";
  for (const auto& [lo, hi] : ranges) {
    out += escape_code_point(lo);
    if (hi != lo) out += "-" + escape_code_point(hi);
  }
  return out + "]";
}

std::string regex_gbnf_expression(std::string_view pattern, bool inside_json_string) {
  KILN_CHECK(pattern.size() <= 4096, "regex: the pattern has {} bytes; at most 4096 are accepted", pattern.size());
  KILN_CHECK(utf8::is_valid(pattern), "regex: the pattern is not valid UTF-8");
  std::string e = RegexParser(pattern, inside_json_string).parse();
  return e.empty() ? "\"\"" : e;
}

std::string regex_to_gbnf(std::string_view pattern) { return "root ::= " + regex_gbnf_expression(pattern, false) + "\n"; }

std::string choice_to_gbnf(const std::vector<std::string>& choices) {
  KILN_CHECK(!choices.empty(), "choice: the list of choices is empty");
  std::string out = "root ::= ";
  for (std::size_t i = 0; i < choices.size(); ++i) out += (i ? " | " : "") + gbnf_literal(choices[i]);
  return out + "\n";
}

}  // namespace kiln::grammar
