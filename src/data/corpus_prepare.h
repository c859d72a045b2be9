#pragma once
// `kiln data prepare`: documents from the inputs (corpus.h), tokenized in batches over a thread
// pool, exact duplicates dropped (SHA-256 of the text, remembered across runs in
// document_hashes.bin), each kept document assigned to train or validation by a seeded hash of
// its text (never by its position), and streamed into shards of at most `shard_tokens` tokens.
// The folder's manifest.json is written last, so a run that fails leaves the previous manifest
// in force. A folder whose manifest names another tokenizer is refused.
#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "data/corpus.h"

namespace kiln {
class Tokenizer;
}

namespace kiln::data {

inline constexpr const char* kDocumentHashesName = "document_hashes.bin";

struct PrepareOptions {
  std::string out_dir;
  std::vector<std::string> inputs;
  std::string tokenizer_path;  // recorded in the manifest
  CorpusOptions corpus;
  // Append the tokenizer's end-of-sequence token to every document, so that a model trained on
  // the shards learns where a document ends (and generation stops there) instead of running one
  // into the next.
  bool add_eos = false;
  double val_fraction = 0.01;
  std::uint64_t seed = 0;
  std::uint64_t shard_tokens = 64ull << 20;
  int threads = 2;
};

struct PrepareProgress {
  std::size_t files_done = 0, files_total = 0;
  std::uint64_t bytes_done = 0, bytes_total = 0;
  std::uint64_t documents = 0, duplicates = 0, tokens = 0;
};

struct PrepareResult {
  std::uint64_t documents_read = 0;
  std::uint64_t duplicates_removed = 0;
  std::uint64_t train_documents = 0, val_documents = 0;
  std::uint64_t train_tokens = 0, val_tokens = 0;
  std::vector<std::string> shards_written;
};

// True when the document whose SHA-256 is `digest` goes to validation: the first 8 bytes of
// SHA-256(seed || digest), read as a fraction of 2^64, fall below `val_fraction`.
bool is_validation_document(const std::array<std::uint8_t, 32>& digest, std::uint64_t seed, double val_fraction);

PrepareResult prepare_corpus(const Tokenizer& tokenizer, const PrepareOptions& options,
                             const std::function<void(const PrepareProgress&)>& progress);

}  // namespace kiln::data
