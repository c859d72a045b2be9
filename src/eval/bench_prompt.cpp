#include "eval/bench_prompt.h"

#include <cstddef>

namespace kiln::eval {

std::vector<int> bench_prompt(int n_tokens, int n_vocab, int stream) {
  std::vector<int> ids(static_cast<std::size_t>(n_tokens));
  for (int i = 0; i < n_tokens; ++i) ids[static_cast<std::size_t>(i)] = (100 + (i * 7 + stream * 13) % 1000) % n_vocab;
  return ids;
}

}  // namespace kiln::eval
