#include "train/teacher_cache.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/sha256.h"
#include "data/data_shard.h"
#include "format/atomic_output_file.h"

namespace kiln::train {
namespace {

using nlohmann::json;

constexpr std::uint64_t kPrefixBytes = 24;  // magic, version, reserved, header length
constexpr std::uint64_t kMaxHeaderBytes = 1 << 20;

std::uint64_t align8(std::uint64_t n) { return (n + 7) / 8 * 8; }

std::string hex(const std::array<std::uint8_t, 32>& d) {
  static const char* digits = "0123456789abcdef";
  std::string s;
  for (std::uint8_t b : d) s += digits[b >> 4], s += digits[b & 15];
  return s;
}

std::string shard_name(const std::string& split, int index) { return fmt::format("{}-{:05d}.topk", split, index); }

// A field of the header, of the type asked for; kiln::Error naming the file and the field.
template <class T>
T field(const json& j, const char* key, const std::string& where) {
  KILN_CHECK(j.contains(key), "{}: the header has no \"{}\"", where, key);
  try {
    return j.at(key).get<T>();
  } catch (const json::exception&) {
    fail("{}: the header's \"{}\" has the wrong type", where, key);
  }
}

std::uint64_t row_bytes(const TeacherCacheKey& key) { return static_cast<std::uint64_t>(key.k) * 8; }

}  // namespace

std::string file_sha256_hex(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  KILN_CHECK(in.good(), "{}: cannot be read", path);
  Sha256 h;
  std::vector<char> buf(1 << 20);
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    h.update(buf.data(), static_cast<std::size_t>(in.gcount()));
  }
  KILN_CHECK(in.eof(), "{}: read failed", path);
  return hex(h.finish());
}

std::string split_digest(const data::Manifest& m, const std::string& split) {
  std::string text = data::hash_hex(m.tokenizer_hash) + "\n";
  for (const data::ManifestShard& s : m.shards)
    if (s.split == split) text += fmt::format("{}\t{}\t{}\n", s.file, s.tokens, s.sha256);
  return sha256_hex(text);
}

TeacherCacheShard read_teacher_cache_shard(const std::string& path) {
  TeacherCacheShard s;
  s.path = path;
  s.file = std::make_shared<MappedFile>(path);
  const std::uint8_t* p = s.file->data();
  const std::uint64_t size = s.file->size();
  KILN_CHECK(size >= kPrefixBytes, "{}: {} bytes, too short for a teacher cache shard", path, size);
  KILN_CHECK(std::memcmp(p, kTeacherCacheMagic, 8) == 0, "{}: not a kiln teacher cache shard (bad magic)", path);
  std::uint32_t version, reserved;
  std::uint64_t header_bytes;
  std::memcpy(&version, p + 8, 4), std::memcpy(&reserved, p + 12, 4), std::memcpy(&header_bytes, p + 16, 8);
  KILN_CHECK(version == kTeacherCacheVersion, "{}: version {} (this kiln reads {})", path, version,
             kTeacherCacheVersion);
  KILN_CHECK(header_bytes > 0 && header_bytes <= kMaxHeaderBytes && header_bytes <= size - kPrefixBytes,
             "{}: header length {} does not fit the file of {} bytes", path, header_bytes, size);
  json h;
  try {
    h = json::parse(reinterpret_cast<const char*>(p + kPrefixBytes),
                    reinterpret_cast<const char*>(p + kPrefixBytes + header_bytes));
  } catch (const json::exception&) {
    fail("{}: the header is not JSON", path);
  }
  KILN_CHECK(h.is_object(), "{}: the header is not a JSON object", path);
  KILN_CHECK(field<std::string>(h, "format", path) == "kiln-teacher-topk", "{}: the header's format is not kiln-teacher-topk", path);
  TeacherCacheKey& k = s.key;
  k.teacher_sha256 = field<std::string>(h, "teacher_sha256", path);
  k.teacher_name = field<std::string>(h, "teacher_name", path);
  k.tokenizer_hash = field<std::string>(h, "tokenizer_hash", path);
  k.n_vocab = field<int>(h, "n_vocab", path);
  k.context = field<int>(h, "context", path);
  k.k = field<int>(h, "k", path);
  k.temperature = field<float>(h, "temperature", path);
  s.split = field<std::string>(h, "split", path);
  s.data_sha256 = field<std::string>(h, "data_sha256", path);
  s.windows = field<std::uint64_t>(h, "windows", path);
  s.window_begin = field<std::uint64_t>(h, "window_begin", path);
  s.window_count = field<std::uint64_t>(h, "window_count", path);
  s.shard = field<int>(h, "shard", path);
  s.shards = field<int>(h, "shards", path);
  KILN_CHECK(k.teacher_sha256.size() == 64 && s.data_sha256.size() == 64, "{}: a digest is not 64 hex digits", path);
  KILN_CHECK(s.split == "train" || s.split == "val", "{}: split \"{}\" is not train or val", path, s.split);
  KILN_CHECK(k.n_vocab > 0 && k.context > 0 && k.k > 0 && k.k <= k.n_vocab,
             "{}: n_vocab {}, context {} and k {} must be positive with k <= n_vocab", path, k.n_vocab, k.context, k.k);
  KILN_CHECK(std::isfinite(k.temperature) && k.temperature > 0, "{}: temperature {} is not positive", path,
             k.temperature);
  KILN_CHECK(s.shards > 0 && s.shard >= 0 && s.shard < s.shards, "{}: shard {} of {} is not a shard", path, s.shard,
             s.shards);
  KILN_CHECK(s.window_count > 0 && s.window_begin <= s.windows && s.window_count <= s.windows - s.window_begin,
             "{}: windows [{}, {} + {}) are not inside the split's {}", path, s.window_begin, s.window_begin,
             s.window_count, s.windows);
  s.records_offset = align8(kPrefixBytes + header_bytes);
  // Each factor is bounded above (k·8 < 2^35, context < 2^31), so only the product with the
  // window count can overflow: divide instead.
  const std::uint64_t window_bytes = row_bytes(k) * static_cast<std::uint64_t>(k.context);
  KILN_CHECK(size >= s.records_offset && (size - s.records_offset) % window_bytes == 0 &&
                 (size - s.records_offset) / window_bytes == s.window_count,
             "{}: {} bytes, but its header describes {} windows of {} bytes after byte {}", path, size, s.window_count,
             window_bytes, s.records_offset);
  return s;
}

