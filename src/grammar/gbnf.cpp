#include "grammar/gbnf.h"

#include <algorithm>
#include <functional>
#include <limits>
#include <map>
#include <unordered_map>
#include <utility>

#include "core/error.h"
#include "tokenizer/utf8.h"

namespace kiln::grammar {


void Grammar::validate() const {
  KILN_CHECK(root < rules.size(), "grammar: the root rule {} does not exist ({} rules)", root, rules.size());
  KILN_CHECK(!elements.empty() && elements.back().kind == ElementKind::End, "grammar: the element list must end an alternative");
  for (const Rule& r : rules) {
    KILN_CHECK(!r.alternatives.empty(), "grammar: rule {} has no alternatives", r.name);
    for (std::uint32_t a : r.alternatives) KILN_CHECK(a < elements.size(), "grammar: rule {} starts outside the elements", r.name);
  }
  for (const Element& e : elements) {
    if (e.kind == ElementKind::Rule) KILN_CHECK(e.value < rules.size(), "grammar: a reference to rule {} which does not exist", e.value);
    if (e.kind == ElementKind::Bytes) KILN_CHECK(e.value < byte_sets.size(), "grammar: byte set {} does not exist", e.value);
  }
}

namespace {

constexpr std::uint32_t kUnbounded = std::numeric_limits<std::uint32_t>::max();
constexpr std::uint32_t kMaxCodePoint = 0x10FFFF;

using Sequence = std::vector<Element>;
using CodeRange = std::pair<std::uint32_t, std::uint32_t>;  // inclusive

struct RuleDraft {
  std::string name;
  std::vector<Sequence> alternatives;
  bool defined = false;
  std::size_t first_use = std::string::npos;  // source offset of the first reference (for "undefined rule")
};

int utf8_length(std::uint32_t cp) { return cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4; }

// The byte-range sequences whose UTF-8 strings are exactly the code points lo..hi (both of one
// encoded length): split until each piece is a product of per-byte ranges.
void utf8_sequences(std::uint32_t lo, std::uint32_t hi, std::vector<std::vector<std::pair<std::uint8_t, std::uint8_t>>>& out) {
  const int len = utf8_length(lo);
  for (int i = 1; i < len; ++i) {
    const std::uint32_t m = (1u << (6 * i)) - 1;
    if ((lo & ~m) != (hi & ~m)) {
      if ((lo & m) != 0) {
        utf8_sequences(lo, lo | m, out);
        utf8_sequences((lo | m) + 1, hi, out);
        return;
      }
      if ((hi & m) != m) {
        utf8_sequences(lo, (hi & ~m) - 1, out);
        utf8_sequences(hi & ~m, hi, out);
        return;
      }
    }
  }
  std::string a, b;
  utf8::append_code_point(lo, a);
  utf8::append_code_point(hi, b);
  std::vector<std::pair<std::uint8_t, std::uint8_t>> seq;
  for (std::size_t k = 0; k < a.size(); ++k) seq.push_back({static_cast<std::uint8_t>(a[k]), static_cast<std::uint8_t>(b[k])});
  out.push_back(std::move(seq));
}

class Parser {
 public:
  Parser(std::string_view text, const GbnfLimits& limits) : src_(text), limits_(limits) {}

  Grammar parse() {
    if (src_.size() > limits_.max_text_bytes)
      fail("grammar: the grammar has {} bytes; at most {} are accepted", src_.size(), limits_.max_text_bytes);
    skip_space(true);
    while (pos_ < src_.size()) {
      parse_rule();
      skip_space(true);
    }
    return finish();
  }

 private:
  [[noreturn]] void error_at(std::size_t at, const std::string& what) const {
    int line = 1, col = 1;
    for (std::size_t i = 0; i < at && i < src_.size(); ++i) {
      if (src_[i] == '\n') {
        ++line;
        col = 1;
      } else {
        ++col;
      }
    }
    fail("grammar: line {} col {}: {}", line, col, what);
  }
  [[noreturn]] void error(const std::string& what) const { error_at(pos_, what); }

  bool eof() const { return pos_ >= src_.size(); }
  char peek(std::size_t ahead = 0) const { return pos_ + ahead < src_.size() ? src_[pos_ + ahead] : '\0'; }
  static bool is_name_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
  }

  // Spaces, tabs and comments; newlines too when `newlines` (inside parentheses, after `|`).
  void skip_space(bool newlines) {
    while (!eof()) {
      const char c = peek();
      if (c == ' ' || c == '\t') {
        ++pos_;
      } else if (c == '#') {
        while (!eof() && peek() != '\n') ++pos_;
      } else if (newlines && (c == '\n' || c == '\r')) {
        ++pos_;
      } else {
        break;
      }
    }
  }

