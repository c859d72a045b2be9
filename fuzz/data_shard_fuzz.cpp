// Feeds arbitrary bytes to data::ShardReader::open. Rejection must be a kiln::Error; an accepted
// shard must give ids inside its vocabulary and document offsets that run from 0 to the token
// count, which is checked by reading every token and every offset.
#include <cstddef>
#include <cstdint>

#include "core/error.h"
#include "data/data_shard.h"
#include "fuzz_input_file.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    const auto shard = kiln::data::ShardReader::open(kiln::fuzz::input_file(data, size));
    for (std::uint64_t i = 0; i < shard.n_tokens(); ++i)
      if (shard.token(i) >= shard.header().vocab_size) __builtin_trap();
    std::uint64_t prev = 0;
    for (std::uint64_t d = 0; d <= shard.n_documents(); ++d) {
      const std::uint64_t begin = shard.document_begin(d);
      if (begin < prev || begin > shard.n_tokens()) __builtin_trap();
      prev = begin;
    }
    if (prev != shard.n_tokens()) __builtin_trap();
  } catch (const kiln::Error&) {
  }
  return 0;
}
