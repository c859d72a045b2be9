// Feeds arbitrary bytes to the tokenizer file readers and encoders. The first byte picks:
//   0  read_spm_model (tokenizer.model protobuf)
//   1  read_hf_tokenizer_json, and a tokenizer built from whatever it accepts
//   2  read_bpe_vocab_files (encoder.json, a NUL, then vocab.bpe)
//   3  byte-level BPE encode of the rest (Llama 3 pre-tokenizer, small vocabulary with merges),
//      with every merge path compared and the pieces checked to give back the input exactly
//   4  SentencePiece encode of the rest, decode checked to be valid UTF-8
//   5  read_llama2c_tokenizer (llama2.c's tokenizer.bin, read to the end), and its tokenizer
//   6  a tokenizer.json that read_hf_tokenizer_json accepts (either layout) written back by
//      hf_tokenizer_files and read again: the same tokens, types, special ids and flags, and
//      the same ids for the input's own text
// Rejection must be a kiln::Error; a crash, a sanitizer report, another exception or a
// mismatch (abort) is a finding.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "core/error.h"
#include "tokenizer/bpe_tokenizer.h"
#include "tokenizer/bpe_vocab_files.h"
#include "tokenizer/byte_unicode.h"
#include "tokenizer/load_tokenizer.h"
#include "tokenizer/hf_tokenizer_json.h"
#include "tokenizer/hf_tokenizer_writer.h"
#include "tokenizer/llama2c_tokenizer.h"
#include "tokenizer/spm_model_file.h"
#include "tokenizer/spm_tokenizer.h"
#include "tokenizer/utf8.h"

