// Feeds arbitrary bytes to Llama2cFile::open. Rejection must be a kiln::Error; an accepted file
// must give views that lie inside the mapping, which is checked by touching their ends.
#include <cstddef>
#include <cstdint>

#include "core/error.h"
#include "format/llama2c_file.h"
#include "fuzz_input_file.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    auto file = kiln::Llama2cFile::open(kiln::fuzz::input_file(data, size));
    const std::uint8_t* begin = file->mapped_file().data();
    const std::uint8_t* end = begin + file->mapped_file().size();
    volatile std::uint8_t sink = 0;
    for (const kiln::TensorView& t : file->tensors()) {
      const auto* bytes = static_cast<const std::uint8_t*>(t.data);
      if (t.dtype != kiln::DType::F32 || bytes < begin + 28 || bytes + t.n_bytes() > end) __builtin_trap();
      if (file->find_tensor(t.name) != &t) __builtin_trap();
      sink = sink + bytes[0] + bytes[t.n_bytes() - 1];
    }
  } catch (const kiln::Error&) {
  }
  return 0;
}
