#include "optimize/imatrix.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <unistd.h>

#include "core/error.h"
#include "core/mapped_file.h"
#include "format/gguf_file.h"
#include "format/gguf_writer.h"

namespace kiln::optimize {
namespace {

constexpr const char* kSum2Suffix = ".in_sum2";
constexpr const char* kCountsSuffix = ".counts";
constexpr const char* kCovSuffix = ".in_cov";

bool strip_suffix(std::string& s, const std::string& suffix) {
  if (s.size() <= suffix.size() || s.compare(s.size() - suffix.size(), suffix.size(), suffix) != 0) return false;
  s.resize(s.size() - suffix.size());
  return true;
}

bool has_counts(const ImatrixEntry& e) {
  for (float c : e.counts)
    if (c > 0) return true;
  return false;
}

void check_finite_nonnegative(const std::string& path, const std::string& what, const std::vector<float>& v) {
  for (std::size_t i = 0; i < v.size(); ++i)
    if (!std::isfinite(v[i]) || v[i] < 0)
      fail("{}: {} has {} at index {} (must be finite and >= 0)", path, what, v[i], i);
}

// Copies the f32 data of a tensor, checking its type.
std::vector<float> f32_data(const GgufFile& f, const GgufTensorInfo& t) {
  if (t.ggml_type != static_cast<std::uint32_t>(DType::F32))
    fail("{}: tensor '{}' has type {}, expected f32", f.path(), t.name, dtype_name_for_id(t.ggml_type));
  const std::uint8_t* p = f.mapped_file().data() + f.data_offset() + t.offset;
  std::vector<float> v(static_cast<std::size_t>(t.n_bytes / 4));
  std::memcpy(v.data(), p, v.size() * 4);
  return v;
}

Imatrix read_gguf(const std::string& path) {
  auto f = GgufFile::open(path);
  Imatrix m;
  if (const GgufArray* a = f->get_array("imatrix.datasets")) {
    if (a->elem_type != GgufType::String) fail("{}: imatrix.datasets is not an array of strings", path);
    m.datasets = a->strings;
  }
  const auto chunk_count = f->get_int("imatrix.chunk_count");
  const auto chunk_size = f->get_int("imatrix.chunk_size");
  if (chunk_count && (*chunk_count < 0 || *chunk_count > UINT32_MAX)) fail("{}: imatrix.chunk_count is out of range", path);
  if (chunk_size && (*chunk_size < 0 || *chunk_size > UINT32_MAX)) fail("{}: imatrix.chunk_size is out of range", path);
  m.chunk_count = chunk_count ? static_cast<std::uint32_t>(*chunk_count) : 0;
  m.chunk_size = chunk_size ? static_cast<std::uint32_t>(*chunk_size) : 0;

  std::map<std::string, const GgufTensorInfo*> sums, counts, covs;
  for (const GgufTensorInfo& t : f->tensors()) {
    std::string name = t.name;
    if (strip_suffix(name, kSum2Suffix)) sums[name] = &t;
    else if (strip_suffix(name, kCountsSuffix)) counts[name] = &t;
    else if (strip_suffix(name, kCovSuffix)) covs[name] = &t;
    // Other tensors (llama.cpp's optional in_sum) are not needed and, like llama.cpp, ignored.
  }
  if (sums.empty()) fail("{}: no <weight>.in_sum2 tensors: not an imatrix file", path);
  for (const auto& [name, st] : sums) {
    auto ct = counts.find(name);
    if (ct == counts.end()) fail("{}: '{}' has in_sum2 but no counts tensor", path, name);
    ImatrixEntry e;
    e.n_cols = st->ne[0];
    const std::int64_t n_mat = st->ne[1] * st->ne[2] * st->ne[3];
    const GgufTensorInfo& c = *ct->second;
    if (c.ne[0] != 1 || c.ne[1] * c.ne[2] * c.ne[3] != n_mat)
      fail("{}: '{}.counts' has shape [{}, {}], expected [1, {}] to match in_sum2", path, name, c.ne[0], c.ne[1], n_mat);
    e.in_sum2 = f32_data(*f, *st);
    e.counts = f32_data(*f, c);
    check_finite_nonnegative(path, name + kSum2Suffix, e.in_sum2);
    check_finite_nonnegative(path, name + kCountsSuffix, e.counts);
    if (auto cv = covs.find(name); cv != covs.end()) {
      const GgufTensorInfo& t = *cv->second;
      if (n_mat != 1 || t.ne[0] != e.n_cols || t.ne[1] != e.n_cols || t.ne[2] * t.ne[3] != 1)
        fail("{}: '{}.in_cov' has shape [{}, {}], expected [{}, {}]", path, name, t.ne[0], t.ne[1], e.n_cols, e.n_cols);
      e.in_cov = f32_data(*f, t);
      for (float v : e.in_cov)
        if (!std::isfinite(v)) fail("{}: '{}.in_cov' has a non-finite value", path, name);
    }
    m.entries.emplace(name, std::move(e));
  }
  for (const auto& [name, t] : counts)
    if (!sums.count(name)) fail("{}: '{}' has counts but no in_sum2 tensor", path, name);
  for (const auto& [name, t] : covs)
    if (!sums.count(name)) fail("{}: '{}' has in_cov but no in_sum2 tensor", path, name);
  return m;
}

// A cursor over the legacy file's bytes; every read is bounds-checked.
class LegacyReader {
 public:
  LegacyReader(const std::string& path, const MappedFile& f) : path_(path), p_(f.data()), n_(f.size()) {}
  std::size_t left() const { return n_ - pos_; }
  std::int32_t i32(const char* field) {
    need(4, field);
    std::int32_t v;
    std::memcpy(&v, p_ + pos_, 4);
    pos_ += 4;
    return v;
  }
  std::string bytes(std::size_t n, const char* field) {
    need(n, field);
    std::string s(reinterpret_cast<const char*>(p_ + pos_), n);
    pos_ += n;
    return s;
  }
  void floats(float* dst, std::size_t n, const char* field) {
    need(n * 4, field);
    std::memcpy(dst, p_ + pos_, n * 4);
    pos_ += n * 4;
  }

