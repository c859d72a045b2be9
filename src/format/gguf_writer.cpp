#include "format/gguf_writer.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <memory>
#include <string_view>

#include "core/error.h"
#include "format/atomic_output_file.h"

namespace kiln {
namespace {

constexpr std::uint32_t kGgufMagic = 0x46554747;  // "GGUF" as a little-endian u32
constexpr std::uint64_t kDefaultAlignment = 32;
// The reader refuses deeper nesting; a file this writer makes must read back.
constexpr int kMaxArrayDepth = 8;

std::uint64_t align_up(std::uint64_t n, std::uint64_t alignment) { return (n + alignment - 1) / alignment * alignment; }

// Appends little-endian encodings to a byte string (the header is built in memory: it is at most
// a few MB, the vocabulary, while tensor data is streamed).
class HeaderBuilder {
 public:
  template <typename T>
  void put(T v) {
    char bytes[sizeof(T)];
    std::memcpy(bytes, &v, sizeof(T));
    out_.append(bytes, sizeof(T));
  }
  void put_string(std::string_view s) {
    put<std::uint64_t>(s.size());
    out_.append(s.data(), s.size());
  }
  std::string& bytes() { return out_; }

 private:
  std::string out_;
};

// The range an integer type holds, as int64 (U64 is handled by the caller).
std::pair<std::int64_t, std::int64_t> integer_range(GgufType t) {
  switch (t) {
    case GgufType::U8:
      return {0, 0xff};
    case GgufType::I8:
      return {-128, 127};
    case GgufType::U16:
      return {0, 0xffff};
    case GgufType::I16:
      return {-32768, 32767};
    case GgufType::U32:
      return {0, 0xffffffffLL};
    case GgufType::I32:
      return {std::numeric_limits<std::int32_t>::min(), std::numeric_limits<std::int32_t>::max()};
    default:
      return {std::numeric_limits<std::int64_t>::min(), std::numeric_limits<std::int64_t>::max()};
  }
}

// Writes one integer of type t holding `v` (already range-checked), truncated to its width.
void put_integer(HeaderBuilder& out, GgufType t, std::int64_t v) {
  switch (t) {
    case GgufType::U8:
    case GgufType::I8:
      out.put<std::uint8_t>(static_cast<std::uint8_t>(v));
      break;
    case GgufType::U16:
    case GgufType::I16:
      out.put<std::uint16_t>(static_cast<std::uint16_t>(v));
      break;
    case GgufType::U32:
    case GgufType::I32:
      out.put<std::uint32_t>(static_cast<std::uint32_t>(v));
      break;
    default:
      out.put<std::uint64_t>(static_cast<std::uint64_t>(v));
  }
}

void check_in_range(const std::string& key, GgufType t, std::int64_t v) {
  const auto [lo, hi] = integer_range(t);
  if (v < lo || v > hi) fail("metadata '{}': value {} does not fit {}", key, v, gguf_type_name(t));
}

void put_array(HeaderBuilder& out, const std::string& key, const GgufArray& a, int depth);

void put_value(HeaderBuilder& out, const std::string& key, const GgufValue& value, int depth) {
  const GgufType t = value.type;
  if (static_cast<std::uint32_t>(t) > static_cast<std::uint32_t>(GgufType::F64))
    fail("metadata '{}': unknown value type {}", key, static_cast<std::uint32_t>(t));
  auto wrong = [&](std::string_view held) {
    fail("metadata '{}': type {} but the value holds {}", key, gguf_type_name(t), held);
  };
  const std::string_view held = std::holds_alternative<std::int64_t>(value.v)    ? "an integer"
                                : std::holds_alternative<std::uint64_t>(value.v) ? "an unsigned integer"
                                : std::holds_alternative<double>(value.v)        ? "a float"
                                : std::holds_alternative<bool>(value.v)          ? "a bool"
                                : std::holds_alternative<std::string>(value.v)   ? "a string"
                                                                                 : "an array";
  if (is_integer_type(t)) {
    if (const auto* u = std::get_if<std::uint64_t>(&value.v)) {
      if (t != GgufType::U64) fail("metadata '{}': value {} does not fit {}", key, *u, gguf_type_name(t));
      out.put<std::uint64_t>(*u);
      return;
    }
    const auto* i = std::get_if<std::int64_t>(&value.v);
    if (i == nullptr) wrong(held);
    if (t == GgufType::U64 && *i < 0) fail("metadata '{}': value {} does not fit u64", key, *i);
    check_in_range(key, t, *i);
    put_integer(out, t, *i);
    return;
  }
  switch (t) {
    case GgufType::F32:
    case GgufType::F64: {
      const auto* d = std::get_if<double>(&value.v);
      if (d == nullptr) wrong(held);
      if (t == GgufType::F32)
        out.put<float>(static_cast<float>(*d));
      else
        out.put<double>(*d);
      return;
    }
    case GgufType::Bool: {
      const auto* b = std::get_if<bool>(&value.v);
      if (b == nullptr) wrong(held);
      out.put<std::uint8_t>(*b ? 1 : 0);
      return;
    }
    case GgufType::String: {
      const auto* s = std::get_if<std::string>(&value.v);
      if (s == nullptr) wrong(held);
      out.put_string(*s);
      return;
    }
    default: {
      const GgufArray* a = value.as_array();
      if (a == nullptr) wrong(held);
      put_array(out, key, *a, depth);
    }
  }
}

void put_array(HeaderBuilder& out, const std::string& key, const GgufArray& a, int depth) {
  if (depth >= kMaxArrayDepth) fail("metadata '{}': arrays nest deeper than {} levels", key, kMaxArrayDepth);
  const GgufType et = a.elem_type;
  if (static_cast<std::uint32_t>(et) > static_cast<std::uint32_t>(GgufType::F64))
    fail("metadata '{}': unknown array element type {}", key, static_cast<std::uint32_t>(et));
  // Exactly the vector that elem_type selects may hold elements.
  const bool ints = is_integer_type(et) || et == GgufType::Bool;
  const bool floats = et == GgufType::F32 || et == GgufType::F64;
  if ((!ints && !a.ints.empty()) || (!floats && !a.floats.empty()) ||
      (et != GgufType::String && !a.strings.empty()) || (et != GgufType::Array && !a.arrays.empty()))
    fail("metadata '{}': array of {} holds elements of another type", key, gguf_type_name(et));
  out.put<std::uint32_t>(static_cast<std::uint32_t>(et));
  out.put<std::uint64_t>(a.size());
  if (ints) {
    for (std::int64_t v : a.ints) {
      if (et == GgufType::Bool) {
        if (v != 0 && v != 1) fail("metadata '{}': bool array element {} (expected 0 or 1)", key, v);
      } else if (et != GgufType::U64) {  // u64 elements are held as their bits
        check_in_range(key, et, v);
      }
      put_integer(out, et == GgufType::Bool ? GgufType::U8 : et, v);
    }
  } else if (floats) {
    for (double v : a.floats) {
      if (et == GgufType::F32)
        out.put<float>(static_cast<float>(v));
      else
        out.put<double>(v);
    }
  } else if (et == GgufType::String) {
    for (const std::string& s : a.strings) out.put_string(s);
  } else {
    for (const GgufValue& inner : a.arrays) {
      const GgufArray* ia = inner.as_array();
      if (inner.type != GgufType::Array || ia == nullptr)
        fail("metadata '{}': an element of an array of arrays is not an array", key);
      put_array(out, key, *ia, depth + 1);
    }
  }
}

// Counts a producer's bytes against the tensor's size.

}  // namespace

GgufWriter::GgufWriter(std::uint32_t version) : version_(version) {
  if (version != 2 && version != 3) fail("GGUF writer: version {} is not supported (expected 2 or 3)", version);
}

void GgufWriter::add_metadata(std::string key, GgufValue value) {
  if (key.empty()) fail("GGUF writer: metadata key is empty");
  if (find_metadata(key) != nullptr) fail("GGUF writer: metadata '{}' is already set (duplicate key)", key);
  metadata_.emplace_back(std::move(key), std::move(value));
}

void GgufWriter::set_metadata(const std::string& key, GgufValue value) {
  for (auto& [k, v] : metadata_)
    if (k == key) {
      v = std::move(value);
      return;
    }
  add_metadata(key, std::move(value));
}

bool GgufWriter::remove_metadata(const std::string& key) {
  auto it = std::find_if(metadata_.begin(), metadata_.end(), [&](const auto& kv) { return kv.first == key; });
  if (it == metadata_.end()) return false;
  metadata_.erase(it);
  return true;
}

const GgufValue* GgufWriter::find_metadata(const std::string& key) const {
  for (const auto& [k, v] : metadata_)
    if (k == key) return &v;
  return nullptr;
}

void GgufWriter::add_tensor(GgufTensorSpec spec, GgufTensorProducer data) {
  const std::string& name = spec.name;
  if (name.empty()) fail("GGUF writer: tensor name is empty");
  for (const Tensor& t : tensors_)
    if (t.spec.name == name) fail("GGUF writer: tensor '{}' is added twice", name);
  if (spec.n_dims < 1 || spec.n_dims > 4) fail("GGUF writer: tensor '{}' n_dims = {} (expected 1..4)", name, spec.n_dims);
  std::int64_t n_elements = 1;
  for (int d = 0; d < 4; ++d) {
    const std::int64_t ne = spec.ne[d];
    if (d >= spec.n_dims && ne != 1)
      fail("GGUF writer: tensor '{}' ne[{}] = {} beyond its {} dimensions (expected 1)", name, d, ne, spec.n_dims);
    if (ne <= 0) fail("GGUF writer: tensor '{}' ne[{}] = {} (expected a positive dimension)", name, d, ne);
    if (__builtin_mul_overflow(n_elements, ne, &n_elements))
      fail("GGUF writer: tensor '{}' shape overflows the element count", name);
  }
  if (std::optional<DTypeTraits> tr = dtype_traits(spec.ggml_type)) {
    if (spec.ne[0] % tr->block_size != 0)
      fail("GGUF writer: tensor '{}' ne[0] = {} is not a multiple of {}'s block size {}", name, spec.ne[0], tr->name,
           tr->block_size);
    std::uint64_t bytes = 0;
    if (__builtin_mul_overflow(static_cast<std::uint64_t>(n_elements / tr->block_size), tr->block_bytes, &bytes))
      fail("GGUF writer: tensor '{}' byte size overflows", name);
    if (spec.n_bytes != 0 && spec.n_bytes != bytes)
      fail("GGUF writer: tensor '{}' is given {} bytes but {} {} elements take {}", name, spec.n_bytes, n_elements,
           tr->name, bytes);
    spec.n_bytes = bytes;
  } else if (spec.n_bytes == 0) {
    fail("GGUF writer: tensor '{}' has type {}, whose size kiln does not know (give n_bytes)", name,
         dtype_name_for_id(spec.ggml_type));
  }
  if (!data) fail("GGUF writer: tensor '{}' has no data producer", name);
  tensors_.push_back({std::move(spec), std::move(data)});
}

std::uint64_t GgufWriter::alignment() const {
  const GgufValue* a = find_metadata("general.alignment");
  if (a == nullptr) return kDefaultAlignment;
  const std::optional<std::int64_t> v = is_integer_type(a->type) ? a->as_int() : std::nullopt;
  if (!v) fail("GGUF writer: metadata 'general.alignment' has type {} (expected an integer, u32)", gguf_type_name(a->type));
  if (*v <= 0 || (*v & (*v - 1)) != 0)
    fail("GGUF writer: metadata 'general.alignment' = {} is not a nonzero power of two", *v);
  return static_cast<std::uint64_t>(*v);
}

void GgufWriter::write(const std::string& path) const {
  const std::uint64_t align = alignment();

  // Offsets first: in the order tensors were added, each after the previous one's aligned end
  // unless given. Data is then written in offset order, which must leave no overlap.
  std::vector<std::uint64_t> offsets(tensors_.size());
  std::uint64_t cursor = 0;
  for (std::size_t i = 0; i < tensors_.size(); ++i) {
    const GgufTensorSpec& s = tensors_[i].spec;
    const std::uint64_t off = s.offset.value_or(cursor);
    if (off % align != 0)
      fail("GGUF writer: tensor '{}' offset {} is not a multiple of the alignment {}", s.name, off, align);
    offsets[i] = off;
    if (__builtin_add_overflow(off, s.n_bytes, &cursor)) fail("GGUF writer: tensor '{}' end overflows", s.name);
    cursor = align_up(cursor, align);
  }
  std::vector<std::size_t> order(tensors_.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return offsets[a] < offsets[b]; });
  for (std::size_t k = 1; k < order.size(); ++k) {
    const std::size_t prev = order[k - 1], cur = order[k];
    if (offsets[cur] < offsets[prev] + tensors_[prev].spec.n_bytes)
      fail("GGUF writer: tensor '{}' at offset {} overlaps tensor '{}' (offset {}, {} bytes)", tensors_[cur].spec.name,
           offsets[cur], tensors_[prev].spec.name, offsets[prev], tensors_[prev].spec.n_bytes);
  }

