#include "format/gguf_file.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <limits>
#include <string_view>
#include <utility>

#include "core/error.h"
#include "format/quoted_name.h"

namespace kiln {
namespace {

constexpr std::uint32_t kGgufMagic = 0x46554747;  // "GGUF" read as a little-endian u32
constexpr std::uint64_t kDefaultAlignment = 32;
// Nested arrays recurse; a corrupt file of nothing but array headers must not exhaust the stack.
constexpr int kMaxArrayDepth = 8;
// The smallest encodings, used to bound counts by the bytes left before allocating anything.
constexpr std::uint64_t kMinStringBytes = 8;                          // u64 length, empty string
constexpr std::uint64_t kMinArrayBytes = 4 + 8;                       // element type, count
constexpr std::uint64_t kMinKvBytes = 8 + 1 + 4 + 1;                  // key (1 char), type, 1-byte value
constexpr std::uint64_t kMinTensorInfoBytes = 8 + 1 + 4 + 8 + 4 + 8;  // name, n_dims, ne[0], type, offset

// Block geometry of ggml types that kiln does not compute with, so that their tensors' byte
// extents can still be checked for bounds and overlap. Values as in ggml's ggml-common.h.
struct ForeignBlock {
  std::uint32_t id;
  std::int64_t block_size;
  std::uint64_t block_bytes;
};
constexpr std::array<ForeignBlock, 12> kForeignBlocks = {{
    {16, 256, 66},   // iq2_xxs
    {17, 256, 74},   // iq2_xs
    {18, 256, 98},   // iq3_xxs
    {19, 256, 50},   // iq1_s
    {20, 32, 18},    // iq4_nl
    {21, 256, 110},  // iq3_s
    {22, 256, 82},   // iq2_s
    {23, 256, 136},  // iq4_xs
    {29, 256, 56},   // iq1_m
    {34, 256, 54},   // tq1_0
    {35, 256, 66},   // tq2_0
    {39, 32, 17},    // mxfp4
}};

std::optional<ForeignBlock> block_geometry(std::uint32_t ggml_type) {
  if (auto t = dtype_traits(ggml_type)) return ForeignBlock{ggml_type, t->block_size, t->block_bytes};
  for (const ForeignBlock& b : kForeignBlocks)
    if (b.id == ggml_type) return b;
  return std::nullopt;
}

// Bytes of one scalar of a fixed-size type; 0 for string and array.
std::uint64_t scalar_bytes(GgufType t) {
  switch (t) {
    case GgufType::U8:
    case GgufType::I8:
    case GgufType::Bool:
      return 1;
    case GgufType::U16:
    case GgufType::I16:
      return 2;
    case GgufType::U32:
    case GgufType::I32:
    case GgufType::F32:
      return 4;
    case GgufType::U64:
    case GgufType::I64:
    case GgufType::F64:
      return 8;
    default:
      return 0;
  }
}

// A bounds-checked cursor over the mapped bytes. Every read names the field it is reading so
// that a truncated file reports where it ends.
class Cursor {
 public:
  Cursor(const std::uint8_t* data, std::uint64_t size, const std::string& path)
      : data_(data), size_(size), path_(path) {}

  std::uint64_t offset() const { return pos_; }
  std::uint64_t remaining() const { return size_ - pos_; }
  const std::string& path() const { return path_; }

  void need(std::uint64_t n, std::string_view field) const {
    if (n > remaining())
      fail("{}: {} is truncated at offset {} (needs {} bytes, {} left)", path_, field, pos_, n, remaining());
  }