 private:
  void need(std::size_t n, const char* field) const {
    if (n > left()) fail("{}: truncated at byte {} reading {} (imatrix .dat)", path_, pos_, field);
  }
  const std::string& path_;
  const std::uint8_t* p_;
  std::size_t n_;
  std::size_t pos_ = 0;
};

Imatrix read_legacy(const std::string& path) {
  MappedFile f(path);
  LegacyReader r(path, f);
  Imatrix m;
  m.legacy = true;
  const std::int32_t n_entries = r.i32("the entry count");
  if (n_entries < 1) fail("{}: not an imatrix file (neither GGUF nor a .dat with entries: count {})", path, n_entries);
  for (std::int32_t i = 0; i < n_entries; ++i) {
    const std::int32_t len = r.i32("a name length");
    if (len < 1 || len > 4096) fail("{}: entry {} has a name length of {}", path, i, len);
    const std::string name = r.bytes(static_cast<std::size_t>(len), "a name");
    const std::int32_t ncall = r.i32("ncall");
    const std::int32_t nval = r.i32("the value count");
    if (ncall < 0) fail("{}: entry '{}' has ncall {}", path, name, ncall);
    if (nval < 1) fail("{}: entry '{}' has {} values", path, name, nval);
    ImatrixEntry e;
    e.n_cols = nval;
    e.in_sum2.resize(static_cast<std::size_t>(nval));
    r.floats(e.in_sum2.data(), e.in_sum2.size(), "values");
    check_finite_nonnegative(path, "entry '" + name + "'", e.in_sum2);
    // The values are mean x² times ncall: dividing by ncall gives the mean, as llama-quantize
    // does; with ncall 0 it uses the values as they are (a count of 1 here).
    e.counts = {static_cast<float>(ncall > 0 ? ncall : 1)};
    if (!m.entries.emplace(name, std::move(e)).second) fail("{}: entry '{}' appears twice", path, name);
  }
  if (r.left() >= 4) {
    const std::int32_t chunks = r.i32("the chunk count");
    m.chunk_count = chunks > 0 ? static_cast<std::uint32_t>(chunks) : 0;
    if (r.left() >= 4) {
      const std::int32_t len = r.i32("the dataset name length");
      if (len < 0 || static_cast<std::size_t>(len) > r.left()) fail("{}: bad dataset name length {}", path, len);
      if (len > 0) m.datasets.push_back(r.bytes(static_cast<std::size_t>(len), "the dataset name"));
    }
  }
  return m;
}

}  // namespace

const ImatrixEntry* Imatrix::find(const std::string& name) const {
  auto it = entries.find(name);
  return it == entries.end() ? nullptr : &it->second;
}

std::vector<float> Imatrix::importance(const std::string& name) const {
  const ImatrixEntry* e = find(name);
  if (e == nullptr) return {};
  std::vector<float> w(e->in_sum2.size());
  for (int m = 0; m < e->n_mat(); ++m) {
    const float count = e->counts[static_cast<std::size_t>(m)];
    for (std::int64_t j = 0; j < e->n_cols; ++j) {
      const std::size_t i = static_cast<std::size_t>(m * e->n_cols + j);
      w[i] = count > 0 ? e->in_sum2[i] / count : 1.0f;
    }
  }
  return w;
}

void write_imatrix(const Imatrix& m, const std::string& path) {
  using namespace gguf_value;
  GgufWriter w;
  w.add_metadata("general.type", string("imatrix"));
  GgufArray datasets;
  datasets.elem_type = GgufType::String;
  datasets.strings = m.datasets;
  w.add_metadata("imatrix.datasets", array(std::move(datasets)));
  w.add_metadata("imatrix.chunk_count", u32(m.chunk_count));
  w.add_metadata("imatrix.chunk_size", u32(m.chunk_size));
  const auto add = [&w](const std::string& name, std::int64_t ne0, std::int64_t ne1, const std::vector<float>& v) {
    w.add_tensor(GgufTensorSpec(name, DType::F32, 2, {ne0, ne1, 1, 1}),
                 [&v](GgufDataSink& out) { out.write(v.data(), v.size() * sizeof(float)); });
  };
  for (const auto& [name, e] : m.entries) {  // std::map: sorted by name, as llama-imatrix writes
    if (!has_counts(e)) continue;
    KILN_CHECK(e.in_sum2.size() == static_cast<std::size_t>(e.n_cols) * e.counts.size(),
               "imatrix entry '{}': {} sums for {} columns x {} matrices", name, e.in_sum2.size(), e.n_cols,
               e.counts.size());
    add(name + kSum2Suffix, e.n_cols, e.n_mat(), e.in_sum2);
    add(name + kCountsSuffix, 1, e.n_mat(), e.counts);
    if (!e.in_cov.empty()) {
      KILN_CHECK(e.in_cov.size() == static_cast<std::size_t>(e.n_cols * e.n_cols),
                 "imatrix entry '{}': covariance of {} values for {} columns", name, e.in_cov.size(), e.n_cols);
      add(name + kCovSuffix, e.n_cols, e.n_cols, e.in_cov);
    }
  }
  if (w.n_tensors() == 0) fail("{}: nothing to write: no weight saw any calibration token", path);
  w.write(path);
}

void write_imatrix_legacy(const Imatrix& m, const std::string& path) {
  std::string out;
  const auto put_i32 = [&out](std::int32_t v) { out.append(reinterpret_cast<const char*>(&v), 4); };
  std::int32_t n = 0;
  for (const auto& [name, e] : m.entries) n += has_counts(e) ? 1 : 0;
  if (n == 0) fail("{}: nothing to write: no weight saw any calibration token", path);
  put_i32(n);
  for (const auto& [name, e] : m.entries) {
    if (!has_counts(e)) continue;
    put_i32(static_cast<std::int32_t>(name.size()));
    out += name;
    // ncall is the number of chunks the largest count spans (rounded up, so never 0).
    float max_count = 0;
    for (float c : e.counts) max_count = std::max(max_count, c);
    const std::int64_t chunk = m.chunk_size > 0 ? m.chunk_size : 1;
    const auto ncall = static_cast<std::int32_t>((static_cast<std::int64_t>(max_count) + chunk - 1) / chunk);
    put_i32(ncall);
    put_i32(static_cast<std::int32_t>(e.in_sum2.size()));
    for (std::size_t i = 0; i < e.in_sum2.size(); ++i) {
      float count = e.counts[i / static_cast<std::size_t>(e.n_cols)];
      float value = e.in_sum2[i];
      if (count == 0) value = count = 1;
      const float v = value / count * static_cast<float>(ncall);
      out.append(reinterpret_cast<const char*>(&v), 4);
    }
  }
  put_i32(static_cast<std::int32_t>(m.chunk_count));
  const std::string dataset = m.datasets.empty() ? std::string() : m.datasets.front();
  put_i32(static_cast<std::int32_t>(dataset.size()));
  out += dataset;

  const std::string tmp = path + ".tmp-" + std::to_string(::getpid());
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (f == nullptr) fail("{}: cannot create: {}", tmp, std::strerror(errno));
  const bool ok = std::fwrite(out.data(), 1, out.size(), f) == out.size();
  const bool closed = std::fclose(f) == 0;
  if (!ok || !closed || std::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string why = std::strerror(errno);
    std::remove(tmp.c_str());
    fail("{}: cannot write: {}", path, why);
  }
}

Imatrix read_imatrix(const std::string& path) {
  MappedFile probe(path);
  const bool gguf = probe.size() >= 4 && std::memcmp(probe.data(), "GGUF", 4) == 0;
  return gguf ? read_gguf(path) : read_legacy(path);
}

void ImatrixCollector::observe(const TensorView& W, const float* x, std::int64_t rows) {
  if (W.name.rfind("blk.", 0) != 0 && !options_.process_output) return;
  const std::int64_t k = W.ne[0];
  Sums& s = sums_[W.name];
  if (s.n_cols == 0) {
    s.n_cols = k;
    s.sum2.assign(static_cast<std::size_t>(k), 0.0);
    if (options_.covariance) s.cov.assign(static_cast<std::size_t>(k * k), 0.0);
  }
  KILN_CHECK(s.n_cols == k, "imatrix: weight '{}' was seen with {} and {} input channels", W.name, s.n_cols, k);
  for (std::int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * k;  // (k) one token's activations
    for (std::int64_t j = 0; j < k; ++j) s.sum2[static_cast<std::size_t>(j)] += static_cast<double>(xr[j]) * xr[j];
    if (options_.covariance) {
      // The upper triangle only; result() mirrors it.
      for (std::int64_t i = 0; i < k; ++i) {
        const double xi = xr[i];
        double* row = s.cov.data() + i * k;
        for (std::int64_t j = i; j < k; ++j) row[j] += xi * xr[j];
      }
    }
  }
  s.count += rows;
}

void ImatrixCollector::observe_expert(const TensorView& W, std::int64_t expert, const float* x, std::int64_t rows) {
  const std::int64_t k = W.ne[0], n_mat = W.ne[2];
  KILN_CHECK(expert >= 0 && expert < n_mat, "imatrix: expert {} of '{}' with {} experts", expert, W.name, n_mat);
  Sums& s = sums_[W.name];
  if (s.n_cols == 0) {
    s.n_cols = k;
    s.sum2.assign(static_cast<std::size_t>(k * n_mat), 0.0);
    s.expert_counts.assign(static_cast<std::size_t>(n_mat), 0);
  }
  KILN_CHECK(s.n_cols == k && static_cast<std::int64_t>(s.expert_counts.size()) == n_mat,
             "imatrix: stacked weight '{}' was seen with another shape", W.name);
  double* sum2 = s.sum2.data() + expert * k;  // (k) this expert's sums
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t j = 0; j < k; ++j) sum2[j] += static_cast<double>(x[r * k + j]) * x[r * k + j];
  s.expert_counts[static_cast<std::size_t>(expert)] += rows;
  s.count += rows;
}

Imatrix ImatrixCollector::result() const {
  Imatrix m;
  for (const auto& [name, s] : sums_) {
    ImatrixEntry e;
    e.n_cols = s.n_cols;
    e.in_sum2.assign(s.sum2.begin(), s.sum2.end());
    e.counts = {static_cast<float>(s.count)};
    if (!s.expert_counts.empty()) e.counts.assign(s.expert_counts.begin(), s.expert_counts.end());
    if (!s.cov.empty()) {
      const std::int64_t k = s.n_cols;
      e.in_cov.resize(static_cast<std::size_t>(k * k));
      for (std::int64_t i = 0; i < k; ++i)
        for (std::int64_t j = i; j < k; ++j)
          e.in_cov[static_cast<std::size_t>(i * k + j)] = e.in_cov[static_cast<std::size_t>(j * k + i)] =
              static_cast<float>(s.cov[static_cast<std::size_t>(i * k + j)]);
    }
    m.entries.emplace(name, std::move(e));
  }
  return m;
}

std::int64_t ImatrixCollector::tokens_seen(const std::string& name) const {
  auto it = sums_.find(name);
  return it == sums_.end() ? 0 : it->second.count;
}

}  // namespace kiln::optimize