  std::string parse_name() {
    const std::size_t start = pos_;
    while (!eof() && is_name_char(peek())) ++pos_;
    if (pos_ == start) error("expected a rule name");
    return std::string(src_.substr(start, pos_ - start));
  }

  std::uint32_t rule_id(const std::string& name) {
    auto it = ids_.find(name);
    if (it != ids_.end()) return it->second;
    if (rules_.size() >= limits_.max_rules) error(fmt::format("more than {} rules", limits_.max_rules));
    const auto id = static_cast<std::uint32_t>(rules_.size());
    rules_.push_back(RuleDraft{name, {}, false, std::string::npos});
    ids_.emplace(name, id);
    return id;
  }

  std::uint32_t new_aux_rule(const std::string& owner, std::vector<Sequence> alternatives) {
    std::string name;
    do {
      name = fmt::format("{}/{}", owner, ++aux_counter_);  // "/" cannot appear in a GBNF name
    } while (ids_.count(name));
    const std::uint32_t id = rule_id(name);
    for (const Sequence& s : alternatives) count(s.size() + 1);
    rules_[id].alternatives = std::move(alternatives);
    rules_[id].defined = true;
    return id;
  }

  void count(std::size_t n) {
    n_elements_ += n;
    if (n_elements_ > limits_.max_elements)
      error(fmt::format("the grammar expands to more than {} elements (repetitions count once per copy)", limits_.max_elements));
  }

  void parse_rule() {
    const std::size_t name_at = pos_;
    const std::string name = parse_name();
    skip_space(false);
    if (src_.substr(pos_, 3) != "::=") error(fmt::format("expected ::= after rule name {}", name));
    pos_ += 3;
    skip_space(true);
    const std::uint32_t id = rule_id(name);
    if (rules_[id].defined) error_at(name_at, fmt::format("rule {} is defined twice", name));
    rules_[id].defined = true;  // before the body, so that its own auxiliary names do not collide
    std::vector<Sequence> alts = parse_alternatives(name, false);
    for (const Sequence& s : alts) count(s.size() + 1);
    rules_[id].alternatives = std::move(alts);
    skip_space(false);
    if (!eof() && peek() != '\n' && peek() != '\r') error(fmt::format("unexpected '{}' at the end of rule {}", peek(), name));
  }

  std::vector<Sequence> parse_alternatives(const std::string& owner, bool nested) {
    std::vector<Sequence> alts;
    alts.push_back(parse_sequence(owner, nested));
    while (peek() == '|') {
      ++pos_;
      skip_space(true);
      alts.push_back(parse_sequence(owner, nested));
    }
    return alts;
  }

  std::uint32_t byte_set_id(const ByteSet& set) {
    auto it = set_ids_.find(set.bits);
    if (it != set_ids_.end()) return it->second;
    const auto id = static_cast<std::uint32_t>(sets_.size());
    sets_.push_back(set);
    set_ids_.emplace(set.bits, id);
    return id;
  }

  void emit_byte(Sequence& seq, std::uint8_t b) {
    ByteSet s;
    s.add(b);
    seq.push_back({ElementKind::Bytes, byte_set_id(s)});
  }

  // A code point of a literal or class: plain UTF-8, or an escape.
  std::uint32_t parse_char() {
    const std::size_t at = pos_;
    const auto c = static_cast<unsigned char>(peek());
    if (c == '\\') {
      ++pos_;
      const char e = peek();
      ++pos_;
      switch (e) {
        case 'n': return '\n';
        case 'r': return '\r';
        case 't': return '\t';
        case '\\': return '\\';
        case '"': return '"';
        case '[': return '[';
        case ']': return ']';
        case '-': return '-';
        case '/': return '/';
        case 'x': return parse_hex(2, at);
        case 'u': return parse_hex(4, at);
        case 'U': return parse_hex(8, at);
        default: error_at(at, fmt::format("unknown escape \\{}", e == '\0' ? std::string("(end)") : std::string(1, e)));
      }
    }
    // One UTF-8 character of the source, checked.
    int len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (len == 0 || pos_ + len > src_.size()) error("invalid UTF-8 in the grammar");
    std::uint32_t cp = len == 1 ? c : len == 2 ? (c & 0x1F) : len == 3 ? (c & 0x0F) : (c & 0x07);
    for (int k = 1; k < len; ++k) {
      const auto cc = static_cast<unsigned char>(src_[pos_ + k]);
      if ((cc & 0xC0) != 0x80) error("invalid UTF-8 in the grammar");
      cp = (cp << 6) | (cc & 0x3F);
    }
    if (utf8_length(cp) != len || cp > kMaxCodePoint || (cp >= 0xD800 && cp <= 0xDFFF)) error("invalid UTF-8 in the grammar");
    pos_ += len;
    return cp;
  }

