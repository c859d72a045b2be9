#pragma once
// A growable byte buffer aligned to 64 bytes (one cache line, one zmm register), for scratch
// activations that SIMD kernels load with aligned or full-width accesses.
#include <cstddef>
#include <cstdlib>
#include <new>

namespace kiln {

class AlignedBuffer {
 public:
  AlignedBuffer() = default;
  ~AlignedBuffer() { std::free(data_); }
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;
  AlignedBuffer(AlignedBuffer&& o) noexcept : data_(o.data_), capacity_(o.capacity_) {
    o.data_ = nullptr;
    o.capacity_ = 0;
  }
  AlignedBuffer& operator=(AlignedBuffer&& o) noexcept {
    if (this != &o) {
      std::free(data_);
      data_ = o.data_;
      capacity_ = o.capacity_;
      o.data_ = nullptr;
      o.capacity_ = 0;
    }
    return *this;
  }

  // Ensures capacity for n bytes; contents are not preserved when it grows.
  void reserve(std::size_t n) {
    if (n <= capacity_) return;
    std::free(data_);
    std::size_t rounded = (n + 63) / 64 * 64;
    data_ = std::aligned_alloc(64, rounded);
    if (data_ == nullptr) throw std::bad_alloc();
    capacity_ = rounded;
  }
  template <typename T = void>
  T* as() { return static_cast<T*>(data_); }
  template <typename T = void>
  const T* as() const { return static_cast<const T*>(data_); }
  std::size_t capacity() const { return capacity_; }

 private:
  void* data_ = nullptr;
  std::size_t capacity_ = 0;
};

// Float scratch of n elements, aligned.
class FloatBuffer {
 public:
  float* resize(std::size_t n) {
    buf_.reserve(n * sizeof(float));
    size_ = n;
    return buf_.as<float>();
  }
  float* data() { return buf_.as<float>(); }
  const float* data() const { return buf_.as<float>(); }
  std::size_t size() const { return size_; }

 private:
  AlignedBuffer buf_;
  std::size_t size_ = 0;
};

}  // namespace kiln
