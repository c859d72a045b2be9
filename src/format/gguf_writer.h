#pragma once
// Writes a GGUF file (v3 by default; v2 for writing a v2 file back unchanged): metadata of every
// value type (nested arrays included), tensor infos, padding to `general.alignment`, then the
// tensor data, streamed tensor by tensor from producer callbacks so that a model is never held
// in memory whole. The layout is ggml's (gguf_write_to_buf): each tensor's data starts at the
// next multiple of the alignment after the previous one and is zero-padded to it, the last one
// included, so a file that llama.cpp wrote, read by GgufFile and written back, is the same bytes.
//
// The file appears atomically: bytes go to `<path>.tmp-<pid>`, which is fsync'ed and renamed
// over `path`; on any error (a producer throws, the disk fills, a check fails) the temporary file
// is removed and nothing is left at `path`.
//
//   GgufWriter w;
//   w.add_metadata("general.architecture", GgufValue::string("llama"));
//   w.add_tensor({"token_embd.weight", DType::F16, 2, {dim, vocab, 1, 1}},
//                [&](GgufDataSink& out) { out.write(bytes, n); });
//   w.write("model.gguf");
#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/dtype.h"
#include "format/tensor_data_sink.h"
#include "format/gguf_file.h"

namespace kiln {

// Where a tensor producer writes its bytes (format/tensor_data_sink.h).
using GgufDataSink = TensorDataSink;

using GgufTensorProducer = std::function<void(GgufDataSink& out)>;

struct GgufTensorSpec {
  std::string name;
  std::uint32_t ggml_type = 0;  // ggml type id (DType's values)
  int n_dims = 0;
  std::array<std::int64_t, 4> ne{1, 1, 1, 1};  // innermost first; ne[d] = 1 for d >= n_dims
  // Byte size. Computed from the type when kiln knows it (and checked if also given here);
  // required for a type kiln cannot compute with (an IQ type copied through unchanged).
  std::uint64_t n_bytes = 0;
  // Offset in the data section. Unset: ggml's packing (next multiple of the alignment). Set (to
  // reproduce another writer's layout): must be aligned and past the previous tensor's end; the
  // gap is zero-filled. Data is written in the order tensors were added.
  std::optional<std::uint64_t> offset;

  GgufTensorSpec() = default;
  GgufTensorSpec(std::string name_, DType type, int n_dims_, std::array<std::int64_t, 4> ne_)
      : name(std::move(name_)), ggml_type(static_cast<std::uint32_t>(type)), n_dims(n_dims_), ne(ne_) {}
};

class GgufWriter {
 public:
  explicit GgufWriter(std::uint32_t version = 3);

  // Appends a key; throws kiln::Error if it is empty or already present.
  void add_metadata(std::string key, GgufValue value);
  // Replaces the value of an existing key in place, or appends it.
  void set_metadata(const std::string& key, GgufValue value);
  // Removes a key if present; returns whether it was.
  bool remove_metadata(const std::string& key);
  const std::vector<std::pair<std::string, GgufValue>>& metadata() const { return metadata_; }
  const GgufValue* find_metadata(const std::string& key) const;

  // Appends a tensor; its shape and type are checked here, its bytes are produced by `data`
  // during write(), in the order tensors were added.
  void add_tensor(GgufTensorSpec spec, GgufTensorProducer data);
  std::size_t n_tensors() const { return tensors_.size(); }

  // Whether the last tensor is zero-padded to the alignment (ggml does; some writers do not).
  void set_pad_end(bool pad) { pad_end_ = pad; }

  // The alignment write() will use: general.alignment when set (an integer power of two), else 32.
  std::uint64_t alignment() const;

  // Validates everything, then writes `path` atomically (see the top of this file).
  void write(const std::string& path) const;

 private:
  struct Tensor {
    GgufTensorSpec spec;
    GgufTensorProducer data;
  };
  std::uint32_t version_;
  bool pad_end_ = true;
  std::vector<std::pair<std::string, GgufValue>> metadata_;
  std::vector<Tensor> tensors_;
};

// Sets up `writer` to reproduce `file` unchanged: its version, metadata in file order, tensor
// infos with their offsets, data copied from the mapping, and its end padding. The file must stay
// open until writer.write() returns.
void copy_gguf_into(const GgufFile& file, GgufWriter& writer);

}  // namespace kiln
