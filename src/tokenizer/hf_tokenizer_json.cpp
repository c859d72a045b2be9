#include "tokenizer/hf_tokenizer_json.h"

#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/mapped_file.h"
#include "tokenizer/pretokenizer.h"
#include "tokenizer/spm_merges.h"

namespace kiln {
namespace {

using nlohmann::json;

json parse_json(std::string_view text, std::string_view source, std::string_view file) {
  try {
    return json::parse(text);
  } catch (const json::exception& e) {
    fail("{}: {} is not valid JSON: {}", source, file, e.what());
  }
}

const json* member(const json& object, const char* key) {
  if (!object.is_object()) return nullptr;
  const auto it = object.find(key);
  return it == object.end() || it->is_null() ? nullptr : &*it;
}

std::string string_member(const json& object, const char* key, std::string_view source, std::string_view where) {
  const json* v = member(object, key);
  KILN_CHECK(v != nullptr && v->is_string(), "{}: {}.{} is missing or not a string", source, where, key);
  return v->get<std::string>();
}

bool bool_member(const json& object, const char* key, bool fallback, std::string_view source, std::string_view where) {
  const json* v = member(object, key);
  if (v == nullptr) return fallback;
  KILN_CHECK(v->is_boolean(), "{}: {}.{} is {}, expected a boolean", source, where, key, v->type_name());
  return v->get<bool>();
}

// PCRE2 reads \Q...\E literally, except for a "\E" inside, which is spelled out around.
std::string quote_literal(std::string_view s) {
  std::string out = "\\Q";
  for (std::size_t at; (at = s.find("\\E")) != std::string_view::npos;) {
    out.append(s.substr(0, at));
    out.append("\\E\\\\E\\Q");
    s.remove_prefix(at + 2);
  }
  out.append(s);
  out.append("\\E");
  return out;
}

// Appends the expressions of a pre_tokenizer (and its members, for a Sequence) to `vocab`.
void read_pre_tokenizer(const json& pre, std::string_view source, const std::string& where, Vocab& vocab) {
  KILN_CHECK(pre.is_object(), "{}: {} is not an object", source, where);
  const std::string type = string_member(pre, "type", source, where);
  if (type == "Sequence") {
    const json* list = member(pre, "pretokenizers");
    KILN_CHECK(list != nullptr && list->is_array(), "{}: {}.pretokenizers is missing or not an array", source, where);
    for (std::size_t i = 0; i < list->size(); ++i) {
      read_pre_tokenizer((*list)[i], source, fmt::format("{}.pretokenizers[{}]", where, i), vocab);
    }
  } else if (type == "ByteLevel") {
    if (bool_member(pre, "use_regex", true, source, where)) vocab.pre_patterns.push_back(kGpt2Pattern);
    vocab.add_space_prefix = bool_member(pre, "add_prefix_space", true, source, where);
  } else if (type == "Split") {
    const json* pattern = member(pre, "pattern");
    KILN_CHECK(pattern != nullptr && pattern->is_object(), "{}: {}.pattern is missing or not an object", source, where);
    const std::string behavior = string_member(pre, "behavior", source, where);
    KILN_CHECK(behavior == "Isolated", "{}: {}.behavior = \"{}\" is not supported (kiln implements \"Isolated\")",
               source, where, behavior);
    KILN_CHECK(!bool_member(pre, "invert", false, source, where), "{}: {}.invert = true is not supported", source,
               where);
    if (const json* regex = member(*pattern, "Regex")) {
      KILN_CHECK(regex->is_string(), "{}: {}.pattern.Regex is not a string", source, where);
      vocab.pre_patterns.push_back(regex->get<std::string>());
    } else if (const json* literal = member(*pattern, "String")) {
      KILN_CHECK(literal->is_string(), "{}: {}.pattern.String is not a string", source, where);
      vocab.pre_patterns.push_back(quote_literal(literal->get<std::string>()));
    } else {
      fail("{}: {}.pattern has neither Regex nor String", source, where);
    }
  } else if (type == "Digits") {
    // Hugging Face splits on ASCII digits (char::is_ascii_digit), alone or in runs.
    vocab.pre_patterns.push_back(bool_member(pre, "individual_digits", false, source, where) ? "[0-9]" : "[0-9]+");
  } else {
    fail("{}: {}.type = \"{}\" is not supported (kiln reads ByteLevel, Split, Digits and Sequence)", source, where,
         type);
  }
}

constexpr std::string_view kSpaceSymbol = "\xE2\x96\x81";  // U+2581, SentencePiece's space

bool is_string_pattern(const json& step, std::string_view text) {
  const json* pattern = member(step, "pattern");
  const json* literal = pattern != nullptr ? member(*pattern, "String") : nullptr;
  return literal != nullptr && literal->is_string() && literal->get<std::string>() == text;
}

// What the normalizer of a SentencePiece-style tokenizer.json does to text: the dummy prefix
// (Prepend "▁") and spaces as "▁" (Replace " " -> "▁"), in either order, alone or in a
// Sequence. Sets `prefix` and `replace` for what it finds; anything else is an error.
void read_spm_normalizer(const json& normalizer, std::string_view source, const std::string& where, bool& prefix,
                         bool& replace) {
  KILN_CHECK(normalizer.is_object(), "{}: {} is not an object", source, where);
  const std::string type = string_member(normalizer, "type", source, where);
  if (type == "Sequence") {
    const json* list = member(normalizer, "normalizers");
    KILN_CHECK(list != nullptr && list->is_array(), "{}: {}.normalizers is missing or not an array", source, where);
    for (std::size_t i = 0; i < list->size(); ++i) {
      read_spm_normalizer((*list)[i], source, fmt::format("{}.normalizers[{}]", where, i), prefix, replace);
    }
  } else if (type == "Prepend") {
    KILN_CHECK(string_member(normalizer, "prepend", source, where) == kSpaceSymbol,
               "{}: {}.prepend is not \"\u2581\" (kiln's SentencePiece tokenizer prepends only the space symbol)",
               source, where);
    prefix = true;
  } else if (type == "Replace") {
    const json* content = member(normalizer, "content");
    KILN_CHECK(is_string_pattern(normalizer, " ") && content != nullptr && content->is_string() &&
                   content->get<std::string>() == kSpaceSymbol,
               "{}: {} is not Replace \" \" -> \"\u2581\" (the only replacement kiln's SentencePiece tokenizer makes)",
               source, where);
    replace = true;
  } else {
    fail(
        "{}: {}.type = \"{}\" is not supported in a byte-fallback tokenizer.json (kiln reads Prepend \"\u2581\" and "
        "Replace \" \" -> \"\u2581\")",
        source, where, type);
  }
}

// Metaspace, the pre-tokenizer newer transformers write instead of that normalizer: "▁" for
// spaces, the prefix unless prepend_scheme is "never", and no split on "▁" (a split would keep
// runs of spaces from merging, which SentencePiece does not do).
void read_metaspace(const json& pre, std::string_view source, bool& prefix, bool& replace) {
  KILN_CHECK(pre.is_object(), "{}: pre_tokenizer is not an object", source);
  const std::string type = string_member(pre, "type", source, "pre_tokenizer");
  KILN_CHECK(type == "Metaspace",
             "{}: pre_tokenizer.type = \"{}\" is not supported in a byte-fallback tokenizer.json (kiln reads null or "
             "Metaspace)",
             source, type);
  KILN_CHECK(string_member(pre, "replacement", source, "pre_tokenizer") == kSpaceSymbol,
             "{}: pre_tokenizer.replacement is not \"\u2581\"", source);
  KILN_CHECK(!bool_member(pre, "split", true, source, "pre_tokenizer"),
             "{}: pre_tokenizer Metaspace with split = true is not supported (SentencePiece merges across spaces)",
             source);
  if (const json* scheme = member(pre, "prepend_scheme")) {
    KILN_CHECK(scheme->is_string() && (*scheme == "always" || *scheme == "first" || *scheme == "never"),
               "{}: pre_tokenizer.prepend_scheme = {} is not \"always\", \"first\" or \"never\"", source,
               scheme->dump());
    prefix = *scheme != "never";
  } else {
    prefix = bool_member(pre, "add_prefix_space", true, source, "pre_tokenizer");
  }
  replace = true;
}

bool is_byte_piece(std::string_view piece) {
  auto hex = [](char c) { return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F'); };
  return piece.size() == 6 && piece.substr(0, 3) == "<0x" && hex(piece[3]) && hex(piece[4]) && piece[5] == '>';
}

// The id of the special token a TemplateProcessing's single template starts with, or -1.
std::int32_t template_bos(const json& processor, const Vocab& vocab) {
  if (!processor.is_object()) return -1;
  const json* type = member(processor, "type");
  if (type == nullptr || !type->is_string()) return -1;
  if (*type == "Sequence") {
    if (const json* list = member(processor, "processors"); list != nullptr && list->is_array()) {
      for (const json& p : *list) {
        if (const std::int32_t id = template_bos(p, vocab); id >= 0) return id;
      }
    }
    return -1;
  }
  if (*type != "TemplateProcessing") return -1;
  const json* single = member(processor, "single");
  if (single == nullptr || !single->is_array() || single->empty()) return -1;
  const json* special = member((*single)[0], "SpecialToken");
  if (special == nullptr) return -1;
  const json* name = member(*special, "id");
  return name != nullptr && name->is_string() ? vocab.find(name->get<std::string>()) : -1;
}

// tokenizer_config.json writes a token as "text" or {"content": "text", ...}.
std::int32_t config_token(const json& config, const char* key, const Vocab& vocab, std::string_view source) {
  const json* v = member(config, key);
  if (v == nullptr) return -2;  // absent: keep what the tokenizer.json said
  const json* text = v->is_object() ? member(*v, "content") : v;
  KILN_CHECK(text != nullptr && text->is_string(), "{}: tokenizer_config.json {} is neither a string nor {{content}}",
             source, key);
  const std::int32_t id = vocab.find(text->get<std::string>());
  KILN_CHECK(id >= 0, "{}: tokenizer_config.json {} = \"{}\" is not a token", source, key, text->get<std::string>());
  return id;
}

}  // namespace

Vocab read_hf_tokenizer_json(std::string_view json_text, std::string_view config_json, std::string_view source) {
  const json root = parse_json(json_text, source, "tokenizer.json");
  KILN_CHECK(root.is_object(), "{}: tokenizer.json is not a JSON object", source);
  const json* model = member(root, "model");
  KILN_CHECK(model != nullptr && model->is_object(), "{}: model is missing or not an object", source);
  if (const json* type = member(*model, "type")) {
    KILN_CHECK(type->is_string() && *type == "BPE", "{}: model.type = {} is not supported (kiln reads \"BPE\")", source,
               type->dump());
  }
  // byte_fallback is the layout transformers writes for SentencePiece vocabularies (Llama 2,
  // Mistral): a "llama" vocabulary; without it, byte-level BPE.
  const bool spm = bool_member(*model, "byte_fallback", false, source, "model");
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    const json* v = member(*model, key);
    KILN_CHECK(v == nullptr || (v->is_string() && v->get<std::string>().empty()), "{}: model.{} is not supported",
               source, key);
  }

