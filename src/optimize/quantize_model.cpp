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
#include "optimize/model_input.h"

namespace kiln::optimize {
namespace {

// ggml's GGML_QNT_VERSION: the block layouts of the current quantization formats.
constexpr std::uint32_t kQuantizationVersion = 2;
// Output bytes converted per slab: large enough to keep every thread busy, small enough that
// memory stays flat (the whole model is never in memory, converted or not).
constexpr std::size_t kSlabBytes = std::size_t{8} << 20;
// Rows a thread takes at a time within a slab.
constexpr std::int64_t kRowGrain = 8;

// How one tensor's rows are quantized beyond its type.
struct TensorCalibration {
  std::vector<float> importance;       // (n_mat, ne[0]) quant_weights for ggml's *_impl, or empty
  const ImatrixEntry* entry = nullptr; // its imatrix entry (gptq reads the covariance)
  bool gptq = false;
};

struct Prepared {
  std::unique_ptr<ModelInput> input;
  const QuantPreset* preset = nullptr;
  std::vector<const InputTensor*> tensors;  // in llama.cpp's order
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
    for (const InputTensor* t : p.tensors)
      if (t->desc.name == name) ++matched;
  if (matched == 0)
    fail("{}: none of its {} entries (first '{}') names a tensor of {}: the imatrix was made for another model",
         options.imatrix, m.entries.size(), m.entries.begin()->first, in);
  for (std::size_t i = 0; i < p.tensors.size(); ++i) {
    const TensorDesc& d = p.tensors[i]->desc;
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
  p.input = ModelInput::open(in);
  for (const InputTensor& t : p.input->tensors()) p.tensors.push_back(&t);
  std::stable_sort(p.tensors.begin(), p.tensors.end(), [](const InputTensor* a, const InputTensor* b) {
    return llamacpp_tensor_order(a->desc.name, b->desc.name);
  });
  std::vector<TensorDesc> descs;
  descs.reserve(p.tensors.size());
  for (const InputTensor* t : p.tensors) descs.push_back(t->desc);
  p.plan = plan_quantization(p.input->shape(), descs, plan_options);
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

// Index of the first non-finite value in x, or -1. Branch-free over the row so it vectorizes.
std::int64_t first_non_finite(const float* x, std::int64_t k) {
  std::uint32_t any = 0;
  for (std::int64_t j = 0; j < k; ++j) {
    std::uint32_t bits;
    std::memcpy(&bits, x + j, 4);
    any |= static_cast<std::uint32_t>((bits & 0x7f800000u) == 0x7f800000u);
  }
  if (any == 0) return -1;
  for (std::int64_t j = 0; j < k; ++j)
    if (!std::isfinite(x[j])) return j;
  return -1;
}

// Converts one tensor slab by slab and streams it to the writer.
class TensorConverter {
 public:
  TensorConverter(const std::string& path, const InputTensor& in, const TensorPlan& plan,
                  const TensorCalibration& calibration, ThreadPool& pool)
      : path_(path), in_(in), plan_(plan), calibration_(calibration), pool_(pool) {}

  template <typename OnSlab>
  void run(GgufDataSink& out, OnSlab&& on_slab) {
    const std::int64_t k = in_.desc.ne[0];
    const std::int64_t n_rows = in_.desc.ne[1] * in_.desc.ne[2] * in_.desc.ne[3];
    const std::size_t in_row = row_bytes(plan_.from, k);
    const std::size_t out_row = row_bytes(plan_.to, k);
    const bool copy = plan_.from == plan_.to;
    // Weights are checked for NaN/Inf whenever they are floats or are converted.
    const bool check = !copy || !traits(plan_.from).quantized;
    const std::int64_t slab_rows = std::clamp<std::int64_t>(static_cast<std::int64_t>(kSlabBytes / out_row), 1, n_rows);
    // Rows of matrix m (of a 3-D expert tensor) take importance row m.
    const std::int64_t rows_per_mat = in_.desc.ne[1];
    const std::vector<float>& importance = calibration_.importance;
    GptqFactor gptq;
    if (calibration_.gptq) {
      const ImatrixEntry& e = *calibration_.entry;
      gptq = prepare_gptq(e.in_cov.data(), k, static_cast<double>(e.counts[0]));
    }
    std::vector<std::uint8_t> slab(static_cast<std::size_t>(slab_rows) * out_row);
    // scratch[w] is (k) floats: worker w's current row.
    std::vector<std::vector<float>> scratch(static_cast<std::size_t>(pool_.size()),
                                            std::vector<float>(static_cast<std::size_t>(k)));
    for (std::int64_t r0 = 0; r0 < n_rows; r0 += slab_rows) {
      const std::int64_t rows = std::min(slab_rows, n_rows - r0);
      std::mutex bad_mutex;
      std::int64_t bad_row = -1, bad_col = -1;
      float bad_value = 0;
      pool_.parallel_for(
          rows,
          [&](std::int64_t i, int worker) {
            const std::int64_t r = r0 + i;
            const std::uint8_t* src = in_.data + static_cast<std::size_t>(r) * in_row;
            std::uint8_t* dst = slab.data() + static_cast<std::size_t>(i) * out_row;
            const float* x = nullptr;
            if (check || !copy) {
              if (plan_.from == DType::F32) {
                x = reinterpret_cast<const float*>(src);
              } else {
                kernels::dequantize_row(plan_.from, src, scratch[static_cast<std::size_t>(worker)].data(), k);
                x = scratch[static_cast<std::size_t>(worker)].data();
              }
            }
            if (check) {
              const std::int64_t col = first_non_finite(x, k);
              if (col >= 0) {
                std::lock_guard<std::mutex> lock(bad_mutex);
                if (bad_row < 0 || r < bad_row) {
                  bad_row = r;
                  bad_col = col;
                  bad_value = x[col];
                }
                return;
              }
            }
            const float* qw = importance.empty() ? nullptr : importance.data() + (r / rows_per_mat) * k;
            if (copy)
              std::memcpy(dst, src, out_row);
            else if (calibration_.gptq)
              quantize_row_gptq(plan_.to, x, dst, k, qw, gptq);
            else
              kernels::quantize_row_weighted(plan_.to, x, dst, k, qw);
          },
          kRowGrain);
      if (bad_row >= 0)
        fail("{}: tensor '{}' row {} has {} at column {} (weights must be finite)", path_, plan_.name, bad_row,
             bad_value, bad_col);
      out.write(slab.data(), static_cast<std::size_t>(rows) * out_row);
      on_slab(rows * k);
    }
    release_input_pages();
  }

 private:
  // The input's pages are done with: drop them from this process's mapping (they stay in the page
  // cache) so that resident memory does not grow to the whole input model over the run.
  void release_input_pages() const {
    const auto page = static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE));
    const auto begin = (reinterpret_cast<std::uintptr_t>(in_.data) + page - 1) / page * page;
    const auto end = (reinterpret_cast<std::uintptr_t>(in_.data) + in_.n_bytes) / page * page;
    if (end > begin) ::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);
  }

