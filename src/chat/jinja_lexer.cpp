// Jinja2's lexer rules for the subset kiln interprets. The whitespace handling follows
// jinja2/lexer.py: a "-" sign strips all whitespace on that side of the tag, lstrip_blocks strips
// the spaces that precede a block tag or comment on an otherwise blank line, trim_blocks removes
// the one newline after a block tag or comment, and a "+" sign turns either option off.
#include "chat/jinja_lexer.h"

#include <algorithm>
#include <charconv>
#include <cmath>

#include "core/error.h"
#include "chat/jinja_strings.h"
#include "tokenizer/utf8.h"

namespace kiln::jinja {
namespace {

class Lexer {
 public:
  Lexer(std::string_view source, const LexOptions& options) : options_(options) {
    // Jinja2 joins the template's lines with "\n" (\r\n and \r become \n) and, unless told to
    // keep it, drops one newline at the very end.
    src_.reserve(source.size());
    for (std::size_t i = 0; i < source.size(); ++i) {
      if (source[i] == '\r') {
        src_ += '\n';
        if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
      } else {
        src_ += source[i];
      }
    }
    if (!options_.keep_trailing_newline && !src_.empty() && src_.back() == '\n') src_.pop_back();
    line_starts_.push_back(0);
    for (std::size_t i = 0; i < src_.size(); ++i)
      if (src_[i] == '\n') line_starts_.push_back(i + 1);
  }

  std::vector<Token> run() {
    std::size_t pos = 0;
    bool line_starting = true;
    while (pos < src_.size()) {
      const std::size_t open = find_opener(pos);
      if (open == std::string::npos) {
        emit_text(src_.substr(pos), pos);
        break;
      }
      const char kind = src_[open + 1];  // '{', '%' or '#'
      std::size_t after = open + 2;
      char sign = 0;
      if (after < src_.size() && (src_[after] == '-' || src_[after] == '+')) sign = src_[after++];
      std::string text = src_.substr(pos, open - pos);
      apply_left_rules(text, sign, kind != '{', line_starting);
      emit_text(std::move(text), pos);

      if (kind == '#') {
        pos = skip_comment(open, after, &line_starting);
      } else if (kind == '%' && is_raw_begin(after)) {
        pos = read_raw(open, after, &line_starting);
      } else {
        tokens_.push_back(make(kind == '{' ? TokenKind::VarBegin : TokenKind::BlockBegin, "", open));
        pos = read_tag(after, kind == '{', &line_starting);
      }
    }
    tokens_.push_back(make(TokenKind::Eof, "", src_.size()));
    return std::move(tokens_);
  }

 private:
  [[noreturn]] void error_at(std::size_t offset, const std::string& message) const {
    const auto it = std::upper_bound(line_starts_.begin(), line_starts_.end(), offset);
    const std::size_t line = static_cast<std::size_t>(it - line_starts_.begin());
    const std::size_t col = offset - line_starts_[line - 1] + 1;
    fail("chat template: line {}:{}: {}", line, col, message);
  }

  Token make(TokenKind kind, std::string text, std::size_t offset) const {
    Token t;
    t.kind = kind;
    t.text = std::move(text);
    const auto it = std::upper_bound(line_starts_.begin(), line_starts_.end(), offset);
    t.line = static_cast<int>(it - line_starts_.begin());
    t.col = static_cast<int>(offset - line_starts_[static_cast<std::size_t>(t.line) - 1] + 1);
    return t;
  }

  void emit_text(std::string text, std::size_t offset) {
    if (!text.empty()) tokens_.push_back(make(TokenKind::Text, std::move(text), offset));
  }

  std::size_t find_opener(std::size_t pos) const {
    while (true) {
      const std::size_t at = src_.find('{', pos);
      if (at == std::string::npos || at + 1 >= src_.size()) return std::string::npos;
      const char next = src_[at + 1];
      if (next == '{' || next == '%' || next == '#') return at;
      pos = at + 1;
    }
  }

