#include "tokenizer/hf_tokenizer_writer.h"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>

#include "core/error.h"
#include "tokenizer/pretokenizer.h"
#include "tokenizer/spm_merges.h"

namespace kiln {
namespace {

using json = nlohmann::ordered_json;

constexpr const char* kSpaceSymbol = "\xE2\x96\x81";  // U+2581, SentencePiece's space

void write_file_atomically(const std::string& path, std::string_view bytes) {
  const std::string tmp = fmt::format("{}.tmp-{}", path, static_cast<long>(::getpid()));
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    KILN_CHECK(out.good(), "{}: cannot open for writing: {}", tmp, std::strerror(errno));
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    out.flush();
    if (!out.good()) {
      std::remove(tmp.c_str());
      fail("{}: write failed", tmp);
    }
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::remove(tmp.c_str());
    fail("{}: cannot rename into place: {}", path, ec.message());
  }
}

std::string dump(const json& value, std::string_view source) {
  try {
    return value.dump(2) + "\n";
  } catch (const json::exception& e) {
    // A token that is not valid UTF-8 cannot be a JSON string.
    fail("{}: cannot write the tokenizer as JSON: {}", source, e.what());
  }
}

const std::string& text_of(const Vocab& vocab, std::int32_t id) { return vocab.tokens[static_cast<std::size_t>(id)]; }

// The tokens tokenizers matches in raw text before its model runs.
bool is_added_token(const Vocab& vocab, std::int32_t id) {
  const TokenType t = vocab.type(id);
  if (t == TokenType::Control || t == TokenType::UserDefined) return true;
  return vocab.model == "llama" && t == TokenType::Unknown;
}

json added_token(const Vocab& vocab, std::int32_t id, bool with_id) {
  json entry;
  if (with_id) entry["id"] = id;
  entry["content"] = text_of(vocab, id);
  entry["single_word"] = false;
  entry["lstrip"] = false;
  entry["rstrip"] = false;
  entry["normalized"] = false;
  entry["special"] = vocab.type(id) != TokenType::UserDefined;
  return entry;
}

// model.vocab: text -> id in id order. Entries go straight into ordered_json's underlying vector
// (texts are unique: Vocab::finalize checks), skipping its per-insert search for the key.
json model_vocab(const Vocab& vocab, bool include_added) {
  json object = json::object();
  auto& entries = static_cast<json::object_t::Container&>(object.get_ref<json::object_t&>());
  entries.reserve(vocab.tokens.size());
  for (std::int32_t id = 0; id < vocab.size(); ++id) {
    if (text_of(vocab, id).empty()) continue;  // a hole in the ids: no token
    if (!include_added && is_added_token(vocab, id)) continue;
    entries.emplace_back(text_of(vocab, id), json(id));
  }
  return object;
}

json merge_list(const std::vector<std::pair<std::string, std::string>>& merges) {
  bool pairs = false;
  for (const auto& [l, r] : merges)
    pairs = pairs || l.find(' ') != std::string::npos || r.find(' ') != std::string::npos;
  json list = json::array();
  for (const auto& [l, r] : merges) list.push_back(pairs ? json::array({l, r}) : json(l + " " + r));
  return list;
}

json template_piece(const char* kind, const std::string& id, int type_id) {
  return json{{kind, {{"id", id}, {"type_id", type_id}}}};
}

// A TemplateProcessing adding BOS before and EOS after each sequence as the vocabulary asks.
json template_processing(const Vocab& vocab) {
  const bool bos = vocab.add_bos && vocab.bos_id >= 0;
  const bool eos = vocab.add_eos && vocab.eos_id >= 0;
  json single = json::array(), pair = json::array(), specials = json::object();
  for (int seq = 0; seq < 2; ++seq) {
    json& out = seq == 0 ? single : pair;
    for (int part = 0; part < (seq == 0 ? 1 : 2); ++part) {
      if (bos) out.push_back(template_piece("SpecialToken", text_of(vocab, vocab.bos_id), part));
      out.push_back(template_piece("Sequence", part == 0 ? "A" : "B", part));
      if (eos) out.push_back(template_piece("SpecialToken", text_of(vocab, vocab.eos_id), part));
    }
  }
  for (const auto& [on, id] : {std::pair{bos, vocab.bos_id}, std::pair{eos, vocab.eos_id}}) {
    if (!on) continue;
    const std::string& text = text_of(vocab, id);
    specials[text] = json{{"id", text}, {"ids", json::array({id})}, {"tokens", json::array({text})}};
  }
  return json{{"type", "TemplateProcessing"}, {"single", single}, {"pair", pair}, {"special_tokens", specials}};
}

json byte_level(bool add_prefix_space, bool trim_offsets, bool use_regex) {
  return json{{"type", "ByteLevel"},
              {"add_prefix_space", add_prefix_space},
              {"trim_offsets", trim_offsets},
              {"use_regex", use_regex}};
}

json bpe_model(const Vocab& vocab, const json& unk_token, bool spm, bool ignore_merges, json merges) {
  return json{{"type", "BPE"},
              {"dropout", nullptr},
              {"unk_token", unk_token},
              {"continuing_subword_prefix", nullptr},
              {"end_of_word_suffix", nullptr},
              {"fuse_unk", spm},
              {"byte_fallback", spm},
              {"ignore_merges", ignore_merges},
              {"vocab", model_vocab(vocab, spm)},
              {"merges", std::move(merges)}};
}

json added_tokens(const Vocab& vocab) {
  json added = json::array();
  for (std::int32_t id = 0; id < vocab.size(); ++id) {
    if (is_added_token(vocab, id) && !text_of(vocab, id).empty()) added.push_back(added_token(vocab, id, true));
  }
  return added;
}

json byte_level_tokenizer(const Vocab& vocab) {
  // The expressions and ignore_merges BpeTokenizer runs: the spelled-out ones, else the name's.
  std::vector<std::string> patterns = vocab.pre_patterns;
  bool ignore_merges = vocab.ignore_merges;
  if (patterns.empty()) {
    const std::optional<PretokenizerSpec> spec = find_pretokenizer_spec(vocab.pre);
    KILN_CHECK(spec.has_value(), "{}: tokenizer.ggml.pre = \"{}\" is not a pre-tokenizer kiln knows ({})", vocab.source,
               vocab.pre, kKnownPretokenizers);
    patterns = spec->patterns;
    ignore_merges = spec->ignore_merges;
  }
  json steps = json::array();
  for (const std::string& p : patterns) {
    if (p == "(*FAIL)") continue;  // kiln's spelling of "no expression": the text is one word
    steps.push_back(json{{"type", "Split"}, {"pattern", {{"Regex", p}}}, {"behavior", "Isolated"}, {"invert", false}});
  }
  steps.push_back(byte_level(vocab.add_space_prefix, true, false));

  json root;
  root["version"] = "1.0";
  root["truncation"] = nullptr;
  root["padding"] = nullptr;
  root["added_tokens"] = added_tokens(vocab);
  root["normalizer"] = nullptr;
  root["pre_tokenizer"] = json{{"type", "Sequence"}, {"pretokenizers", std::move(steps)}};
  const json post_byte_level = byte_level(true, false, true);
  root["post_processor"] =
      (vocab.add_bos && vocab.bos_id >= 0) || (vocab.add_eos && vocab.eos_id >= 0)
          ? json{{"type", "Sequence"}, {"processors", json::array({post_byte_level, template_processing(vocab)})}}
          : post_byte_level;
  root["decoder"] = byte_level(true, true, true);
  root["model"] = bpe_model(vocab, nullptr, false, ignore_merges, merge_list(vocab.merges));
  return root;
}

json sentencepiece_tokenizer(const Vocab& vocab) {
  const json replace_spaces = {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", kSpaceSymbol}};
  json normalizers = json::array();
  if (vocab.add_space_prefix) normalizers.push_back(json{{"type", "Prepend"}, {"prepend", kSpaceSymbol}});
  normalizers.push_back(replace_spaces);

  json decoders = json::array();
  decoders.push_back(json{{"type", "Replace"}, {"pattern", {{"String", kSpaceSymbol}}}, {"content", " "}});
  decoders.push_back(json{{"type", "ByteFallback"}});
  decoders.push_back(json{{"type", "Fuse"}});
  if (vocab.add_space_prefix) decoders.push_back(json{{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}});

  json root;
  root["version"] = "1.0";
  root["truncation"] = nullptr;
  root["padding"] = nullptr;
  root["added_tokens"] = added_tokens(vocab);
  root["normalizer"] = json{{"type", "Sequence"}, {"normalizers", std::move(normalizers)}};
  root["pre_tokenizer"] = nullptr;
  root["post_processor"] = template_processing(vocab);
  root["decoder"] = json{{"type", "Sequence"}, {"decoders", std::move(decoders)}};
  const json unk = vocab.unk_id >= 0 ? json(text_of(vocab, vocab.unk_id)) : json(nullptr);
  root["model"] = bpe_model(vocab, unk, true, false, merge_list(spm_merges_from_scores(vocab)));
  return root;
}

json tokenizer_config(const Vocab& vocab, const HfTokenizerConfig& config) {
  auto token = [&](std::int32_t id) { return id >= 0 ? json(text_of(vocab, id)) : json(nullptr); };
  json added = json::object();
  for (std::int32_t id = 0; id < vocab.size(); ++id) {
    if (is_added_token(vocab, id) && !text_of(vocab, id).empty())
      added[std::to_string(id)] = added_token(vocab, id, false);
  }
  json out;
  out["add_bos_token"] = vocab.add_bos;
  out["add_eos_token"] = vocab.add_eos;
  out["added_tokens_decoder"] = std::move(added);
  out["bos_token"] = token(vocab.bos_id);
  if (!config.chat_template.empty()) out["chat_template"] = config.chat_template;
  // kiln's decode gives the text back exactly; Hugging Face's clean-up would drop spaces.
  out["clean_up_tokenization_spaces"] = false;
  out["eos_token"] = token(vocab.eos_id);
  if (config.model_max_length > 0) out["model_max_length"] = config.model_max_length;
  out["pad_token"] = token(vocab.pad_id);
  out["tokenizer_class"] = vocab.model == "llama" ? "LlamaTokenizerFast" : "PreTrainedTokenizerFast";
  out["unk_token"] = token(vocab.unk_id);
  return out;
}

}  // namespace

HfTokenizerFiles hf_tokenizer_files(const Vocab& vocab, const HfTokenizerConfig& config) {
  KILN_CHECK(vocab.model == "gpt2" || vocab.model == "llama",
             "{}: tokenizer.ggml.model = \"{}\" cannot be written as a tokenizer.json (kiln writes \"llama\" and "
             "\"gpt2\")",
             vocab.source, vocab.model);
  HfTokenizerFiles files;
  files.tokenizer_json =
      dump(vocab.model == "llama" ? sentencepiece_tokenizer(vocab) : byte_level_tokenizer(vocab), vocab.source);
  files.tokenizer_config_json = dump(tokenizer_config(vocab, config), vocab.source);
  return files;
}

void write_hf_tokenizer_files(const Vocab& vocab, const HfTokenizerConfig& config, const std::string& dir) {
  const HfTokenizerFiles files = hf_tokenizer_files(vocab, config);
  const std::filesystem::path d(dir);
  write_file_atomically((d / "tokenizer.json").string(), files.tokenizer_json);
  write_file_atomically((d / "tokenizer_config.json").string(), files.tokenizer_config_json);
}

void write_hf_tokenizer_json(const Vocab& vocab, const std::string& path) {
  write_file_atomically(path, hf_tokenizer_files(vocab).tokenizer_json);
}

void write_hf_tokenizer_config(const Vocab& vocab, const std::string& path) {
  write_file_atomically(
      path, dump(tokenizer_config(vocab, {.chat_template = "", .model_max_length = 1000000000}), vocab.source));
}

}  // namespace kiln
