#include "optimize/rewrite_pipeline.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <mutex>

#include "core/error.h"
#include "kernels/matmul.h"
#include "kernels/weighted_quants.h"

namespace kiln::optimize {
namespace {

// Output bytes converted per slab: large enough to keep every thread busy, small enough that
// memory stays flat (the whole model is never in memory, converted or not).
constexpr std::size_t kSlabBytes = std::size_t{8} << 20;
// Rows a thread takes at a time within a slab.
constexpr std::int64_t kRowGrain = 8;

// Index of the first non-finite value in x, or -1. Branch-free over the row so it vectorizes.
std::int64_t first_non_finite(const float* x, std::int64_t k) {
  std::uint32_t any = 0;
  for (std::int64_t j = 0; j < k; ++j) {
    std::uint32_t bits;
    std::memcpy(&bits, x + j, 4);
    any |= static_cast<std::uint32_t>((bits & 0x7f800000u) == 0x7f800000u);
  }
  if (any == 0) return -1;
  for (std::int64_t j = 0; j < k; ++j)
    if (!std::isfinite(x[j])) return j;
  return -1;
}

// The input's pages are done with: drop them from this process's mapping (they stay in the page
// cache) so that resident memory does not grow to the whole input model over the run.
void release_pages(const std::uint8_t* data, std::uint64_t n_bytes) {
  const auto page = static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE));
  const auto begin = (reinterpret_cast<std::uintptr_t>(data) + page - 1) / page * page;
  const auto end = (reinterpret_cast<std::uintptr_t>(data) + n_bytes) / page * page;
  if (end > begin) ::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);
}

}  // namespace

RewriteTensor whole_tensor(const SourceTensor& source, DType to) {
  RewriteTensor t;
  t.name = source.name;
  t.source = &source;
  t.to = to;
  t.n_dims = source.n_dims;
  t.ne = source.ne;
  return t;
}

void check_rewrite(const RewriteTensor& t, const std::string& path) {
  const SourceTensor& s = *t.source;
  if (!s.dtype) fail("{}: tensor '{}' has type {}, which kiln cannot read", path, s.name, s.type_name);
  const std::int64_t in_rows = s.ne[1] * s.ne[2] * s.ne[3];
  const std::int64_t in_cols = s.ne[0];
  if (t.rows.empty() ? t.n_rows() != in_rows : static_cast<std::int64_t>(t.rows.size()) != t.n_rows())
    fail("{}: tensor '{}': {} output rows from {} input rows", path, t.name, t.n_rows(),
         t.rows.empty() ? in_rows : static_cast<std::int64_t>(t.rows.size()));
  for (std::int64_t r : t.rows)
    if (r < 0 || r >= in_rows) fail("{}: tensor '{}': row {} is outside its {} rows", path, t.name, r, in_rows);
  if (t.columns.empty() ? t.ne[0] != in_cols : static_cast<std::int64_t>(t.columns.size()) != t.ne[0])
    fail("{}: tensor '{}': {} output columns from {} input columns", path, t.name, t.ne[0], in_cols);
  for (std::int64_t c : t.columns)
    if (c < 0 || c >= in_cols) fail("{}: tensor '{}': column {} is outside its {} columns", path, t.name, c, in_cols);
  if (t.ne[0] % traits(t.to).block_size != 0)
    fail("{}: tensor '{}' has {} columns, not a multiple of {}'s block of {}", path, t.name, t.ne[0],
         dtype_name(t.to), traits(t.to).block_size);
  const std::int64_t n_mat = t.ne[2] * t.ne[3];
  if (!t.importance.empty() && static_cast<std::int64_t>(t.importance.size()) != n_mat * t.ne[0])
    fail("{}: tensor '{}': importance has {} values for {} x {}", path, t.name, t.importance.size(), n_mat, t.ne[0]);
  if (t.gptq != nullptr && t.importance.empty()) fail("{}: tensor '{}': gptq needs importance", path, t.name);
}

