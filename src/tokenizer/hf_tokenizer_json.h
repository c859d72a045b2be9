#pragma once
// Hugging Face's tokenizer.json for BPE models, in its two layouts:
// byte-level BPE (Llama 3, Qwen 2, GPT-2, SmolLM, ...), a "gpt2" vocabulary:
//   model            type "BPE": vocab (text -> id), merges ("left right" strings or
//                    [left, right] arrays), ignore_merges, byte_fallback off
//   added_tokens     [{id, content, special}]: special ones become control tokens (matched in
//                    text only when asked), the others user-defined (always matched)
//   pre_tokenizer    ByteLevel (use_regex: GPT-2's expression; add_prefix_space), Split with a
//                    Regex or String pattern and behavior "Isolated", Digits, or a Sequence of them
//   normalizer       null, or NFC (not applied, as llama.cpp does not: text is expected in NFC)
//   post_processor   a TemplateProcessing whose single template starts with a special token
//                    names BOS and turns add_bos on
// SentencePiece-style BPE (what transformers writes for Llama 2, Mistral, TinyLlama), a "llama"
// vocabulary, told by model.byte_fallback = true:
//   model            vocab (every piece, "<0xXX>" byte pieces become byte tokens), merges,
//                    unk_token (the unknown token); scores come from the merge ranks
//                    (spm_merges.h), so that SentencePiece BPE merges in the same order
//   normalizer       Prepend "▁" (the dummy prefix: add_space_prefix) and Replace " " -> "▁",
//                    or null with pre_tokenizer Metaspace (replacement "▁", split false;
//                    prepend_scheme "always" or "first" turn the prefix on, as llama.cpp reads them)
//   added_tokens     special ones become control tokens, the others user-defined
//   post_processor   as above; BOS falls back to "<s>", EOS to "</s>"
// A tokenizer_config.json beside it, when given, adds bos_token, eos_token, pad_token,
// add_bos_token and add_eos_token. Anything else (WordPiece, Unigram, Metaspace with a split,
// other normalizers) is a kiln::Error naming it.
#include <string>
#include <string_view>

#include "tokenizer/vocab.h"

namespace kiln {

// `json` is the tokenizer.json text, `config_json` that of tokenizer_config.json or "";
// `source` names the file in messages.
Vocab read_hf_tokenizer_json(std::string_view json, std::string_view config_json, std::string_view source);

// Reads the tokenizer.json at `path`, and the tokenizer_config.json in the same folder if present.
Vocab load_hf_tokenizer_json(const std::string& path);

}  // namespace kiln
