#include "train/checkpoint.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cerrno>
#include <cstring>
#include <limits>
#include <string_view>
#include <utility>
#include <vector>

#include "core/error.h"
#include "core/sha256.h"
#include "train/llama_config_json.h"

namespace kiln::train {
namespace {

using json = nlohmann::json;
using Digest = std::array<std::uint8_t, 32>;

// The tensors are written straight from the float buffers, whose bytes are the format's
// little-endian f32 only on a little-endian machine.
static_assert(std::endian::native == std::endian::little);

// magic (8) | version u32 | reserved u32 (0) | header bytes u64 | header SHA-256 (32)
constexpr std::size_t kPrefixBytes = 56;
constexpr std::uint64_t kDataAlignment = 64;
constexpr std::uint64_t kBuffers = 3;  // params, m, v

std::uint64_t data_offset_for(std::uint64_t header_bytes) {
  return (kPrefixBytes + header_bytes + kDataAlignment - 1) / kDataAlignment * kDataAlignment;
}

std::string to_hex(const Digest& d) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string s;
  for (std::uint8_t b : d) s += kHex[b >> 4], s += kHex[b & 15];
  return s;
}

Digest tensor_digest(const float* params, const float* m, const float* v, std::int64_t total) {
  Sha256 hash;
  for (const float* buffer : {params, m, v}) hash.update(buffer, static_cast<std::size_t>(total) * sizeof(float));
  return hash.finish();
}

json tensor_table_json(const ParameterTable& table) {
  json tensors = json::array();
  for (const ParameterInfo& p : table.entries())
    tensors.push_back({{"name", p.name}, {"rows", p.rows}, {"cols", p.cols}, {"offset", p.offset}});
  return tensors;
}

// The fields in which two configs differ ("" when none does), as
// "n_embd 16 (this model: 32), ...". The name (general.name) is not compared: it does not
// change what the tensors mean.
std::string config_difference(const LlamaConfig& file, const LlamaConfig& model) {
  const json a = llama_config_to_json(file), b = llama_config_to_json(model);
  std::string diff;
  for (const auto& [key, value] : a.items())
    if (key != "name" && value != b.at(key))
      diff += fmt::format("{}{} {} (this model: {})", diff.empty() ? "" : ", ", key, value.dump(), b.at(key).dump());
  return diff;
}

// The first tensor in which two tables differ, "" when none does.
std::string table_difference(const std::vector<ParameterInfo>& file, const std::vector<ParameterInfo>& model) {
  for (std::size_t i = 0; i < std::min(file.size(), model.size()); ++i) {
    const ParameterInfo &a = file[i], &b = model[i];
    if (a.name != b.name || a.rows != b.rows || a.cols != b.cols || a.offset != b.offset)
      return fmt::format("tensor {} is {} ({}×{} at {}) in the file, {} ({}×{} at {}) in this model", i, a.name, a.rows,
                         a.cols, a.offset, b.name, b.rows, b.cols, b.offset);
  }
  if (file.size() != model.size())
    return fmt::format("{} tensors in the file, {} in this model", file.size(), model.size());
  return "";
}

// A file descriptor closed on scope exit.
class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  int release() { return std::exchange(fd_, -1); }

 private:
  int fd_;
};

void read_exact(int fd, std::uint64_t offset, void* out, std::uint64_t n, const std::string& path) {
  auto* p = static_cast<char*>(out);
  while (n > 0) {
    const std::size_t chunk = static_cast<std::size_t>(std::min<std::uint64_t>(n, 1u << 30));
    const ssize_t got = ::pread(fd, p, chunk, static_cast<off_t>(offset));
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) fail("checkpoint {}: read error: {}", path, std::strerror(errno));
    if (got == 0) fail("checkpoint {}: the file ended early (it was truncated while being read)", path);
    p += got, offset += static_cast<std::uint64_t>(got), n -= static_cast<std::uint64_t>(got);
  }
}