  // The data before a tag: "-" strips all trailing whitespace; otherwise, for block tags and
  // comments without "+", lstrip_blocks removes the blanks between the last newline (or the start
  // of a line) and the tag.
  void apply_left_rules(std::string& text, char sign, bool block_or_comment, bool line_starting) const {
    if (sign == '-') {
      text.resize(text.size() - text::trailing_space_bytes(text));
      return;
    }
    if (sign == '+' || !options_.lstrip_blocks || !block_or_comment) return;
    const std::size_t nl = text.rfind('\n');
    const std::size_t l_pos = nl == std::string::npos ? 0 : nl + 1;
    if (l_pos == 0 && !line_starting) return;
    const std::string_view tail = std::string_view(text).substr(l_pos);
    if (!tail.empty() && text::leading_space_bytes(tail) == tail.size()) text.resize(l_pos);
  }

  // After "%}" or "#}": trim_blocks drops one newline; after "-%}" all whitespace goes.
  std::size_t after_block_end(std::size_t pos, char sign, bool* line_starting) const {
    std::size_t p = pos;
    if (sign == '-') {
      p += text::leading_space_bytes(std::string_view(src_).substr(p));
    } else if (sign != '+' && options_.trim_blocks && p < src_.size() && src_[p] == '\n') {
      ++p;
    }
    *line_starting = p > pos ? src_[p - 1] == '\n' : false;
    return p;
  }

  std::size_t skip_comment(std::size_t open, std::size_t pos, bool* line_starting) const {
    const std::size_t close = src_.find("#}", pos);
    if (close == std::string::npos) error_at(open, "unterminated comment");
    char sign = 0;
    if (close > pos && (src_[close - 1] == '-' || src_[close - 1] == '+')) sign = src_[close - 1];
    return after_block_end(close + 2, sign, line_starting);
  }

  std::size_t skip_blanks(std::size_t p) const {
    while (p < src_.size() && (src_[p] == ' ' || src_[p] == '\t' || src_[p] == '\n' || src_[p] == '\f' ||
                               src_[p] == '\v'))
      ++p;
    return p;
  }

  // Matches "\s*<word>\s*" then "-%}", "+%}" or "%}" at p; returns the end of "%}" or npos.
  std::size_t match_word_tag(std::size_t p, std::string_view word, char* end_sign) const {
    p = skip_blanks(p);
    if (src_.compare(p, word.size(), word) != 0) return std::string::npos;
    p += word.size();
    const std::size_t q = skip_blanks(p);
    if (q == p && q < src_.size() && src_[q] != '-' && src_[q] != '+' && src_[q] != '%') return std::string::npos;
    p = q;
    *end_sign = 0;
    if (p < src_.size() && (src_[p] == '-' || src_[p] == '+')) *end_sign = src_[p++];
    if (src_.compare(p, 2, "%}") != 0) return std::string::npos;
    return p + 2;
  }

  bool is_raw_begin(std::size_t after) const {
    char sign = 0;
    return match_word_tag(after, "raw", &sign) != std::string::npos;
  }

  std::size_t read_raw(std::size_t open, std::size_t after, bool* line_starting) {
    char begin_sign = 0;
    std::size_t pos = match_word_tag(after, "raw", &begin_sign);
    // Jinja applies no trim_blocks after {% raw %}; "-%}" still strips.
    if (begin_sign == '-') pos += text::leading_space_bytes(std::string_view(src_).substr(pos));
    std::size_t search = pos;
    while (true) {
      const std::size_t at = src_.find("{%", search);
      if (at == std::string::npos) error_at(open, "unterminated raw block (missing {% endraw %})");
      std::size_t p = at + 2;
      char sign = 0;
      if (p < src_.size() && (src_[p] == '-' || src_[p] == '+')) sign = src_[p++];
      char end_sign = 0;
      const std::size_t end = match_word_tag(p, "endraw", &end_sign);
      if (end == std::string::npos) {
        search = at + 2;
        continue;
      }
      std::string body = src_.substr(pos, at - pos);
      apply_left_rules(body, sign, true, false);
      emit_text(std::move(body), pos);
      return after_block_end(end, end_sign, line_starting);
    }
  }

