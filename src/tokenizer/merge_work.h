#pragma once
// What the merge step of a tokenizer did for one word or text, counted rather than timed: tests
// check the merges' complexity with it (work per byte stays flat as the input grows), which
// holds on a busy machine where wall-clock ratios do not. Encoders take an optional pointer to
// one and add to it; without one the count (a few increments per merge) is dropped.
#include <cstddef>

namespace kiln {

struct MergeWork {
  std::size_t pairs_considered = 0;  // adjacent pairs looked up in the merge rules / vocabulary
  std::size_t candidates_taken = 0;  // candidates taken off a heap or bucket (stale ones included)
  std::size_t merges = 0;            // pairs actually merged
  std::size_t ranks_walked = 0;      // rank buckets visited (byte-level BPE's bucket path)

  MergeWork& operator+=(const MergeWork& o) {
    pairs_considered += o.pairs_considered;
    candidates_taken += o.candidates_taken;
    merges += o.merges;
    ranks_walked += o.ranks_walked;
    return *this;
  }
};

}  // namespace kiln
