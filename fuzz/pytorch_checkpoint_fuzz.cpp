// Feeds arbitrary bytes to PyTorchCheckpoint::open: the zip reader, the restricted unpickler and
// the storage checks together. Rejection must be a kiln::Error; anything else is a finding. An
// accepted checkpoint is walked completely: every contiguous tensor's bytes (first and last)
// must lie inside its storage, every view must match them, and every tensor of up to 2^16
// elements is copied in row-major order. The input's data.pkl CRC-32 is
// first set to that of its bytes (when the zip parses), so that mutated pickles get past the
// CRC to the unpickler and the storage checks.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>
#include <vector>

#include "core/error.h"
#include "format/pytorch_checkpoint.h"
#include "format/zip_archive.h"
#include "fuzz_input_file.h"

namespace {

void walk(const kiln::PyTorchCheckpoint& ckpt) {
  volatile std::size_t sink = 0;
  for (const kiln::PyTorchTensorInfo& info : ckpt.tensors()) {
    if (ckpt.find_tensor(info.name) != &info) __builtin_trap();
    // Every tensor of a modest size copies in row-major order (strided ones included).
    if (info.n_elements <= (1 << 16)) {
      std::vector<std::uint8_t> copy(static_cast<std::size_t>(info.n_elements) * info.element_bytes);
      ckpt.copy_row_major(info, copy);
      if (!copy.empty()) sink = sink + copy[0] + copy.back();
    }
    if (!info.contiguous) {
      try {
        ckpt.tensor_bytes(info);
        __builtin_trap();  // a strided tensor must not be handed out as consecutive bytes
      } catch (const kiln::Error&) {
      }
      continue;
    }
    const auto bytes = ckpt.tensor_bytes(info);
    if (bytes.size() != static_cast<std::size_t>(info.n_elements) * info.element_bytes) __builtin_trap();
    if (bytes.data() < info.storage.data() || bytes.data() + bytes.size() > info.storage.data() + info.storage.size())
      __builtin_trap();
    if (!bytes.empty()) sink = sink + bytes[0] + bytes[bytes.size() - 1];
    try {
      const kiln::TensorView view = ckpt.tensor_view(info);
      if (view.data != bytes.data() || view.n_bytes() != bytes.size()) __builtin_trap();
    } catch (const kiln::Error&) {
    }
  }
}

// Writes the CRC-32 of every '.../data.pkl' entry into its central directory record.
void fix_pickle_crc(std::vector<std::uint8_t>& bytes) {
  try {
    const kiln::ZipArchive zip("fuzz", bytes);
    for (const kiln::ZipEntry& e : zip.entries()) {
      if (e.name.size() < 9 || e.name.compare(e.name.size() - 9, 9, "/data.pkl") != 0) continue;
      const std::uint32_t crc = kiln::zip_crc32(zip.data(e));
      // The central record: signature, then the name at +46; the CRC is at +16.
      for (std::size_t at = 0; at + 46 + e.name.size() <= bytes.size(); ++at) {
        if (std::memcmp(&bytes[at], "PK\x01\x02", 4) != 0) continue;
        const std::size_t name_len = bytes[at + 28] | (bytes[at + 29] << 8);
        if (name_len == e.name.size() && std::memcmp(&bytes[at + 46], e.name.data(), name_len) == 0)
          std::memcpy(&bytes[at + 16], &crc, 4);
      }
    }
  } catch (const kiln::Error&) {
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    std::vector<std::uint8_t> bytes(data, data + size);
    fix_pickle_crc(bytes);
    walk(*kiln::PyTorchCheckpoint::open(kiln::fuzz::input_file(bytes.data(), bytes.size())));
  } catch (const kiln::Error&) {
  }
  return 0;
}
