#pragma once
// The initializers (weights) of an ONNX graph, written either inside the ModelProto (raw_data)
// or, as ONNX's external data convention has it, into a data file beside the .onnx: each tensor's
// bytes at an offset aligned to 4096 (so that a runtime may map them), its TensorProto naming
// the file (location, relative to the .onnx's folder), offset and length. External data is what
// lets a model past protobuf's 2 GiB message limit be written, and it keeps only one tensor in
// memory at a time.
#include <onnx/onnx_pb.h>

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace kiln::convert {

enum class WeightStorage {
  f32,
  f16,  // IEEE half, round to nearest even; the graph casts to float where they are used
};

class OnnxInitializers {
 public:
  // data_path empty: every tensor inside the graph. Otherwise the data file to create (a
  // temporary name is fine) and the location to record for it (the final file name).
  OnnxInitializers(onnx::GraphProto& graph, std::string data_path, std::string location);
  ~OnnxInitializers();
  OnnxInitializers(const OnnxInitializers&) = delete;
  OnnxInitializers& operator=(const OnnxInitializers&) = delete;

  // Adds initializer `name` of shape `dims` from row-major floats (as many as dims multiply to),
  // stored as `storage`. Throws kiln::Error when the data file cannot be written.
  void add(const std::string& name, const std::vector<std::int64_t>& dims, const float* values, WeightStorage storage);
  // Flushes and closes the data file (if any); throws kiln::Error on a write error.
  void close();

  bool external() const { return !data_path_.empty(); }
  std::uint64_t data_bytes() const { return offset_; }  // tensor bytes written, padding included

 private:
  void write_external(onnx::TensorProto& t, const void* bytes, std::uint64_t n);

  onnx::GraphProto& graph_;
  std::string data_path_;
  std::string location_;
  std::FILE* data_ = nullptr;
  std::uint64_t offset_ = 0;
};

}  // namespace kiln::convert
