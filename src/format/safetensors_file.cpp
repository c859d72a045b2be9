#include "format/safetensors_file.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <utility>

#include "core/error.h"
#include "format/quoted_name.h"
#include "format/safetensors_json.h"

namespace kiln {
namespace {

struct SafetensorsDType {
  std::string_view name;
  std::size_t size;
  std::optional<DType> kiln;
};

// Every dtype name of the safetensors specification whose elements are whole bytes.
constexpr SafetensorsDType kDTypes[] = {
    {"F64", 8, std::nullopt},     {"F32", 4, DType::F32},       {"F16", 2, DType::F16},       {"BF16", 2, DType::BF16},
    {"F8_E4M3", 1, std::nullopt}, {"F8_E5M2", 1, std::nullopt}, {"F8_E8M0", 1, std::nullopt}, {"I64", 8, std::nullopt},
    {"I32", 4, std::nullopt},     {"I16", 2, std::nullopt},     {"I8", 1, std::nullopt},      {"U64", 8, std::nullopt},
    {"U32", 4, std::nullopt},     {"U16", 2, std::nullopt},     {"U8", 1, std::nullopt},      {"BOOL", 1, std::nullopt},
    {"C64", 8, std::nullopt},
};

const SafetensorsDType* find_dtype(std::string_view name) {
  for (const SafetensorsDType& d : kDTypes)
    if (d.name == name) return &d;
  return nullptr;
}

// Reads data_offsets[i]: a JSON integer >= 0 that fits 64 bits.
std::uint64_t offset_value(const nlohmann::json& v, const std::string& path, const std::string& field, int i) {
  if (!v.is_number_unsigned())
    fail("{}: {} data_offsets[{}] is {} (expected a non-negative integer)", path, field, i, describe_json_value(v));
  return v.get<std::uint64_t>();
}

}  // namespace

std::optional<std::size_t> safetensors_dtype_size(std::string_view dtype_name) {
  const SafetensorsDType* d = find_dtype(dtype_name);
  return d ? std::optional<std::size_t>(d->size) : std::nullopt;
}

std::optional<DType> safetensors_dtype_to_kiln(std::string_view dtype_name) {
  const SafetensorsDType* d = find_dtype(dtype_name);
  return d ? d->kiln : std::nullopt;
}

std::string_view kiln_dtype_to_safetensors(DType dtype) {
  for (const SafetensorsDType& d : kDTypes)
    if (d.kiln == dtype) return d.name;
  fail("safetensors has no dtype for kiln's {} (F32, F16 and BF16 map to it)", dtype_name(dtype));
}

std::vector<std::int64_t> safetensors_shape(const std::array<std::int64_t, 4>& ne, int n_dims) {
  if (n_dims < 1 || n_dims > 4) fail("safetensors shape: n_dims = {} (expected 1..4)", n_dims);
  std::vector<std::int64_t> shape;
  for (int d = n_dims - 1; d >= 0; --d) shape.push_back(ne[d]);
  return shape;
}

std::unique_ptr<SafetensorsFile> SafetensorsFile::open(const std::string& path) {
  std::unique_ptr<SafetensorsFile> file(new SafetensorsFile(MappedFile(path)));
  file->parse();
  return file;
}

void SafetensorsFile::parse() {
  const std::string& p = file_.path();
  const std::uint64_t size = file_.size();
  if (size < 8) fail("{}: not a safetensors file (only {} bytes, the header length alone takes 8)", p, size);
  std::uint64_t header_bytes = 0;
  std::memcpy(&header_bytes, file_.data(), 8);  // little-endian, as kiln's targets are
  if (header_bytes > kMaxHeaderBytes)
    fail("{}: header length {} exceeds the limit of {} bytes (not a safetensors file?)", p, header_bytes,
         kMaxHeaderBytes);
  if (header_bytes > size - 8)
    fail("{}: header length {} runs past the end of the {}-byte file", p, header_bytes, size);
  data_offset_ = 8 + header_bytes;
  const std::uint64_t data_size = size - data_offset_;

  const std::string_view text(reinterpret_cast<const char*>(file_.data()) + 8, static_cast<std::size_t>(header_bytes));
  const nlohmann::json header = parse_safetensors_json(text, p, "header", 3);
  if (!header.is_object()) fail("{}: header is {} (expected a JSON object)", p, describe_json_value(header));

  tensors_.reserve(header.size());
  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") {
      // The reference reader takes null as no metadata.
      if (entry.is_null()) continue;
      if (!entry.is_object())
        fail("{}: __metadata__ is {} (expected an object of strings)", p, describe_json_value(entry));
      for (const auto& [key, value] : entry.items()) {
        if (!value.is_string())
          fail("{}: __metadata__ {} is {} (expected a string)", p, quoted_name(key), describe_json_value(value));
        metadata_.emplace(key, value.get<std::string>());
      }
      continue;
    }
    const std::string field = fmt::format("tensor {}", quoted_name(name));
    if (name.empty()) fail("{}: a tensor has an empty name", p);
    if (!entry.is_object()) fail("{}: {} is {} (expected an object)", p, field, describe_json_value(entry));
    for (const auto& [key, value] : entry.items())
      if (key != "dtype" && key != "shape" && key != "data_offsets")
        fail("{}: {} has unknown field {} (expected dtype, shape, data_offsets)", p, field, quoted_name(key));
    for (const char* key : {"dtype", "shape", "data_offsets"})
      if (!entry.contains(key)) fail("{}: {} has no {}", p, field, key);