void rewrite_tensor(const RewriteTensor& t, const std::string& path, ThreadPool& pool,
                    const std::function<void(const void*, std::size_t)>& out,
                    const std::function<void(std::int64_t)>& on_rows) {
  check_rewrite(t, path);
  const SourceTensor& s = *t.source;
  const DType from = *s.dtype;
  const std::int64_t k_in = s.ne[0];
  const std::int64_t k = t.ne[0];
  const std::int64_t n_rows = t.n_rows();
  const std::size_t in_row = row_bytes(from, k_in);
  const std::size_t out_row = row_bytes(t.to, k);
  const bool copy = from == t.to && t.columns.empty();
  // Weights are checked for NaN/Inf whenever they are floats or are converted.
  const bool check = !copy || !traits(from).quantized;
  const std::int64_t slab_rows = std::clamp<std::int64_t>(static_cast<std::int64_t>(kSlabBytes / out_row), 1, n_rows);
  // Rows of matrix m (of a 3-D expert tensor) take importance row m.
  const std::int64_t rows_per_mat = t.ne[1];
  std::vector<std::uint8_t> slab(static_cast<std::size_t>(slab_rows) * out_row);
  // in_scratch[w] is (k_in) floats, out_scratch[w] (k): worker w's current row.
  std::vector<std::vector<float>> in_scratch(static_cast<std::size_t>(pool.size()),
                                             std::vector<float>(static_cast<std::size_t>(k_in)));
  std::vector<std::vector<float>> out_scratch(t.columns.empty() ? 0 : static_cast<std::size_t>(pool.size()),
                                              std::vector<float>(static_cast<std::size_t>(k)));
  for (std::int64_t r0 = 0; r0 < n_rows; r0 += slab_rows) {
    const std::int64_t rows = std::min(slab_rows, n_rows - r0);
    std::mutex bad_mutex;
    std::int64_t bad_row = -1, bad_col = -1;
    float bad_value = 0;
    pool.parallel_for(
        rows,
        [&](std::int64_t i, int worker) {
          const std::int64_t r = r0 + i;
          const std::int64_t in_r = t.rows.empty() ? r : t.rows[static_cast<std::size_t>(r)];
          const std::uint8_t* src = s.data + static_cast<std::size_t>(in_r) * in_row;
          std::uint8_t* dst = slab.data() + static_cast<std::size_t>(i) * out_row;
          const float* x = nullptr;
          if (check || !copy) {
            if (from == DType::F32) {
              x = reinterpret_cast<const float*>(src);
            } else {
              kernels::dequantize_row(from, src, in_scratch[static_cast<std::size_t>(worker)].data(), k_in);
              x = in_scratch[static_cast<std::size_t>(worker)].data();
            }
            if (!t.columns.empty()) {
              float* y = out_scratch[static_cast<std::size_t>(worker)].data();
              for (std::int64_t c = 0; c < k; ++c) y[c] = x[t.columns[static_cast<std::size_t>(c)]];
              x = y;
            }
          }
          if (check) {
            const std::int64_t col = first_non_finite(x, k);
            if (col >= 0) {
              std::lock_guard<std::mutex> lock(bad_mutex);
              if (bad_row < 0 || in_r < bad_row) {
                bad_row = in_r;
                bad_col = t.columns.empty() ? col : t.columns[static_cast<std::size_t>(col)];
                bad_value = x[col];
              }
              return;
            }
          }
          const float* qw = t.importance.empty() ? nullptr : t.importance.data() + (r / rows_per_mat) * k;
          if (copy)
            std::memcpy(dst, src, out_row);
          else if (t.gptq != nullptr)
            quantize_row_gptq(t.to, x, dst, k, qw, *t.gptq);
          else
            kernels::quantize_row_weighted(t.to, x, dst, k, qw);
        },
        kRowGrain);
    if (bad_row >= 0)
      fail("{}: tensor '{}' row {} has {} at column {} (weights must be finite)", path, s.name, bad_row, bad_value,
           bad_col);
    out(slab.data(), static_cast<std::size_t>(rows) * out_row);
    if (on_rows) on_rows(rows);
  }
  release_pages(s.data, s.n_bytes);
}

}  // namespace kiln::optimize
