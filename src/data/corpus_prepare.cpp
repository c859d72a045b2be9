#include "data/corpus_prepare.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <unordered_set>

#include "core/error.h"
#include "core/mapped_file.h"
#include "core/sha256.h"
#include "core/thread_pool.h"
#include "data/data_shard.h"
#include "data/manifest.h"
#include "tokenizer/tokenizer.h"

namespace kiln::data {
namespace fs = std::filesystem;
namespace {

// Documents are tokenized a batch at a time: large enough to keep both threads busy, small
// enough that memory stays bounded whatever the corpus size.
constexpr std::size_t kBatchBytes = 4u << 20;
constexpr std::size_t kBatchDocuments = 2048;

// One split's shards: a writer that rolls over to a new file before it would pass the limit.
class SplitShards {
 public:
  SplitShards(std::string dir, std::string split, int first_index, std::uint64_t limit, std::uint32_t vocab,
              TokenizerHash hash)
      : dir_(std::move(dir)), split_(std::move(split)), next_(first_index), limit_(limit), vocab_(vocab), hash_(hash) {}

  void add(std::span<const std::int32_t> tokens) {
    tokens_ += tokens.size();
    ++documents_;
    if (writer_ && writer_->n_tokens() > 0 && writer_->n_tokens() + tokens.size() > limit_) close();
    // A document longer than a whole shard continues in the next; each part starts a document.
    while (tokens.size() > limit_) {
      open();
      writer_->add_document(tokens.first(limit_));
      tokens = tokens.subspan(limit_);
      close();
    }
    if (tokens.empty()) return;
    open();
    writer_->add_document(tokens);
  }

  void close() {
    if (!writer_) return;
    writer_->finish();
    ManifestShard s;
    s.file = name_;
    s.split = split_;
    s.tokens = writer_->n_tokens();
    s.documents = writer_->n_documents();
    writer_.reset();
    const std::string path = dir_ + "/" + s.file;
    s.bytes = fs::file_size(path);
    s.sha256 = file_sha256_hex(path);
    shards_.push_back(std::move(s));
  }

  const std::vector<ManifestShard>& shards() const { return shards_; }
  std::uint64_t tokens() const { return tokens_; }
  std::uint64_t documents() const { return documents_; }

 private:
  void open() {
    if (writer_) return;
    name_ = fmt::format("{}-{:05}.tokens", split_, next_++);
    writer_ = std::make_unique<ShardWriter>(dir_ + "/" + name_, vocab_, hash_);
  }

