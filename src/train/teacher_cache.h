#pragma once
// The top-k cache of `kiln distill cache` (docs/formats.md, "Teacher top-k cache"): a teacher's
// k largest log-probabilities at temperature τ for every position of every window of a prepared
// data folder, written once and read by any number of student runs instead of running the
// teacher. A folder of shards `<split>-NNNNN.topk`, each a header naming the teacher (the
// SHA-256 of its file), the data (a digest of the split's shard list and the tokenizer hash),
// the window length, k and τ, and the windows it holds; then (windows, context) rows of k u32
// ids and k f32 log-probabilities. The reader checks every offset and size against the file,
// the shards against each other, and each row's values as it reads them; check_matches refuses
// a cache of another teacher, other data or another window length.
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/mapped_file.h"
#include "data/manifest.h"
#include "monitor/progress.h"
#include "train/teacher_forward.h"
#include "train/token_windows.h"

namespace kiln::train {

inline constexpr char kTeacherCacheMagic[8] = {'K', 'I', 'L', 'N', 'T', 'O', 'P', 'K'};
inline constexpr std::uint32_t kTeacherCacheVersion = 1;

// The SHA-256 of a file's bytes, as 64 hex digits (a teacher's identity).
std::string file_sha256_hex(const std::string& path);
// The identity of a split of a prepared folder: the SHA-256 over the tokenizer hash and each of
// the split's shards (name, tokens, SHA-256) in manifest order.
std::string split_digest(const data::Manifest& manifest, const std::string& split);

// What every shard's header says about the whole cache.
struct TeacherCacheKey {
  std::string teacher_sha256, teacher_name;
  std::string tokenizer_hash;  // data::hash_hex of the data's tokenizer
  int n_vocab = 0, context = 0, k = 0;
  float temperature = 0;
  bool operator==(const TeacherCacheKey&) const = default;
};

struct TeacherCacheShard {
  std::string path;
  TeacherCacheKey key;
  std::string split, data_sha256;
  std::uint64_t windows = 0;       // in the split
  std::uint64_t window_begin = 0;  // this shard's windows: [begin, begin + count)
  std::uint64_t window_count = 0;
  int shard = 0, shards = 0;       // its index among the split's shards, and their number
  std::uint64_t records_offset = 0;  // where its rows start
  std::shared_ptr<MappedFile> file;
};

// Reads and validates one shard's header and size; throws kiln::Error naming the file.
TeacherCacheShard read_teacher_cache_shard(const std::string& path);

class TeacherCache {
 public:
  // Every `*.topk` shard of the folder; throws kiln::Error when there is none, a shard is
  // invalid, or the shards disagree or do not cover each split's windows exactly once.
  static TeacherCache open(const std::string& dir);
  // From shards already read (all of one cache).
  static TeacherCache from_shards(std::vector<TeacherCacheShard> shards, const std::string& where);

  const TeacherCacheKey& key() const { return key_; }
  bool has_split(const std::string& split) const { return splits_.count(split) > 0; }
  std::uint64_t windows(const std::string& split) const;

  // Throws kiln::Error (one line, naming what differs) unless the cache was written from this
  // teacher (file SHA-256), for these windows of this data.
  void check_matches(const std::string& teacher_sha256, const std::string& teacher_path, const data::Manifest& data,
                     const std::string& data_dir, int context) const;

  // Window w of `split`: ids and log_probs (context, k). Throws kiln::Error when w is out of
  // range or a row is not a distribution's top k (an id outside the vocabulary or repeated, a
  // log-probability that is not finite or above 0, a mass above 1).
  void read_window(const std::string& split, std::uint64_t w, int* ids, float* log_probs) const;

 private:
  std::string where_;
  TeacherCacheKey key_;
  struct Split {
    std::string data_sha256;
    std::uint64_t windows = 0;
    std::vector<TeacherCacheShard> shards;  // in window order
  };
  std::map<std::string, Split> splits_;
};

struct TeacherCacheWriteOptions {
  int top_k = 32;
  float temperature = 1.0f;
  std::uint64_t windows_per_shard = 1024;
  int sequences_per_forward = 8;  // windows through the teacher at once
};

// Runs the teacher over every window of each split in `splits` and writes the cache into `dir`
// (created; each shard through a temporary file and a rename). Progress in windows.
void write_teacher_cache(const std::string& dir, TeacherForward& teacher, const TeacherCacheKey& key,
                         const std::vector<const TokenWindows*>& splits, const TeacherCacheWriteOptions& options,
                         monitor::Progress& progress);

}  // namespace kiln::train
