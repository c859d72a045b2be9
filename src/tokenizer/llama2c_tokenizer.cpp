#include "tokenizer/llama2c_tokenizer.h"

#include <cmath>
#include <cstring>

#include "core/error.h"
#include "core/mapped_file.h"

namespace kiln {
namespace {

// run.c keeps a buffer of max_token_length bytes per merge; no real vocabulary comes near this.
constexpr std::uint32_t kMaxTokenLength = 64 * 1024;

class Reader {
 public:
  Reader(std::span<const std::uint8_t> bytes, std::string_view source) : bytes_(bytes), source_(source) {}
  bool at_end() const { return at_ == bytes_.size(); }
  std::size_t offset() const { return at_; }
  std::size_t remaining() const { return bytes_.size() - at_; }

  template <typename T>
  T read(std::string_view what) {
    KILN_CHECK(remaining() >= sizeof(T), "{}: {} at offset {} runs past the end of the file ({} bytes)", source_, what,
               at_, bytes_.size());
    T v;
    std::memcpy(&v, bytes_.data() + at_, sizeof(T));
    at_ += sizeof(T);
    return v;
  }
  std::string_view text(std::size_t n) {
    const std::string_view s(reinterpret_cast<const char*>(bytes_.data() + at_), n);
    at_ += n;
    return s;
  }

 private:
  std::span<const std::uint8_t> bytes_;
  std::string_view source_;
  std::size_t at_ = 0;
};

bool is_byte_piece(std::string_view piece) {
  auto hex = [](char c) { return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F'); };
  return piece.size() == 6 && piece.substr(0, 3) == "<0x" && hex(piece[3]) && hex(piece[4]) && piece[5] == '>';
}

// The SentencePiece piece a token of the export stands for: its spaces were "▁".
std::string piece_of(std::string_view text) {
  if (text == "\n<s>\n") return "<s>";
  if (text == "\n</s>\n") return "</s>";
  std::string piece;
  piece.reserve(text.size() + 8);
  for (const char c : text) {
    if (c == ' ') {
      piece.append("\xE2\x96\x81");
    } else {
      piece.push_back(c);
    }
  }
  return piece;
}

}  // namespace

Vocab read_llama2c_tokenizer(std::span<const std::uint8_t> bytes, std::int32_t vocab_size, std::string_view source) {
  KILN_CHECK(vocab_size != 0, "{}: vocab_size is 0", source);
  Reader in(bytes, source);
  const auto max_length = in.read<std::uint32_t>("max_token_length");
  KILN_CHECK(max_length >= 1 && max_length <= kMaxTokenLength,
             "{}: max_token_length = {} is not a plausible token length (1..{}): not a llama2.c tokenizer.bin", source,
             max_length, kMaxTokenLength);

  Vocab vocab;
  vocab.model = "llama";
  const bool until_end = vocab_size < 0;
  // Each token takes at least 9 bytes: a bound on the count before reserving for it.
  const std::size_t expected = until_end ? in.remaining() / 9 : static_cast<std::size_t>(vocab_size);
  KILN_CHECK(until_end || expected <= in.remaining() / 9 + 1, "{}: the file ({} bytes) is too short to hold {} tokens",
             source, bytes.size(), vocab_size);
  vocab.tokens.reserve(expected);
  vocab.scores.reserve(expected);
  while (until_end ? !in.at_end() : vocab.tokens.size() < static_cast<std::size_t>(vocab_size)) {
    const std::size_t id = vocab.tokens.size();
    const std::string what = fmt::format("token {}", id);
    const auto score = in.read<float>(what + " score");
    KILN_CHECK(std::isfinite(score), "{}: token {} has score {} (offset {}), expected a finite number", source, id,
               score, in.offset() - 4);
    const auto length = in.read<std::uint32_t>(what + " length");
    KILN_CHECK(length <= max_length, "{}: token {} is {} bytes long, more than max_token_length = {}", source, id,
               length, max_length);
    KILN_CHECK(length <= in.remaining(), "{}: token {} ({} bytes at offset {}) runs past the end of the file", source,
               id, length, in.offset());
    vocab.tokens.push_back(piece_of(in.text(length)));
    vocab.scores.push_back(score);
  }
  KILN_CHECK(in.at_end(), "{}: {} bytes follow the last of the {} tokens (vocab_size does not match the file)", source,
             in.remaining(), vocab.tokens.size());
  KILN_CHECK(!vocab.tokens.empty(), "{}: the file holds no tokens", source);

  vocab.types.assign(vocab.tokens.size(), TokenType::Normal);
  for (std::size_t id = 0; id < vocab.tokens.size(); ++id) {
    const std::string& piece = vocab.tokens[id];
    if (is_byte_piece(piece)) vocab.types[id] = TokenType::Byte;
    if (piece == "<s>" || piece == "</s>") vocab.types[id] = TokenType::Control;
    if (piece == "<unk>") vocab.types[id] = TokenType::Unknown;
  }
  vocab.finalize(source);  // builds the index find() reads
  vocab.unk_id = vocab.find("<unk>");
  vocab.bos_id = vocab.find("<s>");
  vocab.eos_id = vocab.find("</s>");
  vocab.add_bos = vocab.bos_id >= 0;
  vocab.add_space_prefix = true;
  vocab.finalize(source);
  return vocab;
}

Vocab load_llama2c_tokenizer(const std::string& path, std::int32_t vocab_size) {
  const MappedFile file(path);
  return read_llama2c_tokenizer(std::span(file.data(), file.size()), vocab_size, path);
}

}  // namespace kiln