  std::string dir_, split_, name_;
  int next_;
  std::uint64_t limit_;
  std::uint32_t vocab_;
  TokenizerHash hash_;
  std::unique_ptr<ShardWriter> writer_;
  std::vector<ManifestShard> shards_;
  std::uint64_t tokens_ = 0, documents_ = 0;
};

int next_shard_index(const Manifest& m, const std::string& split) {
  int next = 0;
  for (const ManifestShard& s : m.shards)
    if (s.split == split) {
      const std::string digits = s.file.substr(split.size() + 1, 5);
      if (s.file.rfind(split + "-", 0) == 0 && digits.size() == 5)
        next = std::max(next, std::atoi(digits.c_str()) + 1);
    }
  return next;
}

std::string read_binary(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("{}: cannot open", path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write_binary(const std::string& path, const std::string& bytes) {
  const std::string temp = path + ".tmp";
  {
    std::ofstream out(temp, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    out.flush();
    if (!out) {
      std::remove(temp.c_str());
      fail("{}: write error", temp);
    }
  }
  std::error_code ec;
  fs::rename(temp, path, ec);
  if (ec) fail("{}: cannot rename into place: {}", path, ec.message());
}

}  // namespace

bool is_validation_document(const std::array<std::uint8_t, 32>& digest, std::uint64_t seed, double val_fraction) {
  if (val_fraction <= 0) return false;
  if (val_fraction >= 1) return true;
  std::string key(8 + digest.size(), '\0');
  for (int i = 0; i < 8; ++i) key[static_cast<std::size_t>(i)] = static_cast<char>((seed >> (8 * i)) & 0xFF);
  std::memcpy(key.data() + 8, digest.data(), digest.size());
  const auto h = sha256(key);
  std::uint64_t x = 0;
  for (int i = 7; i >= 0; --i) x = (x << 8) | h[static_cast<std::size_t>(i)];
  return static_cast<double>(x) < std::ldexp(val_fraction, 64);
}

PrepareResult prepare_corpus(const Tokenizer& tokenizer, const PrepareOptions& o,
                             const std::function<void(const PrepareProgress&)>& progress) {
  if (!(o.val_fraction >= 0 && o.val_fraction <= 1)) fail("data prepare: --val-fraction {} is not in [0, 1]", o.val_fraction);
  if (o.shard_tokens == 0) fail("data prepare: --shard-tokens must be at least 1");
  const TokenizerHash hash = tokenizer_hash(tokenizer.vocab());
  const auto vocab_size = static_cast<std::uint32_t>(tokenizer.n_vocab());

  // The inputs are checked before the folder is touched, so a typo creates nothing.
  const std::vector<CorpusFile> files = list_corpus_files(o.inputs);
  std::error_code ec;
  fs::create_directories(o.out_dir, ec);
  if (ec) fail("{}: cannot create the folder: {}", o.out_dir, ec.message());
  const std::string manifest_path = o.out_dir + "/" + kManifestName;
  const std::string hashes_path = o.out_dir + "/" + kDocumentHashesName;
  Manifest manifest;
  std::string known_hashes;
  if (fs::exists(manifest_path)) {
    manifest = read_manifest(manifest_path);
    if (manifest.tokenizer_hash != hash)
      fail("{}: refusing to add shards: the folder was prepared with tokenizer {} (sha256 {}), not {} (sha256 {})",
           o.out_dir, manifest.tokenizer_path, hash_hex(manifest.tokenizer_hash), o.tokenizer_path, hash_hex(hash));
    if (manifest.vocab_size != vocab_size)
      fail("{}: manifest's vocab_size {} differs from the tokenizer's {}", manifest_path, manifest.vocab_size, vocab_size);
    if (fs::exists(hashes_path)) known_hashes = read_binary(hashes_path);
    if (known_hashes.size() % 32 != 0)
      fail("{}: {} bytes is not a whole number of 32-byte digests", hashes_path, known_hashes.size());
  } else {
    manifest.tokenizer_hash = hash;
    manifest.vocab_size = vocab_size;
    manifest.tokenizer_path = o.tokenizer_path;
  }
  std::unordered_set<std::string> seen;
  for (std::size_t i = 0; i < known_hashes.size(); i += 32) seen.insert(known_hashes.substr(i, 32));
  std::string new_hashes;

  PrepareProgress p;
  p.files_total = files.size();
  for (const CorpusFile& f : files) p.bytes_total += f.bytes;
  progress(p);  // the job's size is known before the first document

  SplitShards train(o.out_dir, "train", next_shard_index(manifest, "train"), o.shard_tokens, vocab_size, hash);
  SplitShards val(o.out_dir, "val", next_shard_index(manifest, "val"), o.shard_tokens, vocab_size, hash);
  ThreadPool pool(std::max(1, o.threads));
  PrepareResult result;

  std::vector<std::string> batch;
  std::size_t batch_bytes = 0;
  std::vector<std::vector<std::int32_t>> batch_tokens;
  std::vector<std::array<std::uint8_t, 32>> batch_digests;
  const bool add_bos = tokenizer.vocab().add_bos;
  const std::int32_t eos = tokenizer.vocab().eos_id;
  KILN_CHECK(!o.add_eos || eos >= 0, "data prepare: --eos: the tokenizer {} has no end-of-sequence token",
             o.tokenizer_path);
  std::uint64_t file_base = 0, file_bytes = 0, file_text_done = 0;
  auto flush = [&] {
    batch_tokens.assign(batch.size(), {});
    batch_digests.assign(batch.size(), {});
    pool.parallel_for(static_cast<std::int64_t>(batch.size()), [&](std::int64_t i, int) {
      const auto k = static_cast<std::size_t>(i);
      batch_digests[k] = sha256(batch[k]);
      batch_tokens[k] = tokenizer.encode(batch[k], add_bos, /*parse_special=*/false);
      if (o.add_eos) batch_tokens[k].push_back(eos);
    });
    // Dedup and split in document order, so the result does not depend on thread timing.
    for (std::size_t k = 0; k < batch.size(); ++k) {
      const std::string key(reinterpret_cast<const char*>(batch_digests[k].data()), 32);
      if (!seen.insert(key).second) {
        ++result.duplicates_removed;
        ++p.duplicates;
        continue;
      }
      new_hashes += key;
      (is_validation_document(batch_digests[k], o.seed, o.val_fraction) ? val : train).add(batch_tokens[k]);
      p.tokens += batch_tokens[k].size();
    }
    // Document bytes stand for file bytes until the file ends (blank lines and JSON syntax are
    // not in them), so the count never passes the file's end.
    file_text_done += batch_bytes;
    p.bytes_done = file_base + std::min(file_text_done, file_bytes);
    batch.clear();
    batch_bytes = 0;
    progress(p);
  };

  for (const CorpusFile& f : files) {
    ManifestSource source{f.path, f.bytes, file_sha256_hex(f.path), 0};
    file_base = p.bytes_done;
    file_bytes = f.bytes;
    file_text_done = 0;
    for_each_document(f, o.corpus, [&](std::string_view text) {
      batch.emplace_back(text);
      batch_bytes += text.size();
      ++source.documents;
      ++result.documents_read;
      ++p.documents;
      if (batch_bytes >= kBatchBytes || batch.size() >= kBatchDocuments) flush();
    });
    flush();
    manifest.sources.push_back(std::move(source));
    ++p.files_done;
    p.bytes_done = file_base + f.bytes;
    progress(p);
  }
  train.close();
  val.close();

  result.train_documents = train.documents();
  result.val_documents = val.documents();
  result.train_tokens = train.tokens();
  result.val_tokens = val.tokens();
  for (const SplitShards* s : {&train, &val})
    for (const ManifestShard& shard : s->shards()) {
      manifest.shards.push_back(shard);
      result.shards_written.push_back(shard.file);
    }
  manifest.duplicates_removed += result.duplicates_removed;
  nlohmann::json run = {{"inputs", o.inputs},
                        {"jsonl_field", o.corpus.jsonl_field},
                        {"paragraphs", o.corpus.paragraphs},
                        {"eos", o.add_eos},
                        {"val_fraction", o.val_fraction},
                        {"seed", o.seed},
                        {"shard_tokens", o.shard_tokens},
                        {"documents_read", result.documents_read},
                        {"duplicates_removed", result.duplicates_removed},
                        {"train_documents", result.train_documents},
                        {"val_documents", result.val_documents},
                        {"train_tokens", result.train_tokens},
                        {"val_tokens", result.val_tokens}};
  manifest.runs.push_back(std::move(run));
  write_binary(hashes_path, known_hashes + new_hashes);
  write_manifest(manifest_path, manifest);
  return result;
}

}  // namespace kiln::data
