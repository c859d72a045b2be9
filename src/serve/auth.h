#pragma once
// API-key authentication: "Authorization: Bearer <key>", compared in constant time so that the
// response time does not tell an attacker how many leading characters were right.
#include <string>
#include <string_view>

namespace kiln::serve {

// True when a == b; the time taken depends on the lengths only, never on where they differ.
bool constant_time_equal(std::string_view a, std::string_view b);

// A key's name where the key itself must not appear (metrics, logs): the first 8 hex digits of
// its SHA-256. Stable across restarts and replicas, and it does not reveal the key; a guessable
// key could still be confirmed against it, so keys should be random.
std::string api_key_id(std::string_view key);

class ApiKeyAuth {
 public:
  ApiKeyAuth() = default;  // no key: every request is allowed
  explicit ApiKeyAuth(std::string key);

  // The key in a file: its first line, surrounding whitespace trimmed. Throws kiln::Error when
  // the file cannot be read or holds no key.
  static std::string read_key_file(const std::string& path);

  bool enabled() const { return !key_.empty(); }
  const std::string& key_id() const { return key_id_; }  // api_key_id of the key; empty without one
  // `authorization` is the Authorization header's value, or nullptr when absent.
  bool allows(const std::string* authorization) const;

 private:
  std::string key_;
  std::string key_id_;
};

}  // namespace kiln::serve
