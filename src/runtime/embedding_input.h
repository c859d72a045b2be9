#pragma once
// What an embedding is computed from, decided once for `kiln serve` and `kiln embed`: the
// tokens of a text, and the pooling a model gets when none is asked for.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/embedding_pooling.h"

namespace kiln {

class GgufMetadata;
class Tokenizer;

// The tokens of `text` as llama.cpp embeds it (llama-server, node-llama-cpp): plain text (no
// special-token spellings), BOS first when the vocabulary adds one, EOS last when it adds one
// (tokenizer.ggml.add_eos_token).
std::vector<std::int32_t> embedding_tokens(const Tokenizer& tokenizer, std::string_view text);

// The model's own pooling (<arch>.pooling_type) when it is mean, cls or last; mean when the key
// is absent or says none (an OpenAI-shaped answer has one vector per input). Throws kiln::Error
// naming the key when it asks for a pooling kiln does not do (rank).
Pooling default_embedding_pooling(const GgufMetadata& metadata, const std::string& arch);

}  // namespace kiln
