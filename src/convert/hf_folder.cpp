#include "convert/hf_folder.h"

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.h"
#include "tokenizer/load_tokenizer.h"
#include "tokenizer/pretokenizer.h"

namespace kiln::convert {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("{}: cannot open", path);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

json read_json(const std::string& path) {
  try {
    return json::parse(read_text(path));
  } catch (const json::exception& e) {
    fail("{}: not valid JSON: {}", path, e.what());
  }
}

// tokenizer_config.json's chat_template: a string, or [{"name": ..., "template": ...}].
void read_chat_templates(const json& config, const std::string& path, HfTokenizer& out) {
  const auto it = config.find("chat_template");
  if (it == config.end() || it->is_null()) return;
  if (it->is_string()) {
    out.chat_templates.emplace_back("", it->get<std::string>());
    return;
  }
  if (!it->is_array()) fail("{}: chat_template is {} (expected a string or a list)", path, it->type_name());
  for (const json& entry : *it) {
    if (!entry.is_object() || !entry.contains("name") || !entry.contains("template") || !entry["name"].is_string() ||
        !entry["template"].is_string())
      fail("{}: chat_template entries must be objects with a string name and template", path);
    const std::string name = entry["name"].get<std::string>();
    out.chat_templates.emplace_back(name == "default" ? "" : name, entry["template"].get<std::string>());
  }
}

// The id of a special token's text in `vocab`, or -1.
std::int32_t special_id(const Vocab& vocab, const json& config, const char* key) {
  const auto it = config.find(key);
  if (it == config.end()) return -1;
  if (it->is_string()) return vocab.find(it->get<std::string>());
  if (it->is_object() && it->contains("content") && (*it)["content"].is_string())
    return vocab.find((*it)["content"].get<std::string>());
  return -1;
}

// generation_config.json's eos_token_id (one id or a list) onto the vocabulary's EOS/EOT/EOM.
void apply_generation_config(Vocab& vocab, const std::string& path) {
  const json g = read_json(path);
  if (!g.is_object()) fail("{}: expected a JSON object", path);
  const auto it = g.find("eos_token_id");
  if (it == g.end() || it->is_null()) return;
  std::vector<std::int64_t> ids;
  if (it->is_number_integer()) {
    ids.push_back(it->get<std::int64_t>());
  } else if (it->is_array()) {
    for (const json& v : *it) {
      if (!v.is_number_integer()) fail("{}: eos_token_id holds {} (expected integers)", path, v.type_name());
      ids.push_back(v.get<std::int64_t>());
    }
  } else {
    fail("{}: eos_token_id is {} (expected an integer or a list)", path, it->type_name());
  }
  for (std::int64_t id : ids)
    if (id < 0 || id >= vocab.size())
      fail("{}: eos_token_id {} is outside the vocabulary of {} tokens", path, id, vocab.size());
  if (ids.empty()) return;
  const auto id32 = [](std::int64_t v) { return static_cast<std::int32_t>(v); };
  if (vocab.eos_id < 0) vocab.eos_id = id32(ids[0]);
  for (std::int64_t id : ids) {
    if (id32(id) == vocab.eos_id) continue;
    const std::string& text = vocab.tokens[static_cast<std::size_t>(id)];
    if (text.find("eom") != std::string::npos) {
      if (vocab.eom_id < 0) vocab.eom_id = id32(id);
    } else if (vocab.eot_id < 0) {
      vocab.eot_id = id32(id);
    }
  }
}

}  // namespace

void name_pretokenizer(Vocab& vocab, const std::string& source) {
  if (vocab.model != "gpt2" || vocab.pre_patterns.empty()) return;
  const std::string name = pretokenizer_name_for(vocab.pre_patterns, vocab.ignore_merges);
  if (name.empty())
    fail("{}: its pre-tokenizer ({} expression{}, first '{}') is not one llama.cpp names ({}), so a GGUF cannot "
         "carry it", source, vocab.pre_patterns.size(), vocab.pre_patterns.size() == 1 ? "" : "s",
         vocab.pre_patterns.front().substr(0, 60), kKnownPretokenizers);
  vocab.pre = name;
  vocab.pre_patterns.clear();
}

void pad_vocab(Vocab& vocab, int n_vocab, const std::string& source, const std::string& model_field) {
  if (vocab.size() > n_vocab)
    fail("{}: the tokenizer has {} tokens but {} is {}: the tokenizer belongs to another model", source, vocab.size(),
         model_field, n_vocab);
  for (std::int32_t id = vocab.size(); id < n_vocab; ++id) {
    vocab.tokens.push_back("[PAD" + std::to_string(id) + "]");
    if (!vocab.scores.empty()) vocab.scores.push_back(0.0f);
    vocab.types.push_back(TokenType::Unused);
  }
}

bool has_hf_tokenizer(const std::string& dir) {
  return fs::exists(dir + "/tokenizer.model") || fs::exists(dir + "/tokenizer.json");
}

HfTokenizer read_hf_tokenizer(const std::string& dir, int n_vocab, const std::string& tokenizer_path) {
  HfTokenizer out;
  const std::string config_path = dir + "/tokenizer_config.json";
  const bool has_config = fs::exists(config_path);
  if (!tokenizer_path.empty()) {
    out.vocab_file = tokenizer_path;
  } else if (fs::exists(dir + "/tokenizer.model")) {
    out.vocab_file = dir + "/tokenizer.model";
  } else if (fs::exists(dir + "/tokenizer.json")) {
    out.vocab_file = dir + "/tokenizer.json";
  } else {
    fail("{}: no tokenizer.model or tokenizer.json (give one with --tokenizer)", dir);
  }
  out.vocab = load_vocab_file(out.vocab_file);
  name_pretokenizer(out.vocab, out.vocab_file);
  json config = json::object();
  if (has_config) {
    config = read_json(config_path);
    if (!config.is_object()) fail("{}: expected a JSON object", config_path);
    read_chat_templates(config, config_path, out);
    // tokenizer.json's reader applies tokenizer_config.json itself; a SentencePiece model's
    // flags are its own unless the config says otherwise.
    if (out.vocab_file.ends_with(".model")) {
      if (auto it = config.find("add_bos_token"); it != config.end() && it->is_boolean()) out.vocab.add_bos = it->get<bool>();
      if (auto it = config.find("add_eos_token"); it != config.end() && it->is_boolean()) out.vocab.add_eos = it->get<bool>();
      if (std::int32_t id = special_id(out.vocab, config, "bos_token"); id >= 0) out.vocab.bos_id = id;
      if (std::int32_t id = special_id(out.vocab, config, "eos_token"); id >= 0) out.vocab.eos_id = id;
    }
    if (std::int32_t id = special_id(out.vocab, config, "pad_token"); id >= 0) out.vocab.pad_id = id;
  }
  if (out.chat_templates.empty() && fs::exists(dir + "/chat_template.jinja"))
    out.chat_templates.emplace_back("", read_text(dir + "/chat_template.jinja"));
  if (fs::exists(dir + "/generation_config.json")) apply_generation_config(out.vocab, dir + "/generation_config.json");
  pad_vocab(out.vocab, n_vocab, out.vocab_file, dir + "/config.json vocab_size");
  out.vocab.finalize(out.vocab_file);
  return out;
}

}  // namespace kiln::convert
