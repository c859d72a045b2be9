#include "tokenizer/bpe_vocab_files.h"

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/mapped_file.h"

namespace kiln {
namespace {

constexpr std::int32_t kLlama3BaseTokens = 128000;

std::string_view file_text(const MappedFile& f) {
  return {reinterpret_cast<const char*>(f.data()), f.size()};
}

}  // namespace

std::vector<std::string> llama3_special_tokens() {
  std::vector<std::string> names = {
      "<|begin_of_text|>",       "<|end_of_text|>",   "<|reserved_special_token_0|>", "<|reserved_special_token_1|>",
      "<|finetune_right_pad_id|>", "<|reserved_special_token_2|>", "<|start_header_id|>", "<|end_header_id|>",
      "<|eom_id|>",              "<|eot_id|>",        "<|python_tag|>",
  };
  for (int i = 3; names.size() < 256; ++i) names.push_back(fmt::format("<|reserved_special_token_{}|>", i));
  return names;
}

Vocab read_bpe_vocab_files(std::string_view encoder_json, std::string_view vocab_bpe, std::string_view source) {
  nlohmann::json encoder;
  try {
    encoder = nlohmann::json::parse(encoder_json);
  } catch (const nlohmann::json::exception& e) {
    fail("{}: encoder.json is not valid JSON: {}", source, e.what());
  }
  KILN_CHECK(encoder.is_object(), "{}: encoder.json is not a JSON object of token -> id", source);
  KILN_CHECK(!encoder.empty(), "{}: encoder.json has no tokens", source);
  KILN_CHECK(encoder.size() < (std::size_t{1} << 30), "{}: encoder.json has too many tokens ({})", source,
             encoder.size());
  const auto n = static_cast<std::int32_t>(encoder.size());

  Vocab vocab;
  vocab.model = "gpt2";
  vocab.tokens.resize(static_cast<std::size_t>(n));
  std::vector<bool> seen(static_cast<std::size_t>(n), false);
  for (const auto& [text, value] : encoder.items()) {
    KILN_CHECK(value.is_number_integer(), "{}: encoder.json[\"{}\"] is {}, expected an integer id", source, text,
               value.type_name());
    const std::int64_t id = value.get<std::int64_t>();
    KILN_CHECK(id >= 0 && id < n, "{}: encoder.json[\"{}\"] = {} is out of range (ids must be 0..{})", source, text, id,
               n - 1);
    KILN_CHECK(!seen[static_cast<std::size_t>(id)], "{}: encoder.json gives id {} to both \"{}\" and \"{}\"", source,
               id, vocab.tokens[static_cast<std::size_t>(id)], text);
    seen[static_cast<std::size_t>(id)] = true;
    vocab.tokens[static_cast<std::size_t>(id)] = text;
  }

  std::size_t line_number = 0;
  for (std::string_view rest = vocab_bpe; !rest.empty();) {
    const std::size_t eol = rest.find('\n');
    std::string_view line = rest.substr(0, eol);
    rest.remove_prefix(eol == std::string_view::npos ? rest.size() : eol + 1);
    ++line_number;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty() || (line_number == 1 && line.starts_with("#version"))) continue;
    const std::size_t space = line.size() > 1 ? line.find(' ', 1) : std::string_view::npos;
    KILN_CHECK(space != std::string_view::npos && space + 1 < line.size() &&
                   line.find(' ', space + 1) == std::string_view::npos,
               "{}: vocab.bpe line {} (\"{}\") is not of the form \"left right\"", source, line_number, line);
    vocab.merges.emplace_back(std::string(line.substr(0, space)), std::string(line.substr(space + 1)));
  }
  KILN_CHECK(!vocab.merges.empty(), "{}: vocab.bpe has no merges", source);

  if (n == kLlama3BaseTokens) {
    vocab.pre = "llama-bpe";
    vocab.types.assign(static_cast<std::size_t>(n), TokenType::Normal);
    for (std::string& name : llama3_special_tokens()) {
      vocab.tokens.push_back(std::move(name));
      vocab.types.push_back(TokenType::Control);
    }
    vocab.bos_id = kLlama3BaseTokens;      // <|begin_of_text|>
    vocab.eos_id = kLlama3BaseTokens + 1;  // <|end_of_text|>
    vocab.eom_id = kLlama3BaseTokens + 8;  // <|eom_id|>
    vocab.eot_id = kLlama3BaseTokens + 9;  // <|eot_id|>
    vocab.add_bos = true;
  } else {
    vocab.pre = "gpt-2";
    vocab.types.assign(static_cast<std::size_t>(n), TokenType::Normal);
    for (std::int32_t id = 0; id < n; ++id) {
      if (vocab.tokens[static_cast<std::size_t>(id)] == "<|endoftext|>") {
        vocab.types[static_cast<std::size_t>(id)] = TokenType::Control;
        vocab.bos_id = vocab.eos_id = id;
      }
    }
    vocab.add_bos = false;
  }
  vocab.add_space_prefix = false;
  vocab.finalize(source);
  return vocab;
}

Vocab load_bpe_vocab_files(const std::string& dir) {
  const MappedFile encoder(dir + "/encoder.json");
  const MappedFile merges(dir + "/vocab.bpe");
  return read_bpe_vocab_files(file_text(encoder), file_text(merges), dir + "/{encoder.json,vocab.bpe}");
}

}  // namespace kiln
