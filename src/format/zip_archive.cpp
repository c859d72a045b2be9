#include "format/zip_archive.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <optional>

#include "core/error.h"

namespace kiln {
namespace {

constexpr std::uint32_t kLocalHeaderSig = 0x04034b50;
constexpr std::uint32_t kCentralHeaderSig = 0x02014b50;
constexpr std::uint32_t kEndSig = 0x06054b50;
constexpr std::uint32_t kZip64EndSig = 0x06064b50;
constexpr std::uint32_t kZip64LocatorSig = 0x07064b50;
constexpr std::uint64_t kEndBytes = 22;
constexpr std::uint64_t kZip64LocatorBytes = 20;
constexpr std::uint64_t kZip64EndBytes = 56;
constexpr std::uint64_t kCentralHeaderBytes = 46;
constexpr std::uint64_t kLocalHeaderBytes = 30;
constexpr std::uint64_t kMaxComment = 0xFFFF;
constexpr std::uint16_t kZip64ExtraId = 0x0001;
constexpr std::uint16_t kFlagEncrypted = 1u << 0;
constexpr std::uint16_t kFlagDataDescriptor = 1u << 3;

// Little-endian reads at offsets the caller has checked against the size.
std::uint16_t u16(const std::uint8_t* p) { return static_cast<std::uint16_t>(p[0] | (p[1] << 8)); }
std::uint32_t u32(const std::uint8_t* p) {
  return static_cast<std::uint32_t>(p[0]) | (static_cast<std::uint32_t>(p[1]) << 8) |
         (static_cast<std::uint32_t>(p[2]) << 16) | (static_cast<std::uint32_t>(p[3]) << 24);
}
std::uint64_t u64(const std::uint8_t* p) { return u32(p) | (static_cast<std::uint64_t>(u32(p + 4)) << 32); }

// The archive-wide facts the end records give.
struct Directory {
  std::uint64_t entries = 0;
  std::uint64_t offset = 0;  // of the central directory
  std::uint64_t size = 0;
  std::uint64_t end = 0;  // where the central directory must end (the first end record)
};

// The values of a ZIP64 extra field (id 0x0001) present for the 32-bit fields that hold
// 0xFFFFFFFF, in the order the specification gives: uncompressed size, compressed size, local
// header offset.
struct Zip64Fields {
  std::optional<std::uint64_t> uncompressed, compressed, header_offset;
};

Zip64Fields parse_zip64_extra(const std::string& path, std::string_view entry, std::span<const std::uint8_t> extra,
                              bool need_uncompressed, bool need_compressed, bool need_offset) {
  Zip64Fields out;
  std::uint64_t at = 0;
  while (at + 4 <= extra.size()) {
    const std::uint16_t id = u16(extra.data() + at);
    const std::uint16_t len = u16(extra.data() + at + 2);
    if (at + 4 + len > extra.size())
      fail("{}: zip entry '{}': extra field 0x{:04x} of {} bytes runs past the extra data ({} bytes)", path, entry, id,
           len, extra.size());
    if (id == kZip64ExtraId) {
      const std::uint8_t* p = extra.data() + at + 4;
      std::uint64_t used = 0;
      auto take = [&](std::optional<std::uint64_t>& field, std::string_view what) {
        if (used + 8 > len)
          fail("{}: zip entry '{}': ZIP64 extra field ({} bytes) lacks the {}", path, entry, len, what);
        field = u64(p + used);
        used += 8;
      };
      if (need_uncompressed) take(out.uncompressed, "uncompressed size");
      if (need_compressed) take(out.compressed, "compressed size");
      if (need_offset) take(out.header_offset, "local header offset");
      return out;
    }
    at += 4 + len;
  }
  if (need_uncompressed || need_compressed || need_offset)
    fail("{}: zip entry '{}': a size or offset is 0xFFFFFFFF but there is no ZIP64 extra field", path, entry);
  return out;
}

// Finds the end of central directory record: the last signature whose comment reaches exactly
// to the end of the file, within the last 64 KiB + 22 bytes.
std::uint64_t find_end_record(const std::string& path, std::span<const std::uint8_t> bytes) {
  if (bytes.size() < kEndBytes)
    fail("{}: zip: file is {} bytes, too short for an end of central directory record ({} bytes)", path, bytes.size(),
         kEndBytes);
  const std::uint64_t last = bytes.size() - kEndBytes;
  const std::uint64_t first = last > kMaxComment ? last - kMaxComment : 0;
  for (std::uint64_t at = last + 1; at-- > first;) {
    const std::uint8_t* p = bytes.data() + at;
    if (u32(p) == kEndSig && at + kEndBytes + u16(p + 20) == bytes.size()) return at;
  }
  fail("{}: zip: no end of central directory record in the last {} bytes (not a zip archive, or truncated)", path,
       bytes.size() - first);
}

Directory read_directory(const std::string& path, std::span<const std::uint8_t> bytes) {
  const std::uint64_t end_at = find_end_record(path, bytes);
  const std::uint8_t* e = bytes.data() + end_at;
  if (u16(e + 4) != 0 || u16(e + 6) != 0)
    fail("{}: zip: end record names disk {} / {} (multi-disk archives are not supported)", path, u16(e + 4),
         u16(e + 6));
  Directory d;
  d.entries = u16(e + 10);
  d.size = u32(e + 12);
  d.offset = u32(e + 16);
  d.end = end_at;
  if (u16(e + 8) != u16(e + 10))
    fail("{}: zip: end record counts {} entries on this disk but {} in total", path, u16(e + 8), u16(e + 10));

  // A ZIP64 locator sits right before the end record whenever the writer used ZIP64 records.
  const bool has_locator = end_at >= kZip64LocatorBytes && u32(e - kZip64LocatorBytes) == kZip64LocatorSig;
  const bool needs_zip64 = d.entries == 0xFFFF || d.size == 0xFFFFFFFF || d.offset == 0xFFFFFFFF;
  if (!has_locator) {
    if (needs_zip64) fail("{}: zip: end record holds ZIP64 placeholders but no ZIP64 locator precedes it", path);
    return d;
  }
  const std::uint8_t* loc = e - kZip64LocatorBytes;
  const std::uint64_t z_at = u64(loc + 8);
  if (u32(loc + 4) != 0 || u32(loc + 16) > 1)
    fail("{}: zip: ZIP64 locator names disk {} of {} (multi-disk archives are not supported)", path, u32(loc + 4),
         u32(loc + 16));
  if (z_at > end_at - kZip64LocatorBytes || end_at - kZip64LocatorBytes - z_at < kZip64EndBytes)
    fail("{}: zip: ZIP64 end record offset {} does not leave its {} bytes before the locator at {}", path, z_at,
         kZip64EndBytes, end_at - kZip64LocatorBytes);
  const std::uint8_t* z = bytes.data() + z_at;
  if (u32(z) != kZip64EndSig) fail("{}: zip: no ZIP64 end record signature at offset {}", path, z_at);
  if (u32(z + 16) != 0 || u32(z + 20) != 0)
    fail("{}: zip: ZIP64 end record names disk {} / {} (multi-disk archives are not supported)", path, u32(z + 16),
         u32(z + 20));
  if (u64(z + 24) != u64(z + 32))
    fail("{}: zip: ZIP64 end record counts {} entries on this disk but {} in total", path, u64(z + 24), u64(z + 32));
  d.entries = u64(z + 32);
  d.size = u64(z + 40);
  d.offset = u64(z + 48);
  d.end = z_at;
  return d;
}

}  // namespace

std::uint32_t zip_crc32(std::span<const std::uint8_t> bytes) {
  static const std::array<std::uint32_t, 256> table = [] {
    std::array<std::uint32_t, 256> t{};
    for (std::uint32_t i = 0; i < 256; ++i) {
      std::uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  std::uint32_t crc = 0xFFFFFFFFu;
  for (std::uint8_t b : bytes) crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8);
  return crc ^ 0xFFFFFFFFu;
}

ZipArchive::ZipArchive(std::string path, std::span<const std::uint8_t> bytes) : path_(std::move(path)), bytes_(bytes) {
  const std::string& p = path_;
  const Directory dir = read_directory(p, bytes);
  if (dir.offset > dir.end || dir.size > dir.end - dir.offset)
    fail("{}: zip: central directory (offset {}, {} bytes) does not end before its end record at {}", p, dir.offset,
         dir.size, dir.end);
  if (dir.entries > kMaxEntries) fail("{}: zip: {} entries (kiln reads at most {})", p, dir.entries, kMaxEntries);
  if (dir.entries * kCentralHeaderBytes > dir.size)
    fail("{}: zip: central directory of {} bytes cannot hold {} entries", p, dir.size, dir.entries);

  entries_.reserve(dir.entries);
  std::uint64_t at = dir.offset;
  const std::uint64_t cd_end = dir.offset + dir.size;
  for (std::uint64_t i = 0; i < dir.entries; ++i) {
    if (cd_end - at < kCentralHeaderBytes)
      fail("{}: zip: central directory entry {} at offset {} runs past the directory's end", p, i, at);
    const std::uint8_t* c = bytes.data() + at;
    if (u32(c) != kCentralHeaderSig)
      fail("{}: zip: central directory entry {} at offset {} has no signature", p, i, at);
    const std::uint16_t flags = u16(c + 8);
    const std::uint16_t method = u16(c + 10);
    const std::uint64_t name_len = u16(c + 28), extra_len = u16(c + 30), comment_len = u16(c + 32);
    if (cd_end - at - kCentralHeaderBytes < name_len + extra_len + comment_len)
      fail("{}: zip: central directory entry {}'s name, extra and comment run past the directory's end", p, i);
    if (name_len == 0 || name_len > kMaxNameBytes)
      fail("{}: zip: central directory entry {} has a name of {} bytes (expected 1 to {})", p, i, name_len,
           kMaxNameBytes);
    ZipEntry entry;
    entry.name.assign(reinterpret_cast<const char*>(c + kCentralHeaderBytes), name_len);
    const std::string& name = entry.name;
    if (flags & kFlagEncrypted) fail("{}: zip entry '{}' is encrypted (kiln reads only stored entries)", p, name);
    if (method != 0)
      fail("{}: zip entry '{}' is compressed (method {}); kiln reads only stored entries, as torch.save writes them", p,
           name, method);
    if (u16(c + 34) != 0 && u16(c + 34) != 0xFFFF)
      fail("{}: zip entry '{}' starts on disk {} (multi-disk archives are not supported)", p, name, u16(c + 34));
    std::uint64_t compressed = u32(c + 20), uncompressed = u32(c + 24), header_offset = u32(c + 42);
    const Zip64Fields z64 =
        parse_zip64_extra(p, name, bytes.subspan(at + kCentralHeaderBytes + name_len, extra_len),
                          uncompressed == 0xFFFFFFFF, compressed == 0xFFFFFFFF, header_offset == 0xFFFFFFFF);
    if (z64.uncompressed) uncompressed = *z64.uncompressed;
    if (z64.compressed) compressed = *z64.compressed;
    if (z64.header_offset) header_offset = *z64.header_offset;
    if (compressed != uncompressed)
      fail("{}: zip entry '{}' is stored but its compressed size {} differs from its size {}", p, name, compressed,
           uncompressed);
    entry.size = uncompressed;
    entry.crc32 = u32(c + 16);
    entry.header_offset = header_offset;

    // The local header must repeat what the central directory says, and its data must lie
    // before the central directory.
    if (header_offset > dir.offset || dir.offset - header_offset < kLocalHeaderBytes)
      fail("{}: zip entry '{}': local header offset {} leaves no room for a header before the central directory at {}",
           p, name, header_offset, dir.offset);
    const std::uint8_t* l = bytes.data() + header_offset;
    if (u32(l) != kLocalHeaderSig)
      fail("{}: zip entry '{}': no local header signature at offset {}", p, name, header_offset);
    const std::uint16_t local_flags = u16(l + 6);
    if (u16(l + 8) != 0)
      fail("{}: zip entry '{}': local header gives method {} (the central directory says stored)", p, name, u16(l + 8));
    if (local_flags & kFlagEncrypted) fail("{}: zip entry '{}': local header marks it encrypted", p, name);
    const std::uint64_t local_name_len = u16(l + 26), local_extra_len = u16(l + 28);
    const std::uint64_t data_offset = header_offset + kLocalHeaderBytes + local_name_len + local_extra_len;
    if (data_offset > dir.offset || entry.size > dir.offset - data_offset)
      fail("{}: zip entry '{}': {} bytes of data at offset {} run past the central directory at {}", p, name,
           entry.size, data_offset, dir.offset);
    if (local_name_len != name_len || std::memcmp(l + kLocalHeaderBytes, c + kCentralHeaderBytes, name_len) != 0)
      fail("{}: zip entry '{}': local header at offset {} names a different entry", p, name, header_offset);
    if (!(local_flags & kFlagDataDescriptor)) {
      // Without a data descriptor the local sizes are the real ones (or ZIP64 placeholders).
      std::uint64_t local_compressed = u32(l + 18), local_uncompressed = u32(l + 22);
      const Zip64Fields lz =
          parse_zip64_extra(p, name, bytes.subspan(header_offset + kLocalHeaderBytes + name_len, local_extra_len),
                            local_uncompressed == 0xFFFFFFFF, local_compressed == 0xFFFFFFFF, false);
      if (lz.uncompressed) local_uncompressed = *lz.uncompressed;
      if (lz.compressed) local_compressed = *lz.compressed;
      if (local_compressed != entry.size || local_uncompressed != entry.size)
        fail("{}: zip entry '{}': local header gives sizes {} / {}, the central directory {}", p, name,
             local_compressed, local_uncompressed, entry.size);
    }
    entry.data_offset = data_offset;
    if (!index_.emplace(entry.name, entries_.size()).second) fail("{}: zip: entry '{}' appears twice", p, name);
    entries_.push_back(std::move(entry));
    at += kCentralHeaderBytes + name_len + extra_len + comment_len;
  }

  // Entries may not share bytes: each one's header and data end before the next one's header.
  std::vector<const ZipEntry*> by_offset;
  by_offset.reserve(entries_.size());
  for (const ZipEntry& e : entries_) by_offset.push_back(&e);
  std::sort(by_offset.begin(), by_offset.end(),
            [](const ZipEntry* a, const ZipEntry* b) { return a->header_offset < b->header_offset; });
  for (std::size_t i = 1; i < by_offset.size(); ++i) {
    const ZipEntry& prev = *by_offset[i - 1];
    if (prev.data_offset + prev.size > by_offset[i]->header_offset)
      fail("{}: zip entries '{}' and '{}' overlap (data up to offset {}, next header at {})", p, prev.name,
           by_offset[i]->name, prev.data_offset + prev.size, by_offset[i]->header_offset);
  }
}

const ZipEntry* ZipArchive::find(std::string_view name) const {
  const auto it = index_.find(std::string(name));
  return it == index_.end() ? nullptr : &entries_[it->second];
}

void ZipArchive::verify_crc32(const ZipEntry& entry) const {
  const std::uint32_t crc = zip_crc32(data(entry));
  if (crc != entry.crc32)
    fail("{}: zip entry '{}': CRC-32 of its {} bytes is {:08x}, the directory records {:08x} (corrupt file)", path_,
         entry.name, entry.size, crc, entry.crc32);
}

}  // namespace kiln
