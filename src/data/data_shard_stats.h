#pragma once
// What `kiln data inspect` reports about a prepared folder: token and document counts per split,
// document lengths, how often each token id occurs, and the share of unknown and byte-fallback
// tokens; and the check of every shard against the SHA-256 the manifest recorded.
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "data/manifest.h"

namespace kiln {
struct Vocab;
}

namespace kiln::data {

struct SplitStats {
  std::uint64_t shards = 0, tokens = 0, documents = 0;
  double mean_document_tokens = 0;
  double median_document_tokens = 0;
};

struct CorpusStats {
  std::map<std::string, SplitStats> splits;  // "train", "val"
  std::vector<std::uint64_t> token_counts;   // id -> occurrences over every shard
  std::uint64_t total_tokens = 0;
  // The `k` most frequent ids with their counts, most frequent first (ties: lower id first).
  std::vector<std::pair<std::int32_t, std::uint64_t>> top_tokens(std::size_t k) const;
  // Occurrences of the vocabulary's unknown token and of its byte-fallback tokens.
  std::uint64_t unknown_tokens(const Vocab& vocab) const;
  std::uint64_t byte_tokens(const Vocab& vocab) const;
};

// Opens (and so validates) every shard of `dir` that `manifest` lists, checks that its header
// agrees with the manifest (tokenizer hash, vocabulary size, token and document counts), and
// counts. Throws kiln::Error naming the shard on any disagreement.
CorpusStats compute_corpus_stats(const std::string& dir, const Manifest& manifest);

// Recomputes each shard's size and SHA-256 and compares them with the manifest; throws
// kiln::Error naming the first shard that differs. Returns the number of shards checked.
std::size_t verify_shards(const std::string& dir, const Manifest& manifest);

}  // namespace kiln::data
