#include "optimize/quant_plan.h"

#include <algorithm>
#include <cctype>
#include <cstdio>

#include "core/error.h"

namespace kiln::optimize {

namespace {

// An integer hyper-parameter; per-layer arrays (some architectures) give their first entry.
int shape_int(const GgufMetadata& f, const std::string& key, int fallback) {
  const GgufValue* v = f.find(key);
  if (v == nullptr) return fallback;
  if (const GgufArray* a = v->as_array(); a != nullptr && !a->ints.empty()) return static_cast<int>(a->ints[0]);
  const std::optional<std::int64_t> i = f.get_int(key);
  if (!i || *i < 0 || *i > (1 << 24)) fail("{}: metadata {} = {} is out of range", f.path(), key, i.value_or(-1));
  return static_cast<int>(*i);
}

}  // namespace

ModelShape model_shape(const GgufMetadata& f) {
  ModelShape shape;
  const std::optional<std::string> arch = f.get_string("general.architecture");
  if (!arch) fail("{}: missing metadata key general.architecture", f.path());
  shape.arch = *arch;
  shape.n_layer = shape_int(f, *arch + ".block_count", 0);
  if (shape.n_layer == 0) fail("{}: missing metadata key {}.block_count", f.path(), *arch);
  shape.n_head = shape_int(f, *arch + ".attention.head_count", 0);
  shape.n_head_kv = shape_int(f, *arch + ".attention.head_count_kv", shape.n_head);
  shape.n_expert = shape_int(f, *arch + ".expert_count", 0);
  return shape;
}
namespace {

// llama.cpp's LLAMA_FTYPE_* values (include/llama.h), the numbers general.file_type holds.
const std::vector<QuantPreset> kPresets = {
    {"Q4_0", 2, DType::Q4_0, "4.5 bpw, legacy 4-bit, one scale per 32"},
    {"Q4_1", 3, DType::Q4_1, "5.0 bpw, legacy 4-bit, scale and minimum per 32"},
    {"Q5_0", 8, DType::Q5_0, "5.5 bpw, legacy 5-bit"},
    {"Q5_1", 9, DType::Q5_1, "6.0 bpw, legacy 5-bit with minimum"},
    {"Q8_0", 7, DType::Q8_0, "8.5 bpw, 8-bit"},
    {"Q2_K", 10, DType::Q2_K, "mostly q2_K; attn_v, ffn_down, attn_output in q3_K/q4_K"},
    {"Q3_K_S", 11, DType::Q3_K, "q3_K throughout"},
    {"Q3_K_M", 12, DType::Q3_K, "q3_K; attn_v q5_K/q4_K, ffn_down q5_K/q4_K, attn_output q4_K"},
    {"Q3_K_L", 13, DType::Q3_K, "q3_K; attn_v, ffn_down, attn_output q5_K"},
    {"Q4_K_S", 14, DType::Q4_K, "q4_K; first attn_v and ffn_down layers q5_K"},
    {"Q4_K_M", 15, DType::Q4_K, "q4_K; half of attn_v and ffn_down q6_K"},
    {"Q5_K_S", 16, DType::Q5_K, "q5_K throughout"},
    {"Q5_K_M", 17, DType::Q5_K, "q5_K; half of attn_v and ffn_down q6_K"},
    {"Q6_K", 18, DType::Q6_K, "6.56 bpw, q6_K throughout"},
    {"F16", 1, DType::F16, "16-bit IEEE half"},
    {"BF16", 32, DType::BF16, "16-bit bfloat"},
    {"F32", 0, DType::F32, "32-bit float (also: convert a llama2.c checkpoint to GGUF)"},
    // Affine q = round((x - m) / d) per group (docs/formats.md). A4G32 is q4_1 itself, which
    // llama.cpp reads; the others are kiln's own types, with kiln's own file_type values.
    {"A4G32", 3, DType::Q4_1, "5.0 bpw, affine 4-bit per 32: written as q4_1"},
    {"A4G64", 1001, DType::A4G64, "4.5 bpw, affine 4-bit per 64 (kiln only)"},
    {"A4G128", 1002, DType::A4G128, "4.25 bpw, affine 4-bit per 128 (kiln only)"},
    {"A8G32", 1003, DType::A8G32, "9.0 bpw, affine 8-bit per 32 (kiln only)"},
    {"A8G64", 1004, DType::A8G64, "8.5 bpw, affine 8-bit per 64 (kiln only)"},
    {"A8G128", 1005, DType::A8G128, "8.25 bpw, affine 8-bit per 128 (kiln only)"},
};

std::string upper(std::string_view s) {
  std::string u(s);
  for (char& c : u) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return u;
}

// Types a tensor may be written as: those kiln can quantize to with a ggml-exact reference.
constexpr std::array<DType, 18> kWritable = {DType::F32,  DType::F16,  DType::BF16,  DType::Q4_0,  DType::Q4_1,
                                             DType::Q5_0, DType::Q5_1, DType::Q8_0,  DType::Q2_K,  DType::Q3_K,
                                             DType::Q4_K, DType::Q5_K, DType::Q6_K,  DType::A4G64, DType::A4G128,
                                             DType::A8G32, DType::A8G64, DType::A8G128};

bool is_writable(DType t) { return std::find(kWritable.begin(), kWritable.end(), t) != kWritable.end(); }

enum class Category { TokenEmbd, AttnQ, AttnV, AttnK, AttnOutput, FfnUp, FfnGate, FfnDown, Output, Other };

bool contains(const std::string& s, std::string_view part) { return s.find(part) != std::string::npos; }

// Broad roles by name, as llama.cpp's tensor_get_category (fused qkv and MLA's kv_b count as v).
Category category_of(const std::string& name) {
  if (name == "output.weight") return Category::Output;
  if (name == "token_embd.weight" || name == "per_layer_token_embd.weight") return Category::TokenEmbd;
  if (contains(name, "attn_qkv.weight") || contains(name, "attn_kv_b.weight") || contains(name, "attn_v.weight"))
    return Category::AttnV;
  if (contains(name, "attn_k.weight")) return Category::AttnK;
  if (contains(name, "attn_q.weight")) return Category::AttnQ;
  if (contains(name, "attn_output.weight")) return Category::AttnOutput;
  if (contains(name, "ffn_up")) return Category::FfnUp;
  if (contains(name, "ffn_gate")) return Category::FfnGate;
  if (contains(name, "ffn_down")) return Category::FfnDown;
  return Category::Other;
}

// ggml_n_dims: trailing dimensions of 1 do not count, so a [n, 1] matrix is a vector.
int effective_dims(const TensorDesc& t) {
  int n = 1;
  for (int d = 1; d < 4; ++d)
    if (t.ne[d] > 1) n = d + 1;
  return n;
}

// Which tensors a mix may change: 2-D+ weights, not norms, routers or position tables.
bool allows_quantization(const TensorDesc& t) {
  if (effective_dims(t) < 2) return false;
  const std::string& n = t.name;
  if (n.size() < 6 || n.compare(n.size() - 6, 6, "weight") != 0) return false;
  for (std::string_view keep : {"_norm.weight", "ffn_gate_inp.weight", "position_embd.weight", "token_types.weight",
                                "ssm_conv1d", "attn_rel_b.weight"})
    if (contains(n, keep)) return false;
  return true;
}

// More bits for the first and last eighth of the layers and every third layer between them.
bool use_more_bits(int i_layer, int n_layers) {
  return i_layer < n_layers / 8 || i_layer >= 7 * n_layers / 8 || (i_layer - n_layers / 8) % 3 == 2;
}

struct Counters {
  int n_attn_v = 0;
  int i_attn_v = 0;
  int n_ffn_down = 0;
  int i_ffn_down = 0;
  bool tied_embeddings = true;
  bool has_imatrix = false;
};

// The mix's choice for one quantizable tensor (llama.cpp's llama_tensor_get_type_impl, for the
// presets kiln offers and Llama-family models, with its rules for 8-expert models; no Falcon).
// A stacked expert tensor (ffn_*_exps, one per layer) counts as its layer's FFN tensor.
DType mix_type(const QuantPreset& p, const ModelShape& shape, const TensorDesc& t, Category cat, Counters& c) {
  const std::uint32_t f = p.ftype;
  DType type = p.default_type;
  const int n_gqa = shape.n_head_kv > 0 ? shape.n_head / shape.n_head_kv : 1;
  // llama.cpp's LLM_TYPE_70B: 80 llama layers with grouped-query attention.
  const bool is_70b = shape.arch == "llama" && shape.n_layer == 80 && shape.n_head != shape.n_head_kv;
  if (cat == Category::Output || (c.tied_embeddings && cat == Category::TokenEmbd)) {
    if (t.ne[0] % traits(type).block_size != 0)
      type = DType::Q8_0;
    else if (type != DType::Q8_0 && type != DType::A8G32 && type != DType::A8G64 && type != DType::A8G128)
      type = DType::Q6_K;  // 8-bit mixes (Q8_0 and the affine A8) keep their type
  } else if (cat == Category::TokenEmbd) {
    // The untied embedding keeps the mix's type for every preset kiln offers.
  } else if (cat == Category::AttnV) {
    if (f == 10)  // Q2_K
      type = n_gqa >= 4 ? DType::Q4_K : DType::Q3_K;
    else if (f == 12)  // Q3_K_M
      type = c.i_attn_v < 2 ? DType::Q5_K : DType::Q4_K;
    else if (f == 13)  // Q3_K_L
      type = DType::Q5_K;
    else if ((f == 15 || f == 17) && use_more_bits(c.i_attn_v, c.n_attn_v))  // Q4_K_M, Q5_K_M
      type = DType::Q6_K;
    else if (f == 14 && c.i_attn_v < 4)  // Q4_K_S
      type = DType::Q5_K;
    // 70B shares each attn_v among 8 heads, so it is 8x smaller than attn_q: more bits are cheap.
    if (is_70b && (type == DType::Q3_K || type == DType::Q4_K)) type = DType::Q5_K;
    // Mixtral-8x: attn_v is small beside the experts, so it is kept at 8 bits for every mix.
    if (shape.n_expert == 8) type = DType::Q8_0;
    ++c.i_attn_v;
  } else if (cat == Category::AttnK) {
    if (shape.n_expert == 8) type = DType::Q8_0;  // as attn_v
  } else if (cat == Category::FfnDown) {
    const int i = c.i_ffn_down, n = c.n_ffn_down;
    if (f == 10)  // Q2_K
      type = DType::Q3_K;
    else if (f == 12)  // Q3_K_M
      type = i < n / 16 ? DType::Q5_K : DType::Q4_K;
    else if (f == 13)  // Q3_K_L
      type = DType::Q5_K;
    else if (f == 15) {  // Q4_K_M
      if (use_more_bits(i, n)) type = DType::Q6_K;
    } else if (f == 17 && use_more_bits(i, n))  // Q5_K_M
      type = DType::Q6_K;
    else if (f == 14 && i < n / 8)  // Q4_K_S
      type = DType::Q5_K;
    else if ((f == 2 || f == 8) && c.has_imatrix && i < n / 8)  // Q4_0, Q5_0 with an imatrix
      type = f == 2 ? DType::Q4_1 : DType::Q5_1;
    ++c.i_ffn_down;
  } else if (cat == Category::AttnOutput && shape.n_expert == 8) {
    if (f == 10 || f == 11 || f == 12 || f == 14 || f == 15)  // Q2_K, Q3_K_S, Q3_K_M, Q4_K_S, Q4_K_M
      type = DType::Q5_K;
  } else if (cat == Category::AttnOutput) {
    if (f == 10)
      type = DType::Q3_K;
    else if (f == 12)
      type = DType::Q4_K;
    else if (f == 13)
      type = DType::Q5_K;
  }
  return type;
}

// A type whose block divides the rows, in llama.cpp's order; F16 where llama.cpp has none.
DType fallback_type(DType wanted, std::int64_t ncols, std::string* why) {
  if (ncols % traits(wanted).block_size == 0) return wanted;
  DType t = DType::F16;
  switch (wanted) {
    case DType::Q2_K:
    case DType::Q3_K:
      t = DType::Q4_0;
      break;
    case DType::Q4_K:
      t = DType::Q5_0;
      break;
    case DType::Q5_K:
      t = DType::Q5_1;
      break;
    case DType::Q6_K:
      t = DType::Q8_0;
      break;
    // The affine types fall back to smaller groups of the same bits (A4G32 is q4_1).
    case DType::A4G128:
      t = ncols % 64 == 0 ? DType::A4G64 : DType::Q4_1;
      break;
    case DType::A4G64:
      t = DType::Q4_1;
      break;
    case DType::A8G128:
      t = ncols % 64 == 0 ? DType::A8G64 : DType::A8G32;
      break;
    case DType::A8G64:
      t = DType::A8G32;
      break;
    default:
      break;
  }
  if (ncols % traits(t).block_size != 0) t = DType::F16;
  *why = fmt::format("{} columns are not a multiple of {}'s block of {}: {} instead", ncols, dtype_name(wanted),
                     traits(wanted).block_size, dtype_name(t));
  return t;
}

}  // namespace

const std::vector<QuantPreset>& quant_presets() { return kPresets; }

std::string quant_preset_names() {
  std::string names;
  for (const QuantPreset& p : kPresets) names += (names.empty() ? "" : ", ") + std::string(p.name);
  return names;
}

const QuantPreset& find_quant_preset(std::string_view name) {
  std::string u = upper(name);
  if (u == "Q3_K" || u == "Q4_K" || u == "Q5_K") u += "_M";
  for (const QuantPreset& p : kPresets)
    if (p.name == u) return p;
  fail("unknown quantization type '{}' (expected one of: {})", name, quant_preset_names());
}

std::string writable_type_names() {
  std::string names;
  for (DType t : kWritable) names += (names.empty() ? "" : ", ") + std::string(dtype_name(t));
  return names;
}

TensorTypeOverride parse_tensor_type_override(std::string_view spec) {
  const std::size_t eq = spec.rfind('=');
  if (eq == std::string_view::npos || eq == 0 || eq + 1 == spec.size())
    fail("--tensor-type '{}': expected REGEX=TYPE (for example attn_v=q8_0)", spec);
  TensorTypeOverride o;
  o.pattern = std::string(spec.substr(0, eq));
  const std::string_view type_name = spec.substr(eq + 1);
  const std::optional<DType> type = parse_dtype(type_name);
  if (!type || !is_writable(*type))
    fail("--tensor-type '{}': unknown tensor type '{}' (expected one of: {})", spec, type_name, writable_type_names());
  o.type = *type;
  try {
    o.regex = std::regex(o.pattern);
  } catch (const std::regex_error& e) {
    fail("--tensor-type '{}': bad regular expression '{}': {}", spec, o.pattern, e.what());
  }
  return o;
}

bool llamacpp_tensor_order(const std::string& a, const std::string& b) {
  int la = -1, lb = -1;
  std::sscanf(a.c_str(), "blk.%d.", &la);
  std::sscanf(b.c_str(), "blk.%d.", &lb);
  if (la != lb) return la < lb;
  return a < b;
}

std::vector<TensorPlan> plan_quantization(const ModelShape& shape, const std::vector<TensorDesc>& tensors,
                                          const PlanOptions& options) {
  KILN_CHECK(options.preset != nullptr, "internal: plan_quantization without a preset");
  const QuantPreset& preset = *options.preset;
  const bool quantized_mix = traits(preset.default_type).quantized;
  Counters c;
  for (const TensorDesc& t : tensors) {
    const Category cat = category_of(t.name);
    if (cat == Category::AttnV) ++c.n_attn_v;
    if (cat == Category::Output) c.tied_embeddings = false;
  }
  c.n_ffn_down = shape.n_layer;
  c.has_imatrix = options.has_imatrix;

  std::vector<TensorPlan> plan;
  plan.reserve(tensors.size());
  for (const TensorDesc& t : tensors) {
    TensorPlan p;
    p.name = t.name;
    p.from = t.type;
    p.to = t.type;
    p.quantizable = allows_quantization(t);
    if (p.quantizable) {
      DType type = preset.default_type;
      for (const TensorTypeOverride& o : options.overrides)
        if (std::regex_search(t.name, o.regex)) {
          type = o.type;
          p.overridden = true;
          break;
        }
      // The rules apply to quantized mixes only, as in llama.cpp; F16/BF16/F32 are uniform.
      if (!p.overridden && !options.pure && quantized_mix) type = mix_type(preset, shape, t, category_of(t.name), c);
      p.to = fallback_type(type, t.ne[0], &p.fallback);
    }
    plan.push_back(std::move(p));
  }
  return plan;
}

}  // namespace kiln::optimize
