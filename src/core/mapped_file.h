#pragma once
// A read-only memory map of a whole file. Weights stay in the page cache and are never
// copied: tensors are views into this mapping.
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

namespace kiln {

class MappedFile {
 public:
  // Maps `path` read-only. Throws kiln::Error naming the path if it cannot be opened.
  explicit MappedFile(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;

  const std::uint8_t* data() const { return data_; }
  std::size_t size() const { return size_; }
  std::span<const std::uint8_t> bytes() const { return {data_, size_}; }
  const std::string& path() const { return path_; }

  // Asks the kernel to read [offset, offset+length) ahead (MADV_WILLNEED); a hint only.
  void prefetch(std::size_t offset, std::size_t length) const;

 private:
  std::string path_;
  const std::uint8_t* data_ = nullptr;
  std::size_t size_ = 0;
};

}  // namespace kiln
