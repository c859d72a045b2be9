#include "convert/onnx_export.h"

#include <fcntl.h>
#include <google/protobuf/io/zero_copy_stream_impl.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <vector>

#include "format/tensor_source.h"
#include "convert/llama_onnx_graph.h"
#include "convert/llama_onnx_weights.h"
#include "convert/onnx_graph_builder.h"
#include "core/error.h"
#include "kernels/matmul.h"

namespace kiln::convert {
namespace {

constexpr std::uint64_t kProtobufLimit = 2ull << 30;

// Removes the temporary files unless the export completed.
struct TempFiles {
  std::vector<std::string> paths;
  bool keep = false;
  ~TempFiles() {
    if (!keep)
      for (const std::string& p : paths) std::remove(p.c_str());
  }
};

void check_exportable(const TensorSource& s, const LlamaConfig& c) {
  // The graph is the Llama layer (with qwen2's biases): other families' blocks are not in it.
  if (c.arch != "llama" && c.arch != "mistral" && c.arch != "qwen2")
    fail("{}: architecture '{}' cannot be exported to ONNX (llama, mistral and qwen2 can)", s.path(), c.arch);
  if (c.rope_scaling == RopeScaling::Yarn || c.rope_scaling == RopeScaling::LongRope || c.rope_attn_factor != 1.0f)
    fail("{}: YaRN, LongRoPE and rope attention factors are not in the exported graph", s.path());
  if (c.n_expert > 0)
    fail("{}: {} with {} experts per layer: the ONNX graph kiln writes has a dense FFN, not a mixture of experts",
         s.path(), c.arch, c.n_expert);
  if (c.n_head_kv <= 0 || c.n_head % c.n_head_kv != 0)
    fail("{}: {} heads do not group over {} key/value heads", s.path(), c.n_head, c.n_head_kv);
  if (c.n_rot <= 0 || c.n_rot % 2 != 0 || c.n_rot > c.head_dim)
    fail("{}: {} rotated dimensions do not fit a head of {}", s.path(), c.n_rot, c.head_dim);
  // gemma: post-norms, GELU, soft-caps and sliding windows are not in the exported graph.
  if (c.post_norms || c.n_swa > 0)
    fail("{}: exporting {} to ONNX is not supported (the graph is the Llama and Qwen2 one)", s.path(), c.arch);
}

// llama 3's per-frequency divisors, when the model has them.
std::vector<float> rope_freq_factors(const TensorSource& s, const LlamaConfig& c) {
  std::optional<TensorView> t = s.tensor("rope_freqs.weight");
  if (!t) return {};
  const std::int64_t n = c.n_rot / 2;
  if (t->n_elements() != n || t->ne[0] != n)
    fail("{}: tensor rope_freqs.weight has {} elements, expected {}", s.path(), t->n_elements(), n);
  std::vector<float> f(static_cast<std::size_t>(n));
  kernels::dequantize_row(t->dtype, t->data, f.data(), n);
  return f;
}

// Streams the message to `path` (no second copy of a graph that holds its weights) and fsyncs it.
void write_and_sync(const onnx::ModelProto& model, const std::string& path) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) fail("{}: cannot create ({})", path, std::strerror(errno));
  google::protobuf::io::FileOutputStream out(fd);
  const bool written = model.SerializeToZeroCopyStream(&out) && out.Flush();
  const int err = out.GetErrno();
  const bool synced = written && ::fsync(fd) == 0;
  if (!out.Close() || !written || !synced) fail("{}: write failed ({})", path, std::strerror(err != 0 ? err : errno));
}

// Makes the renames durable, as GgufWriter does.
void sync_directory_of(const std::string& path) {
  const std::filesystem::path dir = std::filesystem::path(path).parent_path();
  const int fd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
}

void rename_or_fail(const std::string& from, const std::string& to) {
  if (std::rename(from.c_str(), to.c_str()) != 0) fail("{}: cannot rename to {} ({})", from, to, std::strerror(errno));
}

}  // namespace

