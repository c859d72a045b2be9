#include "format/safetensors_writer.h"

#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>
#include <system_error>

#include "core/error.h"
#include "format/atomic_output_file.h"
#include "format/quoted_name.h"
#include "format/safetensors_file.h"

namespace kiln {
namespace {

constexpr const char* kSingleFileName = "model.safetensors";
constexpr const char* kIndexFileName = "model.safetensors.index.json";

// A JSON string literal for `s`; throws kiln::Error naming `what` if `s` is not valid UTF-8
// (nlohmann_json refuses to write it, and no reader would take it).
std::string json_string(const std::string& s, std::string_view what) {
  try {
    return nlohmann::json(s).dump();
  } catch (const nlohmann::json::exception&) {
    fail("safetensors writer: {} {} is not valid UTF-8", what, quoted_name(s));
  }
}

// Counts a producer's bytes against the tensor's size.

bool path_exists(const std::filesystem::path& p) {
  std::error_code ec;
  return std::filesystem::exists(p, ec);
}

}  // namespace

void SafetensorsWriter::add_metadata(std::string key, std::string value) {
  for (const auto& [k, v] : metadata_)
    if (k == key) fail("safetensors writer: metadata {} is already set (duplicate key)", quoted_name(key));
  json_string(key, "metadata key");
  json_string(value, fmt::format("metadata {} value", quoted_name(key)));
  metadata_.emplace_back(std::move(key), std::move(value));
}

void SafetensorsWriter::add_tensor(std::string name, std::string_view dtype_name, std::vector<std::int64_t> shape,
                                   SafetensorsTensorProducer data) {
  if (name.empty()) fail("safetensors writer: tensor name is empty");
  if (name == "__metadata__") fail("safetensors writer: '__metadata__' cannot name a tensor (the header reserves it)");
  json_string(name, "tensor name");
  for (const Tensor& t : tensors_)
    if (t.name == name) fail("safetensors writer: tensor {} is added twice", quoted_name(name));
  const std::optional<std::size_t> element_bytes = safetensors_dtype_size(dtype_name);
  if (!element_bytes)
    fail("safetensors writer: tensor {} has unknown dtype {}", quoted_name(name), quoted_name(dtype_name));
  std::uint64_t n_elements = 1;
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] < 0)
      fail("safetensors writer: tensor {} shape[{}] = {} (expected a non-negative dimension)", quoted_name(name), i,
           shape[i]);
    if (__builtin_mul_overflow(n_elements, static_cast<std::uint64_t>(shape[i]), &n_elements))
      fail("safetensors writer: tensor {} shape overflows the element count", quoted_name(name));
  }
  std::uint64_t n_bytes = 0;
  if (__builtin_mul_overflow(n_elements, static_cast<std::uint64_t>(*element_bytes), &n_bytes))
    fail("safetensors writer: tensor {} byte size overflows", quoted_name(name));
  if (!data) fail("safetensors writer: tensor {} has no data producer", quoted_name(name));
  std::uint64_t total = 0;
  if (__builtin_add_overflow(data_bytes(), n_bytes, &total))
    fail("safetensors writer: tensor {} takes the data size past 2^64 bytes", quoted_name(name));
  tensors_.push_back({std::move(name), std::string(dtype_name), std::move(shape), n_bytes, std::move(data)});
}

void SafetensorsWriter::add_tensor(std::string name, DType dtype, std::vector<std::int64_t> shape,
                                   SafetensorsTensorProducer data) {
  add_tensor(std::move(name), kiln_dtype_to_safetensors(dtype), std::move(shape), std::move(data));
}

std::uint64_t SafetensorsWriter::data_bytes() const {
  std::uint64_t total = 0;
  for (const Tensor& t : tensors_) total += t.n_bytes;  // add_tensor keeps this from overflowing
  return total;
}

