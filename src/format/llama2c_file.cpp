#include "format/llama2c_file.h"

#include <array>
#include <cmath>
#include <map>
#include <cstring>
#include <limits>
#include <string_view>

#include "core/error.h"

namespace kiln {
namespace {

constexpr std::uint64_t kHeaderBytes = 7 * sizeof(std::int32_t);
// export.py's versioned files: u32 magic "ak42", i32 version, the 7 ints, a shared-classifier
// byte, (v2) an i32 group size, zero padding to 256 bytes.
constexpr std::uint32_t kVersionedMagic = 0x616b3432;
constexpr std::uint64_t kVersionedHeaderBytes = 256;
constexpr std::int32_t kMaxGroupSize = 1 << 16;

// Walks the weights in file order, handing out byte offsets of consecutive blocks. Sizes are
// multiplied with overflow checks because the header may be corrupt; the total is compared with
// the file size before any view is made.
class WeightLayout {
 public:
  WeightLayout(const std::string& path, std::uint64_t start) : path_(path), cursor_(start) {}

  // Reserves `count` blocks of `n` elements of `elem_bytes` each; returns the first's offset.
  std::uint64_t take(std::string_view what, std::uint64_t count, std::uint64_t n, std::uint64_t elem_bytes = 4) {
    std::uint64_t elements = 0, bytes = 0, next = 0;
    if (__builtin_mul_overflow(count, n, &elements) || __builtin_mul_overflow(elements, elem_bytes, &bytes) ||
        __builtin_add_overflow(cursor_, bytes, &next))
      fail("{}: header gives {} a size that overflows 64 bits", path_, what);
    const std::uint64_t start = cursor_;
    cursor_ = next;
    return start;
  }
  std::uint64_t end() const { return cursor_; }

 private:
  const std::string& path_;
  std::uint64_t cursor_;
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

  Llama2cHeader& h = file->header_;
  std::uint32_t magic = 0;
  std::memcpy(&magic, mf.data(), 4);
  std::uint64_t params_at = 0, weights_at = kHeaderBytes;
  if (magic == kVersionedMagic) {
    if (mf.size() < kVersionedHeaderBytes)
      fail("{}: header is truncated ({} bytes, a versioned llama2.c checkpoint starts with {})", path, mf.size(),
           kVersionedHeaderBytes);
    std::memcpy(&h.version, mf.data() + 4, 4);
    if (h.version != 1 && h.version != 2)
      fail("{}: header version = {} (kiln reads llama2.c versions 0, 1 and 2)", path, h.version);
    params_at = 8;
    weights_at = kVersionedHeaderBytes;
    const std::uint8_t shared = mf.data()[8 + kHeaderBytes];
    if (shared > 1) fail("{}: header shared_classifier = {} (expected 0 or 1)", path, shared);
    h.shared_classifier = shared == 1;
    if (h.version == 2) {
      std::memcpy(&h.group_size, mf.data() + 8 + kHeaderBytes + 1, 4);
      if (h.group_size <= 0 || h.group_size > kMaxGroupSize)
        fail("{}: header group_size = {} (expected 1..{})", path, h.group_size, kMaxGroupSize);
    }
  }
  std::array<std::int32_t, 7> raw{};
  std::memcpy(raw.data(), mf.data() + params_at, kHeaderBytes);
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
  if (h.version == 0) {
    // Version 0 marks a separate classifier by a negative vocab size; the header keeps it positive.
    if (h.vocab_size == 0 || h.vocab_size == std::numeric_limits<std::int32_t>::min())
      fail("{}: header vocab_size = {} (expected a nonzero value)", path, h.vocab_size);
    h.shared_classifier = h.vocab_size > 0;
    if (h.vocab_size < 0) h.vocab_size = -h.vocab_size;
  } else {
    check_positive(path, "vocab_size", h.vocab_size);
  }
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

