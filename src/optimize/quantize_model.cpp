#include "optimize/quantize_model.h"

#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <mutex>

#include "core/error.h"
#include "core/thread_pool.h"
#include "format/gguf_writer.h"
#include "kernels/gptq_block.h"
#include "kernels/matmul.h"
#include "kernels/weighted_quants.h"
#include "optimize/gptq_quant.h"
#include "optimize/imatrix.h"
#include "optimize/rewrite_pipeline.h"

namespace kiln::optimize {
namespace {

// ggml's GGML_QNT_VERSION: the block layouts of the current quantization formats.
constexpr std::uint32_t kQuantizationVersion = 2;
// How one tensor's rows are quantized beyond its type.
struct TensorCalibration {
  std::vector<float> importance;       // (n_mat, ne[0]) quant_weights for ggml's *_impl, or empty
  const ImatrixEntry* entry = nullptr; // its imatrix entry (gptq reads the covariance)
  bool gptq = false;
};

struct Prepared {
  std::unique_ptr<TensorSource> input;
  const QuantPreset* preset = nullptr;
  std::vector<const SourceTensor*> tensors;  // in llama.cpp's order
  std::vector<TensorDesc> descs;            // the same order
  std::vector<TensorPlan> plan;             // the same order
  std::unique_ptr<Imatrix> imatrix;
  std::vector<TensorCalibration> calibration;  // the same order
  std::vector<std::string> notices;            // for the user, before any work
};

bool is_token_embd(const std::string& name) { return name.rfind("token_embd.", 0) == 0; }

// Matches the imatrix to the model's tensors as llama.cpp does (by name; a size mismatch is an
// error except for token_embd, which llama.cpp skips), and refuses an imatrix that matches
// nothing at all: it was made for another model.
void attach_imatrix(Prepared& p, const std::string& in, const QuantizeOptions& options) {
  p.calibration.assign(p.tensors.size(), {});
  if (options.method != "rtn" && options.method != "gptq")
    fail("--method is rtn or gptq, not '{}'", options.method);
  if (options.imatrix.empty()) {
    if (options.method == "gptq") fail("--method gptq needs --imatrix FILE collected with kiln imatrix --covariance");
    return;
  }
  p.imatrix = std::make_unique<Imatrix>(read_imatrix(options.imatrix));
  const Imatrix& m = *p.imatrix;
  std::size_t matched = 0;
  for (const auto& [name, e] : m.entries)
    for (const SourceTensor* t : p.tensors)
      if (t->name == name) ++matched;
  if (matched == 0)
    fail("{}: none of its {} entries (first '{}') names a tensor of {}: the imatrix was made for another model",
         options.imatrix, m.entries.size(), m.entries.begin()->first, in);
  for (std::size_t i = 0; i < p.tensors.size(); ++i) {
    const TensorDesc& d = p.descs[i];
    const TensorPlan& plan = p.plan[i];
    if (!plan.quantizable || plan.from == plan.to) continue;
    TensorCalibration& c = p.calibration[i];
    const ImatrixEntry* e = m.find(d.name);
    if (e == nullptr) {
      if (kernels::uses_importance(plan.to))
        p.notices.push_back(fmt::format("tensor {}: not in the imatrix, quantized without importance", d.name));
      continue;
    }
    const std::int64_t want = d.ne[0] * d.ne[2];
    if (static_cast<std::int64_t>(e->in_sum2.size()) != want) {
      if (is_token_embd(d.name)) continue;  // llama.cpp ignores this one mismatch
      fail("{}: entry '{}' has {} values but the tensor in {} has {} columns: the imatrix was made for another model",
           options.imatrix, d.name, e->in_sum2.size(), in, want);
    }
    c.entry = e;
    c.importance = m.importance(d.name);
    if (options.method == "gptq") {
      if (e->in_cov.empty())
        p.notices.push_back(fmt::format("tensor {}: no covariance in the imatrix, importance-weighted rounding "
                                        "instead of gptq (collect with kiln imatrix --covariance)", d.name));
      else if (!kernels::gptq_supports(plan.to) && traits(plan.to).quantized)
        p.notices.push_back(fmt::format("tensor {}: gptq cannot write {}, importance-weighted rounding instead",
                                        d.name, dtype_name(plan.to)));
      else if (kernels::gptq_supports(plan.to))
        c.gptq = true;
    }
  }
  bool any_gptq = false;
  for (const TensorCalibration& c : p.calibration) any_gptq = any_gptq || c.gptq;
  if (options.method == "gptq" && !any_gptq)
    fail("{}: --method gptq found no tensor it can quantize (the imatrix needs in_cov: kiln imatrix --covariance)",
         options.imatrix);
}

Prepared prepare(const std::string& in, const QuantizeOptions& options) {
  Prepared p;
  p.preset = &find_quant_preset(options.type);
  PlanOptions plan_options;
  plan_options.preset = p.preset;
  plan_options.pure = options.pure;
  plan_options.has_imatrix = !options.imatrix.empty();
  for (const std::string& spec : options.tensor_types)
    plan_options.overrides.push_back(parse_tensor_type_override(spec));
  p.input = TensorSource::open(in);
  for (const SourceTensor& t : p.input->tensors()) {
    if (!t.dtype) fail("{}: tensor '{}' has type {}, which kiln cannot read", in, t.name, t.type_name);
    p.tensors.push_back(&t);
  }
  std::stable_sort(p.tensors.begin(), p.tensors.end(), [](const SourceTensor* a, const SourceTensor* b) {
    return llamacpp_tensor_order(a->name, b->name);
  });
  for (const SourceTensor* t : p.tensors) p.descs.push_back({t->name, *t->dtype, t->n_dims, t->ne});
  p.plan = plan_quantization(model_shape(p.input->metadata()), p.descs, plan_options);
  attach_imatrix(p, in, options);
  return p;
}

// ggml_n_dims: the dimensions up to the last one above 1 (llama.cpp writes tensor infos so).
int effective_dims(const std::array<std::int64_t, 4>& ne) {
  int n = 1;
  for (int d = 1; d < 4; ++d)
    if (ne[d] > 1) n = d + 1;
  return n;
}

QuantizeReport make_report(const Prepared& p) {
  QuantizeReport r;
  r.preset = p.preset;
  r.plan = p.plan;
  r.input_format = p.input->format_name();
  r.file_bytes_in = p.input->file_size();
  for (std::size_t i = 0; i < p.tensors.size(); ++i) {
    const SourceTensor& t = *p.tensors[i];
    const std::int64_t n = t.n_elements();
    r.n_elements += n;
    r.bytes_in += t.n_bytes;
    r.bytes_out += row_bytes(p.plan[i].to, t.ne[0]) * static_cast<std::uint64_t>(n / t.ne[0]);
  }
  return r;
}

}  // namespace

QuantizeReport plan_model_quantization(const std::string& in, const QuantizeOptions& options) {
  return make_report(prepare(in, options));
}

QuantizeReport quantize_model(const std::string& in, const std::string& out, const QuantizeOptions& options,
                              const QuantizeProgressFn& progress, const QuantizeNoticeFn& notice) {
  Prepared p = prepare(in, options);
  QuantizeReport report = make_report(p);

  // Refuse before writing anything.
  for (const TensorPlan& t : p.plan)
    if (t.from != t.to && traits(t.from).quantized && !options.allow_requantize)
      fail("{}: tensor '{}' is already quantized ({}); quantizing it again to {} compounds the error "
           "(pass --allow-requantize to dequantize and requantize anyway)",
           in, t.name, dtype_name(t.from), dtype_name(t.to));
  // An unwritable destination is reported now, not after minutes of work.
  const std::size_t slash = out.rfind('/');
  const std::string out_dir = slash == std::string::npos ? "." : slash == 0 ? "/" : out.substr(0, slash);
  if (::access(out_dir.c_str(), W_OK) != 0)
    fail("{}: cannot create a file in {}: {}", out, out_dir, std::strerror(errno));
  if (notice) {
    for (const TensorPlan& t : p.plan)
      if (!t.fallback.empty()) notice(fmt::format("tensor {}: {}", t.name, t.fallback));
    for (const std::string& line : p.notices) notice(line);
  }

  ThreadPool pool(options.n_threads);
  report.n_threads = pool.size();

  GgufWriter writer;
  for (const auto& [key, value] : p.input->metadata().metadata()) {
    if (key == "general.quantization_version" || key == "general.file_type" || key == "split.no" ||
        key == "split.count" || key == "split.tensors.count")
      continue;
    writer.add_metadata(key, value);
  }
  writer.add_metadata("general.quantization_version", gguf_value::u32(kQuantizationVersion));
  writer.add_metadata("general.file_type", gguf_value::u32(p.preset->ftype));
  if (p.imatrix) {
    // What llama-quantize records (as kv overrides, in this order; strings cut at 127 bytes),
    // replacing the input's own where it has them (a requantized file), as gguf_set_val does.
    writer.set_metadata("quantize.imatrix.file", gguf_value::string(options.imatrix.substr(0, 127)));
    if (!p.imatrix->datasets.empty())
      writer.set_metadata("quantize.imatrix.dataset", gguf_value::string(p.imatrix->datasets[0].substr(0, 127)));
    writer.set_metadata("quantize.imatrix.entries_count",
                        gguf_value::u32(static_cast<std::uint32_t>(p.imatrix->entries.size())));
    if (p.imatrix->chunk_count > 0)
      writer.set_metadata("quantize.imatrix.chunks_count", gguf_value::u32(p.imatrix->chunk_count));
  }
  if (options.method == "gptq") writer.set_metadata("quantize.kiln.method", gguf_value::string("gptq"));

  const auto start = std::chrono::steady_clock::now();
  const auto elapsed = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(); };
  std::int64_t done = 0;
  // A report before the first tensor, so that a caller's progress starts when the work does.
  if (progress && !p.plan.empty()) progress({0, p.tensors.size(), &p.plan[0].name, 0, report.n_elements, 0.0});
  // GPTQ's factor of each tensor, made when its turn comes (it is as large as a weight matrix).
  std::vector<RewriteTensor> rewrites;
  rewrites.reserve(p.tensors.size());
  for (std::size_t i = 0; i < p.tensors.size(); ++i) {
    RewriteTensor r = whole_tensor(*p.tensors[i], p.plan[i].to);
    r.importance = p.calibration[i].importance;
    check_rewrite(r, in);
    rewrites.push_back(std::move(r));
  }
  for (std::size_t i = 0; i < p.tensors.size(); ++i) {
    const SourceTensor& t = *p.tensors[i];
    GgufTensorSpec spec(t.name, p.plan[i].to, effective_dims(t.ne), t.ne);
    writer.add_tensor(std::move(spec), [&, i](GgufDataSink& sink) {
      RewriteTensor& r = rewrites[i];
      GptqFactor gptq;
      if (p.calibration[i].gptq) {
        const ImatrixEntry& e = *p.calibration[i].entry;
        gptq = prepare_gptq(e.in_cov.data(), r.ne[0], static_cast<double>(e.counts[0]));
        r.gptq = &gptq;
      }
      rewrite_tensor(
          r, in, pool, [&](const void* data, std::size_t n) { sink.write(data, n); },
          [&](std::int64_t rows) {
            done += rows * r.ne[0];
            if (progress) progress({i, p.tensors.size(), &p.plan[i].name, done, report.n_elements, elapsed()});
          });
      r.gptq = nullptr;
    });
  }
  writer.write(out);
  report.seconds = elapsed();
  struct stat st {};
  if (::stat(out.c_str(), &st) == 0) report.file_bytes_out = static_cast<std::uint64_t>(st.st_size);
  return report;
}

}  // namespace kiln::optimize