void SafetensorsWriter::write_file(const std::string& path, std::size_t first, std::size_t last) const {
  // The header, as the reference writer lays it out: __metadata__ first (omitted when empty),
  // then each tensor with its offsets in the data section, in data order.
  std::string header = "{";
  if (!metadata_.empty()) {
    header += "\"__metadata__\":{";
    for (std::size_t i = 0; i < metadata_.size(); ++i) {
      if (i > 0) header += ",";
      header +=
          json_string(metadata_[i].first, "metadata key") + ":" + json_string(metadata_[i].second, "metadata value");
    }
    header += "}";
  }
  std::uint64_t offset = 0;
  for (std::size_t i = first; i < last; ++i) {
    const Tensor& t = tensors_[i];
    if (header.size() > 1) header += ",";
    header += json_string(t.name, "tensor name");
    header += fmt::format(":{{\"dtype\":\"{}\",\"shape\":[{}],\"data_offsets\":[{},{}]}}", t.dtype_name,
                          fmt::join(t.shape, ","), offset, offset + t.n_bytes);
    offset += t.n_bytes;
  }
  header += "}";
  // Spaces (JSON whitespace) up to a multiple of 8, so that the data section starts 8-aligned.
  header.append((8 - header.size() % 8) % 8, ' ');
  if (header.size() > SafetensorsFile::kMaxHeaderBytes)
    fail("{}: the header would take {} bytes, over the {} that readers accept", path, header.size(),
         SafetensorsFile::kMaxHeaderBytes);

  AtomicOutputFile out(path);
  const std::uint64_t header_bytes = header.size();
  out.write(&header_bytes, 8);  // little-endian, as kiln's targets are
  out.write(header.data(), header.size());
  for (std::size_t i = first; i < last; ++i) {
    const Tensor& t = tensors_[i];
    BoundedTensorSink sink(out, "safetensors writer", t.name, t.n_bytes);
    t.data(sink);
    if (sink.done() != t.n_bytes)
      fail("safetensors writer: tensor {}: data producer wrote {} of the tensor's {} bytes", quoted_name(t.name),
           sink.done(), t.n_bytes);
  }
  out.commit();
}

SafetensorsWriteResult SafetensorsWriter::write(const std::string& path) const {
  write_file(path, 0, tensors_.size());
  return {{path}, ""};
}

SafetensorsWriteResult SafetensorsWriter::write_sharded(const std::string& dir, std::uint64_t max_shard_bytes) const {
  if (max_shard_bytes == 0) fail("safetensors writer: the shard size limit is 0 bytes");
  const std::filesystem::path folder(dir);
  std::error_code ec;
  std::filesystem::create_directories(folder, ec);
  if (ec) fail("{}: cannot create the folder: {}", dir, ec.message());

  // Shards in tensor order: [shard_starts[k], shard_starts[k + 1]).
  std::vector<std::size_t> shard_starts{0};
  std::uint64_t in_shard = 0;
  for (std::size_t i = 0; i < tensors_.size(); ++i) {
    const std::uint64_t n = tensors_[i].n_bytes;
    if (i > shard_starts.back() && n > max_shard_bytes - std::min(in_shard, max_shard_bytes)) {
      shard_starts.push_back(i);
      in_shard = 0;
    }
    in_shard += n;
  }
  shard_starts.push_back(tensors_.size());
  const std::size_t n_shards = shard_starts.size() - 1;

  SafetensorsWriteResult result;
  if (n_shards == 1) {
    if (path_exists(folder / kIndexFileName))
      fail("{}: holds {} of a sharded checkpoint; remove it before writing {} here", dir, kIndexFileName,
           kSingleFileName);
    write_file((folder / kSingleFileName).string(), 0, tensors_.size());
    result.files.push_back(kSingleFileName);
    return result;
  }
  if (path_exists(folder / kSingleFileName))
    fail("{}: holds {} of an unsharded checkpoint; remove it before writing shards here", dir, kSingleFileName);
  nlohmann::json weight_map = nlohmann::json::object();
  for (std::size_t k = 0; k < n_shards; ++k) {
    const std::string name = fmt::format("model-{:05d}-of-{:05d}.safetensors", k + 1, n_shards);
    write_file((folder / name).string(), shard_starts[k], shard_starts[k + 1]);
    for (std::size_t i = shard_starts[k]; i < shard_starts[k + 1]; ++i) weight_map[tensors_[i].name] = name;
    result.files.push_back(name);
  }
  nlohmann::json index;
  index["metadata"] = {{"total_size", data_bytes()}};
  index["weight_map"] = std::move(weight_map);
  const std::string text = index.dump(2) + "\n";
  AtomicOutputFile out((folder / kIndexFileName).string());
  out.write(text.data(), text.size());
  out.commit();
  result.index = kIndexFileName;
  return result;
}

}  // namespace kiln
