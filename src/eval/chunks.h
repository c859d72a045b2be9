#pragma once
// How evaluation cuts a token stream into chunks and runs them through a model, the way
// llama-perplexity does: the stream is split into n_chunks chunks of n_ctx tokens (the tail that
// does not fill a chunk is dropped), the first token of every chunk is replaced by BOS, each
// chunk is evaluated in a fresh context (its own KV cache sequence), and only the second half of
// each chunk is scored, so every scored token has at least n_ctx/2 tokens of context.
//
//   chunk c:  t[0]=BOS t[1] ... t[first] t[first+1] ... t[n_ctx-1]
//   scored:   the logits at positions first .. n_ctx-2 predict t[first+1] .. t[n_ctx-1]
//             (n_scored = n_ctx - first - 1 tokens per chunk, first = n_ctx / 2)
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/thread_pool.h"
#include "model/llama_model.h"

namespace kiln::eval {

struct ChunkPlan {
  int n_ctx = 0;
  int n_chunks = 0;
  int first = 0;            // first scored position (n_ctx / 2)
  int bos_id = -1;          // written over the first token of each chunk; -1: tokens kept as they are
  std::vector<int> tokens;  // (n_chunks, n_ctx) the tokens as evaluated (BOS already written)

  int n_scored() const { return n_ctx - first - 1; }
  std::span<const int> chunk(int c) const {
    return {tokens.data() + static_cast<std::size_t>(c) * static_cast<std::size_t>(n_ctx),
            static_cast<std::size_t>(n_ctx)};
  }
  // The token that scored row r of chunk c predicts.
  int target(int c, int r) const { return chunk(c)[static_cast<std::size_t>(first + 1 + r)]; }
};

// Cuts `tokens` into at most `max_chunks` (<= 0: as many as fit) chunks of n_ctx tokens. Throws
// kiln::Error when n_ctx < 4 or the stream holds fewer than n_ctx tokens ("<source> has N
// tokens, fewer than one chunk of n_ctx"); `source` names the input in that message.
ChunkPlan make_chunk_plan(std::span<const int> tokens, int n_ctx, int max_chunks, int bos_id,
                          const std::string& source);

// Token ids from a text file of whitespace-separated non-negative integers (the input for
// models without a tokenizer). Throws kiln::Error naming the file and the first bad word.
std::vector<int> read_token_file(const std::string& path);

// The whole file as bytes. Throws kiln::Error naming the path when it cannot be read.
std::string read_text_file(const std::string& path);

// Checks that every id is in [0, n_vocab); the message names `source` and the first bad id.
void check_token_range(std::span<const int> tokens, int n_vocab, const std::string& source);

// Runs whole chunks of a plan through a model, packing as many chunks into one forward pass as
// `n_batch` tokens allow (fewer when their scored logits would exceed about 256 MiB), each
// chunk in a fresh sequence of the evaluator's KV cache.
class ChunkEvaluator {
 public:
  ChunkEvaluator(LlamaModel& model, const ChunkPlan& plan, ThreadPool& pool, int n_batch);

  int chunks_per_forward() const { return per_forward_; }

  // Evaluates chunks [begin, begin + count), count <= chunks_per_forward(), in one forward pass
  // and returns the logits of their scored rows: (count * n_scored, n_vocab), chunk-major,
  // valid until the next call (the caller may overwrite them in place).
  float* evaluate(int begin, int count);

 private:
  LlamaModel& model_;
  const ChunkPlan& plan_;
  ThreadPool& pool_;
  int per_forward_ = 1;
  KvCache cache_;
  Batch batch_;
  std::vector<float> logits_;  // (per_forward * n_scored, n_vocab)
};

}  // namespace kiln::eval