void write_all(int fd, const void* data, std::uint64_t n, const std::string& path) {
  const auto* p = static_cast<const char*>(data);
  while (n > 0) {
    const std::size_t chunk = static_cast<std::size_t>(std::min<std::uint64_t>(n, 1u << 30));
    const ssize_t put = ::write(fd, p, chunk);
    if (put < 0 && errno == EINTR) continue;
    if (put <= 0) fail("{}: write error: {}", path, std::strerror(errno));
    p += put, n -= static_cast<std::uint64_t>(put);
  }
}

// The temporary file beside the checkpoint: removed on destruction unless committed.
class TempFile {
 public:
  explicit TempFile(const std::string& final_path)
      : final_(final_path),
        path_(final_path + ".tmp-" + std::to_string(::getpid())),
        fd_(::open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)) {
    if (fd_.get() < 0) fail("{}: cannot create {}: {}", final_, path_, std::strerror(errno));
  }
  ~TempFile() {
    if (!committed_) ::unlink(path_.c_str());
  }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;

  void write(const void* data, std::uint64_t n) { write_all(fd_.get(), data, n, path_); }

  // fsync, close, rename over the final path, then fsync the folder so that the rename survives
  // a crash too.
  void commit() {
    if (::fsync(fd_.get()) != 0) fail("{}: fsync failed: {}", path_, std::strerror(errno));
    if (::close(fd_.release()) != 0) fail("{}: close failed: {}", path_, std::strerror(errno));
    if (::rename(path_.c_str(), final_.c_str()) != 0)
      fail("{}: cannot rename {} into place: {}", final_, path_, std::strerror(errno));
    committed_ = true;
    const std::size_t slash = final_.rfind('/');
    const std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : final_.substr(0, slash);
    const Fd dfd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (dfd.get() >= 0) ::fsync(dfd.get());  // best effort: some filesystems refuse fsync on folders
  }

 private:
  std::string final_;
  std::string path_;
  Fd fd_;
  bool committed_ = false;
};

// ---- reading the header ----

const json& field(const json& j, const char* key, const std::string& where) {
  const auto it = j.find(key);
  if (it == j.end()) fail("{}: missing field \"{}\"", where, key);
  return *it;
}

std::uint64_t get_u64(const json& j, const char* key, const std::string& where) {
  const json& v = field(j, key, where);
  if (!v.is_number_unsigned()) fail("{}: field \"{}\" must be a non-negative integer", where, key);
  return v.get<std::uint64_t>();
}

// What the header says, checked against itself and the file's size.
struct Header {
  CheckpointState state;
  std::vector<ParameterInfo> tensors;
  std::int64_t total = 0;  // floats in each of params, m, v
  Digest tensor_sha256{};
  std::uint64_t data_offset = 0;
};

