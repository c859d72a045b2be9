#include "data/manifest.h"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"

namespace kiln::data {
namespace {

using json = nlohmann::json;

const json& field(const json& j, const char* key, const std::string& where) {
  const auto it = j.find(key);
  if (it == j.end()) fail("{}: missing field \"{}\"", where, key);
  return *it;
}
std::string get_string(const json& j, const char* key, const std::string& where) {
  const json& v = field(j, key, where);
  if (!v.is_string()) fail("{}: field \"{}\" must be a string", where, key);
  return v.get<std::string>();
}
std::uint64_t get_count(const json& j, const char* key, const std::string& where) {
  const json& v = field(j, key, where);
  if (!v.is_number_unsigned()) fail("{}: field \"{}\" must be a non-negative integer", where, key);
  return v.get<std::uint64_t>();
}

}  // namespace

std::uint64_t Manifest::split_tokens(const std::string& split) const {
  std::uint64_t n = 0;
  for (const ManifestShard& s : shards) n += s.split == split ? s.tokens : 0;
  return n;
}
std::uint64_t Manifest::split_documents(const std::string& split) const {
  std::uint64_t n = 0;
  for (const ManifestShard& s : shards) n += s.split == split ? s.documents : 0;
  return n;
}

Manifest read_manifest(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("{}: cannot open", path);
  std::ostringstream ss;
  ss << in.rdbuf();
  const json j = json::parse(ss.str(), nullptr, false);
  if (j.is_discarded()) fail("{}: not valid JSON", path);
  if (!j.is_object()) fail("{}: expected a JSON object", path);
  if (get_string(j, "format", path) != "kiln-data") fail("{}: field \"format\" is not \"kiln-data\"", path);
  const std::uint64_t version = get_count(j, "version", path);
  if (version != kManifestVersion) fail("{}: manifest version {} (kiln reads {})", path, version, kManifestVersion);
  Manifest m;
  const json& tok = field(j, "tokenizer", path);
  if (!tok.is_object()) fail("{}: field \"tokenizer\" must be an object", path);
  const std::string tok_where = path + ": tokenizer";
  m.tokenizer_hash = parse_hash_hex(get_string(tok, "sha256", tok_where), tok_where + ".sha256");
  const std::uint64_t vocab = get_count(tok, "vocab_size", tok_where);
  if (vocab == 0 || vocab > UINT32_MAX) fail("{}.vocab_size: {} is not a vocabulary size", tok_where, vocab);
  m.vocab_size = static_cast<std::uint32_t>(vocab);
  m.tokenizer_path = get_string(tok, "path", tok_where);
  const json& sources = field(j, "sources", path);
  if (!sources.is_array()) fail("{}: field \"sources\" must be an array", path);
  for (std::size_t i = 0; i < sources.size(); ++i) {
    const std::string where = fmt::format("{}: sources[{}]", path, i);
    if (!sources[i].is_object()) fail("{}: expected an object", where);
    m.sources.push_back({get_string(sources[i], "path", where), get_count(sources[i], "bytes", where),
                         get_string(sources[i], "sha256", where), get_count(sources[i], "documents", where)});
  }
  const json& shards = field(j, "shards", path);
  if (!shards.is_array()) fail("{}: field \"shards\" must be an array", path);
  for (std::size_t i = 0; i < shards.size(); ++i) {
    const std::string where = fmt::format("{}: shards[{}]", path, i);
    if (!shards[i].is_object()) fail("{}: expected an object", where);
    ManifestShard s{get_string(shards[i], "file", where),      get_string(shards[i], "split", where),
                    get_count(shards[i], "tokens", where),     get_count(shards[i], "documents", where),
                    get_count(shards[i], "bytes", where),      get_string(shards[i], "sha256", where)};
    if (s.file.empty() || s.file.find('/') != std::string::npos || s.file[0] == '.')
      fail("{}: file \"{}\" must be a plain name inside the folder", where, s.file);
    if (s.split != "train" && s.split != "val") fail("{}: split \"{}\" must be \"train\" or \"val\"", where, s.split);
    parse_hash_hex(s.sha256, where + ".sha256");
    m.shards.push_back(std::move(s));
  }
  m.duplicates_removed = get_count(j, "duplicates_removed", path);
  const json& runs = field(j, "runs", path);
  if (!runs.is_array()) fail("{}: field \"runs\" must be an array", path);
  m.runs = runs;
  return m;
}

nlohmann::json manifest_to_json(const Manifest& m) {
  json sources = json::array();
  for (const ManifestSource& s : m.sources)
    sources.push_back({{"path", s.path}, {"bytes", s.bytes}, {"sha256", s.sha256}, {"documents", s.documents}});
  json shards = json::array();
  for (const ManifestShard& s : m.shards)
    shards.push_back({{"file", s.file},
                      {"split", s.split},
                      {"tokens", s.tokens},
                      {"documents", s.documents},
                      {"bytes", s.bytes},
                      {"sha256", s.sha256}});
  json splits = json::object();
  for (const char* split : {"train", "val"})
    splits[split] = {{"tokens", m.split_tokens(split)}, {"documents", m.split_documents(split)}};
  return {{"format", "kiln-data"},
          {"version", kManifestVersion},
          {"tokenizer", {{"sha256", hash_hex(m.tokenizer_hash)}, {"vocab_size", m.vocab_size}, {"path", m.tokenizer_path}}},
          {"splits", splits},
          {"duplicates_removed", m.duplicates_removed},
          {"sources", sources},
          {"shards", shards},
          {"runs", m.runs}};
}

void write_manifest(const std::string& path, const Manifest& manifest) {
  const std::string temp = path + ".tmp";
  {
    std::ofstream out(temp, std::ios::binary | std::ios::trunc);
    if (!out) fail("{}: cannot create", temp);
    out << manifest_to_json(manifest).dump(2) << '\n';
    out.flush();
    if (!out) {
      std::remove(temp.c_str());
      fail("{}: write error", temp);
    }
  }
  std::error_code ec;
  std::filesystem::rename(temp, path, ec);
  if (ec) {
    std::remove(temp.c_str());
    fail("{}: cannot rename into place: {}", path, ec.message());
  }
}

}  // namespace kiln::data