  // Tokens inside {{ }} or {% %} up to and including the closing marker.
  std::size_t read_tag(std::size_t pos, bool is_var, bool* line_starting) {
    int depth = 0;  // open brackets: "}}" inside {{ {'a': {'b': 1}} }} closes dicts, not the tag
    while (true) {
      while (pos < src_.size() && (src_[pos] == ' ' || src_[pos] == '\t' || src_[pos] == '\n' ||
                                   src_[pos] == '\f' || src_[pos] == '\v'))
        ++pos;
      if (pos >= src_.size()) error_at(pos, is_var ? "unexpected end of template, expected '}}'" : "unexpected end of template, expected '%}'");
      if (depth == 0) {
        const std::string_view end = is_var ? "}}" : "%}";
        for (const char sign : {'-', '+', '\0'}) {
          if (sign == '+' && is_var) continue;
          const std::size_t at = sign ? pos + 1 : pos;
          if (sign && src_[pos] != sign) continue;
          if (src_.compare(at, 2, end) != 0) continue;
          tokens_.push_back(make(is_var ? TokenKind::VarEnd : TokenKind::BlockEnd, "", pos));
          if (is_var) {
            std::size_t p = at + 2;
            if (sign == '-') p += text::leading_space_bytes(std::string_view(src_).substr(p));
            *line_starting = p > at + 2 && src_[p - 1] == '\n';
            return p;
          }
          return after_block_end(at + 2, sign, line_starting);
        }
      }
      pos = read_token(pos, &depth);
    }
  }

  std::size_t read_token(std::size_t pos, int* depth) {
    const char c = src_[pos];
    if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
      std::size_t e = pos + 1;
      while (e < src_.size() && (std::isalnum(static_cast<unsigned char>(src_[e])) || src_[e] == '_')) ++e;
      tokens_.push_back(make(TokenKind::Name, src_.substr(pos, e - pos), pos));
      return e;
    }
    if (std::isdigit(static_cast<unsigned char>(c))) return read_number(pos);
    if (c == '\'' || c == '"') return read_string(pos);
    static constexpr std::string_view kTwo[] = {"//", "**", "==", "!=", "<=", ">="};
    for (std::string_view op : kTwo) {
      if (src_.compare(pos, 2, op) == 0) {
        tokens_.push_back(make(TokenKind::Op, std::string(op), pos));
        return pos + 2;
      }
    }
    static constexpr std::string_view kOne = "+-*/%~()[]{}<>=.,:|;";
    if (kOne.find(c) != std::string_view::npos) {
      if (c == '(' || c == '[' || c == '{') ++*depth;
      if ((c == ')' || c == ']' || c == '}') && *depth > 0) --*depth;
      tokens_.push_back(make(TokenKind::Op, std::string(1, c), pos));
      return pos + 1;
    }
    error_at(pos, fmt::format("unexpected character '{}'", c == '\0' ? std::string("\\0") : std::string(1, c)));
  }

  // Integers ("42", "1_000") and floats ("1.5", "2e3", "1.5e-3"), as Jinja2's number rules.
  std::size_t read_number(std::size_t pos) {
    std::size_t e = pos;
    std::string digits;
    const auto take_digits = [&]() {
      const std::size_t start = e;
      while (e < src_.size() && (std::isdigit(static_cast<unsigned char>(src_[e])) ||
                                 (src_[e] == '_' && e > start && e + 1 < src_.size() &&
                                  std::isdigit(static_cast<unsigned char>(src_[e + 1]))))) {
        if (src_[e] != '_') digits += src_[e];
        ++e;
      }
    };
    take_digits();
    bool is_float = false;
    if (e + 1 < src_.size() && src_[e] == '.' && std::isdigit(static_cast<unsigned char>(src_[e + 1]))) {
      is_float = true;
      digits += '.';
      ++e;
      take_digits();
    }
    if (e < src_.size() && (src_[e] == 'e' || src_[e] == 'E')) {
      std::size_t p = e + 1;
      if (p < src_.size() && (src_[p] == '+' || src_[p] == '-')) ++p;
      if (p < src_.size() && std::isdigit(static_cast<unsigned char>(src_[p]))) {
        is_float = true;
        digits += 'e';
        if (src_[e + 1] == '-') digits += '-';
        e = p;
        take_digits();
      }
    }
    Token t = make(is_float ? TokenKind::Float : TokenKind::Int, digits, pos);
    if (is_float) {
      const auto res = std::from_chars(digits.data(), digits.data() + digits.size(), t.float_value);
      if (res.ec == std::errc::result_out_of_range) {
        t.float_value = digits.find("e-") != std::string::npos ? 0.0 : HUGE_VAL;
      } else if (res.ec != std::errc()) {
        error_at(pos, "invalid number");
      }
    } else {
      const auto res = std::from_chars(digits.data(), digits.data() + digits.size(), t.int_value);
      if (res.ec != std::errc()) error_at(pos, fmt::format("integer literal {} is out of range", digits));
    }
    tokens_.push_back(std::move(t));
    return e;
  }

