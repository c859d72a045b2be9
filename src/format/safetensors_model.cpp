#include "format/safetensors_model.h"

#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>
#include <system_error>

#include "core/error.h"
#include "format/quoted_name.h"
#include "format/safetensors_json.h"

namespace kiln {
namespace {

constexpr const char* kSingleFileName = "model.safetensors";
constexpr const char* kIndexFileName = "model.safetensors.index.json";
// An index lists every tensor once (a few hundred KB for the largest models); the bound keeps a
// wrong file from being read whole into memory.
constexpr std::uintmax_t kMaxIndexBytes = 100'000'000;
// The index's own nesting is 2 (weight_map's strings); metadata may carry a little more.
constexpr int kMaxIndexDepth = 8;

std::string read_index(const std::string& path) {
  std::error_code ec;
  const std::uintmax_t size = std::filesystem::file_size(path, ec);
  if (ec) fail("{}: cannot read the index: {}", path, ec.message());
  if (size > kMaxIndexBytes) fail("{}: index is {} bytes, over the limit of {}", path, size, kMaxIndexBytes);
  std::ifstream in(path, std::ios::binary);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (!in.good() && !in.eof()) fail("{}: cannot read the index", path);
  return text;
}

// A shard must be a file of the index's own folder: a plain name, no path.
void check_shard_name(const std::string& shard, const std::string& index_path, const std::string& tensor) {
  if (shard.empty() || shard == "." || shard == ".." || shard.find('/') != std::string::npos ||
      shard.find('\0') != std::string::npos)
    fail("{}: weight_map maps tensor {} to {}, which is not a file name in the index's folder", index_path,
         quoted_name(tensor), quoted_name(shard));
}

}  // namespace

std::unique_ptr<SafetensorsModel> SafetensorsModel::open(const std::string& path) {
  std::unique_ptr<SafetensorsModel> model(new SafetensorsModel());
  model->path_ = path;
  std::error_code ec;
  if (!std::filesystem::is_directory(path, ec)) {
    model->add_file(SafetensorsFile::open(path));
    return model;
  }
  const std::filesystem::path dir(path);
  const std::string single = (dir / kSingleFileName).string();
  const std::string index = (dir / kIndexFileName).string();
  if (std::filesystem::exists(single, ec)) {
    model->add_file(SafetensorsFile::open(single));
  } else if (std::filesystem::exists(index, ec)) {
    model->open_index(index, path);
  } else {
    fail("{}: the folder holds neither {} nor {}", path, kSingleFileName, kIndexFileName);
  }
  return model;
}

void SafetensorsModel::add_file(std::unique_ptr<SafetensorsFile> file) {
  for (const SafetensorsTensorInfo& info : file->tensors()) {
    // Files opened through an index are checked against it first; this catches the rest.
    if (tensor_index_.count(info.name))
      fail("{}: tensor {} is also in {}", file->path(), quoted_name(info.name),
           tensors_[tensor_index_.at(info.name)].file->path());
    tensor_index_.emplace(info.name, tensors_.size());
    tensors_.push_back({&info, file.get()});
  }
  files_.push_back(std::move(file));
}

void SafetensorsModel::open_index(const std::string& index_path, const std::string& dir) {
  index_path_ = index_path;
  const nlohmann::json index = parse_safetensors_json(read_index(index_path), index_path, "index", kMaxIndexDepth);
  if (!index.is_object()) fail("{}: index is {} (expected a JSON object)", index_path, describe_json_value(index));
  if (index.contains("metadata")) {
    const nlohmann::json& metadata = index["metadata"];
    if (!metadata.is_null() && !metadata.is_object())
      fail("{}: metadata is {} (expected an object)", index_path, describe_json_value(metadata));
    if (metadata.is_object() && metadata.contains("total_size") && metadata["total_size"].is_number_unsigned())
      index_total_size_ = metadata["total_size"].get<std::uint64_t>();
  }
  if (!index.contains("weight_map")) fail("{}: index has no weight_map", index_path);
  const nlohmann::json& weight_map = index["weight_map"];
  if (!weight_map.is_object())
    fail("{}: weight_map is {} (expected an object of tensor -> file)", index_path, describe_json_value(weight_map));
  if (weight_map.empty()) fail("{}: weight_map names no tensors", index_path);

  // Each shard once, in name order (which is shard order for transformers' names).
  std::map<std::string, std::string> shard_of;  // tensor -> shard
  std::set<std::string> shards;
  for (const auto& [tensor, shard] : weight_map.items()) {
    if (!shard.is_string())
      fail("{}: weight_map maps tensor {} to {} (expected a file name)", index_path, quoted_name(tensor),
           describe_json_value(shard));
    const std::string name = shard.get<std::string>();
    check_shard_name(name, index_path, tensor);
    shard_of.emplace(tensor, name);
    shards.insert(name);
  }
  const std::filesystem::path folder(dir);
  for (const std::string& shard : shards) {
    const std::string shard_path = (folder / shard).string();
    std::error_code ec;
    if (!std::filesystem::exists(shard_path, ec))
      fail("{}: shard {} named by the index {} is missing", shard_path, quoted_name(shard), index_path);
    std::unique_ptr<SafetensorsFile> file = SafetensorsFile::open(shard_path);
    for (const SafetensorsTensorInfo& info : file->tensors()) {
      auto it = shard_of.find(info.name);
      if (it == shard_of.end())
        fail("{}: tensor {} is not in the index {}", shard_path, quoted_name(info.name), index_path);
      if (it->second != shard)
        fail("{}: tensor {} is in this shard, but the index {} maps it to {}", shard_path, quoted_name(info.name),
             index_path, quoted_name(it->second));
    }
    add_file(std::move(file));
  }
  for (const auto& [tensor, shard] : shard_of)
    if (!tensor_index_.count(tensor))
      fail("{}: weight_map maps tensor {} to {}, which does not hold it", index_path, quoted_name(tensor),
           quoted_name(shard));
}

const SafetensorsModel::Tensor* SafetensorsModel::find_tensor(const std::string& name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

}  // namespace kiln
