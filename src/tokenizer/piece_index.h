#pragma once
// piece -> id lookup for tokenizers, built once per vocabulary. Encoding asks it about every
// adjacent pair of symbols, most of which are not pieces, so it is an open-addressing table of
// (hash tag, id) slots over one contiguous copy of the piece texts: a miss usually costs one
// cache line, and nothing is allocated per lookup.
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace kiln {

class PieceIndex {
 public:
  // Indexes pieces[id] -> id for every non-empty piece. Returns -1, or the first id whose
  // piece repeats an earlier one (that id is left out of the index).
  std::int32_t build(const std::vector<std::string>& pieces);

  // The id of `piece`, or -1.
  std::int32_t find(std::string_view piece) const {
    if (slots_.empty()) return -1;
    const std::uint64_t h = hash(piece);
    const auto tag = static_cast<std::uint32_t>(h >> 32);
    for (std::size_t i = h & mask_;; i = (i + 1) & mask_) {
      const Slot& slot = slots_[i];
      if (slot.id < 0) return -1;
      if (slot.tag == tag && text(slot.id) == piece) return slot.id;
    }
  }

  static std::uint64_t hash(std::string_view s) {
    // Eight bytes per multiply, then a murmur-style finalizer: pieces are short, so the loop
    // runs once or twice and the finalizer does the mixing.
    std::uint64_t h = 0x9E3779B97F4A7C15ull ^ s.size();
    const char* p = s.data();
    std::size_t n = s.size();
    for (; n >= 8; p += 8, n -= 8) {
      std::uint64_t v;
      std::memcpy(&v, p, 8);
      h = (h ^ v) * 0xFF51AFD7ED558CCDull;
      h ^= h >> 32;
    }
    if (n > 0) {
      std::uint64_t v = 0;
      std::memcpy(&v, p, n);
      h = (h ^ v) * 0xC4CEB9FE1A85EC53ull;
    }
    h ^= h >> 33;
    h *= 0xFF51AFD7ED558CCDull;
    h ^= h >> 33;
    return h;
  }

 private:
  struct Slot {
    std::uint32_t tag;  // high half of the piece's hash, to skip most string compares
    std::int32_t id;    // -1 for an empty slot
  };
  std::string_view text(std::int32_t id) const {
    const auto i = static_cast<std::size_t>(id);
    return std::string_view(arena_).substr(begins_[i], begins_[i + 1] - begins_[i]);
  }

  std::vector<Slot> slots_;            // power-of-two size, at most half full
  std::size_t mask_ = 0;               // slots_.size() - 1
  std::string arena_;                  // all pieces, concatenated in id order
  std::vector<std::uint32_t> begins_;  // (n_pieces + 1) offsets into arena_
};

}  // namespace kiln
