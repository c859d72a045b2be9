#include "format/llama2c_file.h"

#include <array>
#include <cstring>
#include <limits>
#include <string_view>

#include "core/error.h"

namespace kiln {
namespace {

constexpr std::uint64_t kHeaderBytes = 7 * sizeof(std::int32_t);

// Walks the float32 weights in file order, handing out consecutive (rows, cols) views. Sizes
// are multiplied with overflow checks because the header may be corrupt; the total is compared
// with the file size before any view is made.
class WeightLayout {
 public:
  explicit WeightLayout(const std::string& path) : path_(path) {}

  // Reserves `count` blocks of `n` floats each and returns the float offset of the first.
  std::uint64_t take(std::string_view what, std::uint64_t count, std::uint64_t n) {
    std::uint64_t floats = 0;
    std::uint64_t next = 0;
    if (__builtin_mul_overflow(count, n, &floats) || __builtin_add_overflow(cursor_, floats, &next))
      fail("{}: header gives {} a size that overflows 64 bits", path_, what);
    const std::uint64_t start = cursor_;
    cursor_ = next;
    return start;
  }
  std::uint64_t floats() const { return cursor_; }

 private:
  const std::string& path_;
  std::uint64_t cursor_ = 0;
};

void check_positive(const std::string& path, std::string_view field, std::int32_t v) {
  if (v <= 0) fail("{}: header {} = {} (expected a positive value)", path, field, v);
}

}  // namespace

std::unique_ptr<Llama2cFile> Llama2cFile::open(const std::string& path) {
  std::unique_ptr<Llama2cFile> file(new Llama2cFile(MappedFile(path)));
  const MappedFile& mf = file->file_;
  if (mf.size() < kHeaderBytes)
    fail("{}: header is truncated ({} bytes, a llama2.c checkpoint starts with {})", path, mf.size(), kHeaderBytes);

  std::array<std::int32_t, 7> raw{};
  std::memcpy(raw.data(), mf.data(), kHeaderBytes);
  Llama2cHeader& h = file->header_;
  h.dim = raw[0];
  h.hidden_dim = raw[1];
  h.n_layers = raw[2];
  h.n_heads = raw[3];
  h.n_kv_heads = raw[4];
  h.vocab_size = raw[5];
  h.seq_len = raw[6];
  check_positive(path, "dim", h.dim);
  check_positive(path, "hidden_dim", h.hidden_dim);
  check_positive(path, "n_layers", h.n_layers);
  check_positive(path, "n_heads", h.n_heads);
  check_positive(path, "n_kv_heads", h.n_kv_heads);
  check_positive(path, "seq_len", h.seq_len);
  // llama2.c marks a separate classifier by a negative vocab size; the header keeps it positive.
  if (h.vocab_size == 0 || h.vocab_size == std::numeric_limits<std::int32_t>::min())
    fail("{}: header vocab_size = {} (expected a nonzero value)", path, h.vocab_size);
  h.shared_classifier = h.vocab_size > 0;
  if (h.vocab_size < 0) h.vocab_size = -h.vocab_size;
  if (h.dim % h.n_heads != 0) fail("{}: header dim = {} is not divisible by n_heads = {}", path, h.dim, h.n_heads);
  if (h.n_heads % h.n_kv_heads != 0)
    fail("{}: header n_heads = {} is not divisible by n_kv_heads = {}", path, h.n_heads, h.n_kv_heads);

  // RoPE rotates pairs of a head's channels, and the RoPE tables' size assumes whole pairs.
  if ((h.dim / h.n_heads) % 2 != 0)
    fail("{}: header head size dim / n_heads = {} / {} = {} is odd (expected an even head size)", path, h.dim,
         h.n_heads, h.dim / h.n_heads);

  const std::uint64_t dim = static_cast<std::uint64_t>(h.dim);
  const std::uint64_t hidden = static_cast<std::uint64_t>(h.hidden_dim);
  const std::uint64_t layers = static_cast<std::uint64_t>(h.n_layers);
  const std::uint64_t vocab = static_cast<std::uint64_t>(h.vocab_size);
  const std::uint64_t head_size = dim / static_cast<std::uint64_t>(h.n_heads);
  const std::uint64_t kv_dim = head_size * static_cast<std::uint64_t>(h.n_kv_heads);

  // Float offsets of each weight group, in file order (see llama2c_file.h).
  WeightLayout layout(path);
  const std::uint64_t token_embd = layout.take("token_embedding", vocab, dim);
  const std::uint64_t rms_att = layout.take("rms_att", layers, dim);
  const std::uint64_t wq = layout.take("wq", layers, dim * dim);
  const std::uint64_t wk = layout.take("wk", layers, kv_dim * dim);
  const std::uint64_t wv = layout.take("wv", layers, kv_dim * dim);
  const std::uint64_t wo = layout.take("wo", layers, dim * dim);
  const std::uint64_t rms_ffn = layout.take("rms_ffn", layers, dim);
  const std::uint64_t w1 = layout.take("w1", layers, hidden * dim);
  const std::uint64_t w2 = layout.take("w2", layers, dim * hidden);
  const std::uint64_t w3 = layout.take("w3", layers, hidden * dim);
  const std::uint64_t rms_final = layout.take("rms_final", 1, dim);
  // RoPE tables kiln does not use: it computes rotations itself, as llama.cpp does.
  layout.take("freq_cis", static_cast<std::uint64_t>(h.seq_len), head_size);
  const std::uint64_t wcls = h.shared_classifier ? 0 : layout.take("wcls", vocab, dim);

  // dim * dim and friends are below 2^62 for int32 inputs, so only the sums above can overflow.
  const std::uint64_t expected_floats = layout.floats();
  if (expected_floats > (std::numeric_limits<std::uint64_t>::max() - kHeaderBytes) / 4)
    fail("{}: header gives a weight size that overflows 64 bits", path);
  const std::uint64_t expected_bytes = kHeaderBytes + expected_floats * 4;
  if (mf.size() != expected_bytes)
    fail(
        "{}: file size is {} bytes, but the header (dim {}, hidden_dim {}, n_layers {}, n_heads {}, n_kv_heads {}, "
        "vocab_size {}{}, seq_len {}) needs exactly {}",
        path, mf.size(), h.dim, h.hidden_dim, h.n_layers, h.n_heads, h.n_kv_heads, h.vocab_size,
        h.shared_classifier ? "" : " with separate classifier", h.seq_len, expected_bytes);

  const float* weights = reinterpret_cast<const float*>(mf.data() + kHeaderBytes);
  std::vector<TensorView>& out = file->tensors_;
  // ne is innermost first: a (rows, cols) row-major matrix has ne = {cols, rows}.
  auto add = [&](std::string name, std::uint64_t at, std::int64_t ne0, std::int64_t ne1, int n_dims) {
    out.push_back(TensorView::contiguous(std::move(name), DType::F32, {ne0, ne1, 1, 1}, n_dims, weights + at));
  };
  const auto d = static_cast<std::int64_t>(dim);
  const auto f = static_cast<std::int64_t>(hidden);
  const auto kv = static_cast<std::int64_t>(kv_dim);
  const auto v = static_cast<std::int64_t>(vocab);
  out.reserve(2 + 9 * layers + 2);
  add("token_embd.weight", token_embd, d, v, 2);
  for (std::uint64_t l = 0; l < layers; ++l) {
    const std::string blk = fmt::format("blk.{}.", l);
    add(blk + "attn_norm.weight", rms_att + l * dim, d, 1, 1);
    add(blk + "attn_q.weight", wq + l * dim * dim, d, d, 2);
    add(blk + "attn_k.weight", wk + l * kv_dim * dim, d, kv, 2);
    add(blk + "attn_v.weight", wv + l * kv_dim * dim, d, kv, 2);
    add(blk + "attn_output.weight", wo + l * dim * dim, d, d, 2);
    add(blk + "ffn_norm.weight", rms_ffn + l * dim, d, 1, 1);
    add(blk + "ffn_gate.weight", w1 + l * hidden * dim, d, f, 2);
    add(blk + "ffn_down.weight", w2 + l * dim * hidden, f, d, 2);
    add(blk + "ffn_up.weight", w3 + l * hidden * dim, d, f, 2);
  }
  add("output_norm.weight", rms_final, d, 1, 1);
  if (!h.shared_classifier) add("output.weight", wcls, d, v, 2);
  return file;
}

const TensorView* Llama2cFile::find_tensor(const std::string& name) const {
  for (const TensorView& t : tensors_)
    if (t.name == name) return &t;
  return nullptr;
}

}  // namespace kiln