TeacherCache TeacherCache::from_shards(std::vector<TeacherCacheShard> shards, const std::string& where) {
  KILN_CHECK(!shards.empty(), "{}: holds no teacher cache shard (*.topk)", where);
  TeacherCache c;
  c.where_ = where;
  c.key_ = shards.front().key;
  for (TeacherCacheShard& s : shards) {
    KILN_CHECK(s.key == c.key_, "{}: was written by another teacher, or with other settings, than {}", s.path,
               shards.front().path);
    Split& sp = c.splits_[s.split];
    if (sp.shards.empty()) sp.data_sha256 = s.data_sha256, sp.windows = s.windows;
    KILN_CHECK(s.data_sha256 == sp.data_sha256 && s.windows == sp.windows,
               "{}: describes other {} data than the cache's other shards", s.path, s.split);
    sp.shards.push_back(std::move(s));
  }
  for (auto& [name, sp] : c.splits_) {
    std::sort(sp.shards.begin(), sp.shards.end(),
              [](const TeacherCacheShard& a, const TeacherCacheShard& b) { return a.shard < b.shard; });
    std::uint64_t next = 0;
    for (std::size_t i = 0; i < sp.shards.size(); ++i) {
      const TeacherCacheShard& s = sp.shards[i];
      KILN_CHECK(s.shard == static_cast<int>(i) && s.shards == static_cast<int>(sp.shards.size()),
                 "{}: is shard {} of {}, but the folder holds {} {} shards", s.path, s.shard, s.shards,
                 sp.shards.size(), name);
      KILN_CHECK(s.window_begin == next, "{}: starts at window {}, not {} where the previous shard ended", s.path,
                 s.window_begin, next);
      next += s.window_count;
    }
    KILN_CHECK(next == sp.windows, "{}: the {} shards hold {} of the split's {} windows", where, name, next, sp.windows);
  }
  return c;
}