  HeaderBuilder header;
  header.put<std::uint32_t>(kGgufMagic);
  header.put<std::uint32_t>(version_);
  header.put<std::uint64_t>(tensors_.size());
  header.put<std::uint64_t>(metadata_.size());
  for (const auto& [key, value] : metadata_) {
    header.put_string(key);
    header.put<std::uint32_t>(static_cast<std::uint32_t>(value.type));
    put_value(header, key, value, 0);
  }
  for (std::size_t i = 0; i < tensors_.size(); ++i) {
    const GgufTensorSpec& s = tensors_[i].spec;
    header.put_string(s.name);
    header.put<std::uint32_t>(static_cast<std::uint32_t>(s.n_dims));
    for (int d = 0; d < s.n_dims; ++d) header.put<std::uint64_t>(static_cast<std::uint64_t>(s.ne[d]));
    header.put<std::uint32_t>(s.ggml_type);
    header.put<std::uint64_t>(offsets[i]);
  }

  AtomicOutputFile out(path);
  out.write(header.bytes().data(), header.bytes().size());
  // ggml pads the header even when no tensor follows; a file without tensors may also end here.
  if (!tensors_.empty() || pad_end_) out.zeros(align_up(out.written(), align) - out.written());
  const std::uint64_t data_start = out.written();
  for (std::size_t k = 0; k < order.size(); ++k) {
    const Tensor& t = tensors_[order[k]];
    out.zeros(data_start + offsets[order[k]] - out.written());
    BoundedTensorSink sink(out, "GGUF writer", t.spec.name, t.spec.n_bytes);
    t.data(sink);
    if (sink.done() != t.spec.n_bytes)
      fail("tensor '{}': data producer wrote {} of the tensor's {} bytes", t.spec.name, sink.done(), t.spec.n_bytes);
    const bool last = k + 1 == order.size();
    if (!last || pad_end_) out.zeros(align_up(out.written() - data_start, align) - (out.written() - data_start));
  }
  out.commit();
}

