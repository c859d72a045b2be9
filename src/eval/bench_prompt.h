#pragma once
// The synthetic prompt kiln's benchmarks feed a model: the llama.cpp peer script's ids
// 100 + 7i mod 1000, so kiln and llama.cpp time the same tokens. No tokenizer is needed.
#include <vector>

namespace kiln::eval {

// `n_tokens` ids below `n_vocab`. `stream` shifts the sequence (by 13 per stream) so that the
// prompts of concurrent streams differ and share no prefix; stream 0 is the peer's prompt.
std::vector<int> bench_prompt(int n_tokens, int n_vocab, int stream = 0);

}  // namespace kiln::eval
