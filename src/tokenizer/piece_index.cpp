#include "tokenizer/piece_index.h"

namespace kiln {

std::int32_t PieceIndex::build(const std::vector<std::string>& pieces) {
  arena_.clear();
  begins_.assign(1, 0);
  for (const std::string& p : pieces) {
    arena_ += p;
    begins_.push_back(static_cast<std::uint32_t>(arena_.size()));
  }
  std::size_t n_slots = 16;
  while (n_slots < 2 * pieces.size()) n_slots *= 2;
  slots_.assign(n_slots, Slot{0, -1});
  mask_ = n_slots - 1;

  std::int32_t first_duplicate = -1;
  for (std::size_t id = 0; id < pieces.size(); ++id) {
    const std::string_view piece = pieces[id];
    if (piece.empty()) continue;
    const std::uint64_t h = hash(piece);
    const auto tag = static_cast<std::uint32_t>(h >> 32);
    std::size_t i = h & mask_;
    bool duplicate = false;
    for (; slots_[i].id >= 0; i = (i + 1) & mask_) {
      if (slots_[i].tag == tag && text(slots_[i].id) == piece) {
        duplicate = true;
        break;
      }
    }
    if (duplicate) {
      if (first_duplicate < 0) first_duplicate = static_cast<std::int32_t>(id);
      continue;
    }
    slots_[i] = Slot{tag, static_cast<std::int32_t>(id)};
  }
  return first_duplicate;
}

}  // namespace kiln
