// Feeds arbitrary bytes to GgufFile::open. Rejection must be a kiln::Error; anything else (a
// crash, a sanitizer report, another exception type, a giant allocation) is a finding. An
// accepted file is walked completely: every metadata getter and every readable tensor's first
// and last byte, which must lie inside the mapping.
#include <cstddef>
#include <cstdint>

#include "core/error.h"
#include "format/gguf_file.h"
#include "fuzz_input_file.h"

namespace {

// Reads every value of an array, recursing into nested arrays, so the sanitizers see each one.
std::size_t walk_array(const kiln::GgufArray& array) {
  std::size_t sum = array.size();
  for (const std::string& s : array.strings) sum += s.size();
  for (const kiln::GgufValue& v : array.arrays)
    if (const kiln::GgufArray* inner = v.as_array()) sum += walk_array(*inner);
  return sum;
}

void walk(const kiln::GgufFile& file) {
  volatile std::size_t sink = 0;
  for (const auto& [key, value] : file.metadata()) {
    // Each getter either answers or throws kiln::Error naming the key.
    try {
      sink = sink + static_cast<std::size_t>(file.get_int(key).value_or(0));
    } catch (const kiln::Error&) {
    }
    try {
      sink = sink + static_cast<std::size_t>(file.get_float(key).value_or(0) != 0);
    } catch (const kiln::Error&) {
    }
    try {
      sink = sink + file.get_bool(key).value_or(false);
    } catch (const kiln::Error&) {
    }
    try {
      sink = sink + file.get_string(key).value_or("").size();
    } catch (const kiln::Error&) {
    }
    try {
      if (const kiln::GgufArray* a = file.get_array(key)) sink = sink + walk_array(*a);
    } catch (const kiln::Error&) {
    }
  }
  for (const kiln::GgufTensorInfo& info : file.tensors()) {
    if (file.find_tensor(info.name) != &info) __builtin_trap();
    if (!info.dtype) {
      try {
        file.tensor_view(info);
        __builtin_trap();  // a tensor of a type kiln cannot read must not get a view
      } catch (const kiln::Error&) {
      }
      continue;
    }
    const kiln::TensorView view = file.tensor_view(info);
    if (view.n_bytes() != info.n_bytes) __builtin_trap();
    const auto* bytes = static_cast<const std::uint8_t*>(view.data);
    const std::uint8_t* begin = file.mapped_file().data();
    if (bytes < begin || bytes + view.n_bytes() > begin + file.file_size()) __builtin_trap();
    sink = sink + bytes[0] + bytes[view.n_bytes() - 1];
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    walk(*kiln::GgufFile::open(kiln::fuzz::input_file(data, size)));
  } catch (const kiln::Error&) {
  }
  return 0;
}
