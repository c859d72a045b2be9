#include "data/data_shard_stats.h"

#include <algorithm>
#include <filesystem>

#include "core/error.h"
#include "data/corpus.h"
#include "data/data_shard.h"
#include "tokenizer/vocab.h"

namespace kiln::data {

std::vector<std::pair<std::int32_t, std::uint64_t>> CorpusStats::top_tokens(std::size_t k) const {
  std::vector<std::pair<std::int32_t, std::uint64_t>> all;
  for (std::size_t id = 0; id < token_counts.size(); ++id)
    if (token_counts[id] > 0) all.emplace_back(static_cast<std::int32_t>(id), token_counts[id]);
  const std::size_t n = std::min(k, all.size());
  std::partial_sort(all.begin(), all.begin() + static_cast<std::ptrdiff_t>(n), all.end(),
                    [](const auto& a, const auto& b) { return a.second != b.second ? a.second > b.second : a.first < b.first; });
  all.resize(n);
  return all;
}

std::uint64_t CorpusStats::unknown_tokens(const Vocab& vocab) const {
  std::uint64_t n = 0;
  for (std::size_t id = 0; id < token_counts.size() && id < vocab.tokens.size(); ++id)
    if (static_cast<std::int32_t>(id) == vocab.unk_id || vocab.type(static_cast<std::int32_t>(id)) == TokenType::Unknown)
      n += token_counts[id];
  return n;
}

std::uint64_t CorpusStats::byte_tokens(const Vocab& vocab) const {
  std::uint64_t n = 0;
  for (std::size_t id = 0; id < token_counts.size() && id < vocab.tokens.size(); ++id)
    if (vocab.type(static_cast<std::int32_t>(id)) == TokenType::Byte) n += token_counts[id];
  return n;
}

CorpusStats compute_corpus_stats(const std::string& dir, const Manifest& manifest) {
  CorpusStats stats;
  stats.token_counts.assign(manifest.vocab_size, 0);
  std::map<std::string, std::vector<std::uint64_t>> lengths;
  for (const char* split : {"train", "val"}) stats.splits[split];
  for (const ManifestShard& m : manifest.shards) {
    const ShardReader shard = ShardReader::open(dir + "/" + m.file);
    const ShardHeader& h = shard.header();
    if (h.tokenizer_hash != manifest.tokenizer_hash)
      fail("{}: tokenizer sha256 {} differs from the manifest's {}", shard.path(), hash_hex(h.tokenizer_hash),
           hash_hex(manifest.tokenizer_hash));
    if (h.vocab_size != manifest.vocab_size)
      fail("{}: vocabulary size {} differs from the manifest's {}", shard.path(), h.vocab_size, manifest.vocab_size);
    if (h.n_tokens != m.tokens || h.n_documents != m.documents)
      fail("{}: {} tokens in {} documents, the manifest says {} in {}", shard.path(), h.n_tokens, h.n_documents, m.tokens,
           m.documents);
    SplitStats& s = stats.splits[m.split];
    ++s.shards;
    s.tokens += h.n_tokens;
    s.documents += h.n_documents;
    for (std::uint64_t i = 0; i < h.n_tokens; ++i) ++stats.token_counts[shard.token(i)];
    std::vector<std::uint64_t>& len = lengths[m.split];
    for (std::uint64_t d = 0; d < h.n_documents; ++d) len.push_back(shard.document_begin(d + 1) - shard.document_begin(d));
    stats.total_tokens += h.n_tokens;
  }
  for (auto& [split, len] : lengths) {
    if (len.empty()) continue;
    SplitStats& s = stats.splits[split];
    s.mean_document_tokens = static_cast<double>(s.tokens) / static_cast<double>(len.size());
    std::sort(len.begin(), len.end());
    const std::size_t mid = len.size() / 2;
    s.median_document_tokens = len.size() % 2 ? static_cast<double>(len[mid])
                                              : (static_cast<double>(len[mid - 1]) + static_cast<double>(len[mid])) / 2;
  }
  return stats;
}

std::size_t verify_shards(const std::string& dir, const Manifest& manifest) {
  for (const ManifestShard& m : manifest.shards) {
    const std::string path = dir + "/" + m.file;
    std::error_code ec;
    const std::uint64_t bytes = std::filesystem::file_size(path, ec);
    if (ec) fail("{}: cannot read: {}", path, ec.message());
    if (bytes != m.bytes) fail("{}: {} bytes, the manifest says {}", path, bytes, m.bytes);
    const std::string digest = file_sha256_hex(path);
    if (digest != m.sha256) fail("{}: sha256 {} does not match the manifest's {}", path, digest, m.sha256);
  }
  return manifest.shards.size();
}

}  // namespace kiln::data
