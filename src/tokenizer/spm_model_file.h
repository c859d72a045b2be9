#pragma once
// SentencePiece's tokenizer.model: a serialized ModelProto (sentencepiece_model.proto), read
// with a small protobuf wire-format reader of our own. Only what SpmTokenizer needs is taken:
//   ModelProto       1 pieces (repeated SentencePiece), 2 trainer_spec, 3 normalizer_spec
//   SentencePiece    1 piece (string), 2 score (float), 3 type (NORMAL=1 UNKNOWN=2 CONTROL=3
//                    USER_DEFINED=4 UNUSED=5 BYTE=6, default NORMAL)
//   TrainerSpec      3 model_type (UNIGRAM=1 BPE=2 WORD=3 CHAR=4), 35 byte_fallback,
//                    40 unk_id, 41 bos_id, 42 eos_id, 43 pad_id (defaults 0, 1, 2, -1)
//   NormalizerSpec   1 name, 3 add_dummy_prefix (default true), 4 remove_extra_whitespaces
// Other fields are skipped by wire type. Every length is checked against the bytes that hold
// it; a field with the wrong wire type, a truncated value or an unsupported model (unigram, a
// normalization rule other than identity) is a kiln::Error naming the file and the field.
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "tokenizer/vocab.h"

namespace kiln {

// The vocabulary of a serialized ModelProto (model "llama", as the GGUF converters write it).
// `source` names the file in messages.
Vocab read_spm_model(std::span<const std::uint8_t> bytes, std::string_view source);

// Reads the tokenizer.model file at `path`.
Vocab load_spm_model_file(const std::string& path);

}  // namespace kiln
