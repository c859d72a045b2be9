#pragma once
// Where the chunks that eval and imatrix run a model over come from: a text file tokenized with
// the model's own tokenizer, or a file of token ids (for checkpoints without a tokenizer), cut
// like llama-perplexity cuts them (see chunks.h). Shared by `kiln eval` and `kiln imatrix`.
#include <string>

#include "eval/chunks.h"

namespace kiln {
class LlamaModel;
}  // namespace kiln

namespace kiln::eval {

struct ChunkSource {
  std::string text;    // a text file, tokenized with the model's tokenizer
  std::string tokens;  // or a file of whitespace-separated token ids
  bool no_bos = false;
  int ctx = 0;         // tokens per chunk; 0: 512, or the training context if shorter
  int chunks = 0;      // at most this many chunks; 0: all
};

// The chunks of `src` for `model`. BOS: the tokenizer's when its vocabulary asks for one, 1 for
// models without a tokenizer (llama2.c's convention), none with no_bos. `command` names the
// caller in errors. Throws kiln::Error on empty text, ids outside the vocabulary, a --ctx
// longer than the training context, and text shorter than one chunk.
ChunkPlan plan_chunks(const LlamaModel& model, const ChunkSource& src, const std::string& command);

}  // namespace kiln::eval