void copy_gguf_into(const GgufFile& file, GgufWriter& writer) {
  writer = GgufWriter(file.version());
  for (const auto& [key, value] : file.metadata()) writer.add_metadata(key, value);
  std::uint64_t end = 0;  // end of the last tensor's bytes in the data section
  for (const GgufTensorInfo& info : file.tensors()) {
    if (info.n_bytes == 0)
      fail("{}: tensor '{}' has type {}, whose size kiln does not know: cannot copy it", file.path(), info.name,
           dtype_name_for_id(info.ggml_type));
    GgufTensorSpec spec;
    spec.name = info.name;
    spec.ggml_type = info.ggml_type;
    spec.n_dims = info.n_dims;
    spec.ne = info.ne;
    spec.n_bytes = info.n_bytes;
    spec.offset = info.offset;
    end = std::max(end, info.offset + info.n_bytes);
    const std::uint8_t* src = file.mapped_file().data() + file.data_offset() + info.offset;
    const std::uint64_t n = info.n_bytes;
    writer.add_tensor(std::move(spec), [src, n](GgufDataSink& out) { out.write(src, static_cast<std::size_t>(n)); });
  }
  // Some writers stop right after the last tensor (or, without tensors, after the metadata).
  const std::uint64_t data_end = file.data_offset() + end;
  writer.set_pad_end(file.file_size() != data_end || data_end % file.alignment() == 0);
}

}  // namespace kiln
