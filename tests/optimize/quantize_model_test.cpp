// kiln quantize's plan and output: llama.cpp's per-tensor rules for each preset, fallbacks,
// overrides, the quantized bytes against kiln's reference quantizers and ggml's own
// (ggml_quantize_chunk from KILN_GGML_BASE_LIB, what llama-quantize calls), the metadata written,
// llama2.c -> GGUF, and every refusal.
#include "optimize/quantize_model.h"

#include <dirent.h>
#include <dlfcn.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/half.h"
#include "format/gguf_file.h"
#include "format/gguf_writer.h"
#include "format/llama2c_file.h"
#include "kernels/matmul.h"
#include "model/llama_config.h"
#include "optimize/quant_plan.h"
#include "test_support.h"

namespace kiln::optimize {
namespace {

using ::testing::HasSubstr;

std::vector<std::string> list_dir(const std::string& dir) {
  std::vector<std::string> names;
  if (DIR* d = ::opendir(dir.c_str())) {
    while (dirent* e = ::readdir(d))
      if (std::string(e->d_name) != "." && std::string(e->d_name) != "..") names.push_back(e->d_name);
    ::closedir(d);
  }
  return names;
}

std::string fresh_dir(const std::string& name) {
  const std::string dir = test::temp_dir() + "/" + name;
  ::mkdir(dir.c_str(), 0755);
  for (const std::string& f : list_dir(dir)) ::unlink((dir + "/" + f).c_str());
  return dir;
}

template <typename Fn>
std::string error_of(Fn&& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

// ---- presets and overrides -------------------------------------------------------------------

TEST(QuantPresets, NamesAliasesAndFileTypes) {
  EXPECT_EQ(find_quant_preset("q4_k_m").ftype, 15u);
  EXPECT_EQ(find_quant_preset("Q4_K").name, "Q4_K_M");
  EXPECT_EQ(find_quant_preset("Q3_K").name, "Q3_K_M");
  EXPECT_EQ(find_quant_preset("Q5_K").name, "Q5_K_M");
  // llama.cpp's LLAMA_FTYPE values.
  const std::map<std::string, std::uint32_t> ftypes = {
      {"F32", 0},     {"F16", 1},     {"Q4_0", 2},    {"Q4_1", 3},    {"Q8_0", 7},    {"Q5_0", 8},
      {"Q5_1", 9},    {"Q2_K", 10},   {"Q3_K_S", 11}, {"Q3_K_M", 12}, {"Q3_K_L", 13}, {"Q4_K_S", 14},
      {"Q4_K_M", 15}, {"Q5_K_S", 16}, {"Q5_K_M", 17}, {"Q6_K", 18},   {"BF16", 32},
      // kiln's affine presets: A4G32 is q4_1's; the others carry kiln's own values.
      {"A4G32", 3},   {"A4G64", 1001}, {"A4G128", 1002}, {"A8G32", 1003}, {"A8G64", 1004}, {"A8G128", 1005}};
  EXPECT_EQ(quant_presets().size(), ftypes.size());
  for (const auto& [name, ftype] : ftypes) EXPECT_EQ(find_quant_preset(name).ftype, ftype) << name;
  const std::string e = error_of([] { find_quant_preset("Q4_X"); });
  EXPECT_THAT(e, HasSubstr("unknown quantization type 'Q4_X' (expected one of: Q4_0, Q4_1,"));
  EXPECT_THAT(e, HasSubstr("Q4_K_M"));
}

TEST(QuantPresets, TensorTypeOverrides) {
  const TensorTypeOverride o = parse_tensor_type_override("blk\\.(0|1)\\.attn_v=Q8_0");
  EXPECT_EQ(o.type, DType::Q8_0);
  EXPECT_TRUE(std::regex_search("blk.1.attn_v.weight", o.regex));
  EXPECT_FALSE(std::regex_search("blk.2.attn_v.weight", o.regex));
  EXPECT_EQ(parse_tensor_type_override("a=b=f16").pattern, "a=b");  // the last '=' splits
  EXPECT_THAT(error_of([] { parse_tensor_type_override("attn_v"); }), HasSubstr("expected REGEX=TYPE"));
  EXPECT_THAT(error_of([] { parse_tensor_type_override("=q8_0"); }), HasSubstr("expected REGEX=TYPE"));
  EXPECT_THAT(error_of([] { parse_tensor_type_override("attn_v=q9_0"); }),
              HasSubstr("unknown tensor type 'q9_0' (expected one of: f32, f16, bf16, q4_0"));
  EXPECT_THAT(error_of([] { parse_tensor_type_override("attn_v=q8_1"); }), HasSubstr("unknown tensor type 'q8_1'"));
  EXPECT_THAT(error_of([] { parse_tensor_type_override("attn_(v=q8_0"); }), HasSubstr("bad regular expression"));
}

// ---- the plan ----------------------------------------------------------------------------------

// The tensors of a dense Llama model in llama.cpp's order.
std::vector<TensorDesc> llama_tensors(int n_layer, std::int64_t dim, std::int64_t kv_dim, std::int64_t ffn,
                                      std::int64_t vocab, bool tied) {
  std::vector<TensorDesc> t;
  const auto add = [&](std::string name, DType type, int n_dims, std::int64_t ne0, std::int64_t ne1) {
    t.push_back({std::move(name), type, n_dims, {ne0, ne1, 1, 1}});
  };
  if (!tied) add("output.weight", DType::F16, 2, dim, vocab);
  add("output_norm.weight", DType::F32, 1, dim, 1);
  add("token_embd.weight", DType::F16, 2, dim, vocab);
  for (int l = 0; l < n_layer; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    add(p + "attn_k.weight", DType::F16, 2, dim, kv_dim);
    add(p + "attn_norm.weight", DType::F32, 1, dim, 1);
    add(p + "attn_output.weight", DType::F16, 2, dim, dim);
    add(p + "attn_q.weight", DType::F16, 2, dim, dim);
    add(p + "attn_v.weight", DType::F16, 2, dim, kv_dim);
    add(p + "ffn_down.weight", DType::F16, 2, ffn, dim);
    add(p + "ffn_gate.weight", DType::F16, 2, dim, ffn);
    add(p + "ffn_norm.weight", DType::F32, 1, dim, 1);
    add(p + "ffn_up.weight", DType::F16, 2, dim, ffn);
  }
  std::stable_sort(t.begin(), t.end(), [](const TensorDesc& a, const TensorDesc& b) {
    return llamacpp_tensor_order(a.name, b.name);
  });
  return t;
}

std::map<std::string, DType> plan_map(const ModelShape& shape, const std::vector<TensorDesc>& tensors,
                                      std::string_view preset, std::vector<std::string> overrides = {},
                                      bool pure = false) {
  PlanOptions o;
  o.preset = &find_quant_preset(preset);
  o.pure = pure;
  for (const std::string& s : overrides) o.overrides.push_back(parse_tensor_type_override(s));
  std::map<std::string, DType> m;
  for (const TensorPlan& p : plan_quantization(shape, tensors, o)) m[p.name] = p.to;
  return m;
}

std::string layer(int l, const char* what) { return "blk." + std::to_string(l) + "." + what + ".weight"; }

TEST(QuantPlan, LlamaCppRulesOnA32LayerModel) {
  const ModelShape shape{"llama", 32, 32, 8};  // grouped-query attention, 4 heads per kv head
  const auto tensors = llama_tensors(32, 4096, 1024, 11008 + 256, 32000, false);
  // use_more_bits(i, 32): i < 4, i >= 28, or (i - 4) % 3 == 2.
  const std::vector<int> more = {0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31};
  const auto is_more = [&](int l) { return std::find(more.begin(), more.end(), l) != more.end(); };

  auto m = plan_map(shape, tensors, "Q4_K_M");
  EXPECT_EQ(m["output.weight"], DType::Q6_K);
  EXPECT_EQ(m["token_embd.weight"], DType::Q4_K);
  EXPECT_EQ(m["output_norm.weight"], DType::F32);
  for (int l = 0; l < 32; ++l) {
    SCOPED_TRACE(l);
    EXPECT_EQ(m[layer(l, "attn_v")], is_more(l) ? DType::Q6_K : DType::Q4_K);
    EXPECT_EQ(m[layer(l, "ffn_down")], is_more(l) ? DType::Q6_K : DType::Q4_K);
    EXPECT_EQ(m[layer(l, "attn_q")], DType::Q4_K);
    EXPECT_EQ(m[layer(l, "attn_k")], DType::Q4_K);
    EXPECT_EQ(m[layer(l, "attn_output")], DType::Q4_K);
    EXPECT_EQ(m[layer(l, "ffn_up")], DType::Q4_K);
    EXPECT_EQ(m[layer(l, "attn_norm")], DType::F32);
  }
  m = plan_map(shape, tensors, "Q5_K_M");
  for (int l = 0; l < 32; ++l) EXPECT_EQ(m[layer(l, "ffn_down")], is_more(l) ? DType::Q6_K : DType::Q5_K);
  m = plan_map(shape, tensors, "Q4_K_S");
  for (int l = 0; l < 32; ++l) {
    EXPECT_EQ(m[layer(l, "attn_v")], l < 4 ? DType::Q5_K : DType::Q4_K);
    EXPECT_EQ(m[layer(l, "ffn_down")], l < 4 ? DType::Q5_K : DType::Q4_K);
  }
  m = plan_map(shape, tensors, "Q3_K_M");
  for (int l = 0; l < 32; ++l) {
    EXPECT_EQ(m[layer(l, "attn_v")], l < 2 ? DType::Q5_K : DType::Q4_K);
    EXPECT_EQ(m[layer(l, "ffn_down")], l < 2 ? DType::Q5_K : DType::Q4_K);
    EXPECT_EQ(m[layer(l, "attn_output")], DType::Q4_K);
    EXPECT_EQ(m[layer(l, "attn_q")], DType::Q3_K);
  }
  m = plan_map(shape, tensors, "Q3_K_L");
  EXPECT_EQ(m[layer(5, "attn_v")], DType::Q5_K);
  EXPECT_EQ(m[layer(5, "ffn_down")], DType::Q5_K);
  EXPECT_EQ(m[layer(5, "attn_output")], DType::Q5_K);
  m = plan_map(shape, tensors, "Q3_K_S");
  EXPECT_EQ(m[layer(0, "attn_v")], DType::Q3_K);
  EXPECT_EQ(m["output.weight"], DType::Q6_K);
  m = plan_map(shape, tensors, "Q2_K");
  EXPECT_EQ(m[layer(3, "attn_v")], DType::Q4_K) << "n_gqa >= 4";
  EXPECT_EQ(m[layer(3, "ffn_down")], DType::Q3_K);
  EXPECT_EQ(m[layer(3, "attn_output")], DType::Q3_K);
  EXPECT_EQ(m[layer(3, "ffn_gate")], DType::Q2_K);
  EXPECT_EQ(plan_map({"llama", 32, 32, 32}, tensors, "Q2_K")[layer(3, "attn_v")], DType::Q3_K) << "no GQA";
  // Legacy mixes: output q6_K, everything else the base type.
  m = plan_map(shape, tensors, "Q4_0");
  EXPECT_EQ(m["output.weight"], DType::Q6_K);
  EXPECT_EQ(m["token_embd.weight"], DType::Q4_0);
  EXPECT_EQ(m[layer(0, "attn_v")], DType::Q4_0);
  m = plan_map(shape, tensors, "Q8_0");
  EXPECT_EQ(m["output.weight"], DType::Q8_0);
  EXPECT_EQ(m[layer(0, "ffn_down")], DType::Q8_0);
  // Float mixes are uniform, output included.
  m = plan_map(shape, tensors, "BF16");
  EXPECT_EQ(m["output.weight"], DType::BF16);
  EXPECT_EQ(m["output_norm.weight"], DType::F32);
  // 70B: attn_v at q3_K/q4_K is raised to q5_K.
  const auto t80 = llama_tensors(80, 256, 64, 512, 64, false);
  EXPECT_EQ(plan_map({"llama", 80, 64, 8}, t80, "Q3_K_M")[layer(40, "attn_v")], DType::Q5_K);
  EXPECT_EQ(plan_map({"llama", 80, 64, 64}, t80, "Q3_K_M")[layer(40, "attn_v")], DType::Q4_K);
}

TEST(QuantPlan, TiedEmbeddingsOverridesPureAndFallbacks) {
  const ModelShape shape{"llama", 4, 8, 8};
  auto tied = llama_tensors(4, 256, 256, 512, 1000, true);
  auto m = plan_map(shape, tied, "Q4_K_M");
  EXPECT_EQ(m["token_embd.weight"], DType::Q6_K) << "a tied embedding is quantized like the output";
  EXPECT_EQ(m.count("output.weight"), 0u);

  // Overrides: first match wins, and the mix's counters skip overridden tensors as in llama.cpp.
  m = plan_map(shape, tied, "Q4_K_M", {"attn_v=q8_0", "blk\\.0\\..*=f16"});
  for (int l = 0; l < 4; ++l) EXPECT_EQ(m[layer(l, "attn_v")], DType::Q8_0);
  EXPECT_EQ(m[layer(0, "attn_q")], DType::F16);
  EXPECT_EQ(m[layer(0, "attn_norm")], DType::F32) << "overrides never touch 1-D tensors";
  EXPECT_EQ(m[layer(1, "attn_q")], DType::Q4_K);

  // --pure: every quantizable tensor the base type, output and embedding included.
  m = plan_map(shape, tied, "Q4_K_M", {}, true);
  EXPECT_EQ(m["token_embd.weight"], DType::Q4_K);
  for (int l = 0; l < 4; ++l) EXPECT_EQ(m[layer(l, "ffn_down")], DType::Q4_K);

  // Rows of 96 (not 256): q4_K -> q5_0, q6_K -> q8_0, q5_K -> q5_1, q3_K/q2_K -> q4_0; rows of
  // 8 fit no block at all: f16 (llama.cpp stops there with an error).
  std::vector<TensorDesc> odd = {{"blk.0.attn_q.weight", DType::F32, 2, {96, 4, 1, 1}},
                                 {"blk.0.ffn_down.weight", DType::F32, 2, {96, 4, 1, 1}},
                                 {"blk.0.ffn_up.weight", DType::F32, 2, {8, 4, 1, 1}}};
  const ModelShape one{"llama", 1, 1, 1};
  PlanOptions o;
  o.preset = &find_quant_preset("Q4_K_M");
  const std::vector<TensorPlan> p = plan_quantization(one, odd, o);
  EXPECT_EQ(p[0].to, DType::Q5_0);
  EXPECT_EQ(p[0].fallback, "96 columns are not a multiple of q4_k's block of 256: q5_0 instead");
  EXPECT_EQ(p[1].to, DType::Q8_0) << "ffn_down of layer 0 wants q6_K";
  EXPECT_EQ(p[2].to, DType::F16);
  EXPECT_THAT(p[2].fallback, HasSubstr("8 columns"));
  EXPECT_EQ(plan_map(one, odd, "Q5_K_S")["blk.0.attn_q.weight"], DType::Q5_1);
  EXPECT_EQ(plan_map(one, odd, "Q3_K_S")["blk.0.attn_q.weight"], DType::Q4_0);
  EXPECT_EQ(plan_map(one, odd, "Q2_K")["blk.0.attn_q.weight"], DType::Q4_0);
  EXPECT_EQ(plan_map(one, odd, "Q4_0")["blk.0.attn_q.weight"], DType::Q4_0);
  EXPECT_EQ(plan_map(one, odd, "Q4_0")["blk.0.ffn_up.weight"], DType::F16);
}

TEST(QuantPlan, TinyRandomShapes) {
  KILN_REQUIRE_DATA(model, "llama-2-tiny-random.gguf");
  // n_embd 8, n_ff 32, one layer: only ffn_down (rows of 32) fits any block; the rest fall back.
  const std::map<std::string, DType> ffn_down = {
      {"Q4_0", DType::Q4_0}, {"Q4_1", DType::Q4_1}, {"Q5_0", DType::Q5_0},   {"Q5_1", DType::Q5_1},
      {"Q8_0", DType::Q8_0}, {"Q2_K", DType::Q4_0}, {"Q3_K_S", DType::Q4_0}, {"Q3_K_M", DType::Q5_0},
      {"Q3_K_L", DType::Q5_1}, {"Q4_K_S", DType::Q5_0}, {"Q4_K_M", DType::Q8_0}, {"Q5_K_S", DType::Q5_1},
      {"Q5_K_M", DType::Q8_0}, {"Q6_K", DType::Q8_0}, {"F16", DType::F16},   {"BF16", DType::BF16},
      {"F32", DType::F32}};
  for (const auto& [preset, down] : ffn_down) {
    SCOPED_TRACE(preset);
    QuantizeOptions o;
    o.type = preset;
    const QuantizeReport r = plan_model_quantization(model, o);
    ASSERT_EQ(r.plan.size(), 12u);
    EXPECT_EQ(r.plan[0].name, "output.weight") << "llama.cpp's order: output first";
    for (const TensorPlan& t : r.plan) {
      if (t.name == "blk.0.ffn_down.weight")
        EXPECT_EQ(t.to, down);
      else if (!t.quantizable)
        EXPECT_EQ(t.to, DType::F32) << t.name;
      else if (preset == "BF16" || preset == "F32")
        EXPECT_EQ(t.to, find_quant_preset(preset).default_type) << t.name;
      else
        EXPECT_EQ(t.to, DType::F16) << t.name << ": 8 columns fit no block";
    }
  }
}

// ---- quantized output ----------------------------------------------------------------------------

// ggml's own quantizer, as llama-quantize calls it.
using QuantizeChunkFn = std::size_t (*)(int type, const float* src, void* dst, std::int64_t start,
                                        std::int64_t nrows, std::int64_t n_per_row, const float* imatrix);

QuantizeChunkFn ggml_quantize_chunk_fn() {
  const char* path = std::getenv("KILN_GGML_BASE_LIB");
  if (path == nullptr || *path == '\0') return nullptr;
  void* lib = ::dlopen(path, RTLD_NOW | RTLD_LOCAL);
  return lib ? reinterpret_cast<QuantizeChunkFn>(::dlsym(lib, "ggml_quantize_chunk")) : nullptr;
}

// A small Llama GGUF with random f32 (or f16) weights whose rows fit every block (256 wide), two
// layers, grouped-query attention, and a few outliers so that the quantizers' scale searches work.
std::string write_synthetic_model(const std::string& path, DType weight_type, bool with_nan = false) {
  using namespace gguf_value;
  const int dim = 256, kv = 128, ffn = 512, vocab = 64, layers = 2;
  GgufWriter w;
  w.add_metadata("general.architecture", string("llama"));
  w.add_metadata("general.name", string("synthetic"));
  w.add_metadata("general.file_type", u32(weight_type == DType::F32 ? 0 : 1));
  w.add_metadata("llama.embedding_length", u32(dim));
  w.add_metadata("llama.block_count", u32(layers));
  w.add_metadata("llama.feed_forward_length", u32(ffn));
  w.add_metadata("llama.attention.head_count", u32(4));
  w.add_metadata("llama.attention.head_count_kv", u32(2));
  w.add_metadata("llama.vocab_size", u32(vocab));
  w.add_metadata("tokenizer.ggml.model", string("no_vocab"));
  int seed = 1;
  const auto add = [&](const std::string& name, int n_dims, std::int64_t ne0, std::int64_t ne1) {
    const DType t = n_dims == 1 ? DType::F32 : weight_type;
    std::vector<float> x(static_cast<std::size_t>(ne0 * ne1));
    std::mt19937 rng(static_cast<unsigned>(seed++));
    std::normal_distribution<float> normal(0.0f, 0.02f);
    for (float& v : x) v = normal(rng);
    for (std::size_t i = 0; i < x.size(); i += 97) x[i] *= 25.0f;  // outliers
    if (with_nan && name == "blk.1.attn_q.weight") x[5 * static_cast<std::size_t>(ne0) + 17] = NAN;
    std::vector<std::uint8_t> bytes(row_bytes(t, ne0) * static_cast<std::size_t>(ne1));
    kernels::quantize_row_ref(t, x.data(), bytes.data(), ne0 * ne1);
    w.add_tensor(GgufTensorSpec(name, t, n_dims, {ne0, ne1, 1, 1}),
                 [bytes = std::move(bytes)](GgufDataSink& out) { out.write(bytes.data(), bytes.size()); });
  };
  add("token_embd.weight", 2, dim, vocab);
  for (int l = 0; l < layers; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    add(p + "attn_norm.weight", 1, dim, 1);
    add(p + "attn_q.weight", 2, dim, dim);
    add(p + "attn_k.weight", 2, dim, kv);
    add(p + "attn_v.weight", 2, dim, kv);
    add(p + "attn_output.weight", 2, dim, dim);
    add(p + "ffn_norm.weight", 1, dim, 1);
    add(p + "ffn_gate.weight", 2, dim, ffn);
    add(p + "ffn_down.weight", 2, ffn, dim);
    add(p + "ffn_up.weight", 2, dim, ffn);
  }
  add("output_norm.weight", 1, dim, 1);
  add("output.weight", 2, dim, vocab);
  w.write(path);
  return path;
}

// The tensor's values as f32 (dequantized or converted), rows of ne[0].
std::vector<float> tensor_f32(const GgufFile& f, const GgufTensorInfo& t) {
  std::vector<float> x(static_cast<std::size_t>(t.ne[0] * t.ne[1] * t.ne[2] * t.ne[3]));
  kernels::dequantize_row(*t.dtype, f.mapped_file().data() + f.data_offset() + t.offset, x.data(),
                          static_cast<std::int64_t>(x.size()));
  return x;
}

TEST(QuantizeModel, OutputBytesEqualKilnAndGgmlReferenceQuantizers) {
  const std::string dir = fresh_dir("quantize_ref");
  const QuantizeChunkFn ggml_chunk = ggml_quantize_chunk_fn();
  if (ggml_chunk == nullptr) std::printf("note: KILN_GGML_BASE_LIB not set; comparing with kiln's reference only\n");
  for (DType src_type : {DType::F16, DType::F32}) {
    const std::string in = write_synthetic_model(dir + "/in.gguf", src_type);
    auto src = GgufFile::open(in);
    for (const QuantPreset& preset : quant_presets()) {
      SCOPED_TRACE(std::string(preset.name) + " from " + std::string(dtype_name(src_type)));
      QuantizeOptions o;
      o.type = std::string(preset.name);
      o.n_threads = 2;
      const std::string out = dir + "/out.gguf";
      const QuantizeReport r = quantize_model(in, out, o);
      auto f = GgufFile::open(out);
      // Metadata: the input's in order minus general.file_type, then the two llama.cpp appends.
      const auto& md = f->metadata();
      ASSERT_EQ(md.size(), src->metadata().size() + 1);
      EXPECT_EQ(md[md.size() - 2].first, "general.quantization_version");
      EXPECT_EQ(f->get_int("general.quantization_version"), 2);
      EXPECT_EQ(md.back().first, "general.file_type");
      EXPECT_EQ(f->get_int("general.file_type"), preset.ftype);
      EXPECT_EQ(md[0].first, "general.architecture");
      EXPECT_EQ(md[2].first, "llama.embedding_length");
      // Tensors: llama.cpp's order, each the plan's type, bytes equal to the reference quantizers.
      ASSERT_EQ(f->tensors().size(), r.plan.size());
      std::uint64_t total = 0;
      for (std::size_t i = 0; i < r.plan.size(); ++i) {
        const GgufTensorInfo& t = f->tensors()[i];
        ASSERT_EQ(t.name, r.plan[i].name);
        ASSERT_EQ(t.dtype, r.plan[i].to) << t.name;
        total += t.n_bytes;
        const GgufTensorInfo* s = src->find_tensor(t.name);
        ASSERT_NE(s, nullptr);
        EXPECT_EQ(s->ne, t.ne);
        const std::vector<float> x = tensor_f32(*src, *s);
        const std::int64_t k = t.ne[0], rows = static_cast<std::int64_t>(x.size()) / k;
        std::vector<std::uint8_t> expect(t.n_bytes);
        kernels::quantize_row_ref(*t.dtype, x.data(), expect.data(), static_cast<std::int64_t>(x.size()));
        const std::uint8_t* got = f->mapped_file().data() + f->data_offset() + t.offset;
        EXPECT_EQ(std::memcmp(got, expect.data(), expect.size()), 0) << t.name << " differs from quantize_row_ref";
        if (ggml_chunk != nullptr && *t.dtype != s->dtype && !is_kiln_only_dtype(*t.dtype)) {  // ggml has no a4g64..
          std::vector<std::uint8_t> ggml(t.n_bytes);
          const std::size_t n = ggml_chunk(static_cast<int>(*t.dtype), x.data(), ggml.data(), 0, rows, k, nullptr);
          ASSERT_EQ(n, ggml.size());
          EXPECT_EQ(std::memcmp(got, ggml.data(), ggml.size()), 0) << t.name << " differs from ggml_quantize_chunk";
        }
      }
      EXPECT_EQ(total, r.bytes_out);
      EXPECT_EQ(f->file_size(), r.file_bytes_out);
    }
  }
  EXPECT_THAT(list_dir(dir), ::testing::UnorderedElementsAre("in.gguf", "out.gguf"));
}

TEST(QuantizeModel, ProgressAndFallbackNotices) {
  KILN_REQUIRE_DATA(model, "llama-2-tiny-random.gguf");
  const std::string dir = fresh_dir("quantize_notices");
  QuantizeOptions o;
  o.type = "Q4_K_M";
  o.n_threads = 2;
  std::vector<std::string> notices;
  std::int64_t last_done = 0, total = 0;
  int calls = 0;
  const QuantizeReport r = quantize_model(
      model, dir + "/q.gguf", o,
      [&](const QuantizeProgress& p) {
        EXPECT_GE(p.elements_done, last_done);
        last_done = p.elements_done;
        total = p.elements_total;
        ++calls;
      },
      [&](const std::string& line) { notices.push_back(line); });
  EXPECT_EQ(last_done, total);
  EXPECT_EQ(total, 513048);
  EXPECT_GE(calls, 12);
  ASSERT_EQ(notices.size(), 9u) << "every 2-D tensor of the tiny model falls back";
  EXPECT_EQ(notices[0], "tensor output.weight: 8 columns are not a multiple of q8_0's block of 32: f16 instead");
  EXPECT_THAT(notices, ::testing::Contains(
                           "tensor blk.0.ffn_down.weight: 32 columns are not a multiple of q6_k's block of 256: "
                           "q8_0 instead"));
  EXPECT_EQ(r.n_elements, 513048);
}

TEST(QuantizeModel, Refusals) {
  const std::string dir = fresh_dir("quantize_refusals");
  QuantizeOptions o;
  o.n_threads = 2;

  o.type = "Q4_X";
  EXPECT_THAT(error_of([&] { quantize_model(dir + "/none.gguf", dir + "/out.gguf", o); }),
              HasSubstr("unknown quantization type 'Q4_X' (expected one of:"));
  o.type = "Q8_0";
  EXPECT_THAT(error_of([&] { quantize_model(dir + "/none.gguf", dir + "/out.gguf", o); }),
              HasSubstr(dir + "/none.gguf: cannot open: No such file or directory"));

  // NaN: the error names the tensor, the row and the column; nothing is written.
  const std::string nan_model = write_synthetic_model(dir + "/nan.gguf", DType::F32, true);
  EXPECT_THAT(error_of([&] { quantize_model(nan_model, dir + "/out.gguf", o); }),
              HasSubstr("tensor 'blk.1.attn_q.weight' row 5 has nan at column 17 (weights must be finite)"));
  EXPECT_THAT(list_dir(dir), ::testing::UnorderedElementsAre("nan.gguf"));
  ::unlink(nan_model.c_str());

  // A quantized input: refused, unless allowed; then it is dequantized and quantized again.
  const std::string f32_model = write_synthetic_model(dir + "/f32.gguf", DType::F32);
  o.type = "Q8_0";
  quantize_model(f32_model, dir + "/q8.gguf", o);
  o.type = "Q4_0";
  EXPECT_THAT(error_of([&] { quantize_model(dir + "/q8.gguf", dir + "/q4.gguf", o); }),
              HasSubstr("q8.gguf: tensor 'output.weight' is already quantized (q8_0); quantizing it again to q6_k"));
  EXPECT_THAT(list_dir(dir), ::testing::UnorderedElementsAre("f32.gguf", "q8.gguf"));
  o.allow_requantize = true;
  quantize_model(dir + "/q8.gguf", dir + "/q4.gguf", o);
  auto q8 = GgufFile::open(dir + "/q8.gguf");
  auto q4 = GgufFile::open(dir + "/q4.gguf");
  const GgufTensorInfo* t = q4->find_tensor("blk.0.ffn_up.weight");
  ASSERT_EQ(t->dtype, DType::Q4_0);
  const std::vector<float> x = tensor_f32(*q8, *q8->find_tensor("blk.0.ffn_up.weight"));
  std::vector<std::uint8_t> expect(t->n_bytes);
  kernels::quantize_row_ref(DType::Q4_0, x.data(), expect.data(), static_cast<std::int64_t>(x.size()));
  EXPECT_EQ(std::memcmp(q4->mapped_file().data() + q4->data_offset() + t->offset, expect.data(), expect.size()), 0);
  // The same type needs no requantization: Q8_0 -> Q8_0 copies without --allow-requantize.
  o.allow_requantize = false;
  o.type = "Q8_0";
  quantize_model(dir + "/q8.gguf", dir + "/q8b.gguf", o);
}

TEST(QuantizeModel, Llama2cCheckpointBecomesALlamaGguf) {
  KILN_REQUIRE_DATA(bin, "stories260K.bin");
  const std::string dir = fresh_dir("quantize_llama2c");
  QuantizeOptions o;
  o.type = "F32";
  o.n_threads = 2;
  quantize_model(bin, dir + "/s.gguf", o);
  auto g = GgufFile::open(dir + "/s.gguf");
  auto l = Llama2cFile::open(bin);
  EXPECT_EQ(g->get_string("general.architecture"), "llama");
  EXPECT_EQ(g->get_string("tokenizer.ggml.model"), "no_vocab");
  EXPECT_EQ(g->get_int("llama.vocab_size"), 512);
  EXPECT_EQ(g->get_int("general.file_type"), 0);
  const LlamaConfig a = llama_config_from_gguf(*g);
  const Llama2cHeader& h = l->header();
  EXPECT_EQ(a.n_embd, h.dim);
  EXPECT_EQ(a.n_layer, h.n_layers);
  EXPECT_EQ(a.n_head, h.n_heads);
  EXPECT_EQ(a.n_head_kv, h.n_kv_heads);
  EXPECT_EQ(a.n_ff, h.hidden_dim);
  EXPECT_EQ(a.n_vocab, h.vocab_size);
  EXPECT_EQ(a.n_ctx_train, h.seq_len);
  EXPECT_EQ(a.rms_eps, 1e-5f);  // llama2.c's constants
  EXPECT_EQ(a.rope_theta, 10000.0f);
  EXPECT_EQ(a.tied_output, h.shared_classifier);
  ASSERT_EQ(g->tensors().size(), l->tensors().size());
  for (const TensorView& v : l->tensors()) {
    const GgufTensorInfo* t = g->find_tensor(v.name);
    ASSERT_NE(t, nullptr) << v.name;
    EXPECT_EQ(t->ne, v.ne);
    EXPECT_EQ(t->n_dims, v.n_dims);
    EXPECT_EQ(std::memcmp(g->mapped_file().data() + g->data_offset() + t->offset, v.data, v.n_bytes()), 0) << v.name;
  }
}

}  // namespace
}  // namespace kiln::optimize
