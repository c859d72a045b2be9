#include "format/tensor_data_sink.h"

#include "core/error.h"
#include "format/atomic_output_file.h"
#include "format/quoted_name.h"

namespace kiln {

void BoundedTensorSink::write(const void* data, std::size_t n) {
  if (n > n_bytes_ - done_)
    fail("{}: tensor {}: data producer wrote more than the tensor's {} bytes", writer_, quoted_name(name_), n_bytes_);
  out_.write(data, n);
  done_ += n;
}

}  // namespace kiln
