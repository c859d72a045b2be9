#pragma once
// The GGUF side of a Vocab: Vocab::from_gguf (vocab.h) reads the tokenizer.ggml.* keys, and
// add_vocab_metadata writes them, so that every GGUF kiln writes (a tokenizer-only file from
// `kiln tokenizer train`, a model from `kiln train`) carries the same keys llama.cpp reads.
#include "format/gguf_writer.h"
#include "tokenizer/vocab.h"

namespace kiln {

// Adds tokenizer.ggml.model, .pre, .tokens, .scores ("llama" vocabularies), .token_type,
// .merges ("gpt2"), the special ids the vocabulary has and the add_bos/add_eos/add_space_prefix
// flags. Throws kiln::Error for a vocabulary whose pre-tokenizer is spelled out as patterns
// without a name (a tokenizer.json's), which GGUF cannot carry.
void add_vocab_metadata(GgufWriter& writer, const Vocab& vocab);

}  // namespace kiln
