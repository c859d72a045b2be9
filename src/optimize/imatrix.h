#pragma once
// The importance matrix ("imatrix") of llama.cpp: for every 2-D weight the forward pass
// multiplies, the sum over calibration tokens of each input channel's squared activation, and
// the number of tokens summed. Quantizers weigh each weight's rounding error by its channel's
// mean squared activation (importance()), so the channels that carry large activations are
// rounded more carefully.
//
// Files: llama.cpp's imatrix GGUF (what llama-imatrix writes today; read and written here):
//   metadata  general.type = "imatrix", imatrix.datasets (array of strings),
//             imatrix.chunk_count (u32), imatrix.chunk_size (u32, tokens per chunk)
//   tensors   <weight>.in_sum2  f32 ne {n_cols, n_mat}   sums of x² per input channel
//             <weight>.counts   f32 ne {1, n_mat}        tokens summed
//   kiln's extension, written only when asked for (llama.cpp ignores tensors of other suffixes):
//             <weight>.in_cov   f32 ne {n_cols, n_cols}  sums of x xᵀ (GPTQ's Hessian)
// and llama.cpp's legacy binary .dat (read and written):
//   i32 n_entries, then per entry: i32 name_len, name, i32 ncall, i32 n_values,
//   f32 values[n_values] (= mean x² · ncall), then optionally i32 chunk_count, i32 len, dataset.
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "model/activation_observer.h"

namespace kiln::optimize {

struct ImatrixEntry {
  std::int64_t n_cols = 0;     // input channels: the weight's ne[0]
  std::vector<float> in_sum2;  // (n_mat, n_cols) sum over tokens of x²
  std::vector<float> counts;   // (n_mat) tokens summed
  std::vector<float> in_cov;   // (n_cols, n_cols) sum over tokens of x xᵀ; empty unless collected
  int n_mat() const { return static_cast<int>(counts.size()); }
};

struct Imatrix {
  std::map<std::string, ImatrixEntry> entries;  // by weight name, "blk.0.attn_q.weight"
  std::vector<std::string> datasets;            // the calibration files
  std::uint32_t chunk_count = 0;
  std::uint32_t chunk_size = 0;  // tokens per chunk
  bool legacy = false;           // read from a legacy .dat file

  const ImatrixEntry* find(const std::string& name) const;
  // The per-column weights llama-quantize gives its quantizers for this weight: in_sum2 / count
  // for each matrix (1 where nothing was counted); (n_mat, n_cols). Empty when there is no entry.
  std::vector<float> importance(const std::string& name) const;
};

// Writes `m` as an imatrix GGUF (temporary file + rename). Entries whose count is zero (the
// weight was never used) are left out, as llama-imatrix does.
void write_imatrix(const Imatrix& m, const std::string& path);
// Writes `m` in the legacy .dat format (no covariance: the format has no place for it).
void write_imatrix_legacy(const Imatrix& m, const std::string& path);
// Reads either format (GGUF by its magic, else legacy .dat). Throws kiln::Error naming the file
// and the entry on anything malformed: wrong types or shapes, a missing counts tensor, negative
// or non-finite values, truncated data.
Imatrix read_imatrix(const std::string& path);

// Collects an imatrix from the forward pass (set it with LlamaModel::set_observer). By default
// only the weights of the blocks (blk.*), like llama-imatrix; with process_output also the
// output matrix (named as the model binds it: token_embd.weight when the output is tied).
class ImatrixCollector : public ActivationObserver {
 public:
  struct Options {
    bool process_output = false;
    bool covariance = false;  // also sum x xᵀ per weight (n_cols² floats each)
  };
  explicit ImatrixCollector(Options options) : options_(options) {}

  void observe(const TensorView& W, const float* x, std::int64_t rows) override;
  // Stacked experts are summed per expert, as llama-imatrix does: in_sum2 (n_expert, n_cols) and
  // counts (n_expert) under the stacked tensor's name (no covariance).
  void observe_expert(const TensorView& stacked, std::int64_t expert, const float* x, std::int64_t rows) override;

  // The sums so far as an imatrix (chunk count, size and datasets are the caller's to fill).
  Imatrix result() const;
  std::int64_t tokens_seen(const std::string& name) const;

 private:
  struct Sums {
    std::int64_t n_cols = 0;
    std::vector<double> sum2;  // (n_cols)
    std::vector<double> cov;   // (n_cols, n_cols), upper triangle accumulated
    std::int64_t count = 0;
    std::vector<std::int64_t> expert_counts;  // (n_expert) rows seen per expert; empty for a plain matrix
  };
  Options options_;
  std::map<std::string, Sums> sums_;
};

}  // namespace kiln::optimize
