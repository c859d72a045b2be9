#include "model/linear.h"

#include "core/error.h"
#include "kernels/amx_gemm.h"
#include "kernels/matmul.h"

namespace kiln {

void prepare_activations(const TensorView& W, const float* x, std::int64_t M, std::int64_t K, ActivationRows& out,
                         ThreadPool& pool) {
  out.rows = M;
  out.k = K;
  // f32 weights stay off the bf16 tiles: a user who keeps f32 weights asked for f32 products.
  if (M >= kAmxMinRows && K % 32 == 0 && W.dtype != DType::F32 && kernels::amx_supports(W.dtype)) {
    out.type = DType::BF16;
    out.amx = true;
    out.row_stride = static_cast<std::size_t>(K) * 2;
    out.data.reserve(out.row_stride * static_cast<std::size_t>(M));
    auto* a = out.data.as<std::uint16_t>();
    // Row blocks converted in parallel: large prompts convert megabytes here.
    pool.parallel_for(M, [&](std::int64_t m, int) { kernels::amx_convert_activations(x + m * K, 1, K, a + m * K); }, 8);
    return;
  }
  const kernels::WeightKernels& kern = kernels::weight_kernels(W.dtype);
  out.type = kern.act_type;
  out.amx = false;
  out.row_stride = (row_bytes(kern.act_type, K) + 63) / 64 * 64;
  out.data.reserve(out.row_stride * static_cast<std::size_t>(M));
  auto* base = out.data.as<std::uint8_t>();
  auto quantize_row = [&](std::int64_t m, int) { kern.quantize_act(x + m * K, base + m * out.row_stride, K); };
  if (M >= 8) pool.parallel_for(M, quantize_row, 4);
  else for (std::int64_t m = 0; m < M; ++m) quantize_row(m, 0);
}

bool activations_fit(const TensorView& W, const ActivationRows& a) {
  if (a.k != W.ne[0]) return false;
  if (a.amx) return W.dtype != DType::F32 && kernels::amx_supports(W.dtype);  // K % 32 checked at conversion
  return kernels::weight_kernels(W.dtype).act_type == a.type;
}

namespace {

// Weight rows per chunk of a (non-AMX) matmul, the chunks handed out dynamically. The kernels
// read a chunk as several far-apart row streams (rows n, n + span, ...), so a longer chunk means
// longer sequential streams and fewer prefetch ramp-ups: with 2 threads on the 1.1B model,
// going from fixed 64-row (one activation row) and 32-row chunks to four chunks per thread took
// q4_0 decode from 42.6 to 51.4 tok/s, q8_0 from 26.3 to 29.7, Q4_K_M from 43.4 to 48.8 (f16
// unchanged), and 16 batched q4_0 streams from 173 to 214 tok/s. Eight per thread measured the
// same or 2% slower, sixteen 5-10% slower, two per thread up to 5% slower: four still leave
// dynamic balancing room against a busy core. The floor keeps tiny models' chunks whole.
std::int64_t rows_per_chunk(std::int64_t n_rows, int threads) {
  constexpr std::int64_t kChunksPerThread = 4, kMinRows = 32;
  const std::int64_t rows = (n_rows / (kChunksPerThread * threads) + 7) / 8 * 8;
  return rows > kMinRows ? rows : kMinRows;
}

}  // namespace

void linear(const TensorView& W, const ActivationRows& a, float* y, ThreadPool& pool) {
  const std::int64_t N = W.ne[1];
  if (a.amx) {
    KILN_CHECK(kernels::amx_supports(W.dtype) && a.k == W.ne[0], "internal: AMX activations do not fit {}", W.name);
    // Chunks of 64 weight rows: four 16-row panels decoded to bf16 and reused by every
    // activation row of the batch.
    const std::int64_t chunk = 64;
    const std::int64_t n_chunks = (N + chunk - 1) / chunk;
    pool.parallel_for(n_chunks, [&](std::int64_t c, int) {
      const std::int64_t n0 = c * chunk;
      const std::int64_t n1 = n0 + chunk < N ? n0 + chunk : N;
      kernels::amx_gemm(W.dtype, a.k, W.data, W.nb[1], a.data.as<std::uint16_t>(), static_cast<std::size_t>(a.k),
                        a.rows, n0, n1, y, N);
    });
    return;
  }
  const kernels::WeightKernels& kern = kernels::weight_kernels(W.dtype);
  KILN_CHECK(a.type == kern.act_type && a.k == W.ne[0], "internal: activations ({} x {}) do not fit {} ({})",
             dtype_name(a.type), a.k, W.name, dtype_name(W.dtype));
  const std::int64_t chunk = rows_per_chunk(N, pool.size());
  const std::int64_t n_chunks = (N + chunk - 1) / chunk;
  pool.parallel_for(n_chunks, [&](std::int64_t c, int) {
    const std::int64_t n0 = c * chunk;
    const std::int64_t n1 = n0 + chunk < N ? n0 + chunk : N;
    kern.gemm(a.k, W.data, W.nb[1], a.data.as<std::uint8_t>(), a.row_stride, a.rows, n0, n1, y, N);
  });
}

}  // namespace kiln
