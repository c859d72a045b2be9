#pragma once
// The options of speculative decoding (runtime/speculative.h), on their own so that the engine's
// options can hold them without the model's headers.
namespace kiln {

struct SpeculativeOptions {
  int draft_max = 16;   // tokens drafted per round at most (llama.cpp's --draft-max)
  int draft_min = 1;    // the adaptive length never drops below this; draft_min == draft_max: a fixed length
  float p_min = 0.0f;   // stop drafting a round once the draft's probability of its own token is below this
  // The serving engine speculates while at most this many sequences decode in a step: the
  // verification rows are almost free while a decode step is bound by reading the weights, and
  // cost compute once many sequences share the step (docs/api.md).
  int max_sequences = 4;

  // Throws kiln::Error naming the first option out of range.
  void validate() const;
};

}  // namespace kiln
