#include "eval/chunks.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

#include "core/error.h"

namespace kiln::eval {

ChunkPlan make_chunk_plan(std::span<const int> tokens, int n_ctx, int max_chunks, int bos_id,
                          const std::string& source) {
  // Four tokens is the least that leaves a scored token after the unscored first half.
  KILN_CHECK(n_ctx >= 4, "context of {} tokens is too small to evaluate (at least 4)", n_ctx);
  KILN_CHECK(!tokens.empty(), "{} has no tokens", source);
  const std::size_t fit = tokens.size() / static_cast<std::size_t>(n_ctx);
  KILN_CHECK(fit >= 1, "{} has {} tokens, fewer than one chunk of {} (give more text or a smaller --ctx)", source,
             tokens.size(), n_ctx);
  ChunkPlan p;
  p.n_ctx = n_ctx;
  p.n_chunks = static_cast<int>(max_chunks > 0 ? std::min<std::size_t>(fit, static_cast<std::size_t>(max_chunks)) : fit);
  p.first = n_ctx / 2;
  p.bos_id = bos_id;
  p.tokens.assign(tokens.begin(), tokens.begin() + static_cast<std::ptrdiff_t>(p.n_chunks) * n_ctx);
  if (bos_id >= 0)
    for (int c = 0; c < p.n_chunks; ++c) p.tokens[static_cast<std::size_t>(c) * static_cast<std::size_t>(n_ctx)] = bos_id;
  return p;
}

std::string read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("{}: cannot open ({})", path, std::strerror(errno));
  std::stringstream ss;
  ss << in.rdbuf();
  if (in.bad()) fail("{}: read error", path);
  return ss.str();
}

std::vector<int> read_token_file(const std::string& path) {
  const std::string text = read_text_file(path);
  std::vector<int> ids;
  std::size_t i = 0;
  while (i < text.size()) {
    while (i < text.size() && std::isspace(static_cast<unsigned char>(text[i]))) ++i;
    if (i == text.size()) break;
    std::size_t j = i;
    while (j < text.size() && !std::isspace(static_cast<unsigned char>(text[j]))) ++j;
    const std::string word = text.substr(i, j - i);
    long long v = -1;
    bool ok = word.size() <= 10 && std::all_of(word.begin(), word.end(), [](char ch) { return ch >= '0' && ch <= '9'; });
    if (ok) v = std::stoll(word);
    if (!ok || v > 0x7fffffff)
      fail("{}: token {} '{}' is not a token id (expected whitespace-separated non-negative integers)", path,
           ids.size() + 1, word.size() > 24 ? word.substr(0, 24) + "..." : word);
    ids.push_back(static_cast<int>(v));
    i = j;
  }
  if (ids.empty()) fail("{}: no token ids (expected whitespace-separated non-negative integers)", path);
  return ids;
}

void check_token_range(std::span<const int> tokens, int n_vocab, const std::string& source) {
  for (std::size_t i = 0; i < tokens.size(); ++i)
    if (tokens[i] < 0 || tokens[i] >= n_vocab)
      fail("{}: token {} is id {}, outside the model's vocabulary of {}", source, i + 1, tokens[i], n_vocab);
}

namespace {

int fit_chunks_per_forward(const ChunkPlan& plan, int n_vocab, int n_batch) {
  const std::size_t row_bytes = static_cast<std::size_t>(plan.n_scored()) * static_cast<std::size_t>(n_vocab) * sizeof(float);
  const std::size_t by_memory = std::max<std::size_t>(1, (std::size_t{256} << 20) / row_bytes);
  const std::size_t by_batch = static_cast<std::size_t>(std::max(1, n_batch / plan.n_ctx));
  return static_cast<int>(std::min({by_memory, by_batch, static_cast<std::size_t>(plan.n_chunks)}));
}

}  // namespace

ChunkEvaluator::ChunkEvaluator(LlamaModel& model, const ChunkPlan& plan, ThreadPool& pool, int n_batch)
    : model_(model),
      plan_(plan),
      pool_(pool),
      per_forward_(fit_chunks_per_forward(plan, model.config().n_vocab, n_batch)),
      // Each chunk's sequence takes whole cache blocks: a context that is not a multiple of the
      // block size still needs a block of its own per chunk.
      cache_(model.make_kv_cache(per_forward_ * ((plan.n_ctx + KvCacheOptions{}.block_size - 1) /
                                                 KvCacheOptions{}.block_size * KvCacheOptions{}.block_size))) {
  check_token_range(plan.tokens, model.config().n_vocab, "the evaluated text");
  logits_.resize(static_cast<std::size_t>(per_forward_) * static_cast<std::size_t>(plan.n_scored()) *
                 static_cast<std::size_t>(model.config().n_vocab));
}

float* ChunkEvaluator::evaluate(int begin, int count) {
  KILN_CHECK(count >= 1 && count <= per_forward_ && begin >= 0 && begin + count <= plan_.n_chunks,
             "chunk range [{}, {}) is not a valid group of at most {} of {} chunks", begin, begin + count, per_forward_,
             plan_.n_chunks);
  batch_.clear();
  std::vector<int> seqs;
  for (int c = 0; c < count; ++c) {
    const int seq = cache_.add_sequence();
    seqs.push_back(seq);
    const std::span<const int> toks = plan_.chunk(begin + c);
    // Logits are wanted only for the scored positions: the output matmul is the largest one
    // for small models, and half of it is saved.
    for (int pos = 0; pos < plan_.n_ctx; ++pos)
      batch_.add(toks[static_cast<std::size_t>(pos)], pos, seq, pos >= plan_.first && pos < plan_.n_ctx - 1);
  }
  model_.forward(batch_, cache_, pool_, logits_.data());
  for (int seq : seqs) cache_.remove_sequence(seq);
  return logits_.data();
}

}  // namespace kiln::eval
