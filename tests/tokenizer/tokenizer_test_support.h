#pragma once
// Shared by the tokenizer tests: the Llama-2 tokenizer from the shared GGUF, the sentencepiece
// reference (tests/tokenizer/spm_reference.py run by Debian's python3-sentencepiece), and a
// builder for small hand-made vocabularies.
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "format/gguf_file.h"
#include "test_support.h"
#include "tokenizer/load_tokenizer.h"

namespace kiln::test {

// The tokenizer of llama-2-tiny-random.gguf, loaded once; nullptr when the file is absent.
inline const Tokenizer* llama2_tokenizer() {
  static const std::unique_ptr<Tokenizer> tokenizer = []() -> std::unique_ptr<Tokenizer> {
    const std::string path = data_file("llama-2-tiny-random.gguf");
    if (path.empty()) return nullptr;
    return load_tokenizer(*GgufFile::open(path));
  }();
  return tokenizer.get();
}

#define KILN_REQUIRE_LLAMA2_TOKENIZER(var)                         \
  const ::kiln::Tokenizer* var = ::kiln::test::llama2_tokenizer(); \
  if (var == nullptr) GTEST_SKIP() << "shared data file llama-2-tiny-random.gguf not found (set KILN_DATA_DIR)"

// A python interpreter that can import sentencepiece, or "" (Debian's module lives under
// /usr/bin/python3, which a python3 earlier on PATH may not see).
inline std::string reference_python() {
  static const std::string python = [] {
    for (const char* candidate : {"python3", "/usr/bin/python3"}) {
      const std::string cmd = std::string(candidate) + " -c 'import sentencepiece' >/dev/null 2>&1";
      if (run_command(cmd, nullptr) == 0) return std::string(candidate);
    }
    return std::string();
  }();
  return python;
}

// Runs spm_reference.py with `args` and parses its JSON output; nullopt when python3 with
// sentencepiece, the script or the tokenizer model is missing (the caller skips). A failing run
// of an available reference is a test failure, not a skip.
inline std::optional<nlohmann::json> run_spm_reference(const std::string& args, std::string* why_missing) {
  const std::string python = reference_python();
  const std::string model = data_file("llama2-tokenizer.model");
  if (python.empty()) {
    *why_missing = "python3 with the sentencepiece module not found (apt install python3-sentencepiece)";
    return std::nullopt;
  }
  if (model.empty()) {
    *why_missing = "shared data file llama2-tokenizer.model not found";
    return std::nullopt;
  }
  // The script sits beside this header: KILN_SOURCE_DIR under ctest, else this file's path.
  const char* source_dir = std::getenv("KILN_SOURCE_DIR");
  const std::string here = __FILE__;
  const std::string script = source_dir != nullptr ? std::string(source_dir) + "/tests/tokenizer/spm_reference.py"
                                                   : here.substr(0, here.rfind('/') + 1) + "spm_reference.py";
  std::string output;
  const int rc = run_command(python + " " + script + " " + model + " " + args, &output);
  EXPECT_EQ(rc, 0) << "spm_reference.py " << args << " failed";
  if (rc != 0) return nlohmann::json::array();
  return nlohmann::json::parse(output);
}

// Writes `value` as JSON to a file in the test's temp dir and returns the path.
inline std::string write_json(const std::string& name, const nlohmann::json& value) {
  const std::string path = temp_dir() + "/" + name;
  std::ofstream(path) << value.dump();
  return path;
}

// A vocabulary with <unk>=0, <s>=1, </s>=2 followed by `pieces` (text, score, type), finalized.
inline Vocab make_vocab(const std::vector<std::tuple<std::string, float, TokenType>>& pieces,
                        bool add_space_prefix = true) {
  Vocab v;
  v.model = "llama";
  v.tokens = {"<unk>", "<s>", "</s>"};
  v.scores = {0, 0, 0};
  v.types = {TokenType::Unknown, TokenType::Control, TokenType::Control};
  for (const auto& [text, score, type] : pieces) {
    v.tokens.push_back(text);
    v.scores.push_back(score);
    v.types.push_back(type);
  }
  v.unk_id = 0;
  v.bos_id = 1;
  v.eos_id = 2;
  v.add_bos = true;
  v.add_space_prefix = add_space_prefix;
  v.finalize("test vocab");
  return v;
}

}  // namespace kiln::test