  std::uint32_t parse_hex(int digits, std::size_t at) {
    std::uint32_t v = 0;
    for (int i = 0; i < digits; ++i) {
      const char h = peek();
      int d = h >= '0' && h <= '9' ? h - '0' : h >= 'a' && h <= 'f' ? h - 'a' + 10 : h >= 'A' && h <= 'F' ? h - 'A' + 10 : -1;
      if (d < 0) error_at(at, fmt::format("escape needs {} hex digits", digits));
      v = v * 16 + static_cast<std::uint32_t>(d);
      ++pos_;
    }
    if (v > kMaxCodePoint || (v >= 0xD800 && v <= 0xDFFF)) error_at(at, fmt::format("escape U+{:X} is not a Unicode scalar value", v));
    return v;
  }

  // Emits a class of code points as bytes: one element for a class within ASCII, otherwise a
  // reference to an auxiliary rule with one alternative per UTF-8 byte-range sequence.
  void emit_class(Sequence& seq, std::vector<CodeRange> ranges, bool negated, const std::string& owner, std::size_t at) {
    std::sort(ranges.begin(), ranges.end());
    std::vector<CodeRange> merged;
    for (const CodeRange& r : ranges) {
      if (!merged.empty() && r.first <= merged.back().second + 1) {
        merged.back().second = std::max(merged.back().second, r.second);
      } else {
        merged.push_back(r);
      }
    }
    if (negated) {
      std::vector<CodeRange> complement;
      std::uint32_t next = 0;
      for (const CodeRange& r : merged) {
        if (r.first > next) complement.push_back({next, r.first - 1});
        next = r.second + 1;
      }
      if (next <= kMaxCodePoint) complement.push_back({next, kMaxCodePoint});
      merged = std::move(complement);
    }
    // Surrogates are not characters; split every range at the UTF-8 length boundaries.
    ByteSet ascii;
    bool has_ascii = false;
    std::vector<std::vector<std::pair<std::uint8_t, std::uint8_t>>> multi;
    for (CodeRange r : merged) {
      const std::uint32_t bounds[][2] = {{0, 0x7F}, {0x80, 0x7FF}, {0x800, 0xD7FF}, {0xE000, 0xFFFF}, {0x10000, kMaxCodePoint}};
      for (const auto& b : bounds) {
        const std::uint32_t lo = std::max(r.first, b[0]), hi = std::min(r.second, b[1]);
        if (lo > hi) continue;
        if (hi < 0x80) {
          ascii.add_range(static_cast<std::uint8_t>(lo), static_cast<std::uint8_t>(hi));
          has_ascii = true;
        } else {
          utf8_sequences(lo, hi, multi);
        }
      }
    }
    if (!has_ascii && multi.empty()) error_at(at, "the character class matches no character");
    if (multi.empty()) {
      count(1);
      seq.push_back({ElementKind::Bytes, byte_set_id(ascii)});
      return;
    }
    std::vector<Sequence> alts;
    if (has_ascii) alts.push_back({Element{ElementKind::Bytes, byte_set_id(ascii)}});
    for (const auto& m : multi) {
      Sequence s;
      for (const auto& [lo, hi] : m) {
        ByteSet bs;
        bs.add_range(lo, hi);
        s.push_back({ElementKind::Bytes, byte_set_id(bs)});
      }
      alts.push_back(std::move(s));
    }
    count(1);
    seq.push_back({ElementKind::Rule, new_aux_rule(owner, std::move(alts))});
  }

  void parse_class(Sequence& seq, const std::string& owner) {
    const std::size_t at = pos_;
    ++pos_;  // [
    bool negated = false;
    if (peek() == '^') {
      negated = true;
      ++pos_;
    }
    std::vector<CodeRange> ranges;
    while (true) {
      if (eof() || peek() == '\n') error_at(at, "unterminated character class");
      if (peek() == ']') break;
      const std::uint32_t lo = parse_char();
      std::uint32_t hi = lo;
      if (peek() == '-' && peek(1) != ']') {
        ++pos_;
        if (eof() || peek() == '\n') error_at(at, "unterminated character class");
        hi = parse_char();
        if (hi < lo) error_at(at, fmt::format("character range U+{:X}-U+{:X} is reversed", lo, hi));
      }
      ranges.push_back({lo, hi});
    }
    ++pos_;  // ]
    emit_class(seq, std::move(ranges), negated, owner, at);
  }

