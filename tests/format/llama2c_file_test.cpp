// Llama2cFile: the real stories260K checkpoint, the exact weight layout (checked on a synthetic
// file whose every float holds its own index), and rejection of bad headers and sizes.
#include "format/llama2c_file.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "test_support.h"

namespace kiln {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

struct Shape {
  std::int32_t dim, hidden, layers, heads, kv_heads, vocab, seq_len;  // vocab < 0: separate wcls

  std::int64_t n_floats() const {
    const std::int64_t v = vocab < 0 ? -vocab : vocab;
    const std::int64_t head = dim / heads, kv = head * kv_heads;
    std::int64_t n = v * dim;
    n += layers * (dim + dim * dim + 2 * kv * dim + dim * dim + dim + 3 * hidden * dim);
    n += dim + seq_len * head;
    if (vocab < 0) n += v * dim;
    return n;
  }
};

// A checkpoint whose float i holds the value i, so a view's first element is its offset.
std::vector<std::uint8_t> checkpoint(const Shape& s, std::int64_t n_floats) {
  const std::array<std::int32_t, 7> header = {s.dim, s.hidden, s.layers, s.heads, s.kv_heads, s.vocab, s.seq_len};
  std::vector<std::uint8_t> bytes(sizeof(header) + static_cast<std::size_t>(n_floats) * 4);
  std::memcpy(bytes.data(), header.data(), sizeof(header));
  for (std::int64_t i = 0; i < n_floats; ++i) {
    const float f = static_cast<float>(i);
    std::memcpy(bytes.data() + sizeof(header) + i * 4, &f, 4);
  }
  return bytes;
}
std::vector<std::uint8_t> checkpoint(const Shape& s) { return checkpoint(s, s.n_floats()); }

std::string write_file(const std::vector<std::uint8_t>& bytes, const std::string& name) {
  const std::string path = test::temp_dir() + "/" + name;
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  return path;
}

std::string open_error(const std::vector<std::uint8_t>& bytes) {
  const std::string path = write_file(bytes, "bad.bin");
  try {
    Llama2cFile::open(path);
  } catch (const Error& e) {
    const std::string message = e.what();
    EXPECT_THAT(message, HasSubstr(path));
    EXPECT_THAT(message, Not(HasSubstr("\n")));
    return message;
  }
  return "(opened)";
}

float first(const Llama2cFile& f, const std::string& name) {
  const TensorView* t = f.find_tensor(name);
  EXPECT_NE(t, nullptr) << name;
  return t ? *static_cast<const float*>(t->data) : -1.0f;
}

TEST(Llama2cFile, OpensStories260K) {
  KILN_REQUIRE_DATA(path, "stories260K.bin");
  auto f = Llama2cFile::open(path);
  const Llama2cHeader& h = f->header();
  EXPECT_EQ(h.dim, 64);
  EXPECT_EQ(h.hidden_dim, 172);
  EXPECT_EQ(h.n_layers, 5);
  EXPECT_EQ(h.n_heads, 8);
  EXPECT_EQ(h.n_kv_heads, 4);
  EXPECT_EQ(h.vocab_size, 512);
  EXPECT_EQ(h.seq_len, 512);
  EXPECT_TRUE(h.shared_classifier);
  ASSERT_EQ(f->tensors().size(), 1u + 5u * 9u + 1u);
  EXPECT_EQ(f->find_tensor("output.weight"), nullptr);

  const TensorView* emb = f->find_tensor("token_embd.weight");
  ASSERT_NE(emb, nullptr);
  EXPECT_EQ(emb->dtype, DType::F32);
  EXPECT_EQ(emb->ne[0], 64);
  EXPECT_EQ(emb->ne[1], 512);
  EXPECT_EQ(static_cast<const std::uint8_t*>(emb->data), f->mapped_file().data() + 28);
  EXPECT_FLOAT_EQ(*static_cast<const float*>(emb->data), -0.29474878f);

  const TensorView* k = f->find_tensor("blk.4.attn_k.weight");
  ASSERT_NE(k, nullptr);
  EXPECT_EQ(k->ne[0], 64);
  EXPECT_EQ(k->ne[1], 32);
  const TensorView* down = f->find_tensor("blk.2.ffn_down.weight");
  ASSERT_NE(down, nullptr);
  EXPECT_EQ(down->ne[0], 172);
  EXPECT_EQ(down->ne[1], 64);
  EXPECT_EQ(down->nb[1], 172u * 4u);

  // output_norm is followed only by the RoPE tables (seq_len x head_size floats).
  const TensorView* norm = f->find_tensor("output_norm.weight");
  ASSERT_NE(norm, nullptr);
  const auto* end_of_norm = static_cast<const std::uint8_t*>(norm->data) + norm->n_bytes();
  EXPECT_EQ(end_of_norm + 512 * 8 * 4, f->mapped_file().data() + f->mapped_file().size());
}

TEST(Llama2cFile, LaysOutEveryTensorWithSeparateClassifier) {
  const Shape s{8, 12, 2, 4, 2, -10, 3};  // head 2, kv_dim 4, separate classifier
  auto f = Llama2cFile::open(write_file(checkpoint(s), "layout.bin"));
  EXPECT_EQ(f->header().vocab_size, 10);
  EXPECT_FALSE(f->header().shared_classifier);
  ASSERT_EQ(f->tensors().size(), 1u + 2u * 9u + 2u);

  // Float offsets from the layout in llama2c_file.h: groups are stored for all layers in turn.
  const std::int64_t dim = 8, hidden = 12, kv = 4, vocab = 10, L = 2;
  std::int64_t at = 0;
  EXPECT_EQ(first(*f, "token_embd.weight"), at);
  at += vocab * dim;
  for (std::int64_t l = 0; l < L; ++l)
    EXPECT_EQ(first(*f, "blk." + std::to_string(l) + ".attn_norm.weight"), at + l * dim);
  at += L * dim;
  for (std::int64_t l = 0; l < L; ++l)
    EXPECT_EQ(first(*f, "blk." + std::to_string(l) + ".attn_q.weight"), at + l * dim * dim);
  at += L * dim * dim;
  for (std::int64_t l = 0; l < L; ++l)
    EXPECT_EQ(first(*f, "blk." + std::to_string(l) + ".attn_k.weight"), at + l * kv * dim);
  at += L * kv * dim;
  for (std::int64_t l = 0; l < L; ++l)
    EXPECT_EQ(first(*f, "blk." + std::to_string(l) + ".attn_v.weight"), at + l * kv * dim);
  at += L * kv * dim;
  for (std::int64_t l = 0; l < L; ++l)
    EXPECT_EQ(first(*f, "blk." + std::to_string(l) + ".attn_output.weight"), at + l * dim * dim);
  at += L * dim * dim;
  for (std::int64_t l = 0; l < L; ++l)
    EXPECT_EQ(first(*f, "blk." + std::to_string(l) + ".ffn_norm.weight"), at + l * dim);
  at += L * dim;
  for (std::int64_t l = 0; l < L; ++l)
    EXPECT_EQ(first(*f, "blk." + std::to_string(l) + ".ffn_gate.weight"), at + l * hidden * dim);
  at += L * hidden * dim;
  for (std::int64_t l = 0; l < L; ++l)
    EXPECT_EQ(first(*f, "blk." + std::to_string(l) + ".ffn_down.weight"), at + l * hidden * dim);
  at += L * hidden * dim;
  for (std::int64_t l = 0; l < L; ++l)
    EXPECT_EQ(first(*f, "blk." + std::to_string(l) + ".ffn_up.weight"), at + l * hidden * dim);
  at += L * hidden * dim;
  EXPECT_EQ(first(*f, "output_norm.weight"), at);
  at += dim + 3 * 2;  // rms_final, then freq_cis_real and freq_cis_imag (seq_len x head_size/2 each)
  EXPECT_EQ(first(*f, "output.weight"), at);
  EXPECT_EQ(at + vocab * dim, s.n_floats());

  // Shapes are ne, innermost first.
  const TensorView* q = f->find_tensor("blk.1.attn_q.weight");
  EXPECT_EQ(q->ne[0], dim);
  EXPECT_EQ(q->ne[1], dim);
  const TensorView* v = f->find_tensor("blk.0.attn_v.weight");
  EXPECT_EQ(v->ne[0], dim);
  EXPECT_EQ(v->ne[1], kv);
  const TensorView* gate = f->find_tensor("blk.0.ffn_gate.weight");
  EXPECT_EQ(gate->ne[0], dim);
  EXPECT_EQ(gate->ne[1], hidden);
  const TensorView* down = f->find_tensor("blk.0.ffn_down.weight");
  EXPECT_EQ(down->ne[0], hidden);
  EXPECT_EQ(down->ne[1], dim);
  const TensorView* out = f->find_tensor("output.weight");
  EXPECT_EQ(out->ne[0], dim);
  EXPECT_EQ(out->ne[1], vocab);
  EXPECT_EQ(f->find_tensor("blk.0.attn_norm.weight")->n_dims, 1);
}

TEST(Llama2cFile, RejectsWrongSizes) {
  const Shape s{8, 12, 2, 4, 2, 10, 3};
  const std::vector<std::uint8_t> full = checkpoint(s);
  EXPECT_NO_THROW(Llama2cFile::open(write_file(full, "ok.bin")));
  for (std::size_t n : {std::size_t{0}, std::size_t{27}}) {
    EXPECT_THAT(open_error(std::vector<std::uint8_t>(full.begin(), full.begin() + n)),
                HasSubstr("header is truncated"));
  }
  for (std::size_t n = 28; n < full.size(); n += 11)
    EXPECT_THAT(open_error(std::vector<std::uint8_t>(full.begin(), full.begin() + n)), HasSubstr("file size"));
  std::vector<std::uint8_t> longer = full;
  longer.resize(full.size() + 4);
  EXPECT_THAT(open_error(longer), HasSubstr("file size is"));
  // A shared-classifier file is one classifier short of its separate-classifier twin.
  Shape separate = s;
  separate.vocab = -10;
  EXPECT_THAT(open_error(checkpoint(separate, s.n_floats())), HasSubstr("with separate classifier"));
}

TEST(Llama2cFile, RejectsBadHeaders) {
  auto error_for = [](Shape s) { return open_error(checkpoint(s, 16)); };
  EXPECT_THAT(error_for({0, 12, 2, 4, 2, 10, 3}), HasSubstr("header dim = 0"));
  EXPECT_THAT(error_for({8, -1, 2, 4, 2, 10, 3}), HasSubstr("header hidden_dim = -1"));
  EXPECT_THAT(error_for({8, 12, 0, 4, 2, 10, 3}), HasSubstr("header n_layers = 0"));
  EXPECT_THAT(error_for({8, 12, 2, 0, 2, 10, 3}), HasSubstr("header n_heads = 0"));
  EXPECT_THAT(error_for({8, 12, 2, 4, 0, 10, 3}), HasSubstr("header n_kv_heads = 0"));
  EXPECT_THAT(error_for({8, 12, 2, 4, 2, 0, 3}), HasSubstr("header vocab_size = 0"));
  EXPECT_THAT(error_for({8, 12, 2, 4, 2, INT32_MIN, 3}), HasSubstr("header vocab_size"));
  EXPECT_THAT(error_for({8, 12, 2, 4, 2, 10, -3}), HasSubstr("header seq_len = -3"));
  EXPECT_THAT(error_for({8, 12, 2, 3, 1, 10, 3}), HasSubstr("dim = 8 is not divisible by n_heads = 3"));
  EXPECT_THAT(error_for({8, 12, 2, 4, 3, 10, 3}), HasSubstr("n_heads = 4 is not divisible by n_kv_heads = 3"));
  EXPECT_THAT(error_for({6, 12, 2, 2, 1, 10, 3}), HasSubstr("head size dim / n_heads = 6 / 2 = 3 is odd"));
  // Sizes that overflow 64 bits are reported, not wrapped into a plausible total.
  EXPECT_THAT(error_for({INT32_MAX - 1, INT32_MAX, INT32_MAX, 1, 1, INT32_MAX, INT32_MAX}), HasSubstr("overflows"));
  EXPECT_THAT(error_for({1 << 30, 1 << 30, 1 << 30, 1, 1, 1, 1}), HasSubstr("overflows"));
}

}  // namespace
}  // namespace kiln

