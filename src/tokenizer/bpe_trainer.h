#pragma once
// Learning a byte-level BPE vocabulary (the "gpt2" kind BpeTokenizer reads) from text:
//   count:  the text is cut into words by a pre-tokenizer family's expressions (the same ones
//           BpeTokenizer splits with) and each distinct word is counted (BpeWordCounts);
//   merge:  every word starts as its bytes (token ids 0..255, byte b is id b, written in
//           GPT-2's byte-to-unicode alphabet); the most frequent adjacent pair of tokens becomes
//           a new token, each word merges its occurrences left to right, and this repeats until
//           the vocabulary is full or no pair occurs min_frequency times. Pair counts are kept
//           incrementally: a pair -> words index means each merge revisits only the words that
//           hold the pair, and a max-heap with lazy invalidation finds the next pair.
//           Ties (equal counts) go to the pair with the smaller (left id, right id): the
//           result depends only on the word counts, never on hashing or thread timing;
//   finish: the special tokens follow the learned ones, control type, the first two as BOS/EOS
//           (<|eot_id|>, <|eom_id|> among them end turns and messages, as in Llama 3).
// Merges are ranked in the order they were learned, so BpeTokenizer, which merges the lowest
// rank first and ties leftmost, reproduces on every word what training did to it.
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "tokenizer/hf_tokenizer_writer.h"  // write_hf_tokenizer_json / _config for the trained vocabulary
#include "tokenizer/vocab.h"

namespace kiln {

// A --pattern name: the short family names (llama3, gpt4 = cl100k, gpt4o = o200k, gpt2, qwen2)
// or any tokenizer.ggml.pre name kiln knows. Returns the tokenizer.ggml.pre value to write;
// throws kiln::Error listing the names on an unknown one.
std::string bpe_pretokenizer_name(std::string_view pattern);

// Distinct words of a text and how often each occurs.
class BpeWordCounts {
 public:
  // `pre` is a tokenizer.ggml.pre name (see bpe_pretokenizer_name).
  explicit BpeWordCounts(const std::string& pre);

  // Adds the words of `text`.
  void add_text(std::string_view text);
  // Adds the words of the file at `path`, read in blocks (so a file larger than memory is
  // fine), each block cut after a line break and its halves counted on `threads` threads.
  // Throws kiln::Error naming the file when it cannot be read.
  void add_file(const std::string& path, int threads = 2);

  const std::unordered_map<std::string, std::uint64_t>& counts() const { return counts_; }
  std::uint64_t n_bytes() const { return n_bytes_; }
  const std::string& pre() const { return pre_; }

 private:
  std::string pre_;
  std::vector<std::string> patterns_;
  std::unordered_map<std::string, std::uint64_t> counts_;
  std::uint64_t n_bytes_ = 0;
};

struct BpeTrainOptions {
  // Total tokens: the 256 bytes, the merges, the special tokens.
  std::int32_t vocab_size = 4096;
  // A pair occurring fewer times than this is never merged (training may stop short of vocab_size).
  std::uint64_t min_frequency = 2;
  // Appended after the learned tokens; the first is BOS, the second EOS.
  std::vector<std::string> special_tokens{"<|begin_of_text|>", "<|end_of_text|>"};
  // Called every so often with (merges done, merges wanted); may be empty.
  std::function<void(std::size_t, std::size_t)> progress;
};

struct BpeTrainResult {
  Vocab vocab;  // finalized: model "gpt2", tokens, types, merges, pre, bos/eos
  // Each distinct word (bytes) -> its token ids after the learned merges, as training left it.
  std::vector<std::pair<std::string, std::vector<std::int32_t>>> words;
};

// Throws kiln::Error when vocab_size leaves no room for the bytes and the special tokens, or a
// special token is empty, repeated, or the text of a learned token.
BpeTrainResult train_bpe(const BpeWordCounts& counts, const BpeTrainOptions& options);

// Writes a GGUF holding only the tokenizer.ggml.* keys of `vocab` (model, pre, tokens,
// token_type, merges, bos/eos/eot/eom ids, add_bos_token).
void write_tokenizer_gguf(const Vocab& vocab, const std::string& path);

}  // namespace kiln
