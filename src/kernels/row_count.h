#pragma once
// The tile kernels take their number of rows as a template argument, so that their accumulators
// stay in registers; with_row_count turns the run-time count of a last, partial tile into that
// argument. Internal linkage and always inlined (like simd_scalars.h), so every translation unit
// that includes it keeps its own copy, compiled with its own flags.
namespace kiln::kernels {
namespace {

// A row count as a type: the argument with_row_count passes.
template <int N>
struct RowCount {
  static constexpr int value = N;
};

// Calls f(RowCount<rows>{}) for rows in [1, Max] and f(RowCount<Max>{}) above; nothing below 1.
template <int Max, typename F>
inline __attribute__((always_inline)) void with_row_count(long rows, F&& f) {
  if constexpr (Max > 1) {
    if (rows < Max) return with_row_count<Max - 1>(rows, f);
  } else {
    if (rows < 1) return;
  }
  f(RowCount<Max>{});
}

}  // namespace
}  // namespace kiln::kernels
