// MappedFile in both load modes: the memory map (default) and LoadMode::copy (--no-mmap,
// KILN_LOAD=copy: the bytes read into anonymous memory) must present exactly the file's bytes,
// for files below and above the 2 MiB size where the huge-page paths start.
#include "core/mapped_file.h"

#include <gtest/gtest.h>

#include <fstream>
#include <string>
#include <vector>

#include "test_support.h"

namespace kiln {
namespace {

std::string write_pattern(const std::string& name, std::size_t n) {
  const std::string path = test::temp_dir() + "/" + name;
  std::vector<char> bytes(n);
  for (std::size_t i = 0; i < n; ++i) bytes[i] = static_cast<char>((i * 131 + i / 4096) & 0xFF);
  std::ofstream(path, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(n));
  return path;
}

void expect_pattern(const MappedFile& f, std::size_t n) {
  ASSERT_EQ(f.size(), n);
  for (std::size_t i = 0; i < n; ++i)
    ASSERT_EQ(f.data()[i], static_cast<std::uint8_t>((i * 131 + i / 4096) & 0xFF)) << "byte " << i;
}

TEST(MappedFile, BothLoadModesPresentTheFileBytes) {
  for (std::size_t n : {std::size_t{1000}, std::size_t{3} << 20, (std::size_t{5} << 20) + 777}) {
    const std::string path = write_pattern("pattern-" + std::to_string(n), n);
    {
      MappedFile mapped(path, LoadMode::map);
      EXPECT_FALSE(mapped.copied());
      expect_pattern(mapped, n);
    }
    {
      MappedFile copied(path, LoadMode::copy);
      EXPECT_TRUE(copied.copied()) << n;
      expect_pattern(copied, n);
      MappedFile moved(std::move(copied));  // ownership moves with the bytes
      EXPECT_TRUE(moved.copied());
      expect_pattern(moved, n);
    }
  }
}

TEST(MappedFile, TheProcessWideModeIsWhatTheOneArgumentConstructorUses) {
  const std::string path = write_pattern("pattern-mode", std::size_t{3} << 20);
  const LoadMode before = load_mode();
  set_load_mode(LoadMode::copy);
  EXPECT_STREQ(load_mode_name(load_mode()), "copy");
  EXPECT_TRUE(MappedFile(path).copied());
  set_load_mode(LoadMode::map);
  EXPECT_STREQ(load_mode_name(load_mode()), "map");
  EXPECT_FALSE(MappedFile(path).copied());
  set_load_mode(before);
}

TEST(MappedFile, MissingFileIsAOneLineError) {
  for (LoadMode mode : {LoadMode::map, LoadMode::copy})
    EXPECT_THROW(MappedFile("/nonexistent/kiln-model.gguf", mode), std::exception);
}

}  // namespace
}  // namespace kiln
