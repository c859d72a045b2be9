#pragma once
// llama2.c's legacy checkpoint (.bin): a header of 7 int32
//   dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size (negative: separate classifier), seq_len
// followed by float32 weights in this order:
//   token_embedding (vocab, dim), rms_att (L, dim), wq (L, dim, dim), wk (L, kv_dim, dim),
//   wv (L, kv_dim, dim), wo (L, dim, dim), rms_ffn (L, dim), w1 (L, hidden, dim),
//   w2 (L, dim, hidden), w3 (L, hidden, dim), rms_final (dim),
//   freq_cis_real (seq_len, head_size/2), freq_cis_imag (seq_len, head_size/2),
//   [wcls (vocab, dim) when vocab_size < 0]
// Tensors are exposed as views named like GGUF's llama tensors (token_embd.weight,
// blk.N.attn_q.weight, ...), so the same model code binds either file.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/mapped_file.h"
#include "core/tensor.h"

namespace kiln {

struct Llama2cHeader {
  std::int32_t dim = 0, hidden_dim = 0, n_layers = 0, n_heads = 0, n_kv_heads = 0, vocab_size = 0, seq_len = 0;
  bool shared_classifier = true;  // vocab_size was positive in the file
};

class Llama2cFile {
 public:
  // Opens and validates `path` (header ranges, divisibility, exact file size); throws kiln::Error.
  static std::unique_ptr<Llama2cFile> open(const std::string& path);
  const std::string& path() const { return file_.path(); }
  const Llama2cHeader& header() const { return header_; }
  const std::vector<TensorView>& tensors() const { return tensors_; }
  const TensorView* find_tensor(const std::string& name) const;
  const MappedFile& mapped_file() const { return file_; }

 private:
  explicit Llama2cFile(MappedFile file) : file_(std::move(file)) {}
  MappedFile file_;
  Llama2cHeader header_;
  std::vector<TensorView> tensors_;
};

}  // namespace kiln