TeacherCache TeacherCache::open(const std::string& dir) {
  std::error_code ec;
  KILN_CHECK(std::filesystem::is_directory(dir, ec), "{}: is not a folder (a teacher cache is a folder of shards)",
             dir);
  std::vector<std::string> paths;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec))
    if (e.is_regular_file() && e.path().extension() == ".topk") paths.push_back(e.path().string());
  KILN_CHECK(!ec, "{}: cannot list ({})", dir, ec.message());
  std::sort(paths.begin(), paths.end());
  std::vector<TeacherCacheShard> shards;
  for (const std::string& p : paths) shards.push_back(read_teacher_cache_shard(p));
  return from_shards(std::move(shards), dir);
}

std::uint64_t TeacherCache::windows(const std::string& split) const {
  const auto it = splits_.find(split);
  return it == splits_.end() ? 0 : it->second.windows;
}

void TeacherCache::check_matches(const std::string& teacher_sha256, const std::string& teacher_path,
                                 const data::Manifest& data, const std::string& data_dir, int context) const {
  KILN_CHECK(key_.teacher_sha256 == teacher_sha256,
             "{}: was written by another teacher (sha256 {}, \"{}\") than {} (sha256 {})", where_,
             key_.teacher_sha256.substr(0, 16), key_.teacher_name, teacher_path, teacher_sha256.substr(0, 16));
  KILN_CHECK(key_.tokenizer_hash == data::hash_hex(data.tokenizer_hash),
             "{}: was written for data of another tokenizer than {}", where_, data_dir);
  KILN_CHECK(key_.context == context, "{}: holds windows of {} tokens, not --context {}", where_, key_.context,
             context);
  for (const char* split : {"train", "val"}) {
    const std::uint64_t tokens = data.split_tokens(split);
    const auto it = splits_.find(split);
    if (tokens < static_cast<std::uint64_t>(context) + 1) continue;  // a split training does not read
    KILN_CHECK(it != splits_.end(), "{}: has no {} shards for {}", where_, split, data_dir);
    KILN_CHECK(it->second.data_sha256 == split_digest(data, split),
               "{}: was written for other data than {}'s {} split (its shard list differs)", where_, data_dir, split);
  }
}

void TeacherCache::read_window(const std::string& split, std::uint64_t w, int* ids, float* log_probs) const {
  const auto it = splits_.find(split);
  KILN_CHECK(it != splits_.end(), "{}: has no {} split", where_, split);
  const Split& sp = it->second;
  KILN_CHECK(w < sp.windows, "{}: window {} is past the {} split's {}", where_, w, split, sp.windows);
  const auto shard = std::upper_bound(sp.shards.begin(), sp.shards.end(), w,
                                      [](std::uint64_t v, const TeacherCacheShard& s) { return v < s.window_begin; }) - 1;
  const int K = key_.k, T = key_.context;
  const std::uint8_t* base = shard->file->data() + shard->records_offset +
                             (w - shard->window_begin) * row_bytes(key_) * static_cast<std::uint64_t>(T);
  thread_local std::vector<std::uint8_t> seen;
  seen.assign(static_cast<std::size_t>(key_.n_vocab), 0);
  for (int t = 0; t < T; ++t) {
    const std::uint8_t* row = base + static_cast<std::uint64_t>(t) * row_bytes(key_);
    int* id = ids + static_cast<std::int64_t>(t) * K;
    float* lp = log_probs + static_cast<std::int64_t>(t) * K;
    std::memcpy(lp, row + 4 * static_cast<std::size_t>(K), 4 * static_cast<std::size_t>(K));
    double mass = 0;
    for (int i = 0; i < K; ++i) {
      std::uint32_t v;
      std::memcpy(&v, row + 4 * static_cast<std::size_t>(i), 4);
      KILN_CHECK(v < static_cast<std::uint32_t>(key_.n_vocab) && !seen[v],
                 "{}: window {} position {}: id {} is outside the vocabulary of {} or repeated", shard->path, w, t, v,
                 key_.n_vocab);
      seen[v] = 1;
      id[i] = static_cast<int>(v);
      KILN_CHECK(std::isfinite(lp[i]) && lp[i] <= 1e-4f, "{}: window {} position {}: log-probability {} is not one",
                 shard->path, w, t, lp[i]);
      mass += std::exp(static_cast<double>(lp[i]));
    }
    for (int i = 0; i < K; ++i) seen[static_cast<std::size_t>(id[i])] = 0;
    KILN_CHECK(mass <= 1.001, "{}: window {} position {}: the top {} hold a mass of {} > 1", shard->path, w, t, K, mass);
  }
}