  const std::string& path_;
  const InputTensor& in_;
  const TensorPlan& plan_;
  const TensorCalibration& calibration_;
  ThreadPool& pool_;
};

QuantizeReport make_report(const Prepared& p) {
  QuantizeReport r;
  r.preset = p.preset;
  r.plan = p.plan;
  r.input_format = p.input->format_name();
  r.file_bytes_in = p.input->file_size();
  for (std::size_t i = 0; i < p.tensors.size(); ++i) {
    const InputTensor& t = *p.tensors[i];
    const std::int64_t n = t.desc.ne[0] * t.desc.ne[1] * t.desc.ne[2] * t.desc.ne[3];
    r.n_elements += n;
    r.bytes_in += t.n_bytes;
    r.bytes_out += row_bytes(p.plan[i].to, t.desc.ne[0]) * static_cast<std::uint64_t>(n / t.desc.ne[0]);
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
  for (const auto& [key, value] : p.input->metadata()) {
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
  for (std::size_t i = 0; i < p.tensors.size(); ++i) {
    const InputTensor& t = *p.tensors[i];
    const TensorPlan& plan = p.plan[i];
    GgufTensorSpec spec(t.desc.name, plan.to, effective_dims(t.desc.ne), t.desc.ne);
    writer.add_tensor(std::move(spec), [&, i](GgufDataSink& sink) {
      TensorConverter(in, *p.tensors[i], p.plan[i], p.calibration[i], pool).run(sink, [&](std::int64_t elements) {
        done += elements;
        if (progress)
          progress({i, p.tensors.size(), &p.plan[i].name, done, report.n_elements, elapsed()});
      });
    });
  }
  writer.write(out);
  report.seconds = elapsed();
  struct stat st {};
  if (::stat(out.c_str(), &st) == 0) report.file_bytes_out = static_cast<std::uint64_t>(st.st_size);
  return report;
}

}  // namespace kiln::optimize