  void parse_literal(Sequence& seq) {
    const std::size_t at = pos_;
    ++pos_;  // "
    while (true) {
      if (eof() || peek() == '\n') error_at(at, "unterminated string literal");
      if (peek() == '"') break;
      std::string bytes;
      utf8::append_code_point(parse_char(), bytes);
      count(bytes.size());
      for (char b : bytes) emit_byte(seq, static_cast<std::uint8_t>(b));
    }
    ++pos_;
  }

  std::uint32_t parse_count() {
    const std::size_t at = pos_;
    std::uint64_t v = 0;
    if (!(peek() >= '0' && peek() <= '9')) error("expected a number in {m,n}");
    while (peek() >= '0' && peek() <= '9') {
      v = v * 10 + static_cast<std::uint64_t>(peek() - '0');
      if (v > limits_.max_repeat) error_at(at, fmt::format("repetition count above the limit of {}", limits_.max_repeat));
      ++pos_;
    }
    return static_cast<std::uint32_t>(v);
  }

  // Replaces seq[start..) (one item) by min..max copies of it.
  void repeat(Sequence& seq, std::size_t start, std::uint32_t min, std::uint32_t max, const std::string& owner) {
    Sequence item(seq.begin() + static_cast<std::ptrdiff_t>(start), seq.end());
    seq.resize(start);
    if (item.empty()) return;  // "" repeated is still ""
    if (item.size() != 1) item = {Element{ElementKind::Rule, new_aux_rule(owner, {item})}};
    const Element x = item[0];
    count(min);
    seq.insert(seq.end(), min, x);
    if (max == kUnbounded) {
      // r ::= x r | (empty): right recursion, which the matcher runs without growing its stack.
      std::string name;
      const std::uint32_t r = new_aux_rule(owner, {{}, {}});
      rules_[r].alternatives[0] = {x, Element{ElementKind::Rule, r}};
      count(2);
      count(1);
      seq.push_back({ElementKind::Rule, r});
    } else if (max > min) {
      // opt_k ::= x opt_{k-1} | (empty), opt_1 ::= x | (empty): at most max - min more copies.
      std::uint32_t inner = 0;
      for (std::uint32_t k = 1; k <= max - min; ++k) {
        Sequence first = k == 1 ? Sequence{x} : Sequence{x, Element{ElementKind::Rule, inner}};
        inner = new_aux_rule(owner, {first, {}});
      }
      count(1);
      seq.push_back({ElementKind::Rule, inner});
    }
  }

  Sequence parse_sequence(const std::string& owner, bool nested) {
    Sequence seq;
    std::size_t item_start = std::string::npos;
    while (!eof()) {
      const char c = peek();
      if (c == '"') {
        item_start = seq.size();
        parse_literal(seq);
      } else if (c == '[') {
        item_start = seq.size();
        parse_class(seq, owner);
      } else if (c == '.') {
        item_start = seq.size();
        ++pos_;
        emit_class(seq, {{0, kMaxCodePoint}}, false, owner, pos_ - 1);
      } else if (is_name_char(c)) {
        // A name followed by ::= starts the next rule (a rule may continue over lines only in parentheses).
        const std::size_t at = pos_;
        const std::string name = parse_name();
        std::size_t look = pos_;
        while (look < src_.size() && (src_[look] == ' ' || src_[look] == '\t')) ++look;
        if (src_.substr(look, 3) == "::=") error_at(at, fmt::format("rule {} starts before the previous rule ended (missing newline?)", name));
        item_start = seq.size();
        const std::uint32_t id = rule_id(name);
        if (rules_[id].first_use == std::string::npos) rules_[id].first_use = at;
        count(1);
        seq.push_back({ElementKind::Rule, id});
      } else if (c == '(') {
        const std::size_t at = pos_;
        ++pos_;
        if (++depth_ > limits_.max_nesting) error_at(at, fmt::format("parentheses nested deeper than {}", limits_.max_nesting));
        skip_space(true);
        std::vector<Sequence> alts = parse_alternatives(owner, true);
        if (peek() != ')') error_at(at, "unclosed parenthesis");
        ++pos_;
        --depth_;
        item_start = seq.size();
        count(1);
        seq.push_back({ElementKind::Rule, new_aux_rule(owner, std::move(alts))});
      } else if (c == '*' || c == '+' || c == '?' || c == '{') {
        if (item_start == std::string::npos) error(fmt::format("'{}' follows nothing it could repeat", c));
        ++pos_;
        std::uint32_t min = 0, max = kUnbounded;
        if (c == '+') min = 1;
        if (c == '?') max = 1;
        if (c == '{') {
          skip_space(false);
          min = parse_count();
          skip_space(false);
          if (peek() == ',') {
            ++pos_;
            skip_space(false);
            if (peek() != '}') max = parse_count();
          } else {
            max = min;
          }
          skip_space(false);
          if (peek() != '}') error("expected } to close the repetition");
          ++pos_;
          if (max < min) error(fmt::format("repetition {{{},{}}} has max below min", min, max));
        }
        repeat(seq, item_start, min, max, owner);
      } else {
        break;  // | ) newline, or something the caller reports
      }
      skip_space(nested);
    }
    return seq;
  }