  template <typename T>
  T read(std::string_view field) {
    need(sizeof(T), field);
    T v;
    std::memcpy(&v, data_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }

  std::string read_string(std::string_view field) {
    const auto length = read<std::uint64_t>(field);
    need(length, field);
    std::string s(reinterpret_cast<const char*>(data_ + pos_), static_cast<std::size_t>(length));
    pos_ += length;
    return s;
  }

  // Reads an element count and rejects it when even the smallest encoding of that many
  // elements would not fit in the rest of the file, before anything is allocated for it.
  std::uint64_t read_count(std::string_view field, std::uint64_t min_element_bytes) {
    const auto n = read<std::uint64_t>(field);
    if (n > remaining() / min_element_bytes)
      fail("{}: {} = {} cannot fit in the {} bytes left (at least {} bytes each)", path_, field, n, remaining(),
           min_element_bytes);
    return n;
  }

 private:
  const std::uint8_t* data_;
  std::uint64_t size_;
  std::uint64_t pos_ = 0;
  const std::string& path_;
};

GgufType read_type(Cursor& in, std::string_view field) {
  const auto raw = in.read<std::uint32_t>(field);
  if (raw > static_cast<std::uint32_t>(GgufType::F64))
    fail("{}: {} has unknown value type {} (expected 0..12)", in.path(), field, raw);
  return static_cast<GgufType>(raw);
}

// Reads one integer of type t, sign- or zero-extended into 64 bits.
std::uint64_t read_integer_bits(Cursor& in, GgufType t, std::string_view field) {
  switch (t) {
    case GgufType::U8:
      return in.read<std::uint8_t>(field);
    case GgufType::I8:
      return static_cast<std::uint64_t>(static_cast<std::int64_t>(in.read<std::int8_t>(field)));
    case GgufType::U16:
      return in.read<std::uint16_t>(field);
    case GgufType::I16:
      return static_cast<std::uint64_t>(static_cast<std::int64_t>(in.read<std::int16_t>(field)));
    case GgufType::U32:
      return in.read<std::uint32_t>(field);
    case GgufType::I32:
      return static_cast<std::uint64_t>(static_cast<std::int64_t>(in.read<std::int32_t>(field)));
    case GgufType::U64:
      return in.read<std::uint64_t>(field);
    case GgufType::I64:
      return in.read<std::uint64_t>(field);
    default:
      fail("internal: {} is not an integer type", gguf_type_name(t));
  }
}

bool read_bool(Cursor& in, std::string_view field) {
  const auto b = in.read<std::uint8_t>(field);
  if (b > 1) fail("{}: {} is a bool stored as {} (expected 0 or 1)", in.path(), field, b);
  return b == 1;
}

GgufValue read_value(Cursor& in, GgufType type, std::string_view field, int depth);

std::shared_ptr<const GgufArray> read_array(Cursor& in, std::string_view field, int depth) {
  if (depth >= kMaxArrayDepth) fail("{}: {} nests arrays deeper than {} levels", in.path(), field, kMaxArrayDepth);
  auto array = std::make_shared<GgufArray>();
  array->elem_type = read_type(in, field);
  const GgufType et = array->elem_type;
  const std::uint64_t min_bytes = et == GgufType::String  ? kMinStringBytes
                                  : et == GgufType::Array ? kMinArrayBytes
                                                          : scalar_bytes(et);
  const std::uint64_t n = in.read_count(field, min_bytes);
  if (is_integer_type(et) || et == GgufType::Bool) {
    array->ints.reserve(n);
    for (std::uint64_t i = 0; i < n; ++i)
      array->ints.push_back(et == GgufType::Bool ? read_bool(in, field)
                                                 : static_cast<std::int64_t>(read_integer_bits(in, et, field)));
  } else if (et == GgufType::F32 || et == GgufType::F64) {
    array->floats.reserve(n);
    for (std::uint64_t i = 0; i < n; ++i)
      array->floats.push_back(et == GgufType::F32 ? in.read<float>(field) : in.read<double>(field));
  } else if (et == GgufType::String) {
    array->strings.reserve(n);
    for (std::uint64_t i = 0; i < n; ++i) array->strings.push_back(in.read_string(field));
  } else {
    array->arrays.reserve(n);
    for (std::uint64_t i = 0; i < n; ++i) array->arrays.push_back(read_value(in, GgufType::Array, field, depth + 1));
  }
  return array;
}

GgufValue read_value(Cursor& in, GgufType type, std::string_view field, int depth) {
  GgufValue value;
  value.type = type;
  switch (type) {
    case GgufType::F32:
      value.v = static_cast<double>(in.read<float>(field));
      break;
    case GgufType::F64:
      value.v = in.read<double>(field);
      break;
    case GgufType::Bool:
      value.v = read_bool(in, field);
      break;
    case GgufType::String:
      value.v = in.read_string(field);
      break;
    case GgufType::Array:
      value.v = read_array(in, field, depth);
      break;
    default: {
      const std::uint64_t bits = read_integer_bits(in, type, field);
      if (type == GgufType::U64 && bits > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
        value.v = bits;
      else
        value.v = static_cast<std::int64_t>(bits);
    }
  }
  return value;
}

}  // namespace

std::unique_ptr<GgufFile> GgufFile::open(const std::string& path) {
  std::unique_ptr<GgufFile> file(new GgufFile(MappedFile(path)));
  file->parse();
  return file;
}

void GgufFile::parse() {
  const std::string& p = file_.path();
  Cursor in(file_.data(), file_.size(), p);

  // Header.
  if (in.remaining() < 4) fail("{}: not a GGUF file (magic: file is only {} bytes)", p, in.remaining());
  const auto magic = in.read<std::uint32_t>("magic");
  if (magic != kGgufMagic)
    fail("{}: not a GGUF file (magic 0x{:08x}, expected 0x{:08x} \"GGUF\")", p, magic, kGgufMagic);
  version_ = in.read<std::uint32_t>("version");
  if (version_ == 0x02000000u || version_ == 0x03000000u)
    fail("{}: version is big-endian ({}); only little-endian GGUF is supported", p, __builtin_bswap32(version_));
  if (version_ != 2 && version_ != 3) fail("{}: version {} is not supported (expected 2 or 3)", p, version_);
  const auto n_tensors = in.read<std::uint64_t>("n_tensors");
  const std::uint64_t n_kv = in.read_count("n_kv", kMinKvBytes);

  // Metadata.
  entries_.reserve(n_kv);
  for (std::uint64_t i = 0; i < n_kv; ++i) {
    const std::string key_field = fmt::format("metadata #{} key", i);
    std::string key = in.read_string(key_field);
    if (key.empty()) fail("{}: {} is empty", p, key_field);
    const std::string field = fmt::format("metadata {}", quoted_name(key));
    if (find(key) != nullptr) fail("{}: {} appears twice (duplicate key)", p, field);
    const GgufType type = read_type(in, field + " type");
    GgufValue value = read_value(in, type, field + " value", 0);
    add(std::move(key), std::move(value));
  }

  if (const GgufValue* a = find("general.alignment")) {
    const std::optional<std::int64_t> v = is_integer_type(a->type) ? a->as_int() : std::nullopt;
    if (!v)
      fail("{}: metadata 'general.alignment' has type {} (expected an integer, u32)", p, value_type_description(*a));
    if (*v <= 0 || (*v & (*v - 1)) != 0)
      fail("{}: metadata 'general.alignment' = {} is not a nonzero power of two", p, *v);
    alignment_ = static_cast<std::uint64_t>(*v);
  } else {
    alignment_ = kDefaultAlignment;
  }

  // Tensor infos. The data section's size is not known until they are read, so offsets and
  // sizes are checked against it afterwards.
  if (n_tensors > in.remaining() / kMinTensorInfoBytes)
    fail("{}: n_tensors = {} cannot fit in the {} bytes left after the metadata (at least {} bytes each)", p, n_tensors,
         in.remaining(), kMinTensorInfoBytes);
  tensors_.reserve(n_tensors);
  for (std::uint64_t i = 0; i < n_tensors; ++i) {
    GgufTensorInfo t;
    t.name = in.read_string(fmt::format("tensor #{} name", i));
    if (t.name.empty()) fail("{}: tensor #{} name is empty", p, i);
    const std::string field = fmt::format("tensor {}", quoted_name(t.name));
    if (tensor_index_.count(t.name)) fail("{}: {} appears twice (duplicate tensor name)", p, field);
    const auto n_dims = in.read<std::uint32_t>(field + " n_dims");
    if (n_dims < 1 || n_dims > 4) fail("{}: {} n_dims = {} (expected 1..4)", p, field, n_dims);
    t.n_dims = static_cast<int>(n_dims);
    std::int64_t n_elements = 1;
    for (std::uint32_t d = 0; d < n_dims; ++d) {
      const auto ne = in.read<std::uint64_t>(field + " ne");
      if (ne == 0 || ne > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
        fail("{}: {} ne[{}] = {} (expected a positive dimension)", p, field, d, ne);
      t.ne[d] = static_cast<std::int64_t>(ne);
      if (__builtin_mul_overflow(n_elements, t.ne[d], &n_elements))
        fail("{}: {} shape overflows the element count (ne[{}] = {})", p, field, d, ne);
    }
    t.ggml_type = in.read<std::uint32_t>(field + " type");
    if (dtype_traits(t.ggml_type)) t.dtype = static_cast<DType>(t.ggml_type);
    t.offset = in.read<std::uint64_t>(field + " offset");
    if (t.offset % alignment_ != 0)
      fail("{}: {} offset {} is not a multiple of the alignment {}", p, field, t.offset, alignment_);
    if (std::optional<ForeignBlock> block = block_geometry(t.ggml_type)) {
      if (t.ne[0] % block->block_size != 0)
        fail("{}: {} ne[0] = {} is not a multiple of {}'s block size {}", p, field, t.ne[0],
             dtype_name_for_id(t.ggml_type), block->block_size);
      const std::uint64_t blocks = static_cast<std::uint64_t>(n_elements / block->block_size);
      if (__builtin_mul_overflow(blocks, block->block_bytes, &t.n_bytes))
        fail("{}: {} byte size overflows ({} blocks of {} bytes)", p, field, blocks, block->block_bytes);
    }
    tensor_index_.emplace(t.name, tensors_.size());
    tensors_.push_back(std::move(t));
  }

  // The data section starts at the next multiple of the alignment.
  const std::uint64_t end_of_infos = in.offset();
  const std::uint64_t padding = (alignment_ - end_of_infos % alignment_) % alignment_;
  if (__builtin_add_overflow(end_of_infos, padding, &data_offset_))
    fail("{}: data section offset overflows (alignment {})", p, alignment_);
  if (data_offset_ > file_.size()) {
    // A file without tensors may end right after its metadata, unpadded.
    if (!tensors_.empty())
      fail("{}: data section starts at offset {}, past the end of the {}-byte file", p, data_offset_, file_.size());
    data_offset_ = file_.size();
  }
  const std::uint64_t data_size = file_.size() - data_offset_;

  // Every tensor lies inside the data section, and no two share bytes.
  std::vector<const GgufTensorInfo*> by_offset;
  by_offset.reserve(tensors_.size());
  for (const GgufTensorInfo& t : tensors_) {
    // A tensor whose type's size kiln does not know must at least start inside the section.
    if (t.offset > data_size || t.n_bytes > data_size - t.offset || (t.n_bytes == 0 && t.offset >= data_size))
      fail("{}: tensor {} offset {} + {} bytes runs past the data section ({} bytes)", p, quoted_name(t.name), t.offset,
           t.n_bytes, data_size);
    by_offset.push_back(&t);
  }
  std::sort(by_offset.begin(), by_offset.end(),
            [](const GgufTensorInfo* a, const GgufTensorInfo* b) { return a->offset < b->offset; });
  for (std::size_t i = 1; i < by_offset.size(); ++i) {
    const GgufTensorInfo& prev = *by_offset[i - 1];
    const GgufTensorInfo& cur = *by_offset[i];
    // Zero-byte extents (types of unknown size) can only be checked for distinct offsets.
    if (cur.offset < prev.offset + prev.n_bytes || cur.offset == prev.offset)
      fail("{}: tensor {} offset {} overlaps tensor {} (offset {}, {} bytes)", p, quoted_name(cur.name), cur.offset,
           quoted_name(prev.name), prev.offset, prev.n_bytes);
  }
}

const GgufTensorInfo* GgufFile::find_tensor(const std::string& name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

TensorView GgufFile::tensor_view(const GgufTensorInfo& info) const {
  if (!info.dtype)
    fail("{}: tensor {} has type {} (ggml id {}), which kiln cannot read", path(), quoted_name(info.name),
         dtype_name_for_id(info.ggml_type), info.ggml_type);
  return TensorView::contiguous(info.name, *info.dtype, info.ne, info.n_dims,
                                file_.data() + data_offset_ + info.offset);
}

}  // namespace kiln
