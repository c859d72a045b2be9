#include "serve/json_prefix_scan.h"

#include <cctype>
#include <nlohmann/json.hpp>

namespace kiln::serve {

namespace {

constexpr std::size_t npos = std::string_view::npos;

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

std::size_t skip_space(std::string_view s, std::size_t i) {
  while (i < s.size() && is_space(s[i])) ++i;
  return i;
}

// One past the closing quote of the string starting at s[i] == '"'.
std::size_t scan_string(std::string_view s, std::size_t i, bool& error) {
  for (++i; i < s.size(); ++i) {
    const char c = s[i];
    if (c == '\\') {
      ++i;  // the escaped character (an unfinished \u escape is caught by the decoder later)
      continue;
    }
    if (c == '"') return i + 1;
    if (static_cast<unsigned char>(c) < 0x20) {
      error = true;
      return npos;
    }
  }
  return npos;
}

// Numbers and the literals true, false, null: their characters run to a delimiter. At the end
// of the text they are incomplete, since more characters may follow.
std::size_t scan_scalar(std::string_view s, std::size_t i, bool& error) {
  const std::size_t begin = i;
  while (i < s.size() && (std::isalnum(static_cast<unsigned char>(s[i])) || s[i] == '-' || s[i] == '+' || s[i] == '.'))
    ++i;
  if (i == s.size()) return npos;
  const std::string_view word = s.substr(begin, i - begin);
  if (word.empty()) {
    error = true;
    return npos;
  }
  if (word == "true" || word == "false" || word == "null") return i;
  if (!(word[0] == '-' || std::isdigit(static_cast<unsigned char>(word[0])))) error = true;
  return error ? npos : i;
}

// Objects and arrays by bracket depth, strings skipped whole (their brackets do not count).
std::size_t scan_container(std::string_view s, std::size_t i, bool& error) {
  std::vector<char> closers;
  for (; i < s.size(); ++i) {
    const char c = s[i];
    if (c == '"') {
      const std::size_t e = scan_string(s, i, error);
      if (e == npos) return npos;
      i = e - 1;
    } else if (c == '{') {
      closers.push_back('}');
    } else if (c == '[') {
      closers.push_back(']');
    } else if (c == '}' || c == ']') {
      if (closers.empty() || closers.back() != c) {
        error = true;
        return npos;
      }
      closers.pop_back();
      if (closers.empty()) return i + 1;
    }
  }
  return npos;
}

}  // namespace

std::size_t scan_json_value(std::string_view s, std::size_t i, bool& error) {
  if (i >= s.size()) return npos;
  const char c = s[i];
  if (c == '"') return scan_string(s, i, error);
  if (c == '{' || c == '[') return scan_container(s, i, error);
  return scan_scalar(s, i, error);
}

JsonObjectPrefix scan_json_object_prefix(std::string_view s) {
  JsonObjectPrefix out;
  if (s.empty() || s[0] != '{') {
    out.error = !s.empty();
    return out;
  }
  std::size_t i = skip_space(s, 1);
  if (i < s.size() && s[i] == '}') {
    out.complete = true;
    out.end = i + 1;
    return out;
  }
  while (i < s.size()) {
    if (s[i] != '"') {
      out.error = true;
      return out;
    }
    const std::size_t key_end = scan_string(s, i, out.error);
    if (key_end == npos) return out;
    JsonPrefixMember m;
    try {
      m.key = nlohmann::json::parse(s.substr(i, key_end - i)).get<std::string>();
    } catch (const nlohmann::json::exception&) {
      out.error = true;
      return out;
    }
    i = skip_space(s, key_end);
    if (i == s.size()) return out;
    if (s[i] != ':') {
      out.error = true;
      return out;
    }
    i = skip_space(s, i + 1);
    if (i == s.size()) return out;
    m.value_begin = i;
    m.value_end = scan_json_value(s, i, out.error);
    out.members.push_back(m);
    if (out.error || m.value_end == npos) return out;
    i = skip_space(s, m.value_end);
    if (i == s.size()) return out;
    if (s[i] == '}') {
      out.complete = true;
      out.end = i + 1;
      return out;
    }
    if (s[i] != ',') {
      out.error = true;
      return out;
    }
    i = skip_space(s, i + 1);
  }
  return out;
}

}  // namespace kiln::serve
