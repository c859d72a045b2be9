#include "convert/onnx_initializers.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/error.h"
#include "kernels/ops.h"

namespace kiln::convert {
namespace {

constexpr std::uint64_t kAlignment = 4096;

void add_entry(onnx::TensorProto& t, const std::string& key, const std::string& value) {
  onnx::StringStringEntryProto* e = t.add_external_data();
  e->set_key(key);
  e->set_value(value);
}

}  // namespace

OnnxInitializers::OnnxInitializers(onnx::GraphProto& graph, std::string data_path, std::string location)
    : graph_(graph), data_path_(std::move(data_path)), location_(std::move(location)) {
  if (data_path_.empty()) return;
  data_ = std::fopen(data_path_.c_str(), "wb");
  if (data_ == nullptr) fail("{}: cannot create ({})", data_path_, std::strerror(errno));
}

OnnxInitializers::~OnnxInitializers() {
  if (data_ != nullptr) std::fclose(data_);
}

void OnnxInitializers::write_external(onnx::TensorProto& t, const void* bytes, std::uint64_t n) {
  static const char zeros[kAlignment] = {};
  const std::uint64_t pad = (kAlignment - offset_ % kAlignment) % kAlignment;
  if (std::fwrite(zeros, 1, pad, data_) != pad || std::fwrite(bytes, 1, n, data_) != n)
    fail("{}: write failed ({})", data_path_, std::strerror(errno));
  offset_ += pad;
  t.set_data_location(onnx::TensorProto::EXTERNAL);
  add_entry(t, "location", location_);
  add_entry(t, "offset", std::to_string(offset_));
  add_entry(t, "length", std::to_string(n));
  offset_ += n;
}

void OnnxInitializers::add(const std::string& name, const std::vector<std::int64_t>& dims, const float* values,
                           WeightStorage storage) {
  std::int64_t count = 1;
  for (std::int64_t d : dims) count *= d;
  onnx::TensorProto* t = graph_.add_initializer();
  t->set_name(name);
  for (std::int64_t d : dims) t->add_dims(d);
  // ONNX's raw data is little-endian, as x86-64's memory is.
  std::vector<std::uint16_t> halves;
  const void* bytes = values;
  std::uint64_t n = static_cast<std::uint64_t>(count) * sizeof(float);
  if (storage == WeightStorage::f16) {
    halves.resize(static_cast<std::size_t>(count));
    kernels::f32_to_f16_row(values, halves.data(), count);
    bytes = halves.data();
    n = static_cast<std::uint64_t>(count) * sizeof(std::uint16_t);
    t->set_data_type(onnx::TensorProto::FLOAT16);
  } else {
    t->set_data_type(onnx::TensorProto::FLOAT);
  }
  if (external())
    write_external(*t, bytes, n);
  else
    t->set_raw_data(bytes, n);
}

void OnnxInitializers::close() {
  if (data_ == nullptr) return;
  const bool ok = std::fflush(data_) == 0 && !std::ferror(data_) && ::fsync(::fileno(data_)) == 0;
  const int err = errno;
  const bool closed = std::fclose(data_) == 0;
  data_ = nullptr;
  if (!ok || !closed) fail("{}: write failed ({})", data_path_, std::strerror(err));
}

}  // namespace kiln::convert