namespace kiln {
namespace {

// export.py's layout, written from the tensors of a version 0 file: version 1 (float32) or
// version 2 (int8 in groups of `group` values with float32 scales).
std::vector<std::uint8_t> versioned_checkpoint(const Llama2cFile& v0, int version, int group) {
  const Llama2cHeader& h = v0.header();
  std::vector<std::uint8_t> out(256, 0);
  const std::uint32_t magic = 0x616b3432;
  std::memcpy(out.data(), &magic, 4);
  std::memcpy(out.data() + 4, &version, 4);
  const std::array<std::int32_t, 7> params = {h.dim, h.hidden_dim, h.n_layers, h.n_heads, h.n_kv_heads, h.vocab_size, h.seq_len};
  std::memcpy(out.data() + 8, params.data(), 28);
  out[36] = h.shared_classifier ? 1 : 0;
  if (version == 2) std::memcpy(out.data() + 37, &group, 4);
  const auto put_floats = [&](const TensorView& t) {
    const auto* p = static_cast<const std::uint8_t*>(t.data);
    out.insert(out.end(), p, p + t.n_bytes());
  };
  const auto layer_tensors = [&](const std::string& suffix) {
    std::vector<const TensorView*> v;
    for (int l = 0; l < h.n_layers; ++l) v.push_back(v0.find_tensor("blk." + std::to_string(l) + "." + suffix));
    return v;
  };
  for (const TensorView* t : layer_tensors("attn_norm.weight")) put_floats(*t);
  for (const TensorView* t : layer_tensors("ffn_norm.weight")) put_floats(*t);
  put_floats(*v0.find_tensor("output_norm.weight"));
  std::vector<const TensorView*> matrices = {v0.find_tensor("token_embd.weight")};
  for (const char* s : {"attn_q.weight", "attn_k.weight", "attn_v.weight", "attn_output.weight", "ffn_gate.weight",
                        "ffn_down.weight", "ffn_up.weight"})
    for (const TensorView* t : layer_tensors(s)) matrices.push_back(t);
  if (!h.shared_classifier) matrices.push_back(v0.find_tensor("output.weight"));
  std::vector<float> scales;
  for (const TensorView* t : matrices) {
    const auto* x = static_cast<const float*>(t->data);
    const std::int64_t n = t->n_elements();
    if (version == 1) {
      put_floats(*t);
      continue;
    }
    for (std::int64_t i = 0; i < n; i += group) {
      float amax = 0;
      for (int j = 0; j < group; ++j) amax = std::max(amax, std::fabs(x[i + j]));
      const float scale = amax / 127.0f;
      scales.push_back(scale);
      for (int j = 0; j < group; ++j)
        out.push_back(static_cast<std::uint8_t>(static_cast<std::int8_t>(scale > 0 ? std::lround(x[i + j] / scale) : 0)));
    }
  }
  const auto* sp = reinterpret_cast<const std::uint8_t*>(scales.data());
  out.insert(out.end(), sp, sp + scales.size() * 4);
  return out;
}

TEST(Llama2cFile, ReadsExportVersions1And2) {
  KILN_REQUIRE_DATA(bin, "stories260K.bin");
  auto v0 = Llama2cFile::open(bin);
  const std::string dir = test::temp_dir();
  for (int version : {1, 2}) {
    const std::string path = dir + "/v" + std::to_string(version) + ".bin";
    const std::vector<std::uint8_t> bytes = versioned_checkpoint(*v0, version, 32);
    std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    auto f = Llama2cFile::open(path);
    EXPECT_EQ(f->header().version, version);
    EXPECT_EQ(f->header().dim, v0->header().dim);
    ASSERT_EQ(f->tensors().size(), v0->tensors().size());
    for (const TensorView& want : v0->tensors()) {
      const TensorView* got = f->find_tensor(want.name);
      ASSERT_NE(got, nullptr) << want.name;
      ASSERT_EQ(got->ne, want.ne) << want.name;
      const auto* a = static_cast<const float*>(want.data);
      const auto* b = static_cast<const float*>(got->data);
      float amax = 0, err = 0;
      for (std::int64_t i = 0; i < want.n_elements(); ++i) {
        amax = std::max(amax, std::fabs(a[i]));
        err = std::max(err, std::fabs(a[i] - b[i]));
      }
      // Version 1 is the same floats; version 2 rounds to 1/127 of each group's largest value.
      if (version == 1)
        EXPECT_EQ(err, 0.0f) << want.name;
      else
        EXPECT_LE(err, amax / 254.0f * 1.001f) << want.name;
    }
    // One byte short, and a version kiln does not know, are refused.
    std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size() - 1));
    EXPECT_THAT([&] { Llama2cFile::open(path); }, ::testing::ThrowsMessage<Error>(HasSubstr("needs exactly")));
    std::vector<std::uint8_t> v9 = bytes;
    v9[4] = 9;
    std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(v9.data()), static_cast<std::streamsize>(v9.size()));
    EXPECT_THAT([&] { Llama2cFile::open(path); }, ::testing::ThrowsMessage<Error>(HasSubstr("version = 9")));
  }
}

}  // namespace
}  // namespace kiln