namespace {

// Bytes, then merges that build "th", "the", "in", "ing", "er", " t", " the", "aa", "aaaa", a few
// digits and an added control token, with ranks out of creation order in places.
const kiln::BpeTokenizer& bpe() {
  static const kiln::BpeTokenizer tok = [] {
    kiln::Vocab v;
    v.model = "gpt2";
    v.pre = "llama-bpe";
    for (int b = 0; b < 256; ++b) v.tokens.emplace_back(kiln::byte_unicode::byte_to_utf8(static_cast<std::uint8_t>(b)));
    const std::string sp = "\xC4\xA0";  // the mapped space
    const std::pair<std::string, std::string> rules[] = {
        {"a", "a"}, {"t", "h"}, {"th", "e"}, {"i", "n"}, {"in", "g"}, {"e", "r"}, {sp, "t"}, {sp + "t", "he"},
        {"h", "e"}, {"aa", "aa"}, {"1", "2"}, {"12", "3"}, {sp, sp}, {sp + "th", "e"}, {sp + "t", "h"}};
    for (const auto& [l, r] : rules) {
      v.merges.emplace_back(l, r);
      const std::string merged = l + r;
      bool known = false;
      for (const auto& t : v.tokens) known = known || t == merged;
      if (!known) v.tokens.push_back(merged);
    }
    v.tokens.push_back("<|eot|>");
    v.types.assign(v.tokens.size(), kiln::TokenType::Normal);
    v.types.back() = kiln::TokenType::Control;
    v.add_space_prefix = false;
    v.finalize("fuzz vocab");
    return kiln::BpeTokenizer(v);
  }();
  return tok;
}

const kiln::SpmTokenizer& spm() {
  static const kiln::SpmTokenizer tok = [] {
    kiln::Vocab v;
    v.model = "llama";
    v.tokens = {"<unk>", "<s>", "</s>", "\xE2\x96\x81", "a", "b", "\xE2\x96\x81" "a", "ab", "\xE2\x96\x81" "ab"};
    v.scores = {0, 0, 0, -1, -2, -2, -1.5f, -1, -0.5f};
    v.types = {kiln::TokenType::Unknown, kiln::TokenType::Control, kiln::TokenType::Control};
    v.types.resize(v.tokens.size(), kiln::TokenType::Normal);
    for (int b = 0; b < 256; ++b) {
      v.tokens.push_back(fmt::format("<0x{:02X}>", b));
      v.scores.push_back(0);
      v.types.push_back(kiln::TokenType::Byte);
    }
    v.unk_id = 0;
    v.bos_id = 1;
    v.eos_id = 2;
    v.finalize("fuzz vocab");
    return kiln::SpmTokenizer(v);
  }();
  return tok;
}

void check_bpe(std::string_view text) {
  const kiln::BpeTokenizer& tok = bpe();
  const std::vector<std::int32_t> ids = tok.encode(text, true, (text.size() & 1) != 0);
  std::string pieces;
  for (std::int32_t id : ids) pieces += tok.token_to_piece(id);
  if ((text.size() & 1) == 0 && pieces != text) std::abort();  // plain text must come back byte for byte
  if (!kiln::utf8::is_valid(tok.decode(ids))) std::abort();
  std::vector<std::int32_t> rescan, heap, buckets;
  tok.merge_word(text, rescan, kiln::BpeTokenizer::MergePath::Rescan);
  tok.merge_word(text, heap, kiln::BpeTokenizer::MergePath::Heap);
  tok.merge_word(text, buckets, kiln::BpeTokenizer::MergePath::Buckets);
  if (heap != rescan || buckets != rescan) std::abort();
}

// Vocabularies that a written tokenizer.json must give back.
bool same_vocabulary(const kiln::Vocab& a, const kiln::Vocab& b) {
  return a.model == b.model && a.tokens == b.tokens && a.types == b.types && a.bos_id == b.bos_id &&
         a.eos_id == b.eos_id && a.unk_id == b.unk_id && a.pad_id == b.pad_id && a.eot_id == b.eot_id &&
         a.eom_id == b.eom_id && a.add_bos == b.add_bos && a.add_eos == b.add_eos &&
         a.add_space_prefix == b.add_space_prefix && a.merges == b.merges;
}

void check_written_tokenizer_json(std::string_view json) {
  kiln::Vocab original = kiln::read_hf_tokenizer_json(json, "", "fuzz.json");
  std::unique_ptr<kiln::Tokenizer> original_tok;
  try {
    original_tok = kiln::make_tokenizer(original);
  } catch (const kiln::Error&) {
    return;  // a vocabulary kiln reads but cannot tokenize with is not written
  }
  const kiln::HfTokenizerFiles files = kiln::hf_tokenizer_files(original);
  const kiln::Vocab reread = kiln::read_hf_tokenizer_json(files.tokenizer_json, files.tokenizer_config_json, "written");
  if (!same_vocabulary(original, reread)) std::abort();
  const std::unique_ptr<kiln::Tokenizer> reread_tok = kiln::make_tokenizer(reread);
  for (bool special : {false, true}) {
    if (original_tok->encode(json, true, special) != reread_tok->encode(json, true, special)) std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  try {
    switch (data[0] % 7) {
      case 0:
        kiln::SpmTokenizer(kiln::read_spm_model(std::span(data + 1, size - 1), "fuzz.model"));
        break;
      case 1:
        kiln::make_tokenizer(kiln::read_hf_tokenizer_json(rest, "", "fuzz.json"));
        break;
      case 2: {
        const std::size_t nul = rest.find('\0');
        const std::string_view encoder = rest.substr(0, nul);
        const std::string_view merges = nul == std::string_view::npos ? std::string_view() : rest.substr(nul + 1);
        kiln::BpeTokenizer(kiln::read_bpe_vocab_files(encoder, merges, "fuzz"));
        break;
      }
      case 3:
        check_bpe(rest);
        break;
      case 4: {
        const std::vector<std::int32_t> ids = spm().encode(rest, true, (size & 1) != 0);
        if (!kiln::utf8::is_valid(spm().decode(ids))) std::abort();
        break;
      }
      case 5:
        kiln::SpmTokenizer(kiln::read_llama2c_tokenizer(std::span(data + 1, size - 1), -1, "fuzz.bin"));
        break;
      default:
        check_written_tokenizer_json(rest);
        break;
    }
  } catch (const kiln::Error&) {
  }
  return 0;
}
