#pragma once
// Writes Hugging Face safetensors: one file, or a folder of shards with the index that
// transformers reads. Tensor data is streamed tensor by tensor from producer callbacks, so a
// model is never held in memory whole. The layout is the reference writer's: u64 header length,
// the header JSON (`__metadata__` first, then the tensors) padded with spaces to a multiple of 8
// bytes, then the tensors' bytes back to back in the order they were added. Shapes are given
// outermost-first, as safetensors stores them (safetensors_shape() turns a kiln ne around).
//
// Every file appears atomically: bytes go to `<path>.tmp-<pid>`, which is fsync'ed and renamed
// over `path`; on any error (a producer throws, the disk fills, a size check fails) the temporary
// file is removed and nothing is left at `path`.
//
//   SafetensorsWriter w;
//   w.add_metadata("format", "pt");
//   w.add_tensor("model.embed_tokens.weight", DType::BF16, {vocab, dim},
//                [&](SafetensorsDataSink& out) { out.write(bytes, n); });
//   w.write("model.safetensors");                     // one file, or
//   w.write_sharded("out/", 5'000'000'000);           // shards + index when over 5 GB
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/dtype.h"
#include "format/tensor_data_sink.h"

namespace kiln {

// Where a tensor producer writes its bytes (format/tensor_data_sink.h).
using SafetensorsDataSink = TensorDataSink;

using SafetensorsTensorProducer = std::function<void(SafetensorsDataSink& out)>;

// The files a write produced, named relative to the folder (write_sharded) or as given (write).
struct SafetensorsWriteResult {
  std::vector<std::string> files;  // the data files, in order
  std::string index;               // "model.safetensors.index.json", or "" when unsharded
};

class SafetensorsWriter {
 public:
  // Adds a key to `__metadata__` (written into every file, shards included); throws kiln::Error
  // if the key is already set or either string is not valid UTF-8.
  void add_metadata(std::string key, std::string value);

  // Appends a tensor of a safetensors dtype ("F32", "BF16", "I64", "F8_E4M3", ...), shape
  // outermost-first (empty for a scalar; dimensions may be 0). Checked here: a non-empty, valid
  // UTF-8 name that is new and not "__metadata__", a known dtype, non-negative dimensions whose
  // byte size does not overflow. Its bytes are produced by `data` during a write.
  void add_tensor(std::string name, std::string_view dtype_name, std::vector<std::int64_t> shape,
                  SafetensorsTensorProducer data);
  // The same for a kiln DType (F32, F16, BF16; others throw).
  void add_tensor(std::string name, DType dtype, std::vector<std::int64_t> shape, SafetensorsTensorProducer data);

  std::size_t n_tensors() const { return tensors_.size(); }
  // The bytes of all tensors together (what the index records as metadata.total_size).
  std::uint64_t data_bytes() const;

  // Writes one file at `path` atomically (see the top of this file).
  SafetensorsWriteResult write(const std::string& path) const;

  // Writes a checkpoint folder as transformers' save_pretrained names it. When all tensors fit in
  // `max_shard_bytes` of tensor data: `model.safetensors` alone. Otherwise the tensors, in the
  // order added, fill shards `model-00001-of-0000N.safetensors` in turn, a shard closing when the
  // next tensor would take it over `max_shard_bytes` (a tensor larger than that gets a shard of its
  // own), and then `model.safetensors.index.json` is written:
  //   {"metadata": {"total_size": data_bytes()}, "weight_map": {tensor: shard file}}
  // (keys sorted, indented by 2, as transformers writes it). Each file appears atomically; the
  // index comes last, so it never names a shard that is not yet there. Creates `dir` if missing.
  // Refuses a folder that holds the other layout (`model.safetensors` when writing shards, the
  // index when writing one file), which a reader would otherwise take for this checkpoint. Shards
  // of an earlier write with another shard count stay in the folder unread: the index governs.
  SafetensorsWriteResult write_sharded(const std::string& dir, std::uint64_t max_shard_bytes) const;

 private:
  struct Tensor {
    std::string name;
    std::string dtype_name;
    std::vector<std::int64_t> shape;
    std::uint64_t n_bytes = 0;
    SafetensorsTensorProducer data;
  };
  // Writes tensors_[first, last) with the metadata as one file at `path`.
  void write_file(const std::string& path, std::size_t first, std::size_t last) const;

  std::vector<std::pair<std::string, std::string>> metadata_;
  std::vector<Tensor> tensors_;
};

}  // namespace kiln
