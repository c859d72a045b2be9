#pragma once
// Hugging Face's tokenizer.json for byte-level BPE models (Llama 3, Qwen 2, GPT-2, SmolLM, ...):
//   model            type "BPE": vocab (text -> id), merges ("left right" strings or
//                    [left, right] arrays), ignore_merges; byte_fallback must be off (that is
//                    the SentencePiece-style layout: read its tokenizer.model instead)
//   added_tokens     [{id, content, special}]: special ones become control tokens (matched in
//                    text only when asked), the others user-defined (always matched)
//   pre_tokenizer    ByteLevel (use_regex: GPT-2's expression; add_prefix_space), Split with a
//                    Regex or String pattern and behavior "Isolated", Digits, or a Sequence of them
//   normalizer       null, or NFC (not applied, as llama.cpp does not: text is expected in NFC)
//   post_processor   a TemplateProcessing whose single template starts with a special token
//                    names BOS and turns add_bos on
// A tokenizer_config.json beside it, when given, adds bos_token, eos_token and add_bos_token.
// Anything else (WordPiece, Unigram, Metaspace, other normalizers) is a kiln::Error naming it.
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
