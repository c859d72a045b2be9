// Feeds arbitrary bytes to SafetensorsFile::open. Rejection must be a kiln::Error; anything else
// (a crash, a sanitizer report, another exception type, a giant allocation) is a finding. An
// accepted file is walked completely: every tensor is found by name, lies inside the mapping
// (first and last byte read), tiles the data section with the others, and gets a view exactly
// when kiln can compute with its dtype and shape.
#include <cstddef>
#include <cstdint>

#include "core/error.h"
#include "format/safetensors_file.h"
#include "fuzz_input_file.h"

namespace {

void walk(const kiln::SafetensorsFile& file) {
  volatile std::size_t sink = 0;
  for (const auto& [key, value] : file.metadata()) sink = sink + key.size() + value.size();
  const std::uint8_t* begin = file.mapped_file().data();
  const std::uint8_t* end = begin + file.file_size();
  std::uint64_t covered = 0;
  for (const kiln::SafetensorsTensorInfo& info : file.tensors()) {
    if (file.find_tensor(info.name) != &info) __builtin_trap();
    if (info.offset != covered) __builtin_trap();  // tensors() is in data order, without gaps
    covered += info.n_bytes;
    const std::uint8_t* bytes = file.tensor_data(info);
    if (bytes < begin + file.data_offset() || info.n_bytes > static_cast<std::uint64_t>(end - bytes)) __builtin_trap();
    if (info.n_bytes > 0) sink = sink + bytes[0] + bytes[info.n_bytes - 1];
    const bool viewable = info.dtype && info.n_dims > 0;
    try {
      const kiln::TensorView view = file.tensor_view(info);
      if (!viewable) __builtin_trap();  // a view of a dtype or rank kiln cannot hold
      if (view.data != bytes || static_cast<std::uint64_t>(view.n_bytes()) != info.n_bytes) __builtin_trap();
    } catch (const kiln::Error&) {
      if (viewable) __builtin_trap();
    }
  }
  if (file.data_offset() + covered != file.file_size()) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    walk(*kiln::SafetensorsFile::open(kiln::fuzz::input_file(data, size)));
  } catch (const kiln::Error&) {
  }
  return 0;
}
