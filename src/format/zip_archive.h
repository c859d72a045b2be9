#pragma once
// A read-only ZIP archive over bytes that stay where they are (a memory map): the central
// directory is parsed and checked once, and each entry is a span of the archive's own bytes.
// Only stored entries (method 0, no compression, no encryption) are accepted, which is what
// torch.save writes; a compressed entry is refused naming it.
//
// Layout read: the end of central directory record (searched in the last 64 KiB + 22 bytes,
// the longest a comment can make it), the ZIP64 locator and end record when present, then the
// central directory's entries (ZIP64 extra field 0x0001 for sizes and offsets above 32 bits),
// and each entry's local header, which must repeat the entry's name and method, give sizes
// consistent with the central directory (or zero with the data-descriptor flag, as torch
// writes them), and place the data inside the file before the central directory. Entries may
// not overlap one another, and names are unique.
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace kiln {

struct ZipEntry {
  std::string name;
  std::uint64_t header_offset = 0;  // of the local header, from the archive's start
  std::uint64_t data_offset = 0;    // of the stored bytes, from the archive's start
  std::uint64_t size = 0;           // stored = uncompressed size in bytes
  std::uint32_t crc32 = 0;          // as the central directory records it
};

class ZipArchive {
 public:
  // Limits that keep a hostile directory from costing more than a real checkpoint does.
  static constexpr std::uint64_t kMaxEntries = 1u << 20;
  static constexpr std::size_t kMaxNameBytes = 4096;

  // Parses and validates the archive held in `bytes`, which must outlive the archive. `path`
  // only names the file in errors. Throws kiln::Error ("<path>: zip ...: ...") on anything
  // inconsistent or unsupported.
  ZipArchive(std::string path, std::span<const std::uint8_t> bytes);

  const std::string& path() const { return path_; }
  // Entries in central directory order.
  const std::vector<ZipEntry>& entries() const { return entries_; }
  const ZipEntry* find(std::string_view name) const;
  // The entry's stored bytes: a span of the archive's bytes.
  std::span<const std::uint8_t> data(const ZipEntry& entry) const {
    return bytes_.subspan(entry.data_offset, entry.size);
  }
  // Throws kiln::Error naming the entry unless its bytes match the recorded CRC-32. This reads
  // every byte, so callers check small entries (the pickle), not tensor storages.
  void verify_crc32(const ZipEntry& entry) const;

 private:
  std::string path_;
  std::span<const std::uint8_t> bytes_;
  std::vector<ZipEntry> entries_;
  std::unordered_map<std::string, std::size_t> index_;  // name -> position in entries_
};

// The standard CRC-32 (polynomial 0xEDB88320) of `bytes`, as ZIP records it.
std::uint32_t zip_crc32(std::span<const std::uint8_t> bytes);

}  // namespace kiln
