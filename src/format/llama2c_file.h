#pragma once
// llama2.c's legacy checkpoint (.bin): a header of 7 int32
//   dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size (negative: separate classifier), seq_len
// followed by float32 weights in this order:
//   token_embedding (vocab, dim), rms_att (L, dim), wq (L, dim, dim), wk (L, kv_dim, dim),
//   wv (L, kv_dim, dim), wo (L, dim, dim), rms_ffn (L, dim), w1 (L, hidden, dim),
//   w2 (L, dim, hidden), w3 (L, hidden, dim), rms_final (dim),
//   freq_cis_real (seq_len, head_size/2), freq_cis_imag (seq_len, head_size/2),
//   [wcls (vocab, dim) when vocab_size < 0]
// export.py's versioned files start with u32 magic 0x616b3432 ("ak42"), i32 version, the same 7
// ints (vocab_size positive), a u8 shared-classifier flag, (version 2) an i32 group size, and zero
// padding to 256 bytes. Version 1 then stores float32 rms_att (L, dim), rms_ffn (L, dim),
// rms_final (dim), token_embedding, wq, wk, wv, wo, w1, w2, w3 (each over L), [wcls]; version 2
// stores the norms the same way, then the matrices in the same order as int8, then their float32
// scales (one per group_size values, in the same order): kiln dequantizes those into memory of
// its own when it opens the file.
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
  std::int32_t version = 0;  // 0: the legacy header; 1, 2: export.py's versioned files
  std::int32_t dim = 0, hidden_dim = 0, n_layers = 0, n_heads = 0, n_kv_heads = 0, vocab_size = 0, seq_len = 0;
  bool shared_classifier = true;  // version 0: vocab_size was positive in the file; else the flag byte
  std::int32_t group_size = 0;    // version 2: values per float32 scale
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
  std::vector<float> owned_;  // version 2: the dequantized matrices
};

}  // namespace kiln
