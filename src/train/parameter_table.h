#pragma once
// Where each trainable tensor of a Llama lives in training's contiguous buffers. Parameters,
// their gradients and both AdamW moments are four buffers of the same layout, so that one
// all-reduce, one optimizer loop and one checkpoint write cover every tensor; what differs per
// tensor (its name in a GGUF, its shape, whether weight decay applies) is read from this table,
// never from positions in it.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "model/llama_config.h"

namespace kiln::train {

struct ParameterInfo {
  std::string name;       // the GGUF tensor name: "blk.3.attn_q.weight"
  std::int64_t rows = 1;  // a matrix is rows × cols, row-major (GGUF ne {cols, rows}); a vector has rows = 1
  std::int64_t cols = 0;
  std::int64_t offset = 0;  // floats from the start of the buffer (a multiple of 16: rows stay aligned)
  bool decay = false;       // AdamW's weight decay applies (matrices), or not (norm gains)
  std::int64_t size() const { return rows * cols; }
};

// Offsets of one layer's tensors.
struct LayerOffsets {
  std::int64_t attn_norm, wq, wk, wv, wo, ffn_norm, w_gate, w_up, w_down;
};

class ParameterTable {
 public:
  // Checks the config (positive sizes, heads dividing evenly) and lays the tensors out in GGUF
  // order. A tied output shares token_embd's entry.
  explicit ParameterTable(const LlamaConfig& config);

  // The config the table was laid out for (a checkpoint is checked against it).
  const LlamaConfig& config() const { return config_; }
  const std::vector<ParameterInfo>& entries() const { return entries_; }
  std::int64_t total() const { return total_; }  // floats in each buffer
  // Throws kiln::Error when there is no tensor of that name.
  const ParameterInfo& find(std::string_view name) const;

  std::int64_t token_embd() const { return token_embd_; }
  std::int64_t output_norm() const { return output_norm_; }
  std::int64_t output() const { return output_; }  // token_embd() when tied
  const LayerOffsets& layer(int i) const { return layers_[static_cast<std::size_t>(i)]; }

 private:
  std::int64_t add(std::string name, std::int64_t rows, std::int64_t cols, bool decay);

  LlamaConfig config_;
  std::vector<ParameterInfo> entries_;
  std::vector<LayerOffsets> layers_;
  std::int64_t total_ = 0;
  std::int64_t token_embd_ = 0, output_norm_ = 0, output_ = 0;
};

}  // namespace kiln::train
