#include "model/linear.h"

#include "core/error.h"
#include "kernels/matmul.h"

namespace kiln {

void prepare_activations(const TensorView& W, const float* x, std::int64_t M, std::int64_t K, ActivationRows& out,
                         ThreadPool& pool) {
  const kernels::WeightKernels& kern = kernels::weight_kernels(W.dtype);
  out.type = kern.act_type;
  out.rows = M;
  out.k = K;
  out.row_stride = (row_bytes(kern.act_type, K) + 63) / 64 * 64;
  out.data.reserve(out.row_stride * static_cast<std::size_t>(M));
  auto* base = out.data.as<std::uint8_t>();
  auto quantize_row = [&](std::int64_t m, int) { kern.quantize_act(x + m * K, base + m * out.row_stride, K); };
  if (M >= 8) pool.parallel_for(M, quantize_row, 4);
  else for (std::int64_t m = 0; m < M; ++m) quantize_row(m, 0);
}

bool activations_fit(const TensorView& W, const ActivationRows& a) {
  return kernels::weight_kernels(W.dtype).act_type == a.type && a.k == W.ne[0];
}

void linear(const TensorView& W, const ActivationRows& a, float* y, ThreadPool& pool) {
  const kernels::WeightKernels& kern = kernels::weight_kernels(W.dtype);
  KILN_CHECK(a.type == kern.act_type && a.k == W.ne[0], "internal: activations ({} x {}) do not fit {} ({})",
             dtype_name(a.type), a.k, W.name, dtype_name(W.dtype));
  const std::int64_t N = W.ne[1];
  // Chunks of weight rows handed out dynamically: small enough to balance two noisy cores,
  // large enough that each chunk streams tens of kilobytes.
  const std::int64_t chunk = a.rows == 1 ? 64 : 32;
  const std::int64_t n_chunks = (N + chunk - 1) / chunk;
  pool.parallel_for(n_chunks, [&](std::int64_t c, int) {
    const std::int64_t n0 = c * chunk;
    const std::int64_t n1 = n0 + chunk < N ? n0 + chunk : N;
    kern.gemm(a.k, W.data, W.nb[1], a.data.as<std::uint8_t>(), a.row_stride, a.rows, n0, n1, y, N);
  });
}

}  // namespace kiln