  Vocab vocab;
  vocab.model = spm ? "llama" : "gpt2";
  vocab.pre = spm ? "" : "tokenizer.json";
  vocab.add_space_prefix = false;
  vocab.ignore_merges = bool_member(*model, "ignore_merges", false, source, "model");
  KILN_CHECK(!(spm && vocab.ignore_merges), "{}: model.ignore_merges = true with byte_fallback is not supported",
             source);

  const json* entries = member(*model, "vocab");
  KILN_CHECK(entries != nullptr && entries->is_object(), "{}: model.vocab is missing or not an object", source);
  const json* added = member(root, "added_tokens");
  KILN_CHECK(added == nullptr || added->is_array(), "{}: added_tokens is not an array", source);
  // Ids may leave holes (added tokens far above the model's vocabulary): size by the largest.
  std::int64_t max_id = -1;
  auto checked_id = [&](const json& v, const std::string& where) {
    KILN_CHECK(v.is_number_integer(), "{}: {} is {}, expected an integer id", source, where, v.type_name());
    const std::int64_t id = v.get<std::int64_t>();
    KILN_CHECK(id >= 0 && id < (std::int64_t{1} << 28), "{}: {} = {} is not a valid token id", source, where, id);
    max_id = std::max(max_id, id);
    return static_cast<std::size_t>(id);
  };
  for (const auto& [text, id] : entries->items()) checked_id(id, fmt::format("model.vocab[\"{}\"]", text));
  if (added != nullptr) {
    for (std::size_t i = 0; i < added->size(); ++i) {
      const json* id = member((*added)[i], "id");
      KILN_CHECK(id != nullptr, "{}: added_tokens[{}].id is missing", source, i);
      checked_id(*id, fmt::format("added_tokens[{}].id", i));
    }
  }
  KILN_CHECK(max_id >= 0, "{}: model.vocab is empty", source);
  const auto n = static_cast<std::size_t>(max_id + 1);
  vocab.tokens.resize(n);
  // Holes stay empty, unused tokens: nothing encodes to them.
  vocab.types.assign(n, TokenType::Unused);
  for (const auto& [text, id] : entries->items()) {
    const std::size_t i = id.get<std::size_t>();
    KILN_CHECK(vocab.types[i] == TokenType::Unused, "{}: model.vocab gives id {} to both \"{}\" and \"{}\"", source, i,
               vocab.tokens[i], text);
    vocab.tokens[i] = text;
    vocab.types[i] = TokenType::Normal;
  }
  if (added != nullptr) {
    for (std::size_t k = 0; k < added->size(); ++k) {
      const json& entry = (*added)[k];
      const std::string where = fmt::format("added_tokens[{}]", k);
      const std::size_t i = (*added)[k]["id"].get<std::size_t>();
      const std::string content = string_member(entry, "content", source, where);
      KILN_CHECK(vocab.tokens[i].empty() || vocab.tokens[i] == content,
                 "{}: {} gives id {} to \"{}\", which model.vocab gives to \"{}\"", source, where, i, content,
                 vocab.tokens[i]);
      vocab.tokens[i] = content;
      vocab.types[i] = bool_member(entry, "special", false, source, where) ? TokenType::Control : TokenType::UserDefined;
    }
  }