  // Byte offsets of each weight group, in the version's file order (see llama2c_file.h).
  WeightLayout layout(path, weights_at);
  std::uint64_t token_embd = 0, rms_att = 0, wq = 0, wk = 0, wv = 0, wo = 0, rms_ffn = 0, w1 = 0, w2 = 0, w3 = 0,
                rms_final = 0, wcls = 0;
  const bool wcls_stored = !h.shared_classifier;
  if (h.version == 0) {
    token_embd = layout.take("token_embedding", vocab, dim);
    rms_att = layout.take("rms_att", layers, dim);
    wq = layout.take("wq", layers, dim * dim);
    wk = layout.take("wk", layers, kv_dim * dim);
    wv = layout.take("wv", layers, kv_dim * dim);
    wo = layout.take("wo", layers, dim * dim);
    rms_ffn = layout.take("rms_ffn", layers, dim);
    w1 = layout.take("w1", layers, hidden * dim);
    w2 = layout.take("w2", layers, dim * hidden);
    w3 = layout.take("w3", layers, hidden * dim);
    rms_final = layout.take("rms_final", 1, dim);
    // RoPE tables kiln does not use: it computes rotations itself, as llama.cpp does.
    layout.take("freq_cis", static_cast<std::uint64_t>(h.seq_len), head_size);
    if (wcls_stored) wcls = layout.take("wcls", vocab, dim);
  } else {
    rms_att = layout.take("rms_att", layers, dim);
    rms_ffn = layout.take("rms_ffn", layers, dim);
    rms_final = layout.take("rms_final", 1, dim);
    // Version 1 stores the matrices as float32; version 2 as int8 values, all matrices first,
    // then every matrix's float32 scales (one per group of group_size values) in the same order.
    const std::uint64_t elem = h.version == 1 ? 4 : 1;
    token_embd = layout.take("token_embedding", vocab, dim, elem);
    wq = layout.take("wq", layers, dim * dim, elem);
    wk = layout.take("wk", layers, kv_dim * dim, elem);
    wv = layout.take("wv", layers, kv_dim * dim, elem);
    wo = layout.take("wo", layers, dim * dim, elem);
    w1 = layout.take("w1", layers, hidden * dim, elem);
    w2 = layout.take("w2", layers, dim * hidden, elem);
    w3 = layout.take("w3", layers, hidden * dim, elem);
    if (wcls_stored) wcls = layout.take("wcls", vocab, dim, elem);
  }
  // (offset of the int8 values, elements) of every quantized matrix, in file order (version 2).
  std::vector<std::pair<std::uint64_t, std::uint64_t>> quantized;
  std::uint64_t scales_at = 0;
  if (h.version == 2) {
    quantized.push_back({token_embd, vocab * dim});
    for (std::uint64_t l = 0; l < layers; ++l) quantized.push_back({wq + l * dim * dim, dim * dim});
    for (std::uint64_t l = 0; l < layers; ++l) quantized.push_back({wk + l * kv_dim * dim, kv_dim * dim});
    for (std::uint64_t l = 0; l < layers; ++l) quantized.push_back({wv + l * kv_dim * dim, kv_dim * dim});
    for (std::uint64_t l = 0; l < layers; ++l) quantized.push_back({wo + l * dim * dim, dim * dim});
    for (std::uint64_t l = 0; l < layers; ++l) quantized.push_back({w1 + l * hidden * dim, hidden * dim});
    for (std::uint64_t l = 0; l < layers; ++l) quantized.push_back({w2 + l * dim * hidden, dim * hidden});
    for (std::uint64_t l = 0; l < layers; ++l) quantized.push_back({w3 + l * hidden * dim, hidden * dim});
    if (wcls_stored) quantized.push_back({wcls, vocab * dim});
    const auto g = static_cast<std::uint64_t>(h.group_size);
    std::uint64_t n_scales = 0;
    for (const auto& [at, n] : quantized) {
      if (n % g != 0) fail("{}: a matrix of {} values does not divide into groups of {}", path, n, g);
      n_scales += n / g;
    }
    scales_at = layout.take("scales", n_scales, 1);
  }

  const std::uint64_t expected_bytes = layout.end();
  if (mf.size() != expected_bytes)
    fail(
        "{}: file size is {} bytes, but the version {} header (dim {}, hidden_dim {}, n_layers {}, n_heads {}, "
        "n_kv_heads {}, vocab_size {}{}, seq_len {}) needs exactly {}",
        path, mf.size(), h.version, h.dim, h.hidden_dim, h.n_layers, h.n_heads, h.n_kv_heads, h.vocab_size,
        h.shared_classifier ? "" : " with separate classifier", h.seq_len, expected_bytes);

