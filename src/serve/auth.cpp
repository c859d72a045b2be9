#include "serve/auth.h"

#include <fstream>

#include "core/error.h"
#include "core/sha256.h"

namespace kiln::serve {

bool constant_time_equal(std::string_view a, std::string_view b) {
  // Walk the longer length in full and fold every difference into one accumulator, with no
  // early exit; a length mismatch is folded in too.
  const std::size_t n = a.size() > b.size() ? a.size() : b.size();
  volatile unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (std::size_t i = 0; i < n; ++i) {
    const unsigned char x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
    const unsigned char y = i < b.size() ? static_cast<unsigned char>(b[i]) : 0;
    diff = diff | (x ^ y);
  }
  return diff == 0;
}

std::string api_key_id(std::string_view key) { return sha256_hex(key).substr(0, 8); }

ApiKeyAuth::ApiKeyAuth(std::string key) : key_(std::move(key)), key_id_(key_.empty() ? "" : api_key_id(key_)) {}

std::string ApiKeyAuth::read_key_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) fail("{}: cannot read the API key file", path);
  std::string line;
  std::getline(in, line);
  const auto is_space = [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; };
  std::size_t b = 0, e = line.size();
  while (b < e && is_space(line[b])) ++b;
  while (e > b && is_space(line[e - 1])) --e;
  if (b == e) fail("{}: the API key file's first line is empty", path);
  return line.substr(b, e - b);
}

bool ApiKeyAuth::allows(const std::string* authorization) const {
  if (key_.empty()) return true;
  if (authorization == nullptr) return false;
  std::string_view v = *authorization;
  // The scheme is case-insensitive (RFC 9110); exactly one space before the token, as clients send.
  if (v.size() < 7) return false;
  static constexpr std::string_view kBearer = "bearer ";
  for (std::size_t i = 0; i < kBearer.size(); ++i)
    if ((v[i] | 0x20) != kBearer[i]) return false;
  return constant_time_equal(v.substr(kBearer.size()), key_);
}

}  // namespace kiln::serve