  // A quoted string with Python's escapes (Jinja2 decodes literals with "unicode-escape").
  std::size_t read_string(std::size_t pos) {
    const char quote = src_[pos];
    std::string value;
    std::size_t p = pos + 1;
    while (true) {
      if (p >= src_.size()) error_at(pos, "unterminated string");
      const char c = src_[p];
      if (c == quote) break;
      if (c != '\\') {
        value += c;
        ++p;
        continue;
      }
      if (p + 1 >= src_.size()) error_at(pos, "unterminated string");
      p = read_escape(p, value);
    }
    Token t = make(TokenKind::String, std::move(value), pos);
    tokens_.push_back(std::move(t));
    return p + 1;
  }


  // Decodes the escape at p (a backslash) into `out`; returns the position after it.
  std::size_t read_escape(std::size_t p, std::string& out) const {
    const char e = src_[p + 1];
    switch (e) {
      case '\n': return p + 2;  // a backslash-newline continues the line
      case '\\': out += '\\'; return p + 2;
      case '\'': out += '\''; return p + 2;
      case '"': out += '"'; return p + 2;
      case 'a': out += '\a'; return p + 2;
      case 'b': out += '\b'; return p + 2;
      case 'f': out += '\f'; return p + 2;
      case 'n': out += '\n'; return p + 2;
      case 'r': out += '\r'; return p + 2;
      case 't': out += '\t'; return p + 2;
      case 'v': out += '\v'; return p + 2;
      default: break;
    }
    if (e >= '0' && e <= '7') {
      std::uint32_t v = 0;
      std::size_t q = p + 1;
      for (int i = 0; i < 3 && q < src_.size() && src_[q] >= '0' && src_[q] <= '7'; ++i, ++q) v = v * 8 + (src_[q] - '0');
      utf8::append_code_point(v, out);
      return q;
    }
    const int hex_len = e == 'x' ? 2 : e == 'u' ? 4 : e == 'U' ? 8 : 0;
    if (hex_len == 0) {
      out += '\\';  // unknown escapes stay as written, as in Python
      return p + 1;
    }
    std::uint32_t v = 0;
    for (int i = 0; i < hex_len; ++i) {
      const std::size_t q = p + 2 + static_cast<std::size_t>(i);
      const char h = q < src_.size() ? src_[q] : '\0';
      int d = -1;
      if (h >= '0' && h <= '9') d = h - '0';
      if (h >= 'a' && h <= 'f') d = h - 'a' + 10;
      if (h >= 'A' && h <= 'F') d = h - 'A' + 10;
      if (d < 0) error_at(p, fmt::format("truncated \\{} escape in string", e));
      v = v * 16 + static_cast<std::uint32_t>(d);
    }
    if (v > 0x10FFFF) error_at(p, "escape outside the Unicode range in string");
    utf8::append_code_point(v, out);
    return p + 2 + static_cast<std::size_t>(hex_len);
  }

  LexOptions options_;
  std::string src_;
  std::vector<std::size_t> line_starts_;
  std::vector<Token> tokens_;
};

}  // namespace

std::vector<Token> tokenize(std::string_view source, const LexOptions& options) {
  return Lexer(source, options).run();
}

}  // namespace kiln::jinja
