#pragma once
// Byte-level BPE ("gpt2" vocabularies: GPT-2, Llama 3, Qwen 2, Mistral-Nemo/Tekken, SmolLM,
// DeepSeek and kin), token for token what llama.cpp, Hugging Face tokenizers and tiktoken give:
//   specials:  the texts of added tokens are cut out first and become their ids (user-defined
//              tokens always, control tokens when parse_special), never merged with neighbours;
//   split:     the family's pre-tokenizer regexes cut the rest into words (see pretokenizer.h);
//   words:     with ignore_merges (Llama 3, Tekken) a word that is a token as a whole is that
//              token; otherwise each byte starts as its own token (GPT-2's byte-to-unicode
//              mapping names them) and adjacent pairs merge by rank, lowest rank first (ties:
//              leftmost), until no pair of the merge list is left.
// Decoding maps token texts back to their bytes, so any byte sequence round-trips; decode()
// turns bytes that do not form valid UTF-8 into U+FFFD, token_to_piece keeps them.
#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/merge_work.h"
#include "tokenizer/piece_index.h"
#include "tokenizer/pretokenizer.h"
#include "tokenizer/special_tokens.h"
#include "tokenizer/tokenizer.h"

namespace kiln {

class BpeTokenizer final : public Tokenizer {
 public:
  // Throws kiln::Error (naming vocab.source) on merges that name unknown tokens or merge into a
  // text that is not a token, an unknown pre-tokenizer name, or missing byte tokens without an
  // unknown token to stand in for them.
  explicit BpeTokenizer(Vocab vocab);

  std::vector<std::int32_t> encode(std::string_view text, bool add_bos, bool parse_special) const override;
  // Appends the ids of one stretch of text with no special tokens in it.
  void encode_text(std::string_view text, std::vector<std::int32_t>& out) const;

  // How a word's merges are found: a heap of candidate pairs over a linked list (O(n log n));
  // one bucket of candidates per rank, walked in rank order (O(n + ranks): a merge almost
  // always makes pairs of higher rank, and the few of lower rank go to a small heap); or the
  // plain reference that rescans all pairs after each merge (O(n^2)). Auto takes the rescan
  // for short words, where it is fastest, buckets for very long ones (a 1 MB word is one heap
  // of a million candidates, far out of cache) and the heap in between. All give the same ids.
  enum class MergePath { Auto, Heap, Buckets, Rescan };
  // Appends the ids BPE gives the bytes of one word (ignore_merges does not apply here), and
  // adds what it took to `work` when given.
  void merge_word(std::string_view word, std::vector<std::int32_t>& out, MergePath path = MergePath::Auto,
                  MergeWork* work = nullptr) const;

  void decode_token(std::int32_t id, DecodeState& state, std::string& out) const override;
  void decode_finish(DecodeState& state, std::string& out) const override;
  std::string token_to_piece(std::int32_t id) const override;

  std::size_t n_merges() const { return n_merges_; }
  const Pretokenizer& pretokenizer() const { return pretokenizer_; }
  bool ignore_merges() const { return ignore_merges_; }

 private:
  // A merge rule keyed by its (left id, right id) pair, in an open-addressing table.
  struct MergeSlot {
    std::uint64_t key;    // left << 32 | right; kEmptyKey for an empty slot
    std::int32_t rank;    // position in the merge list: lower merges first
    std::int32_t result;  // id of the merged token
  };
  static constexpr std::uint64_t kEmptyKey = ~std::uint64_t{0};
  const MergeSlot* find_merge(std::int32_t left, std::int32_t right) const {
    const std::uint64_t key = (static_cast<std::uint64_t>(static_cast<std::uint32_t>(left)) << 32) |
                              static_cast<std::uint32_t>(right);
    for (std::size_t i = (key * 0x9E3779B97F4A7C15ull) >> merge_shift_;; i = (i + 1) & merge_mask_) {
      const MergeSlot& slot = merge_slots_[i];
      if (slot.key == key) return &slot;
      if (slot.key == kEmptyKey) return nullptr;
    }
  }
  void build_merges();
  void merge_heap(std::string_view word, std::vector<std::int32_t>& out, MergeWork& work) const;
  void merge_buckets(std::string_view word, std::vector<std::int32_t>& out, MergeWork& work) const;
  void merge_rescan(std::string_view word, std::vector<std::int32_t>& out, MergeWork& work) const;
  // Appends the ids of one word: whole-word token, or merges.
  void encode_word(std::string_view word, std::vector<std::int32_t>& out) const;

  Pretokenizer pretokenizer_;
  bool ignore_merges_ = false;
  std::vector<MergeSlot> merge_slots_;  // power-of-two size, at most half full
  std::size_t merge_mask_ = 0;
  int merge_shift_ = 64;
  std::size_t n_merges_ = 0;
  std::array<std::int32_t, 256> byte_token_;  // byte -> id of the token for that byte alone, or -1
  std::vector<std::string> token_bytes_;      // id -> the bytes it decodes to ("" for control tokens)
  PieceIndex word_index_;  // bytes -> id of the normal tokens, for ignore_merges lookups
  SpecialTokenSplitter always_split_;   // user-defined tokens
  SpecialTokenSplitter special_split_;  // user-defined, control and unknown tokens, for parse_special
  bool has_user_defined_ = false;
};

}  // namespace kiln
