#include "format/atomic_output_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include "core/error.h"

namespace kiln {
namespace {
constexpr std::size_t kWriteBuffer = std::size_t{1} << 20;
}  // namespace

AtomicOutputFile::AtomicOutputFile(std::string final_path)
    : final_path_(std::move(final_path)), temp_path_(final_path_ + ".tmp-" + std::to_string(::getpid())) {
  fd_ = ::open(temp_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) fail("{}: cannot create {}: {}", final_path_, temp_path_, std::strerror(errno));
  buffer_.reserve(kWriteBuffer);
}

AtomicOutputFile::~AtomicOutputFile() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_) ::unlink(temp_path_.c_str());
}

void AtomicOutputFile::write(const void* data, std::size_t n) {
  const auto* p = static_cast<const char*>(data);
  if (buffer_.size() + n > kWriteBuffer) flush();
  if (n >= kWriteBuffer)
    write_all(p, n);
  else
    buffer_.insert(buffer_.end(), p, p + n);
  written_ += n;
}

void AtomicOutputFile::zeros(std::uint64_t n) {
  static const char kZeros[4096] = {};
  while (n > 0) {
    const std::size_t k = static_cast<std::size_t>(std::min<std::uint64_t>(n, sizeof(kZeros)));
    write(kZeros, k);
    n -= k;
  }
}

void AtomicOutputFile::flush() {
  write_all(buffer_.data(), buffer_.size());
  buffer_.clear();
}

void AtomicOutputFile::write_all(const char* p, std::size_t n) {
  while (n > 0) {
    const ssize_t k = ::write(fd_, p, n);
    if (k < 0) {
      if (errno == EINTR) continue;
      fail("{}: write failed: {}", temp_path_, std::strerror(errno));
    }
    p += k;
    n -= static_cast<std::size_t>(k);
  }
}

void AtomicOutputFile::commit() {
  flush();
  if (::fsync(fd_) != 0) fail("{}: fsync failed: {}", temp_path_, std::strerror(errno));
  const int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) fail("{}: close failed: {}", temp_path_, std::strerror(errno));
  if (::rename(temp_path_.c_str(), final_path_.c_str()) != 0)
    fail("{}: cannot rename {} into place: {}", final_path_, temp_path_, std::strerror(errno));
  committed_ = true;
  const std::size_t slash = final_path_.rfind('/');
  const std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : final_path_.substr(0, slash);
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

}  // namespace kiln
