#pragma once
// SHA-256 (FIPS 180-4). kiln uses it where a stable name for a secret must not reveal the
// secret (an API key is identified in metrics by the first hex digits of its hash) and to check
// files whose bytes come from several buffers (a training checkpoint's tensors), which the
// incremental Sha256 hashes without first copying them into one.
#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace kiln {

// A digest fed in pieces: update() any number of times, then finish() once. The digest of the
// pieces equals sha256() of their concatenation.
class Sha256 {
 public:
  Sha256();
  void update(const void* data, std::size_t n);
  std::array<std::uint8_t, 32> finish();

 private:
  std::uint32_t h_[8];
  unsigned char block_[64];  // the bytes of an incomplete block
  std::size_t buffered_ = 0;
  std::uint64_t total_ = 0;  // bytes fed so far
};

std::array<std::uint8_t, 32> sha256(std::string_view data);

// The digest as 64 lower-case hex digits.
std::string sha256_hex(std::string_view data);

}  // namespace kiln
