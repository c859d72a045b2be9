#pragma once
// The two files OpenAI's GPT-2 release introduced and tiktoken-style vocabularies are still
// shipped as: encoder.json (a JSON object from token text to id, texts in GPT-2's
// byte-to-unicode mapping) and vocab.bpe (a "#version" line, then one merge "left right" per
// line, highest priority first).
//
// They carry no special tokens, pre-tokenizer or BOS rule, so the vocabulary kind is told by
// its size: 128,000 tokens is Llama 3's (3, 3.1, 3.2 share it), which gets Llama 3's
// pre-tokenizer and its 256 special tokens at 128000..128255 as Hugging Face's Llama-3.2
// tokenizer.json has them (<|begin_of_text|> BOS, <|end_of_text|> EOS, <|eom_id|> 128008,
// <|eot_id|> 128009, <|python_tag|> 128010, <|reserved_special_token_N|>); any other size is
// GPT-2's, with <|endoftext|> as BOS and EOS when present.
#include <string>
#include <string_view>

#include "tokenizer/vocab.h"

namespace kiln {

// `encoder_json` and `vocab_bpe` are the files' contents; `source` names them in messages.
Vocab read_bpe_vocab_files(std::string_view encoder_json, std::string_view vocab_bpe, std::string_view source);

// Reads `dir`/encoder.json and `dir`/vocab.bpe.
Vocab load_bpe_vocab_files(const std::string& dir);

// The 256 names Llama 3.1/3.2 give ids 128000..128255, in id order.
std::vector<std::string> llama3_special_tokens();

}  // namespace kiln