    SafetensorsTensorInfo t;
    t.name = name;
    const nlohmann::json& dtype = entry["dtype"];
    if (!dtype.is_string()) fail("{}: {} dtype is {} (expected a string)", p, field, describe_json_value(dtype));
    t.dtype_name = dtype.get<std::string>();
    const SafetensorsDType* d = find_dtype(t.dtype_name);
    if (d == nullptr)
      fail(
          "{}: {} has unknown dtype {} (expected F64, F32, F16, BF16, F8_E4M3, F8_E5M2, F8_E8M0, I64, I32, I16, "
          "I8, U64, U32, U16, U8, BOOL or C64)",
          p, field, quoted_name(t.dtype_name));
    t.dtype = d->kiln;

    const nlohmann::json& shape = entry["shape"];
    if (!shape.is_array()) fail("{}: {} shape is {} (expected an array)", p, field, describe_json_value(shape));
    // The product of the non-zero dimensions must fit int64, so that every partial product a
    // TensorView forms (n_rows, strides) does too, even when another dimension is 0.
    std::int64_t nonzero_product = 1;
    bool has_zero = false;
    for (std::size_t i = 0; i < shape.size(); ++i) {
      const nlohmann::json& dim = shape[i];
      if (!dim.is_number_unsigned())
        fail("{}: {} shape[{}] is {} (expected a non-negative integer)", p, field, i, describe_json_value(dim));
      const std::uint64_t v = dim.get<std::uint64_t>();
      if (v > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
        fail("{}: {} shape[{}] = {} does not fit a signed 64-bit integer", p, field, i, v);
      t.shape.push_back(static_cast<std::int64_t>(v));
      if (v == 0)
        has_zero = true;
      else if (__builtin_mul_overflow(nonzero_product, static_cast<std::int64_t>(v), &nonzero_product))
        fail("{}: {} shape overflows the element count (at shape[{}] = {})", p, field, i, v);
    }
    t.n_elements = has_zero ? 0 : static_cast<std::uint64_t>(nonzero_product);
    if (__builtin_mul_overflow(t.n_elements, static_cast<std::uint64_t>(d->size), &t.n_bytes))
      fail("{}: {} byte size overflows ({} elements of {} bytes)", p, field, t.n_elements, d->size);
    if (t.shape.size() <= 4) {
      t.n_dims = std::max<int>(1, static_cast<int>(t.shape.size()));
      for (std::size_t i = 0; i < t.shape.size(); ++i) t.ne[t.shape.size() - 1 - i] = t.shape[i];
    }

    const nlohmann::json& offsets = entry["data_offsets"];
    if (!offsets.is_array() || offsets.size() != 2)
      fail("{}: {} data_offsets is {} (expected [begin, end])", p, field, describe_json_value(offsets));
    const std::uint64_t begin = offset_value(offsets[0], p, field, 0);
    const std::uint64_t end = offset_value(offsets[1], p, field, 1);
    if (end < begin) fail("{}: {} data_offsets [{}, {}] end before they begin", p, field, begin, end);
    if (end - begin != t.n_bytes)
      fail("{}: {} data_offsets [{}, {}] hold {} bytes, but {} {} elements take {}", p, field, begin, end, end - begin,
           t.n_elements, t.dtype_name, t.n_bytes);
    if (end > data_size)
      fail("{}: {} data_offsets [{}, {}] run past the data section ({} bytes)", p, field, begin, end, data_size);
    t.offset = begin;

    tensors_.push_back(std::move(t));
  }