std::string onnx_temp_path(const std::string& out) { return out + ".tmp-" + std::to_string(::getpid()); }
std::string onnx_data_path(const std::string& out) { return out + ".data"; }
std::string onnx_data_temp_path(const std::string& out) {
  return onnx_data_path(out) + ".tmp-" + std::to_string(::getpid());
}

OnnxExportReport export_llama_onnx(const std::string& model_path, const std::string& out_path,
                                   const OnnxExportOptions& options,
                                   const std::function<void(const OnnxExportProgress&)>& progress) {
  const auto start = std::chrono::steady_clock::now();
  const std::unique_ptr<TensorSource> source = TensorSource::open(model_path);
  const LlamaConfig c = llama_config_from_source(*source);
  check_exportable(*source, c);

  OnnxExportReport report;
  report.config = c;
  report.input_format = source->format_name();
  report.n_weights = llama_onnx_weight_count(c);
  // Matrices (all but the vectors, a rounding error) in the stored width.
  report.weight_bytes = static_cast<std::uint64_t>(report.n_weights) * (options.storage == WeightStorage::f16 ? 2 : 4);
  const bool external = options.external_data.value_or(report.weight_bytes > kExternalDataThreshold);
  if (!external && report.weight_bytes >= kProtobufLimit)
    fail("{}: {} MiB of weights do not fit in one protobuf message (2 GiB): export with external data", model_path,
         report.weight_bytes >> 20);

  TempFiles temps;
  const std::string temp = onnx_temp_path(out_path);
  const std::string data_temp = onnx_data_temp_path(out_path);
  temps.paths.push_back(temp);
  if (external) temps.paths.push_back(data_temp);

  onnx::ModelProto model;
  model.set_ir_version(onnx::IR_VERSION);  // 8 in ONNX 1.12, the IR opset 17 came with
  model.set_producer_name("kiln");
  model.set_producer_version("0.1.0");
  model.set_doc_string(c.arch + " decoder exported by kiln from " +
                       std::filesystem::path(model_path).filename().string());
  onnx::OperatorSetIdProto* opset = model.add_opset_import();
  opset->set_domain("");
  opset->set_version(kLlamaOnnxOpset);
  const auto meta = [&](const std::string& key, const std::string& value) {
    onnx::StringStringEntryProto* e = model.add_metadata_props();
    e->set_key(key);
    e->set_value(value);
  };
  meta("architecture", c.arch);
  if (!c.name.empty()) meta("name", c.name);
  meta("num_hidden_layers", std::to_string(c.n_layer));
  meta("num_attention_heads", std::to_string(c.n_head));
  meta("num_key_value_heads", std::to_string(c.n_head_kv));
  meta("head_dim", std::to_string(c.head_dim));
  meta("vocab_size", std::to_string(c.n_vocab));

  onnx::GraphProto* graph = model.mutable_graph();
  graph->set_name(c.name.empty() ? c.arch : c.name);
  OnnxGraphBuilder builder(*graph);
  OnnxInitializers inits(*graph, external ? data_temp : "",
                         std::filesystem::path(onnx_data_path(out_path)).filename().string());
  const std::vector<float> freq_factors = rope_freq_factors(*source, c);
  LlamaOnnxWeights weights(*source, c, builder, inits, options.storage, [&](const std::string& name, std::int64_t done) {
    if (progress) progress({done, report.n_weights, &name});
  });
  if (progress) progress({0, report.n_weights, nullptr});
  build_llama_onnx_graph(c, freq_factors.empty() ? nullptr : freq_factors.data(), builder, weights);
  inits.close();
  report.n_nodes = builder.node_count();

  const std::size_t size = model.ByteSizeLong();
  if (size >= kProtobufLimit)
    fail("{}: the graph is {} MiB, past protobuf's 2 GiB: export with external data", model_path, size >> 20);
  write_and_sync(model, temp);
  // The data first: a graph never names a data file that is not there yet.
  if (external) {
    rename_or_fail(data_temp, onnx_data_path(out_path));
    report.data_path = onnx_data_path(out_path);
  }
  rename_or_fail(temp, out_path);
  temps.keep = true;
  sync_directory_of(out_path);
  report.file_bytes = size;
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return report;
}

}  // namespace kiln::convert
