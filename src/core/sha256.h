#pragma once
// SHA-256 (FIPS 180-4). kiln uses it where a stable name for a secret must not reveal the
// secret: an API key is identified in metrics by the first hex digits of its hash.
#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace kiln {

std::array<std::uint8_t, 32> sha256(std::string_view data);

// The digest as 64 lower-case hex digits.
std::string sha256_hex(std::string_view data);

}  // namespace kiln