  const json* merges = member(*model, "merges");
  KILN_CHECK(merges != nullptr && merges->is_array(), "{}: model.merges is missing or not an array", source);
  vocab.merges.reserve(merges->size());
  for (std::size_t i = 0; i < merges->size(); ++i) {
    const json& m = (*merges)[i];
    if (m.is_string()) {
      const std::string& rule = m.get_ref<const std::string&>();
      const std::size_t space = rule.size() > 1 ? rule.find(' ', 1) : std::string::npos;
      KILN_CHECK(space != std::string::npos && space + 1 < rule.size(),
                 "{}: model.merges[{}] = \"{}\" is not of the form \"left right\"", source, i, rule);
      vocab.merges.emplace_back(rule.substr(0, space), rule.substr(space + 1));
    } else {
      KILN_CHECK(m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string(),
                 "{}: model.merges[{}] is neither \"left right\" nor [left, right]", source, i);
      vocab.merges.emplace_back(m[0].get<std::string>(), m[1].get<std::string>());
    }
  }

  if (spm) {
    bool prefix = false, replace = false;
    if (const json* normalizer = member(root, "normalizer")) {
      read_spm_normalizer(*normalizer, source, "normalizer", prefix, replace);
    }
    if (const json* pre = member(root, "pre_tokenizer")) read_metaspace(*pre, source, prefix, replace);
    KILN_CHECK(replace,
               "{}: a byte-fallback tokenizer.json needs spaces as \"\u2581\" (normalizer Replace or pre_tokenizer "
               "Metaspace)",
               source);
    vocab.add_space_prefix = prefix;
  } else {
    if (const json* normalizer = member(root, "normalizer")) {
      const json* type = member(*normalizer, "type");
      KILN_CHECK(type != nullptr && *type == "NFC",
                 "{}: normalizer {} is not supported (kiln reads byte-level vocabularies without one, or with NFC)",
                 source, type != nullptr ? type->dump() : normalizer->dump());
    }
    if (const json* pre = member(root, "pre_tokenizer")) read_pre_tokenizer(*pre, source, "pre_tokenizer", vocab);
    // No expression at all: the whole text is one word. An expression that matches nothing
    // splits nothing, which says exactly that to the pre-tokenizer.
    if (vocab.pre_patterns.empty()) vocab.pre_patterns.push_back("(*FAIL)");
  }
  vocab.finalize(source);  // builds the index that find() below uses
  if (spm) {
    for (std::int32_t id = 0; id < vocab.size(); ++id) {
      if (vocab.type(id) == TokenType::Normal && is_byte_piece(vocab.tokens[static_cast<std::size_t>(id)])) {
        vocab.types[static_cast<std::size_t>(id)] = TokenType::Byte;
      }
    }
    if (const json* unk = member(*model, "unk_token")) {
      KILN_CHECK(unk->is_string(), "{}: model.unk_token is not a string", source);
      vocab.unk_id = vocab.find(unk->get<std::string>());
      KILN_CHECK(vocab.unk_id >= 0, "{}: model.unk_token = \"{}\" is not a token", source, unk->get<std::string>());
      vocab.types[static_cast<std::size_t>(vocab.unk_id)] = TokenType::Unknown;
    }
    // SentencePiece ranks pieces by score where Hugging Face ranks merges: scores that merge in
    // the order of model.merges, which then have served their purpose.
    vocab.scores = spm_scores_from_merges(vocab, source);
    vocab.merges.clear();
  }
  if (const json* processor = member(root, "post_processor")) {
    if (const std::int32_t bos = template_bos(*processor, vocab); bos >= 0) {
      vocab.bos_id = bos;
      vocab.add_bos = true;
    }
  }
  if (!config_json.empty()) {
    const json config = parse_json(config_json, source, "tokenizer_config.json");
    if (const std::int32_t id = config_token(config, "bos_token", vocab, source); id != -2) vocab.bos_id = id;
    if (const std::int32_t id = config_token(config, "eos_token", vocab, source); id != -2) vocab.eos_id = id;
    if (const std::int32_t id = config_token(config, "pad_token", vocab, source); id != -2) vocab.pad_id = id;
    vocab.add_bos = bool_member(config, "add_bos_token", vocab.add_bos, source, "tokenizer_config.json");
    vocab.add_eos = bool_member(config, "add_eos_token", vocab.add_eos, source, "tokenizer_config.json");
  }
  // End of turn and end of message by their usual texts, as llama.cpp finds them.
  for (const char* text : {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>"}) {
    if (vocab.eot_id < 0) vocab.eot_id = vocab.find(text);
  }
  vocab.eom_id = vocab.find("<|eom_id|>");
  if (vocab.eos_id < 0) vocab.eos_id = vocab.find(spm ? "</s>" : "<|endoftext|>");
  if (spm && vocab.bos_id < 0) vocab.bos_id = vocab.find("<s>");
  vocab.add_bos = vocab.add_bos && vocab.bos_id >= 0;
  vocab.finalize(source);
  return vocab;
}

Vocab load_hf_tokenizer_json(const std::string& path) {
  const MappedFile file(path);
  std::string config;
  const std::filesystem::path config_path = std::filesystem::path(path).parent_path() / "tokenizer_config.json";
  if (std::filesystem::is_regular_file(config_path)) {
    const MappedFile config_file(config_path.string());
    config.assign(reinterpret_cast<const char*>(config_file.data()), config_file.size());
  }
  return read_hf_tokenizer_json({reinterpret_cast<const char*>(file.data()), file.size()}, config, path);
}

}  // namespace kiln