Header read_header(int fd, std::uint64_t file_size, const std::string& path) {
  const std::string where = "checkpoint " + path;
  if (file_size < kPrefixBytes) fail("{}: {} bytes, too short for a checkpoint", where, file_size);
  unsigned char prefix[kPrefixBytes];
  read_exact(fd, 0, prefix, kPrefixBytes, path);
  if (std::memcmp(prefix, kCheckpointMagic, 8) != 0) fail("{}: not a kiln training checkpoint (bad magic)", where);
  std::uint32_t version, reserved;
  std::uint64_t header_bytes;
  std::memcpy(&version, prefix + 8, 4);
  std::memcpy(&reserved, prefix + 12, 4);
  std::memcpy(&header_bytes, prefix + 16, 8);
  if (version != kCheckpointVersion) fail("{}: version {} (kiln reads {})", where, version, kCheckpointVersion);
  if (reserved != 0) fail("{}: reserved field is {}, not 0", where, reserved);
  if (header_bytes > file_size - kPrefixBytes)
    fail("{}: a header of {} bytes runs past the end of the file ({} bytes)", where, header_bytes, file_size);
  std::string text(static_cast<std::size_t>(header_bytes), '\0');
  read_exact(fd, kPrefixBytes, text.data(), header_bytes, path);
  if (std::memcmp(sha256(text).data(), prefix + 24, 32) != 0)
    fail("{}: the header does not match its SHA-256 (the file is damaged)", where);

  Header h;
  h.data_offset = data_offset_for(header_bytes);
  if (h.data_offset > file_size) fail("{}: the file ends inside the header's padding", where);
  const std::uint64_t padding_bytes = h.data_offset - kPrefixBytes - header_bytes;
  std::string padding(static_cast<std::size_t>(padding_bytes), '\0');
  read_exact(fd, kPrefixBytes + header_bytes, padding.data(), padding_bytes, path);
  if (padding.find_first_not_of('\0') != std::string::npos) fail("{}: the padding after the header is not zero", where);
  const json j = json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) fail("{}: the header is not a JSON object", where);
  h.state.config = llama_config_from_json(field(j, "config", where), where + ": config");
  const json& step = field(j, "step", where);
  if (!step.is_number_unsigned() || step.get<std::uint64_t>() > std::numeric_limits<std::int64_t>::max())
    fail("{}: field \"step\" must be a non-negative integer", where);
  h.state.step = step.get<std::int64_t>();
  h.state.seed = get_u64(j, "seed", where);
  const json& cursor = field(j, "cursor", where);
  if (!cursor.is_object()) fail("{}: field \"cursor\" must be an object", where);
  h.state.cursor.epoch = get_u64(cursor, "epoch", where + ": cursor");
  h.state.cursor.position = get_u64(cursor, "position", where + ": cursor");
  h.state.run = field(j, "run", where);
  if (!h.state.run.is_object()) fail("{}: field \"run\" must be an object", where);
  const json& digest = field(j, "sha256", where);
  if (!digest.is_string() || digest.get<std::string>().size() != 64)
    fail("{}: field \"sha256\" must be 64 hex digits", where);
  for (std::size_t i = 0; i < 32; ++i) {
    const std::string byte = digest.get<std::string>().substr(2 * i, 2);
    if (byte.find_first_not_of("0123456789abcdef") != std::string::npos)
      fail("{}: field \"sha256\" must be 64 lower-case hex digits", where);
    h.tensor_sha256[i] = static_cast<std::uint8_t>(std::stoul(byte, nullptr, 16));
  }

  // Sizes against the file before anything is read or allocated: the data is exactly three
  // buffers of total floats after the padding.
  const std::uint64_t total = get_u64(j, "total_floats", where);
  const std::uint64_t data_bytes = file_size - h.data_offset;
  if (total > data_bytes / (kBuffers * sizeof(float)) || total * kBuffers * sizeof(float) != data_bytes)
    fail(
        "{}: {} bytes of tensor data where the header's params, m and v take 3 × {} floats (the file is truncated or "
        "damaged)",
        where, data_bytes, total);
  h.total = static_cast<std::int64_t>(total);
  const json& tensors = field(j, "tensors", where);
  if (!tensors.is_array()) fail("{}: field \"tensors\" must be an array", where);
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    const std::string at = fmt::format("{}: tensors[{}]", where, i);
    if (!tensors[i].is_object()) fail("{}: expected an object", at);
    const json& name = field(tensors[i], "name", at);
    if (!name.is_string()) fail("{}: field \"name\" must be a string", at);
    ParameterInfo p;
    p.name = name.get<std::string>();
    const std::uint64_t rows = get_u64(tensors[i], "rows", at), cols = get_u64(tensors[i], "cols", at),
                        offset = get_u64(tensors[i], "offset", at);
    if (rows > total || cols > total || (cols > 0 && rows > total / cols) || offset > total - rows * cols)
      fail("{}: {}×{} floats at {} do not fit in {}", at, rows, cols, offset, total);
    p.rows = static_cast<std::int64_t>(rows);
    p.cols = static_cast<std::int64_t>(cols);
    p.offset = static_cast<std::int64_t>(offset);
    h.tensors.push_back(std::move(p));
  }

  // The header's table must be the one its config lays out, so that a model built from the
  // config can load the tensors. The count is checked first: a layer count the table cannot
  // hold would otherwise have ParameterTable list that many layers.
  const LlamaConfig& c = h.state.config;
  if (c.n_layer > 0 && static_cast<std::uint64_t>(c.n_layer) > tensors.size() / 9)
    fail("{}: {} tensors cannot hold {} layers", where, tensors.size(), c.n_layer);
  try {
    const ParameterTable table(c);
    const std::string diff = table_difference(h.tensors, table.entries());
    if (!diff.empty()) fail("the tensor table is not its config's: {}", diff);
    if (table.total() != h.total)
      fail("the tensor table is not its config's: {} floats per buffer in the file, {} by the config", h.total,
           table.total());
  } catch (const Error& e) {
    fail("{}: {}", where, e.what());
  }
  return h;
}

}  // namespace

