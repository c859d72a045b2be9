#pragma once
// A non-owning view of a stored tensor: its name, element type, shape and bytes. Shapes follow
// ggml's order: ne[0] is the innermost (contiguous) dimension, so a weight matrix of n_out rows
// of n_in elements has ne = {n_in, n_out}. Rows are contiguous; nb[i] is the byte stride of dim i.
#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

#include "core/dtype.h"

namespace kiln {

struct TensorView {
  std::string name;
  DType dtype = DType::F32;
  int n_dims = 0;
  std::array<std::int64_t, 4> ne{1, 1, 1, 1};  // elements per dimension, innermost first
  std::array<std::size_t, 4> nb{0, 0, 0, 0};   // bytes between consecutive indices of each dim
  const void* data = nullptr;

  std::int64_t n_elements() const { return ne[0] * ne[1] * ne[2] * ne[3]; }
  std::int64_t n_rows() const { return ne[1] * ne[2] * ne[3]; }
  std::size_t n_bytes() const { return row_bytes(dtype, ne[0]) * static_cast<std::size_t>(n_rows()); }
  const std::uint8_t* row(std::int64_t i) const { return static_cast<const std::uint8_t*>(data) + i * nb[1]; }

  // A contiguous view with the given shape; nb derived from the dtype.
  static TensorView contiguous(std::string name, DType dtype, std::array<std::int64_t, 4> ne, int n_dims,
                               const void* data) {
    TensorView t;
    t.name = std::move(name);
    t.dtype = dtype;
    t.ne = ne;
    t.n_dims = n_dims;
    t.data = data;
    t.nb[0] = traits(dtype).block_bytes;
    t.nb[1] = row_bytes(dtype, ne[0]);
    t.nb[2] = t.nb[1] * static_cast<std::size_t>(ne[1]);
    t.nb[3] = t.nb[2] * static_cast<std::size_t>(ne[2]);
    return t;
  }
};

}  // namespace kiln