  // Version 2's matrices are dequantized once into memory of the file's own (values * scale, as
  // llama2.c's runq.c computes them); everything else is viewed in the mapping.
  std::map<std::uint64_t, std::uint64_t> dequantized_at;  // file offset -> index in owned_
  if (h.version == 2) {
    std::uint64_t total = 0;
    for (const auto& [at, n] : quantized) total += n;
    file->owned_.resize(static_cast<std::size_t>(total));
    const auto g = static_cast<std::uint64_t>(h.group_size);
    const std::uint8_t* scales = mf.data() + scales_at;
    std::uint64_t out_at = 0, scale_i = 0;
    for (const auto& [at, n] : quantized) {
      dequantized_at[at] = out_at;
      const auto* q = reinterpret_cast<const std::int8_t*>(mf.data() + at);
      for (std::uint64_t i = 0; i < n; i += g, ++scale_i) {
        float scale = 0;
        std::memcpy(&scale, scales + scale_i * 4, 4);
        if (!std::isfinite(scale)) fail("{}: quantization scale #{} is not finite", path, scale_i);
        for (std::uint64_t j = 0; j < g; ++j) file->owned_[out_at + i + j] = static_cast<float>(q[i + j]) * scale;
      }
      out_at += n;
    }
  }

  std::vector<TensorView>& out = file->tensors_;
  // ne is innermost first: a (rows, cols) row-major matrix has ne = {cols, rows}. `matrix` is
  // set for the matrices version 2 stores quantized: their offset is an element offset into the
  // int8 block, which also finds the dequantized copy.
  auto add = [&](std::string name, std::uint64_t at, std::int64_t ne0, std::int64_t ne1, int n_dims, bool matrix) {
    const void* data = mf.data() + at;
    if (h.version == 2 && matrix) {
      // `at` lies inside one quantized block: find it (the greatest start <= at).
      auto it = dequantized_at.upper_bound(at);
      --it;
      data = file->owned_.data() + it->second + (at - it->first);
    }
    out.push_back(TensorView::contiguous(std::move(name), DType::F32, {ne0, ne1, 1, 1}, n_dims, data));
  };
  // Offsets of per-layer blocks: elements are 4 bytes except version 2's int8 matrices.
  const std::uint64_t me = h.version == 2 ? 1 : 4;
  const auto d = static_cast<std::int64_t>(dim);
  const auto f = static_cast<std::int64_t>(hidden);
  const auto kv = static_cast<std::int64_t>(kv_dim);
  const auto v = static_cast<std::int64_t>(vocab);
  out.reserve(2 + 9 * layers + 2);
  add("token_embd.weight", token_embd, d, v, 2, true);
  for (std::uint64_t l = 0; l < layers; ++l) {
    const std::string blk = fmt::format("blk.{}.", l);
    add(blk + "attn_norm.weight", rms_att + l * dim * 4, d, 1, 1, false);
    add(blk + "attn_q.weight", wq + l * dim * dim * me, d, d, 2, true);
    add(blk + "attn_k.weight", wk + l * kv_dim * dim * me, d, kv, 2, true);
    add(blk + "attn_v.weight", wv + l * kv_dim * dim * me, d, kv, 2, true);
    add(blk + "attn_output.weight", wo + l * dim * dim * me, d, d, 2, true);
    add(blk + "ffn_norm.weight", rms_ffn + l * dim * 4, d, 1, 1, false);
    add(blk + "ffn_gate.weight", w1 + l * hidden * dim * me, d, f, 2, true);
    add(blk + "ffn_down.weight", w2 + l * dim * hidden * me, f, d, 2, true);
    add(blk + "ffn_up.weight", w3 + l * hidden * dim * me, d, f, 2, true);
  }
  add("output_norm.weight", rms_final, d, 1, 1, false);
  if (wcls_stored) add("output.weight", wcls, d, v, 2, true);
  return file;
}

const TensorView* Llama2cFile::find_tensor(const std::string& name) const {
  for (const TensorView& t : tensors_)
    if (t.name == name) return &t;
  return nullptr;
}

}  // namespace kiln
