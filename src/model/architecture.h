#pragma once
// The decoder families kiln runs, each in a file of its own (model/arch_<family>.cpp) over the
// blocks every family shares (llama_blocks.h). A family says four things:
//
//   configure       what its GGUF metadata means: the switches of LlamaConfig it sets and the
//                   keys of its own it reads (the keys every family has, embedding_length,
//                   block_count, head counts, rope base, ..., are read before it is called);
//   write_metadata  the inverse: the family's own keys for a config, for the writers that make
//                   a model of the family (kiln synth, kiln prune); the common keys are written
//                   by write_common_metadata;
//   layer_tensors   one layer's tensors as llama.cpp names and shapes them, and where each binds
//                   in LlamaLayerWeights: what loading checks, and what kiln synth writes;
//   presets         named shapes of real models of the family (kiln synth --preset), for timing.
//
// Adding a family is one file with these and one line in architecture.cpp's table.
#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "model/llama_config.h"
#include "model/llama_weights.h"

namespace kiln {

class GgufMetadata;
class GgufWriter;

// One tensor of a layer. Exactly one of `matrix` and `vector` is set: a matrix stays a view in
// its stored format, a vector is bound as floats.
struct LayerTensor {
  std::string name;                           // llama.cpp's GGUF name, e.g. "blk.3.attn_q.weight"
  int n_dims = 1;
  std::array<std::int64_t, 4> ne{1, 1, 1, 1};  // innermost first: a matrix from `in` to `out` values is {in, out}
  TensorView LlamaLayerWeights::*matrix = nullptr;
  FloatVector LlamaLayerWeights::*vector = nullptr;
  // kiln synth draws the tensor's values around this mean: 1 for the norm weights of families
  // that scale by w (gemma's (1 + w) is stored as w + 1 by llama.cpp's converter, so also 1).
  float synthetic_mean = 0.0f;
  bool optional = false;  // bound when present, left unset when absent
  // A tensor that holds several matrices one after another by rows (phi3's attn_qkv: q, k, v;
  // its ffn_up: gate, up): each part binds to its slot as a view of its rows, and `matrix` is
  // unset. kiln synth writes it as one matrix.
  struct RowPart {
    TensorView LlamaLayerWeights::*matrix;
    std::int64_t rows;
  };
  std::vector<RowPart> row_parts;
  bool is_matrix() const { return matrix != nullptr || !row_parts.empty(); }
  // A matrix that stays f32 in quantized files (llama.cpp's quantize keeps MoE routers so):
  // kiln synth writes it f32 whatever --type says.
  bool keep_f32 = false;
};

// A named shape of a real model of the family: sets the config's widths, depth and heads.
struct ShapePreset {
  const char* name;         // e.g. "qwen3-1.7b"
  const char* description;  // one line for kiln synth --help
  void (*apply)(LlamaConfig& c);
};

struct Architecture {
  const char* name;  // general.architecture
  void (*configure)(const GgufMetadata& metadata, LlamaConfig& c);
  void (*write_metadata)(const LlamaConfig& c, GgufWriter& w);
  std::vector<LayerTensor> (*layer_tensors)(const LlamaConfig& c, int layer);
  std::span<const ShapePreset> presets;
  // The family's tensors outside the layers other than token_embd, output_norm and output, as
  // kiln synth writes them for a config (phi3's rope_factors_long/short.weight); the loader
  // binds these by name (bind_llama_weights). nullptr: none.
  std::vector<LayerTensor> (*model_tensors)(const LlamaConfig& c) = nullptr;
};

// The family of general.architecture `name`, or nullptr when kiln does not run it.
const Architecture* find_architecture(std::string_view name);
// Every family's name, comma-separated, for error messages.
std::string supported_architectures();
// The families, in the table's order.
std::span<const Architecture* const> architectures();

// The family's tensors of `layer` that every Llama-style layer has: attention norm, q/k/v/o, ffn
// norm, gate/up/down, with llama.cpp's names and the config's shapes. Families start from this
// list and add, drop or replace entries.
std::vector<LayerTensor> llama_layer_tensors(const LlamaConfig& c, int layer);

// A 1-D tensor of `layer`, "blk.<layer>.<name>", of n floats bound to `slot`.
LayerTensor layer_vector(int layer, const std::string& name, std::int64_t n, FloatVector LlamaLayerWeights::*slot,
                         float synthetic_mean = 0.0f);

// The per-head RMSNorm weights of q and k (attn_q_norm, attn_k_norm: head_dim each, shared by
// the heads), appended to t: qwen3, qwen3moe and gemma3 have them.
void add_qk_norm_tensors(const LlamaConfig& c, int layer, std::vector<LayerTensor>& t);

// Mixture of experts, for the families that have it (mixtral is llama with experts, qwen3moe):
// reads "<arch>.expert_count" and "<arch>.expert_used_count" into n_expert and n_expert_used
// (absent expert_count: a dense model, unless `required`) and sets n_ff_exp to n_ff; throws
// kiln::Error naming the key when a count is missing or inconsistent.
void configure_experts(const GgufMetadata& metadata, LlamaConfig& c, bool required);
// Writes what configure_experts reads (nothing for a dense config).
void write_expert_metadata(const LlamaConfig& c, GgufWriter& w);
// A layer's tensors with the dense FFN (ffn_gate, ffn_up, ffn_down) replaced by the router and
// the stacked experts (ffn_gate_inp, ffn_{gate,up,down}_exps) when c.n_expert > 0.
std::vector<LayerTensor> with_expert_ffn(const LlamaConfig& c, int layer, std::vector<LayerTensor> tensors);

// The keys every family has, under "<arch>.": context_length, embedding_length, block_count,
// feed_forward_length, head counts, key/value lengths, rope dimension count and base, rms
// epsilon, vocab_size; general.architecture and general.name.
void write_common_metadata(const LlamaConfig& c, GgufWriter& w);

}  // namespace kiln
