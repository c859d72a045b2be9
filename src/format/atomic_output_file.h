#pragma once
// The output side shared by the format writers: a file that appears atomically, written through
// a buffer. Bytes go to `<path>.tmp-<pid>` beside the target; commit() fsyncs it, renames it over
// the target and fsyncs the folder. A file never committed (an error was thrown while writing) is
// removed when the object is destroyed, so nothing is left at the target or beside it.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace kiln {

class AtomicOutputFile {
 public:
  // Creates the temporary file; throws kiln::Error naming `final_path` if it cannot.
  explicit AtomicOutputFile(std::string final_path);
  ~AtomicOutputFile();
  AtomicOutputFile(const AtomicOutputFile&) = delete;
  AtomicOutputFile& operator=(const AtomicOutputFile&) = delete;

  // Buffered writes; every failure names the temporary file and the system's reason.
  void write(const void* data, std::size_t n);
  void zeros(std::uint64_t n);
  // Bytes written so far (buffered ones included).
  std::uint64_t written() const { return written_; }

  // Flushes, fsyncs, closes and renames into place, then fsyncs the folder (best effort: some
  // filesystems refuse fsync on folders).
  void commit();

  const std::string& temp_path() const { return temp_path_; }

 private:
  void flush();
  void write_all(const char* p, std::size_t n);

  std::string final_path_;
  std::string temp_path_;
  int fd_ = -1;
  bool committed_ = false;
  std::vector<char> buffer_;
  std::uint64_t written_ = 0;
};

}  // namespace kiln
