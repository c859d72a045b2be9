#pragma once
// A read-only memory map of a whole file. By default weights stay in the page cache and are
// never copied: tensors are views into this mapping.
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

namespace kiln {

// How a model file's bytes reach memory. `map` (the default) maps the file: tensors are views
// into the page cache, shared between processes and never copied. `copy` reads the file into
// private anonymous huge-page memory (llama.cpp's --no-mmap): resident size stays about the file
// size, but each process holds its own copy. Why offer it: on the VMs kiln is measured on, the
// page cache's memory has at times read at 0.6x the speed of fresh anonymous memory, and decode,
// a stream over every weight per token, follows it (docs/benchmarks.md).
enum class LoadMode { map, copy };

// The mode MappedFile uses: KILN_LOAD=copy in the environment, or what set_load_mode() chose
// (the CLI's --no-mmap). Process-wide, because every file a command opens should load alike.
LoadMode load_mode();
void set_load_mode(LoadMode mode);
const char* load_mode_name(LoadMode mode);  // "map" or "copy"

class MappedFile {
 public:
  // Maps (or, in LoadMode::copy, reads) `path` read-only. Throws kiln::Error naming the path if
  // it cannot be opened. A copy that cannot be made (no memory) falls back to the map.
  explicit MappedFile(const std::string& path);
  MappedFile(const std::string& path, LoadMode mode);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;

  const std::uint8_t* data() const { return data_; }
  std::size_t size() const { return size_; }
  std::span<const std::uint8_t> bytes() const { return {data_, size_}; }
  const std::string& path() const { return path_; }
  // Whether the bytes are a private copy (LoadMode::copy took effect) rather than the map.
  bool copied() const { return copied_; }

  // Asks the kernel to read [offset, offset+length) ahead (MADV_WILLNEED); a hint only.
  void prefetch(std::size_t offset, std::size_t length) const;

 private:
  std::string path_;
  const std::uint8_t* data_ = nullptr;
  std::size_t size_ = 0;
  bool copied_ = false;
};

}  // namespace kiln
