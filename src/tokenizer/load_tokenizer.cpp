#include "tokenizer/load_tokenizer.h"

#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "format/gguf_file.h"
#include "tokenizer/bpe_tokenizer.h"
#include "tokenizer/bpe_vocab_files.h"
#include "tokenizer/hf_tokenizer_json.h"
#include "tokenizer/llama2c_tokenizer.h"
#include "tokenizer/spm_model_file.h"
#include "tokenizer/spm_tokenizer.h"

namespace kiln {
namespace {

namespace fs = std::filesystem;

// The first non-blank byte of the file, and whether it starts with "GGUF".
struct Sniff {
  bool gguf = false;
  char first = 0;
};

Sniff sniff(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  KILN_CHECK(in.good(), "{}: cannot open for reading", path);
  char head[64] = {};
  in.read(head, sizeof(head));
  const auto n = static_cast<std::size_t>(in.gcount());
  Sniff s;
  s.gguf = n >= 4 && std::string_view(head, 4) == "GGUF";
  for (std::size_t i = 0; i < n; ++i) {
    if (head[i] != ' ' && head[i] != '\t' && head[i] != '\n' && head[i] != '\r') {
      s.first = head[i];
      break;
    }
  }
  return s;
}

}  // namespace

std::unique_ptr<Tokenizer> make_tokenizer(Vocab vocab) {
  if (vocab.model == "llama") return std::make_unique<SpmTokenizer>(std::move(vocab));
  if (vocab.model == "gpt2") return std::make_unique<BpeTokenizer>(std::move(vocab));
  fail("{}: tokenizer.ggml.model = \"{}\" is not supported (kiln knows \"llama\" and \"gpt2\")", vocab.source,
       vocab.model);
}

std::unique_ptr<Tokenizer> load_tokenizer(const GgufFile& gguf) { return make_tokenizer(Vocab::from_gguf(gguf)); }

Vocab load_vocab_file(const std::string& path) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    const fs::path dir(path);
    if (fs::is_regular_file(dir / "tokenizer.json", ec)) return load_hf_tokenizer_json((dir / "tokenizer.json").string());
    if (fs::is_regular_file(dir / "encoder.json", ec) && fs::is_regular_file(dir / "vocab.bpe", ec)) {
      return load_bpe_vocab_files(path);
    }
    if (fs::is_regular_file(dir / "tokenizer.model", ec)) return load_spm_model_file((dir / "tokenizer.model").string());
    if (fs::is_regular_file(dir / "tokenizer.bin", ec)) return load_llama2c_tokenizer((dir / "tokenizer.bin").string());
    fail("{}: the directory holds no tokenizer.json, encoder.json + vocab.bpe, tokenizer.model or tokenizer.bin", path);
  }
  KILN_CHECK(fs::is_regular_file(path, ec), "{}: no such file or directory", path);
  const Sniff s = sniff(path);
  if (s.gguf) return Vocab::from_gguf(*GgufFile::open(path));
  if (s.first == '{') {
    const fs::path p(path);
    if (p.filename() == "encoder.json") {
      KILN_CHECK(fs::is_regular_file(p.parent_path() / "vocab.bpe", ec), "{}: encoder.json needs vocab.bpe beside it",
                 path);
      return load_bpe_vocab_files(p.parent_path().empty() ? "." : p.parent_path().string());
    }
    return load_hf_tokenizer_json(path);
  }
  // A tokenizer.bin has no magic (it starts with a small integer, as a protobuf may), so the
  // name tells it apart; its reader then checks every length up to the exact end of the file.
  if (fs::path(path).extension() == ".bin") {
    try {
      return load_llama2c_tokenizer(path);
    } catch (const Error& e) {
      fail("a .bin file that is not a GGUF model or JSON is read as a llama2.c tokenizer.bin: {}", e.what());
    }
  }
  try {
    return load_spm_model_file(path);
  } catch (const Error& e) {
    // Whatever the protobuf reader tripped over, the user needs to hear what kiln looked for.
    fail("not a GGUF model, tokenizer.json, encoder.json or SentencePiece tokenizer.model: {}", e.what());
  }
}

std::unique_ptr<Tokenizer> load_tokenizer_file(const std::string& path) { return make_tokenizer(load_vocab_file(path)); }

}  // namespace kiln
