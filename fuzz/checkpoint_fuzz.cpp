// Feeds arbitrary bytes to the training checkpoint readers (train/checkpoint.h). Rejection must be
// a kiln::Error. The input's header digest is first set to the SHA-256 of the header bytes it
// designates: otherwise nearly every input would stop at the digest check, and the JSON header's
// validation (fields, tensor table against the config, sizes against the file) would go unfuzzed.
// An accepted header must describe a model whose parameter table fits the file; its tensors are
// then loaded (the tensor digest still guards them, so most such inputs end in its kiln::Error).
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.h"
#include "core/sha256.h"
#include "fuzz_input_file.h"
#include "train/checkpoint.h"
#include "train/parameter_table.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  constexpr std::size_t kPrefix = 56;  // magic, version, reserved, header length, header SHA-256
  std::vector<std::uint8_t> bytes(data, data + size);
  if (size >= kPrefix) {
    std::uint64_t header_bytes;
    std::memcpy(&header_bytes, bytes.data() + 16, 8);
    if (header_bytes <= size - kPrefix) {
      const auto digest = kiln::sha256(std::string_view(reinterpret_cast<const char*>(bytes.data() + kPrefix),
                                                        static_cast<std::size_t>(header_bytes)));
      std::memcpy(bytes.data() + 24, digest.data(), digest.size());
    }
  }
  const std::string& path = kiln::fuzz::input_file(bytes.data(), bytes.size());
  try {
    const kiln::train::CheckpointState state = kiln::train::read_checkpoint_state(path);
    const kiln::train::ParameterTable table(state.config);
    // The header was checked to describe exactly the file's tensor bytes: 12 per float.
    if (static_cast<std::uint64_t>(table.total()) * 12 > size) __builtin_trap();
    std::vector<float> params(static_cast<std::size_t>(table.total())), m(params.size()), v(params.size());
    kiln::train::read_checkpoint_tensors(path, table, params.data(), m.data(), v.data());
  } catch (const kiln::Error&) {
  }
  return 0;
}
