#pragma once
// Writes a Vocab as the two files Hugging Face keeps a fast tokenizer in, laid out as
// tokenizers / transformers write them, so that their loaders accept the files and kiln's
// reader (hf_tokenizer_json.h) gives back a vocabulary that encodes text to the same ids.
//   "gpt2" (byte-level BPE)   model BPE (vocab, merges, ignore_merges), pre_tokenizer a Sequence
//                             of Split (Regex, Isolated) for each of the vocabulary's expressions
//                             (its pre_patterns, or those its `pre` name stands for) and
//                             ByteLevel (use_regex false), decoder ByteLevel, control and
//                             user-defined tokens as added_tokens (special for control)
//   "llama" (SentencePiece)   what transformers' LlamaTokenizerFast writes: model BPE with
//                             byte_fallback, fuse_unk and unk_token, every piece in the vocab,
//                             merges derived from the scores (spm_merges.h), normalizer
//                             Prepend "▁" (with add_space_prefix) + Replace " " -> "▁", no
//                             pre_tokenizer, decoder Replace "▁" -> " ", ByteFallback, Fuse,
//                             Strip (the prefix space); unknown, control and user-defined
//                             pieces as added_tokens
// Both get a TemplateProcessing post-processor that adds BOS (and EOS) as add_bos (add_eos)
// say. Merges are written as "left right" strings, which every tokenizers version reads, or
// as [left, right] pairs when a piece holds a space.
// tokenizer_config.json carries bos/eos/unk/pad tokens, add_bos_token, add_eos_token,
// added_tokens_decoder, tokenizer_class (LlamaTokenizerFast or PreTrainedTokenizerFast) and, when
// given, chat_template and model_max_length.
#include <cstdint>
#include <string>

#include "tokenizer/vocab.h"

namespace kiln {

// What tokenizer_config.json says beyond the vocabulary.
struct HfTokenizerConfig {
  std::string chat_template;          // the Jinja chat template; not written when empty
  std::int64_t model_max_length = 0;  // the model's context length; not written when 0
};

struct HfTokenizerFiles {
  std::string tokenizer_json;
  std::string tokenizer_config_json;
};

// The text of both files. Throws kiln::Error for a vocabulary model other than "gpt2" or
// "llama", or a "gpt2" vocabulary whose pre-tokenizer kiln cannot spell out.
HfTokenizerFiles hf_tokenizer_files(const Vocab& vocab, const HfTokenizerConfig& config = {});

// Writes `dir`/tokenizer.json and `dir`/tokenizer_config.json (each through a temporary file
// renamed into place); `dir` must exist.
void write_hf_tokenizer_files(const Vocab& vocab, const HfTokenizerConfig& config, const std::string& dir);

// One file each, to `path` (what kiln tokenizer train writes; tokenizer_config.json with
// model_max_length 1e9, as PreTrainedTokenizerFast's files without a model have it).
void write_hf_tokenizer_json(const Vocab& vocab, const std::string& path);
void write_hf_tokenizer_config(const Vocab& vocab, const std::string& path);

}  // namespace kiln