  Grammar finish() {
    if (rules_.empty()) fail("grammar: the grammar is empty (it needs a rule named root)");
    auto root = ids_.find("root");
    if (root == ids_.end() || !rules_[root->second].defined) fail("grammar: no rule named root");
    for (const RuleDraft& r : rules_)
      if (!r.defined) error_at(r.first_use, fmt::format("undefined rule {}", r.name));

    Grammar g;
    g.root = root->second;
    g.byte_sets = std::move(sets_);
    for (const RuleDraft& r : rules_) {
      Rule out{r.name, {}};
      for (const Sequence& s : r.alternatives) {
        out.alternatives.push_back(static_cast<std::uint32_t>(g.elements.size()));
        g.elements.insert(g.elements.end(), s.begin(), s.end());
        g.elements.push_back({ElementKind::End, 0});
      }
      g.rules.push_back(std::move(out));
    }
    check_termination(g, rules_);
    return g;
  }

  // Left recursion and rules that never finish, both of which would make the matcher loop.
  static void check_termination(const Grammar& g, const std::vector<RuleDraft>& drafts) {
    const std::size_t n = drafts.size();
    std::vector<char> nullable(n, 0), productive(n, 0);
    for (bool changed = true; changed;) {
      changed = false;
      for (std::size_t r = 0; r < n; ++r) {
        for (const Sequence& s : drafts[r].alternatives) {
          bool all_null = true, all_prod = true;
          for (const Element& e : s) {
            if (e.kind == ElementKind::Bytes) {
              all_null = false;
            } else {
              all_null = all_null && nullable[e.value];
              all_prod = all_prod && productive[e.value];
            }
          }
          if (all_null && !nullable[r]) nullable[r] = changed = true;
          if (all_prod && !productive[r]) productive[r] = changed = true;
        }
      }
    }
    for (std::size_t r = 0; r < n; ++r)
      if (!productive[r]) fail("grammar: rule {} can never finish (each alternative recurses forever)", drafts[r].name);
    // Rules each rule may begin with (through nullable prefixes): a cycle is left recursion.
    std::vector<std::vector<std::uint32_t>> first(n);
    for (std::size_t r = 0; r < n; ++r)
      for (const Sequence& s : drafts[r].alternatives)
        for (const Element& e : s) {
          if (e.kind != ElementKind::Rule) break;
          first[r].push_back(e.value);
          if (!nullable[e.value]) break;
        }
    std::vector<char> color(n, 0);  // 0 new, 1 on the path, 2 done
    std::vector<std::pair<std::uint32_t, std::size_t>> path;
    for (std::size_t start = 0; start < n; ++start) {
      if (color[start]) continue;
      path.push_back({static_cast<std::uint32_t>(start), 0});
      color[start] = 1;
      while (!path.empty()) {
        auto& [r, next] = path.back();
        if (next < first[r].size()) {
          const std::uint32_t c = first[r][next++];
          if (color[c] == 1) fail("grammar: rule {} is left-recursive (it can begin with itself)", drafts[c].name);
          if (color[c] == 0) {
            color[c] = 1;
            path.push_back({c, 0});
          }
        } else {
          color[r] = 2;
          path.pop_back();
        }
      }
    }
    (void)g;
  }

  std::string_view src_;
  GbnfLimits limits_;
  std::size_t pos_ = 0;
  int depth_ = 0;
  int aux_counter_ = 0;
  std::size_t n_elements_ = 0;
  std::vector<RuleDraft> rules_;
  std::unordered_map<std::string, std::uint32_t> ids_;
  std::vector<ByteSet> sets_;
  std::map<std::array<std::uint64_t, 4>, std::uint32_t> set_ids_;
};

}  // namespace

Grammar parse_gbnf(std::string_view text, const GbnfLimits& limits) { return Parser(text, limits).parse(); }

}  // namespace kiln::grammar
