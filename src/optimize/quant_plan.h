#pragma once
// The quantization plan: which type each tensor of a model gets for a named mix (the presets of
// llama-quantize: Q4_K_M, Q5_K_S, ...), following llama.cpp's rules for Llama-family tensors
// (llama_tensor_get_type in src/llama-quant.cpp) so that kiln and llama.cpp choose the same
// types for the same file:
//   - output.weight (and token_embd.weight when the output is tied to it) -> Q6_K, or Q8_0 when
//     its rows do not divide into the mix's blocks (Q8_0 mixes keep Q8_0);
//   - attn_v: more bits in some layers (use_more_bits: the first and last eighth and every third
//     layer between), Q2_K/Q3_K mixes raise it, more so with grouped-query attention;
//   - ffn_down: the same layer pattern for the _M mixes, first layers raised for _S and Q3_K;
//   - attn_output raised in the Q2_K and Q3_K mixes; everything else takes the mix's type.
// 1-D tensors (norms) and non-weights are copied as they are. `--tensor-type REGEX=TYPE`
// overrides replace the mix's choice for matching names (first match wins), `pure` disables the
// mix (every 2-D weight the preset's type). Rows whose length is not a multiple of the chosen
// type's block fall back to a type that fits, in llama.cpp's order (Q2_K, Q3_K -> Q4_0;
// Q4_K -> Q5_0; Q5_K -> Q5_1; Q6_K -> Q8_0), then to F16 where llama.cpp would give up.
// kiln's affine presets (A4G32 = Q4_1, A4G64, A4G128, A8G32, A8G64, A8G128) follow the same
// rules as Q4_1 (A4) and Q8_0 (A8), and fall back to smaller groups of the same bits.
#include <array>
#include <cstdint>
#include <regex>
#include <string>
#include <string_view>
#include <vector>

#include "core/dtype.h"
#include "format/gguf_metadata.h"

namespace kiln::optimize {

// A mix as llama-quantize names it. ftype is llama.cpp's LLAMA_FTYPE_* value, written to
// general.file_type; default_type is what most weights get.
struct QuantPreset {
  std::string_view name;
  std::uint32_t ftype;
  DType default_type;
  std::string_view description;
};

const std::vector<QuantPreset>& quant_presets();
// Finds a preset by name, case-insensitively; Q3_K, Q4_K and Q5_K mean the _M mixes, as in
// llama-quantize. Throws kiln::Error listing the valid names when there is none.
const QuantPreset& find_quant_preset(std::string_view name);
// "Q4_0, Q4_1, ..." for messages and help.
std::string quant_preset_names();

// One `--tensor-type REGEX=TYPE` override: tensors whose name the regex finds (std::regex_search,
// as llama.cpp) get TYPE.
struct TensorTypeOverride {
  std::string pattern;
  std::regex regex;
  DType type;
};
// Parses "REGEX=TYPE" (the last '=' splits); TYPE is a tensor type name (q4_k, q8_0, f16, ...).
// Throws kiln::Error on a missing '=', a bad regex or an unknown type (listing the valid ones).
TensorTypeOverride parse_tensor_type_override(std::string_view spec);
// The types a tensor can be written as ("f32, f16, bf16, q4_0, ...").
std::string writable_type_names();

// What the rules need to know about the model (llama.cpp's hparams).
struct ModelShape {
  std::string arch;  // "llama", "mistral", "qwen2"
  int n_layer = 0;
  int n_head = 0;
  int n_head_kv = 0;
  int n_expert = 0;  // <arch>.expert_count: 0 for dense models
};

// The shape the rules need, from a model's GGUF metadata (<arch>.block_count, head counts; the
// first entry of per-layer arrays). Throws kiln::Error naming a missing or bad key.
ModelShape model_shape(const GgufMetadata& metadata);

struct TensorDesc {
  std::string name;
  DType type = DType::F32;
  int n_dims = 0;
  std::array<std::int64_t, 4> ne{1, 1, 1, 1};
};

struct TensorPlan {
  std::string name;
  DType from = DType::F32;
  DType to = DType::F32;
  bool quantizable = false;  // a 2-D+ weight that the mix applies to (else copied unchanged)
  bool overridden = false;   // chosen by a --tensor-type override
  std::string fallback;      // why `to` is not the type first chosen ("" when it is)
};

struct PlanOptions {
  const QuantPreset* preset = nullptr;
  std::vector<TensorTypeOverride> overrides;
  bool pure = false;
  // Quantizing with an importance matrix: llama.cpp then raises the first eighth of the ffn_down
  // layers of the Q4_0 and Q5_0 mixes to q4_1 / q5_1.
  bool has_imatrix = false;
};

// The plan for `tensors`, which must be in llama.cpp's order (sort_tensors_like_llamacpp): the
// per-layer counters of the rules walk the tensors in that order.
std::vector<TensorPlan> plan_quantization(const ModelShape& shape, const std::vector<TensorDesc>& tensors,
                                          const PlanOptions& options);

// llama.cpp writes a quantized model's tensors ordered by layer (tensors outside blk.N first),
// then by name; kiln writes the same order so that the files can be compared byte for byte.
bool llamacpp_tensor_order(const std::string& a, const std::string& b);

}  // namespace kiln::optimize
