#include "format/pytorch_checkpoint.h"

#include <fmt/ranges.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "core/error.h"
#include "format/pickle_reader.h"

namespace kiln {
namespace {

constexpr std::uint64_t kMaxPickleBytes = 256u << 20;
constexpr std::uint64_t kMaxIndexBytes = 64u << 20;

ZipArchive open_zip(const std::string& path, const MappedFile& file) {
  const auto bytes = file.bytes();
  // torch < 1.6 wrote a bare pickle stream (a protocol 2 pickle of a magic number first).
  if (!bytes.empty() && bytes[0] == 0x80)
    fail(
        "{}: this is the legacy PyTorch format (torch < 1.6, a bare pickle stream), which kiln does not read; "
        "re-save it with a newer torch: torch.save(torch.load(path), path)",
        path);
  if (bytes.size() < 4 || bytes[0] != 'P' || bytes[1] != 'K')
    fail("{}: not a PyTorch checkpoint (expected a zip archive starting with \"PK\", as torch.save writes)", path);
  return ZipArchive(path, bytes);
}

std::optional<DType> kiln_dtype(std::string_view dtype_name) {
  if (dtype_name == "float32") return DType::F32;
  if (dtype_name == "float16") return DType::F16;
  if (dtype_name == "bfloat16") return DType::BF16;
  return std::nullopt;
}

// The archive's folder: the one `<archive>/data.pkl` entry.
std::string find_archive_prefix(const std::string& path, const ZipArchive& zip) {
  std::string prefix;
  for (const ZipEntry& e : zip.entries()) {
    const std::size_t slash = e.name.find('/');
    if (slash == std::string::npos || e.name.compare(slash, std::string::npos, "/data.pkl") != 0) continue;
    if (!prefix.empty())
      fail("{}: zip holds two pickles, '{}data.pkl' and '{}' (expected one torch.save archive)", path, prefix, e.name);
    prefix = e.name.substr(0, slash + 1);
  }
  if (prefix.empty())
    fail("{}: zip holds no '<archive>/data.pkl' entry (not a torch.save checkpoint; {} entries)", path,
         zip.entries().size());
  return prefix;
}

// Whether a dense row-major tensor of `size` has these strides (size-1 dimensions may have any
// stride, as torch's is_contiguous allows).
bool is_row_major(const std::vector<std::int64_t>& size, const std::vector<std::int64_t>& stride) {
  if (std::find(size.begin(), size.end(), 0) != size.end()) return true;
  std::int64_t expected = 1;
  for (std::size_t i = size.size(); i-- > 0;) {
    if (size[i] != 1 && stride[i] != expected) return false;
    if (__builtin_mul_overflow(expected, size[i], &expected)) return false;
  }
  return true;
}

// A plain file name for a shard: no directories, nothing that leaves the index's folder.
bool is_plain_file_name(const std::string& name) {
  return !name.empty() && name != "." && name != ".." && name.find('/') == std::string::npos &&
         name.find('\\') == std::string::npos && name.find('\0') == std::string::npos;
}

}  // namespace

PyTorchCheckpoint::Shard::Shard(const std::string& path) : file(path), zip(open_zip(path, file)) {}

void PyTorchCheckpoint::read_shard(std::size_t shard_index) {
  const std::string& path = shard_paths_[shard_index];
  const ZipArchive& zip = shards_[shard_index]->zip;
  const std::string prefix = find_archive_prefix(path, zip);

  if (const ZipEntry* order = zip.find(prefix + "byteorder")) {
    std::string text(reinterpret_cast<const char*>(zip.data(*order).data()), std::min<std::uint64_t>(order->size, 16));
    while (!text.empty() && (text.back() == '\n' || text.back() == '\r' || text.back() == ' ')) text.pop_back();
    if (text != "little")
      fail("{}: {}byteorder says '{}' (kiln reads little-endian checkpoints only)", path, prefix, text);
  }

  const ZipEntry& pickle_entry = *zip.find(prefix + "data.pkl");
  if (pickle_entry.size > kMaxPickleBytes)
    fail("{}: {} is {} bytes (kiln reads pickles of at most {})", path, pickle_entry.name, pickle_entry.size,
         kMaxPickleBytes);
  zip.verify_crc32(pickle_entry);
  const PickleValuePtr root = read_pickle(zip.data(pickle_entry), path + ": " + pickle_entry.name);
  if (root->kind != PickleValue::Kind::dict) {
    fail("{}: {} holds a {}, expected a state dict (a dict of tensor name -> tensor)", path, pickle_entry.name,
         root->kind_name());
  }

  for (const auto& [key, value] : root->dict.items) {
    if (key->kind != PickleValue::Kind::string)
      fail("{}: state dict has a key of type {} (expected tensor names)", path, key->kind_name());
    const std::string& name = key->string;
    if (value->kind != PickleValue::Kind::tensor) {
      const char* hint = value->kind == PickleValue::Kind::dict
                             ? "; a training checkpoint nests its weights: save model.state_dict() alone"
                             : "";
      fail("{}: state dict item '{}' is a {}, expected a tensor (kiln reads a flat name -> tensor dict{})", path, name,
           value->kind_name(), hint);
    }
    const PickleTensor& t = value->tensor;
    const TorchStorageType* type = find_torch_storage_type(t.storage.storage_type);
    if (!type) fail("{}: tensor '{}' has storage type '{}'", path, name, t.storage.storage_type);

    PyTorchTensorInfo info;
    info.name = name;
    info.dtype_name = std::string(type->dtype_name);
    info.dtype = kiln_dtype(type->dtype_name);
    info.element_bytes = type->element_bytes;
    info.size = t.size;
    info.stride = t.stride;
    info.storage_offset = t.storage_offset;
    info.storage_key = t.storage.key;
    info.shard = shard_index;

    const ZipEntry* storage = zip.find(prefix + "data/" + t.storage.key);
    if (!storage)
      fail("{}: tensor '{}': its storage '{}data/{}' is not in the archive", path, name, prefix, t.storage.key);
    std::uint64_t storage_bytes = 0;
    if (__builtin_mul_overflow(static_cast<std::uint64_t>(t.storage.numel), type->element_bytes, &storage_bytes) ||
        storage_bytes != storage->size)
      fail("{}: tensor '{}': storage '{}' holds {} bytes, but {} {} elements take {} x {}", path, name, storage->name,
           storage->size, t.storage.numel, info.dtype_name, t.storage.numel, type->element_bytes);
    info.storage = zip.data(*storage);

    // The last element the tensor reaches, offset + sum((size_i - 1) * stride_i), must lie in
    // the storage; a tensor with a zero-size dimension reaches none.
    if (t.storage_offset < 0) fail("{}: tensor '{}' has storage offset {}", path, name, t.storage_offset);
    std::int64_t last = t.storage_offset;
    bool empty = false;
    for (std::size_t i = 0; i < t.size.size(); ++i) {
      if (t.size[i] < 0 || t.stride[i] < 0)
        fail("{}: tensor '{}' has size {} and stride {} in dimension {} (expected non-negative values)", path, name,
             t.size[i], t.stride[i], i);
      if (t.size[i] == 0) empty = true;
      std::int64_t reach = 0;
      if (t.size[i] > 0 &&
          (__builtin_mul_overflow(t.size[i] - 1, t.stride[i], &reach) || __builtin_add_overflow(last, reach, &last)))
        fail("{}: tensor '{}': its sizes and strides overflow 64 bits", path, name);
    }
    if (!empty && last >= t.storage.numel)
      fail("{}: tensor '{}' (offset {}, size [{}], stride [{}]) reaches element {} of a storage of {}", path, name,
           t.storage_offset, fmt::join(t.size, ", "), fmt::join(t.stride, ", "), last, t.storage.numel);
    info.contiguous = is_row_major(t.size, t.stride);
    info.n_elements = empty ? 0 : 1;
    for (std::int64_t d : t.size)
      if (!empty && __builtin_mul_overflow(info.n_elements, d, &info.n_elements))
        fail("{}: tensor '{}': its element count overflows 64 bits", path, name);

    if (tensor_index_.count(name)) fail("{}: tensor '{}' appears twice", path, name);
    tensor_index_.emplace(name, tensors_.size());
    tensors_.push_back(std::move(info));
  }
}

std::unique_ptr<PyTorchCheckpoint> PyTorchCheckpoint::open(const std::string& path) {
  std::unique_ptr<PyTorchCheckpoint> ckpt(new PyTorchCheckpoint());
  ckpt->path_ = path;
  const std::string index_suffix = ".index.json";
  const bool is_index = path.size() > index_suffix.size() &&
                        path.compare(path.size() - index_suffix.size(), index_suffix.size(), index_suffix) == 0;
  if (!is_index) {
    ckpt->shard_paths_.push_back(path);
    ckpt->shards_.push_back(std::make_unique<Shard>(path));
    ckpt->read_shard(0);
    return ckpt;
  }

  // The index: {"weight_map": {tensor name: shard file name}, "metadata": {...}}.
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("{}: cannot open the checkpoint index", path);
  std::ostringstream text;
  text << in.rdbuf();
  if (text.str().size() > kMaxIndexBytes) fail("{}: index is larger than {} bytes", path, kMaxIndexBytes);
  const nlohmann::json index = nlohmann::json::parse(text.str(), nullptr, false);
  if (index.is_discarded() || !index.is_object()) fail("{}: index is not a JSON object", path);
  const auto map_it = index.find("weight_map");
  if (map_it == index.end() || !map_it->is_object() || map_it->empty())
    fail("{}: index has no 'weight_map' object of tensor name -> shard file", path);

  const std::filesystem::path dir = std::filesystem::path(path).parent_path();
  std::unordered_map<std::string, std::string> file_of_tensor;
  std::set<std::string> file_set;
  for (const auto& [name, shard] : map_it->items()) {
    if (!shard.is_string()) fail("{}: weight_map['{}'] is not a string (expected a shard file name)", path, name);
    const std::string file = shard.get<std::string>();
    if (!is_plain_file_name(file))
      fail("{}: weight_map['{}'] = '{}' is not a plain file name beside the index", path, name, file);
    if (file_set.insert(file).second && !std::filesystem::is_regular_file(dir / file))
      fail("{}: weight_map['{}'] names shard '{}', which does not exist ({})", path, name, file, (dir / file).string());
    file_of_tensor.emplace(name, file);
  }
  // Shards in the order of their file names (pytorch_model-00001-of-00003.bin, ...).
  const std::vector<std::string> files(file_set.begin(), file_set.end());
  std::unordered_map<std::string, std::size_t> shard_of_tensor;
  for (const auto& [name, file] : file_of_tensor)
    shard_of_tensor.emplace(
        name, static_cast<std::size_t>(std::lower_bound(files.begin(), files.end(), file) - files.begin()));

  for (std::size_t s = 0; s < files.size(); ++s) {
    const std::string shard_path = (dir / files[s]).string();
    ckpt->shard_paths_.push_back(shard_path);
    ckpt->shards_.push_back(std::make_unique<Shard>(shard_path));
    const std::size_t first = ckpt->tensors_.size();
    ckpt->read_shard(s);
    for (std::size_t t = first; t < ckpt->tensors_.size(); ++t) {
      const std::string& name = ckpt->tensors_[t].name;
      const auto it = shard_of_tensor.find(name);
      if (it == shard_of_tensor.end())
        fail("{}: shard '{}' holds tensor '{}', which the index's weight_map does not list", path, files[s], name);
      if (it->second != s)
        fail("{}: shard '{}' holds tensor '{}', which the index's weight_map puts in '{}'", path, files[s], name,
             files[it->second]);
    }
  }
  for (const auto& [name, s] : shard_of_tensor)
    if (!ckpt->tensor_index_.count(name))
      fail("{}: weight_map puts tensor '{}' in shard '{}', which does not hold it", path, name, files[s]);
  return ckpt;
}

const PyTorchTensorInfo* PyTorchCheckpoint::find_tensor(const std::string& name) const {
  const auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

std::span<const std::uint8_t> PyTorchCheckpoint::tensor_bytes(const PyTorchTensorInfo& info) const {
  if (!info.contiguous)
    fail(
        "{}: tensor '{}' is not contiguous (size [{}], stride [{}]); kiln reads row-major tensors: save "
        "t.contiguous()",
        shard_paths_[info.shard], info.name, fmt::join(info.size, ", "), fmt::join(info.stride, ", "));
  const std::size_t n = static_cast<std::size_t>(info.n_elements) * info.element_bytes;
  // A contiguous tensor's elements are consecutive from its offset; open() checked they fit.
  return info.storage.subspan(n == 0 ? 0 : static_cast<std::size_t>(info.storage_offset) * info.element_bytes, n);
}

void PyTorchCheckpoint::copy_row_major(const PyTorchTensorInfo& info, std::span<std::uint8_t> out) const {
  std::size_t n_bytes = 0;
  if (__builtin_mul_overflow(static_cast<std::size_t>(info.n_elements), info.element_bytes, &n_bytes) ||
      out.size() != n_bytes)
    fail("{}: tensor '{}': copy into {} bytes, but its {} elements of {} bytes take {}", shard_paths_[info.shard],
         info.name, out.size(), info.n_elements, info.element_bytes, n_bytes);
  if (n_bytes == 0) return;
  // An odometer over the outer dimensions; each step copies one innermost row. open() checked
  // that every element these indices reach lies inside the storage.
  const std::size_t dims = info.size.size();
  const std::size_t eb = info.element_bytes;
  const std::int64_t inner = dims == 0 ? 1 : info.size[dims - 1];
  const std::int64_t inner_stride = dims == 0 ? 0 : info.stride[dims - 1];
  // A dimension of size 1 never steps, and open() does not bound its stride: count it as 0.
  std::vector<std::int64_t> stride(info.stride);
  for (std::size_t d = 0; d < dims; ++d)
    if (info.size[d] == 1) stride[d] = 0;
  std::vector<std::int64_t> index(dims, 0);
  std::int64_t element = info.storage_offset;  // of the current row's first element
  std::uint8_t* dst = out.data();
  while (true) {
    for (std::int64_t i = 0; i < inner; ++i, dst += eb)
      std::memcpy(dst, info.storage.data() + static_cast<std::size_t>(element + i * inner_stride) * eb, eb);
    std::size_t d = dims == 0 ? 0 : dims - 1;  // advance the dimensions outside the innermost
    while (d > 0) {
      --d;
      element += stride[d];
      if (++index[d] < info.size[d]) break;
      element -= stride[d] * info.size[d];
      index[d] = 0;
      if (d == 0) return;
    }
    if (dims <= 1) return;
  }
}

TensorView PyTorchCheckpoint::tensor_view(const PyTorchTensorInfo& info) const {
  const std::string& path = shard_paths_[info.shard];
  if (!info.dtype)
    fail("{}: tensor '{}' is {} (kiln views float32, float16 and bfloat16 tensors)", path, info.name, info.dtype_name);
  if (info.size.size() > 4)
    fail("{}: tensor '{}' has {} dimensions (kiln views at most 4)", path, info.name, info.size.size());
  const std::span<const std::uint8_t> bytes = tensor_bytes(info);
  if (reinterpret_cast<std::uintptr_t>(bytes.data()) % info.element_bytes != 0)
    fail("{}: tensor '{}' starts at an address not aligned to its {}-byte elements (storage not aligned)", path,
         info.name, info.element_bytes);
  std::array<std::int64_t, 4> ne{1, 1, 1, 1};
  for (std::size_t i = 0; i < info.size.size(); ++i) ne[i] = info.size[info.size.size() - 1 - i];
  return TensorView::contiguous(info.name, *info.dtype, ne, static_cast<int>(info.size.size()), bytes.data());
}

}  // namespace kiln