void write_teacher_cache(const std::string& dir, TeacherForward& teacher, const TeacherCacheKey& key,
                         const std::vector<const TokenWindows*>& splits, const TeacherCacheWriteOptions& o,
                         monitor::Progress& progress) {
  KILN_CHECK(o.windows_per_shard > 0 && o.sequences_per_forward > 0, "the cache's shard and batch sizes must be positive");
  KILN_CHECK(key.k == o.top_k && key.temperature == o.temperature, "the cache key's k and temperature are the options'");
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  KILN_CHECK(!ec, "{}: cannot create the folder ({})", dir, ec.message());
  for (const auto& e : std::filesystem::directory_iterator(dir, ec))
    KILN_CHECK(e.path().extension() != ".topk", "{}: already holds a teacher cache ({}); choose another folder", dir,
               e.path().filename().string());
  std::uint64_t total = 0;
  for (const TokenWindows* s : splits) total += s->n_windows();
  progress.stage("teacher", static_cast<std::int64_t>(total), "windows");
  const int T = key.context, K = key.k;
  std::vector<int> tokens, targets(static_cast<std::size_t>(T));
  TeacherRows rows;
  std::vector<std::uint8_t> record;
  for (const TokenWindows* s : splits) {
    KILN_CHECK(s->context() == T, "the {} windows are of {} tokens, not the cache's {}", s->split(), s->context(), T);
    const std::uint64_t n = s->n_windows();
    const int shards = static_cast<int>((n + o.windows_per_shard - 1) / o.windows_per_shard);
    const std::string data_sha = split_digest(s->manifest(), s->split());
    for (int shard = 0; shard < shards; ++shard) {
      const std::uint64_t begin = static_cast<std::uint64_t>(shard) * o.windows_per_shard;
      const std::uint64_t count = std::min(o.windows_per_shard, n - begin);
      const json h{{"format", "kiln-teacher-topk"}, {"teacher_sha256", key.teacher_sha256},
                   {"teacher_name", key.teacher_name}, {"tokenizer_hash", key.tokenizer_hash},
                   {"n_vocab", key.n_vocab}, {"context", T}, {"k", K}, {"temperature", key.temperature},
                   {"split", s->split()}, {"data_sha256", data_sha}, {"windows", n}, {"window_begin", begin},
                   {"window_count", count}, {"shard", shard}, {"shards", shards}};
      const std::string text = h.dump();
      AtomicOutputFile out((std::filesystem::path(dir) / shard_name(s->split(), shard)).string());
      const std::uint32_t version = kTeacherCacheVersion, reserved = 0;
      const std::uint64_t header_bytes = text.size();
      out.write(kTeacherCacheMagic, 8), out.write(&version, 4), out.write(&reserved, 4), out.write(&header_bytes, 8);
      out.write(text.data(), text.size());
      out.zeros(align8(kPrefixBytes + header_bytes) - kPrefixBytes - header_bytes);
      for (std::uint64_t w0 = begin; w0 < begin + count; w0 += static_cast<std::uint64_t>(o.sequences_per_forward)) {
        const int b = static_cast<int>(std::min<std::uint64_t>(o.sequences_per_forward, begin + count - w0));
        tokens.resize(static_cast<std::size_t>(b) * static_cast<std::size_t>(T));
        for (int i = 0; i < b; ++i)
          s->read_window(w0 + static_cast<std::uint64_t>(i), tokens.data() + static_cast<std::size_t>(i) * T,
                         targets.data());
        teacher.run(tokens.data(), b, T, key.temperature, K, rows);
        // Each row: k u32 ids, then k f32 log-probabilities (little-endian, as the machine's).
        record.resize(static_cast<std::size_t>(K) * 8);
        for (std::int64_t r = 0; r < static_cast<std::int64_t>(b) * T; ++r) {
          for (int i = 0; i < K; ++i) {
            const auto id = static_cast<std::uint32_t>(rows.ids[static_cast<std::size_t>(r * K + i)]);
            std::memcpy(record.data() + 4 * static_cast<std::size_t>(i), &id, 4);
          }
          std::memcpy(record.data() + 4 * static_cast<std::size_t>(K), rows.log_probs.data() + r * K,
                      4 * static_cast<std::size_t>(K));
          out.write(record.data(), record.size());
        }
        progress.advance(b);
      }
      out.commit();
    }
  }
  progress.end_stage();
}

}  // namespace kiln::train
