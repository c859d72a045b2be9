#pragma once
// Element types of stored tensors. The numeric values are ggml's type ids, so a GGUF tensor's
// type field converts directly. Block formats store `block_size` elements in `block_bytes`.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace kiln {

enum class DType : std::uint32_t {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q8_1 = 9,
  Q2_K = 10,
  Q3_K = 11,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  Q8_K = 15,
  I8 = 24,
  I16 = 25,
  I32 = 26,
  I64 = 27,
  F64 = 28,
  BF16 = 30,
  // kiln's own affine block types (docs/formats.md): ids far above ggml's range, so that no
  // ggml type added later can collide; llama.cpp refuses a GGUF that uses them.
  A4G64 = 1001,
  A4G128 = 1002,
  A8G32 = 1003,
  A8G64 = 1004,
  A8G128 = 1005,
};

struct DTypeTraits {
  std::string_view name;    // "q4_0", as ggml spells it
  std::int64_t block_size;  // elements per block (1 for plain types)
  std::size_t block_bytes;  // bytes per block
  bool quantized;
};

// Traits of a known type; nullopt for an id kiln does not know (e.g. an IQ type).
std::optional<DTypeTraits> dtype_traits(std::uint32_t ggml_type_id);
const DTypeTraits& traits(DType t);
inline std::string_view dtype_name(DType t) { return traits(t).name; }
// True for kiln's own block types (ids from 1000 on), which only kiln reads.
inline bool is_kiln_only_dtype(DType t) { return static_cast<std::uint32_t>(t) >= 1000; }
// Parses "q4_0", "Q4_0", "f16", ... ; nullopt if unknown.
std::optional<DType> parse_dtype(std::string_view name);
// A display name for any ggml id, known or not ("iq2_xxs", "type 99").
std::string dtype_name_for_id(std::uint32_t ggml_type_id);

// Bytes needed for `n_elements` of type t; n_elements must be a multiple of the block size.
inline std::size_t row_bytes(DType t, std::int64_t n_elements) {
  const DTypeTraits& tr = traits(t);
  return static_cast<std::size_t>(n_elements / tr.block_size) * tr.block_bytes;
}

}  // namespace kiln