  // Sorted by offset, the tensors must cover the data section exactly, as the reference reader
  // requires: each starts where the previous one ended, and the last one ends at the file's end.
  // That order (ties, which only empty tensors can make, by name) is also the order tensors() gives.
  std::sort(tensors_.begin(), tensors_.end(), [](const SafetensorsTensorInfo& a, const SafetensorsTensorInfo& b) {
    if (a.offset != b.offset) return a.offset < b.offset;
    if (a.n_bytes != b.n_bytes) return a.n_bytes < b.n_bytes;
    return a.name < b.name;
  });
  std::uint64_t covered = 0;
  for (std::size_t i = 0; i < tensors_.size(); ++i) {
    const SafetensorsTensorInfo& t = tensors_[i];
    if (t.offset < covered) {
      const SafetensorsTensorInfo& prev = tensors_[i - 1];
      fail("{}: tensor {} data_offsets [{}, {}] overlap tensor {} [{}, {}]", p, quoted_name(t.name), t.offset,
           t.offset + t.n_bytes, quoted_name(prev.name), prev.offset, prev.offset + prev.n_bytes);
    }
    if (t.offset > covered)
      fail("{}: tensor {} data_offsets [{}, {}] leave a gap of {} bytes at data offset {} (tensors must be contiguous)",
           p, quoted_name(t.name), t.offset, t.offset + t.n_bytes, t.offset - covered, covered);
    covered = t.offset + t.n_bytes;
  }
  if (covered != data_size)
    fail("{}: the data section has {} bytes, but its tensors cover only {} ({} bytes after the last tensor)", p,
         data_size, covered, data_size - covered);
  for (std::size_t i = 0; i < tensors_.size(); ++i) tensor_index_.emplace(tensors_[i].name, i);
}

const SafetensorsTensorInfo* SafetensorsFile::find_tensor(const std::string& name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

const std::uint8_t* SafetensorsFile::tensor_data(const SafetensorsTensorInfo& info) const {
  return file_.data() + data_offset_ + info.offset;
}

TensorView SafetensorsFile::tensor_view(const SafetensorsTensorInfo& info) const {
  if (!info.dtype)
    fail("{}: tensor {} has dtype {}, which kiln cannot compute with (F32, F16 and BF16 only)", path(),
         quoted_name(info.name), info.dtype_name);
  if (info.n_dims == 0)
    fail("{}: tensor {} has {} dimensions (kiln's tensors have at most 4)", path(), quoted_name(info.name),
         info.shape.size());
  return TensorView::contiguous(info.name, *info.dtype, info.ne, info.n_dims, tensor_data(info));
}

}  // namespace kiln
