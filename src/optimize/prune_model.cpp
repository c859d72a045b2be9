#include "optimize/prune_model.h"

#include <sys/stat.h>

#include <algorithm>
#include <map>
#include <memory>

#include "core/error.h"
#include "core/thread_pool.h"
#include "format/gguf_writer.h"
#include "optimize/quant_plan.h"
#include "optimize/rewrite_pipeline.h"

namespace kiln::optimize {
namespace {

// ggml's GGML_QNT_VERSION, written with a quantization mix as kiln quantize does.
constexpr std::uint32_t kQuantizationVersion = 2;

// "blk.12.attn_q.weight" -> 12 and "attn_q.weight"; -1 outside the blocks.
int block_of(const std::string& name, std::string& rest) {
  if (name.rfind("blk.", 0) != 0) return -1;
  const std::size_t dot = name.find('.', 4);
  if (dot == std::string::npos || dot == 4) return -1;
  int layer = 0;
  for (std::size_t i = 4; i < dot; ++i) {
    if (name[i] < '0' || name[i] > '9' || layer > 1000000) return -1;
    layer = layer * 10 + (name[i] - '0');
  }
  rest = name.substr(dot + 1);
  return layer;
}

// The rows of the heads `heads_of_group` heads per kept group: head h is rows h·D .. h·D + D - 1.
std::vector<std::int64_t> head_rows(const std::vector<int>& groups, int heads_per_group, int head_dim) {
  std::vector<std::int64_t> rows;
  for (int g : groups)
    for (int h = g * heads_per_group; h < (g + 1) * heads_per_group; ++h)
      for (int d = 0; d < head_dim; ++d) rows.push_back(static_cast<std::int64_t>(h) * head_dim + d);
  return rows;
}

bool is_identity(const std::vector<std::int64_t>& v, std::int64_t n) {
  if (static_cast<std::int64_t>(v.size()) != n) return false;
  for (std::int64_t i = 0; i < n; ++i)
    if (v[static_cast<std::size_t>(i)] != i) return false;
  return true;
}

// The same key with a new integer value, in the stored value's type.
GgufValue with_int(const GgufValue& stored, std::int64_t v) {
  GgufValue out = stored;
  out.v = v;
  return out;
}

}  // namespace

PruneConstraints prune_constraints(const TensorSource& source, const LlamaConfig& c, const std::string& type) {
  PruneConstraints k;
  if (!type.empty()) {
    const QuantPreset& preset = find_quant_preset(type);
    const std::int64_t b = traits(preset.default_type).block_size;
    k.ffn_multiple = k.q_dim_multiple = b;
    k.ffn_type = k.q_type = fmt::format("--type {} writes {}, blocks of {}", preset.name,
                                        dtype_name(preset.default_type), b);
    return k;
  }
  // Float weights fit any width, but a width of whole 32-column blocks keeps every 32-block
  // quantization (q4_0 .. q8_0) open for the pruned model, and the kernels' vector loops whole.
  if (c.n_ff % 32 == 0) k.ffn_multiple = 32, k.ffn_type = "kept to whole 32-column quant blocks";
  if (c.q_dim() % 32 == 0) k.q_dim_multiple = 32, k.q_type = "kept to whole 32-column quant blocks";
  for (int l = 0; l < c.n_layer; ++l) {
    const std::string b = "blk." + std::to_string(l) + ".";
    for (const char* role : {"ffn_down.weight", "attn_output.weight"}) {
      const SourceTensor* t = source.find_tensor(b + role);
      if (t == nullptr || !t->dtype) continue;
      const std::int64_t blk = traits(*t->dtype).block_size;
      const bool ffn = std::string(role) == "ffn_down.weight";
      std::int64_t& m = ffn ? k.ffn_multiple : k.q_dim_multiple;
      if (blk > m) {
        m = blk;
        (ffn ? k.ffn_type : k.q_type) =
            fmt::format("{} is {}, blocks of {}", ffn ? "ffn_down" : "attn_output", dtype_name(*t->dtype), blk);
      }
    }
  }
  return k;
}

PruneReport write_pruned_model(const TensorSource& source, const LlamaConfig& c, const PrunePlan& plan,
                               const std::string& in_path, const std::string& out, const PruneWriteOptions& options,
                               const std::function<void(const PruneWriteProgress&)>& progress) {
  check_prune_plan(c, plan);
  const int G = c.n_head / c.n_head_kv;
  const int n_group = static_cast<int>(plan.kv_groups[0].size());
  const int n_ff = static_cast<int>(plan.ffn_channels[0].size());
  const int n_layer = static_cast<int>(plan.layers.size());
  std::map<int, int> new_index;  // input layer -> output layer
  for (int i = 0; i < n_layer; ++i) new_index[plan.layers[static_cast<std::size_t>(i)]] = i;

  // Every output tensor as a rewrite of one input tensor, in the input's order.
  std::vector<RewriteTensor> rewrites;
  PruneReport report;
  for (const SourceTensor& t : source.tensors()) {
    if (!t.dtype) fail("{}: tensor '{}' has type {}, which kiln cannot read", in_path, t.name, t.type_name);
    report.params_in += t.n_elements();
    report.bytes_in += t.n_bytes;
    std::string rest;
    const int l = block_of(t.name, rest);
    if (l < 0) {
      rewrites.push_back(whole_tensor(t, *t.dtype));
      continue;
    }
    if (l >= c.n_layer) fail("{}: tensor '{}' is outside the model's {} layers", in_path, t.name, c.n_layer);
    auto it = new_index.find(l);
    if (it == new_index.end()) continue;  // a dropped layer
    const std::size_t i = static_cast<std::size_t>(it->second);
    RewriteTensor r = whole_tensor(t, *t.dtype);
    r.name = "blk." + std::to_string(it->second) + "." + rest;
    const std::vector<int>& groups = plan.kv_groups[i];
    std::vector<std::int64_t> channels(plan.ffn_channels[i].begin(), plan.ffn_channels[i].end());
    const auto rows_of = [&](std::vector<std::int64_t> rows) {
      if (!is_identity(rows, t.ne[1])) r.rows = std::move(rows);
      r.ne[1] = static_cast<std::int64_t>(r.rows.empty() ? t.ne[1] : r.rows.size());
    };
    const auto columns_of = [&](std::vector<std::int64_t> cols) {
      if (!is_identity(cols, t.ne[0])) r.columns = std::move(cols);
      r.ne[0] = static_cast<std::int64_t>(r.columns.empty() ? t.ne[0] : r.columns.size());
    };
    if (rest == "attn_q.weight") rows_of(head_rows(groups, G, c.head_dim));
    else if (rest == "attn_k.weight" || rest == "attn_v.weight") rows_of(head_rows(groups, 1, c.head_dim));
    else if (rest == "attn_q.bias") columns_of(head_rows(groups, G, c.head_dim));
    else if (rest == "attn_k.bias" || rest == "attn_v.bias") columns_of(head_rows(groups, 1, c.head_dim));
    else if (rest == "attn_output.weight") columns_of(head_rows(groups, G, c.head_dim));
    else if (rest == "ffn_gate.weight" || rest == "ffn_up.weight") rows_of(channels);
    else if (rest == "ffn_down.weight") columns_of(channels);
    else if (rest != "attn_norm.weight" && rest != "ffn_norm.weight")
      fail("{}: prune does not know how to cut tensor '{}' (a Llama layer has attn_norm, attn_q/k/v (and biases), "
           "attn_output, ffn_norm, ffn_gate, ffn_up, ffn_down)",
           in_path, t.name);
    rewrites.push_back(std::move(r));
  }

  // Metadata: the input's, with the new widths.
  const GgufMetadata& meta = source.metadata();
  const std::string p = c.arch + ".";
  GgufWriter writer;
  for (const auto& [key, value] : meta.metadata()) {
    if (key == "split.no" || key == "split.count" || key == "split.tensors.count") continue;
    writer.add_metadata(key, value);
  }
  const auto set_int = [&](const std::string& key, std::int64_t v) {
    const GgufValue* stored = meta.find(key);
    if (stored != nullptr && stored->as_array() != nullptr)
      fail("{}: {} is a per-layer array; prune writes one width per model", in_path, key);
    writer.set_metadata(key, stored != nullptr && stored->as_int() ? with_int(*stored, v)
                                                                   : gguf_value::u32(static_cast<std::uint32_t>(v)));
  };
  set_int(p + "block_count", n_layer);
  set_int(p + "attention.head_count", static_cast<std::int64_t>(n_group) * G);
  set_int(p + "attention.head_count_kv", n_group);
  set_int(p + "feed_forward_length", n_ff);
  if (n_group != c.n_head_kv) {
    // Readers derive the head size as n_embd / n_head when these are absent: say it outright.
    for (const char* key : {"attention.key_length", "attention.value_length"})
      if (meta.find(p + key) == nullptr) set_int(p + key, c.head_dim);
    if (meta.find(p + "rope.dimension_count") == nullptr) set_int(p + "rope.dimension_count", c.n_rot);
  }

  // Types: stored, or the mix's plan over the output's shapes (in llama.cpp's order, as quantize).
  std::vector<DType> types;
  for (const RewriteTensor& r : rewrites) types.push_back(r.source->dtype.value());
  if (!options.type.empty()) {
    const QuantPreset& preset = find_quant_preset(options.type);
    std::stable_sort(rewrites.begin(), rewrites.end(),
                     [](const RewriteTensor& a, const RewriteTensor& b) { return llamacpp_tensor_order(a.name, b.name); });
    std::vector<TensorDesc> descs;
    for (const RewriteTensor& r : rewrites) descs.push_back({r.name, r.source->dtype.value(), r.n_dims, r.ne});
    PlanOptions po;
    po.preset = &preset;
    const ModelShape shape{c.arch, n_layer, n_group * G, n_group};
    const std::vector<TensorPlan> tp = plan_quantization(shape, descs, po);
    for (std::size_t i = 0; i < rewrites.size(); ++i) types[i] = tp[i].to;
    writer.set_metadata("general.quantization_version", gguf_value::u32(kQuantizationVersion));
    writer.set_metadata("general.file_type", gguf_value::u32(preset.ftype));
  }
  std::int64_t total = 0;
  for (std::size_t i = 0; i < rewrites.size(); ++i) {
    RewriteTensor& r = rewrites[i];
    r.to = types[i];
    check_rewrite(r, in_path);
    total += r.ne[0] * r.n_rows();
    report.params_out += r.ne[0] * r.n_rows();
    report.bytes_out += r.n_bytes();
  }
  report.n_tensors = rewrites.size();

  ThreadPool pool(options.n_threads);
  std::int64_t done = 0;
  if (progress) progress({0, total});
  for (std::size_t i = 0; i < rewrites.size(); ++i) {
    const RewriteTensor& r = rewrites[i];
    writer.add_tensor(GgufTensorSpec(r.name, r.to, r.n_dims, r.ne),
                      [&, i](GgufDataSink& sink) {
                        const RewriteTensor& rt = rewrites[i];
                        rewrite_tensor(
                            rt, in_path, pool, [&](const void* data, std::size_t n) { sink.write(data, n); },
                            [&](std::int64_t rows) {
                              done += rows * rt.ne[0];
                              if (progress) progress({done, total});
                            });
                      });
  }
  writer.write(out);
  struct stat st {};
  if (::stat(out.c_str(), &st) == 0) report.file_bytes_out = static_cast<std::uint64_t>(st.st_size);
  return report;
}

}  // namespace kiln::optimize