void write_checkpoint(const std::string& path, const CheckpointState& state, const ParameterTable& table,
                      const float* params, const float* m, const float* v) {
  const std::string diff = config_difference(state.config, table.config());
  if (!diff.empty()) fail("{}: the checkpoint's config is not the parameter table's: {}", path, diff);
  if (!state.run.is_object()) fail("{}: a checkpoint's run information must be a JSON object", path);
  if (state.step < 0) fail("{}: a checkpoint's step count cannot be negative ({})", path, state.step);

  const json header{{"config", llama_config_to_json(state.config)},
                    {"step", state.step},
                    {"seed", state.seed},
                    {"cursor", {{"epoch", state.cursor.epoch}, {"position", state.cursor.position}}},
                    {"run", state.run},
                    {"tensors", tensor_table_json(table)},
                    {"total_floats", table.total()},
                    {"sha256", to_hex(tensor_digest(params, m, v, table.total()))}};
  std::string text;
  try {
    text = header.dump();
  } catch (const json::exception& e) {  // a string of the run information that is not UTF-8
    fail("{}: the run information cannot be written as JSON: {}", path, e.what());
  }
  unsigned char prefix[kPrefixBytes] = {};
  std::memcpy(prefix, kCheckpointMagic, 8);
  const std::uint32_t version = kCheckpointVersion;
  const std::uint64_t header_bytes = text.size();
  std::memcpy(prefix + 8, &version, 4);
  std::memcpy(prefix + 16, &header_bytes, 8);
  std::memcpy(prefix + 24, sha256(text).data(), 32);
  const std::string padding(data_offset_for(header_bytes) - kPrefixBytes - header_bytes, '\0');

  TempFile out(path);
  out.write(prefix, kPrefixBytes);
  out.write(text.data(), text.size());
  out.write(padding.data(), padding.size());
  const std::uint64_t bytes = static_cast<std::uint64_t>(table.total()) * sizeof(float);
  for (const float* buffer : {params, m, v}) out.write(buffer, bytes);
  out.commit();
}

CheckpointState read_checkpoint_state(const std::string& path) {
  const Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) fail("checkpoint {}: cannot open: {}", path, std::strerror(errno));
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) fail("checkpoint {}: cannot stat: {}", path, std::strerror(errno));
  return read_header(fd.get(), static_cast<std::uint64_t>(st.st_size), path).state;
}

void read_checkpoint_tensors(const std::string& path, const ParameterTable& table, float* params, float* m, float* v) {
  const Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) fail("checkpoint {}: cannot open: {}", path, std::strerror(errno));
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) fail("checkpoint {}: cannot stat: {}", path, std::strerror(errno));
  const Header h = read_header(fd.get(), static_cast<std::uint64_t>(st.st_size), path);
  std::string diff = config_difference(h.state.config, table.config());
  if (diff.empty()) diff = table_difference(h.tensors, table.entries());
  if (!diff.empty()) fail("checkpoint {} is for another model: {}", path, diff);

  const std::uint64_t bytes = static_cast<std::uint64_t>(h.total) * sizeof(float);
  std::uint64_t offset = h.data_offset;
  Sha256 hash;
  for (float* buffer : {params, m, v}) {
    read_exact(fd.get(), offset, buffer, bytes, path);
    hash.update(buffer, static_cast<std::size_t>(bytes));
    offset += bytes;
  }
  if (hash.finish() != h.tensor_sha256)
    fail("checkpoint {}: the tensor data does not match its SHA-256 (the file is damaged)", path);
}

}  // namespace kiln::train
