#pragma once
// manifest.json: what a folder prepared by `kiln data prepare` holds (docs/formats.md,
// "Data manifest"): the tokenizer (hash, vocabulary size, where it was loaded from), every
// source file (size, SHA-256, documents kept), every shard (split, tokens, documents, size,
// SHA-256) and each run that added to the folder (its options, duplicates removed). Training
// reads the shard list from here; inspect --verify checks the shards against it.
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "data/data_shard.h"

namespace kiln::data {

inline constexpr const char* kManifestName = "manifest.json";
inline constexpr int kManifestVersion = 1;

struct ManifestSource {
  std::string path;
  std::uint64_t bytes = 0;
  std::string sha256;
  std::uint64_t documents = 0;  // documents read from it, duplicates included
};

struct ManifestShard {
  std::string file;   // name inside the folder
  std::string split;  // "train" or "val"
  std::uint64_t tokens = 0;
  std::uint64_t documents = 0;
  std::uint64_t bytes = 0;
  std::string sha256;
};

struct Manifest {
  TokenizerHash tokenizer_hash{};
  std::uint32_t vocab_size = 0;
  std::string tokenizer_path;
  std::vector<ManifestSource> sources;
  std::vector<ManifestShard> shards;
  std::uint64_t duplicates_removed = 0;
  nlohmann::json runs = nlohmann::json::array();  // one object per prepare run: options and counts

  // Totals over the shards of one split.
  std::uint64_t split_tokens(const std::string& split) const;
  std::uint64_t split_documents(const std::string& split) const;
};

// Reads and validates `path`; throws kiln::Error naming the file and the field on anything
// missing or of the wrong type, and on shard file names that leave the folder.
Manifest read_manifest(const std::string& path);
nlohmann::json manifest_to_json(const Manifest& manifest);
// Writes a temporary file beside `path` and renames it into place.
void write_manifest(const std::string& path, const Manifest& manifest);

}  // namespace kiln::data
