#pragma once
// Where a tensor producer writes its bytes, for every writer that streams tensors (GgufWriter,
// SafetensorsWriter): write() may be called any number of times, and the total must equal the
// tensor's size exactly. The writers hand producers a BoundedTensorSink, which refuses a byte
// more at once and tells the writer how many came, so that too few is refused afterwards.
#include <cstddef>
#include <cstdint>
#include <string>

namespace kiln {

class AtomicOutputFile;

class TensorDataSink {
 public:
  virtual ~TensorDataSink() = default;
  virtual void write(const void* data, std::size_t n) = 0;
};

class BoundedTensorSink final : public TensorDataSink {
 public:
  // `writer` and `name` name the tensor in messages ("GGUF writer", "safetensors writer").
  BoundedTensorSink(AtomicOutputFile& out, const char* writer, const std::string& name, std::uint64_t n_bytes)
      : out_(out), writer_(writer), name_(name), n_bytes_(n_bytes) {}
  void write(const void* data, std::size_t n) override;
  std::uint64_t done() const { return done_; }

 private:
  AtomicOutputFile& out_;
  const char* writer_;
  const std::string& name_;
  std::uint64_t n_bytes_;
  std::uint64_t done_ = 0;
};

}  // namespace kiln
