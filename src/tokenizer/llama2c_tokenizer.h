#pragma once
// llama2.c's tokenizer.bin, the vocabulary its run.c reads beside a checkpoint, as its
// tokenizer.py exports a SentencePiece model (all little-endian):
//   u32 max_token_length
//   then per token, in id order: f32 score, u32 length, `length` bytes of text
// The number of tokens is not in the file: it is the checkpoint's vocab_size, or whatever the
// file holds. The export writes U+2581 "▁" as a plain space and BOS / EOS as "\n<s>\n" /
// "\n</s>\n"; reading maps both back, so the vocabulary is the SentencePiece model's again:
// model "llama", "<unk>" unknown, "<s>" / "</s>" control (BOS / EOS), "<0xXX>" byte tokens,
// add_bos and the dummy prefix on (run.c encodes that way).
// Checked: max_token_length at most 64 KiB, every length at most max_token_length and within
// the file, finite scores, and the file ending exactly after the last token.
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "tokenizer/vocab.h"

namespace kiln {

// `vocab_size` < 0 reads tokens until the end of `bytes`. `source` names the file in messages.
Vocab read_llama2c_tokenizer(std::span<const std::uint8_t> bytes, std::int32_t vocab_size, std::string_view source);

// Reads the tokenizer.bin at `path` (load_vocab_file takes a file named *.bin this way).
Vocab load_llama2c_tokenizer(const std::string& path, std::int32_t vocab_size = -1);

}  // namespace kiln
