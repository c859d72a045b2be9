#pragma once
// Shared by the byte-level BPE tests: the Llama-3.2 tokenizer from ../shared/data, the
// independent Python reference (tests/tokenizer/bpe_reference.py, standard library only), and
// a writer for vocabulary-only GGUF files.
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "format/gguf_file.h"
#include "test_support.h"
#include "tokenizer/bpe_tokenizer.h"
#include "tokenizer/load_tokenizer.h"
#include "tokenizer_test_support.h"

namespace kiln::test {

// The Llama-3.2 vocabulary (encoder.json + vocab.bpe), loaded once; nullptr when absent.
inline const BpeTokenizer* llama32_tokenizer() {
  static const std::unique_ptr<Tokenizer> tokenizer = []() -> std::unique_ptr<Tokenizer> {
    const std::string dir = data_file("llama3.2-tokenizer");
    if (dir.empty()) return nullptr;
    return load_tokenizer_file(dir);
  }();
  return dynamic_cast<const BpeTokenizer*>(tokenizer.get());
}

#define KILN_REQUIRE_LLAMA32_TOKENIZER(var)                             \
  const ::kiln::BpeTokenizer* var = ::kiln::test::llama32_tokenizer(); \
  if (var == nullptr) GTEST_SKIP() << "shared data folder llama3.2-tokenizer not found (set KILN_DATA_DIR)"

// Path of a script in tests/tokenizer/ (KILN_SOURCE_DIR under ctest, else beside this header).
inline std::string tokenizer_test_script(const std::string& name) {
  const char* source_dir = std::getenv("KILN_SOURCE_DIR");
  const std::string here = __FILE__;
  return source_dir != nullptr ? std::string(source_dir) + "/tests/tokenizer/" + name
                               : here.substr(0, here.rfind('/') + 1) + name;
}

// Runs bpe_reference.py (any python3: it needs only the standard library) with `args` after
// the encoder.json path and parses its JSON output; nullopt when python3 or the vocabulary is
// missing. A failing run of an available reference is a test failure.
inline std::optional<nlohmann::json> run_bpe_reference(const std::string& args, std::string* why_missing) {
  const std::string dir = data_file("llama3.2-tokenizer");
  if (dir.empty()) {
    *why_missing = "shared data folder llama3.2-tokenizer not found";
    return std::nullopt;
  }
  std::string python;
  for (const char* candidate : {"python3", "/usr/bin/python3"}) {
    if (run_command(std::string(candidate) + " -c 'import unicodedata' >/dev/null 2>&1", nullptr) == 0) {
      python = candidate;
      break;
    }
  }
  if (python.empty()) {
    *why_missing = "python3 not found";
    return std::nullopt;
  }
  std::string output;
  const int rc = run_command(
      python + " " + tokenizer_test_script("bpe_reference.py") + " " + dir + "/encoder.json " + args, &output);
  EXPECT_EQ(rc, 0) << "bpe_reference.py " << args << " failed";
  if (rc != 0) return nlohmann::json::array();
  return nlohmann::json::parse(output);
}

// Writes a GGUF v3 file with metadata only (no tensors), as a vocabulary-only model.
class GgufMetadataWriter {
 public:
  GgufMetadataWriter& string(const std::string& key, const std::string& value) {
    begin(key, GgufType::String);
    str(value);
    return *this;
  }
  GgufMetadataWriter& u32(const std::string& key, std::uint32_t value) {
    begin(key, GgufType::U32);
    put(value);
    return *this;
  }
  GgufMetadataWriter& boolean(const std::string& key, bool value) {
    begin(key, GgufType::Bool);
    put(static_cast<std::uint8_t>(value));
    return *this;
  }
  GgufMetadataWriter& strings(const std::string& key, const std::vector<std::string>& values) {
    begin_array(key, GgufType::String, values.size());
    for (const auto& v : values) str(v);
    return *this;
  }
  GgufMetadataWriter& i32s(const std::string& key, const std::vector<std::int32_t>& values) {
    begin_array(key, GgufType::I32, values.size());
    for (std::int32_t v : values) put(v);
    return *this;
  }
  GgufMetadataWriter& f32s(const std::string& key, const std::vector<float>& values) {
    begin_array(key, GgufType::F32, values.size());
    for (float v : values) put(v);
    return *this;
  }

  // Writes the file into the test's temp dir (to a temporary name, then renamed) and returns its path.
  std::string write(const std::string& name) const {
    std::vector<std::uint8_t> file;
    auto append = [&](const void* p, std::size_t n) {
      file.insert(file.end(), static_cast<const std::uint8_t*>(p), static_cast<const std::uint8_t*>(p) + n);
    };
    const std::uint32_t magic = 0x46554747, version = 3;
    const std::uint64_t n_tensors = 0;
    append(&magic, 4);
    append(&version, 4);
    append(&n_tensors, 8);
    append(&n_kv_, 8);
    file.insert(file.end(), body_.begin(), body_.end());
    file.resize((file.size() + 31) / 32 * 32, 0);  // the (empty) data section starts aligned
    const std::string path = temp_dir() + "/" + name;
    std::ofstream(path + ".tmp", std::ios::binary).write(reinterpret_cast<const char*>(file.data()), file.size());
    std::rename((path + ".tmp").c_str(), path.c_str());
    return path;
  }

 private:
  template <typename T>
  void put(T v) {
    const auto* p = reinterpret_cast<const std::uint8_t*>(&v);
    body_.insert(body_.end(), p, p + sizeof(T));
  }
  void str(const std::string& s) {
    put<std::uint64_t>(s.size());
    body_.insert(body_.end(), s.begin(), s.end());
  }
  void begin(const std::string& key, GgufType type) {
    ++n_kv_;
    str(key);
    put(static_cast<std::uint32_t>(type));
  }
  void begin_array(const std::string& key, GgufType elem, std::size_t n) {
    begin(key, GgufType::Array);
    put(static_cast<std::uint32_t>(elem));
    put<std::uint64_t>(n);
  }

  std::uint64_t n_kv_ = 0;
  std::vector<std::uint8_t> body_;
};

}  // namespace kiln::test
