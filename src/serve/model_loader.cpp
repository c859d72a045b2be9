#include "serve/model_loader.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"
#include "format/tensor_source.h"
#include "model/llama_config.h"
#include "runtime/loaded_model.h"
#include "runtime/model_stats.h"

namespace kiln::serve {

std::size_t estimate_model_bytes(const std::string& path, const EngineOptions& options) {
  std::unique_ptr<TensorSource> source = TensorSource::open(path);
  const LlamaConfig config = llama_config_from_source(*source);
  const EngineOptions resolved = resolve_engine_options(config, options);
  return source->file_size() + static_cast<std::size_t>(resolved.kv_cache_tokens) * kv_bytes_per_token(config, resolved.kv_type);
}

std::shared_ptr<ServedModel> load_served_model(const ModelSpec& spec, const EngineOptions& options,
                                               const std::string& chat_template, const std::string& draft_path) {
  LoadedModel loaded = load_model(spec.path, {.tokenizer = TokenizerNeed::required,
                                              .chat_template = ChatTemplateNeed::model_or_builtin,
                                              .needed_by = "kiln serve"});
  // A draft that cannot serve this model fails the load before anything starts.
  LoadedModel draft = draft_path.empty() ? LoadedModel{} : load_draft_model(draft_path, loaded);
  auto served = std::make_shared<ServedModel>();
  served->draft = std::move(draft.model);
  served->draft_tokenizer = std::move(draft.tokenizer);
  served->name = spec.name;
  served->path = spec.path;
  served->model = std::move(loaded.model);
  served->tokenizer = std::move(loaded.tokenizer);
  if (chat_template.empty()) {
    served->chat = std::make_shared<const ChatTemplate>(std::move(*loaded.chat_template));
  } else {
    served->chat = std::make_shared<const ChatTemplate>(
        chat_template_override(chat_template, loaded.chat_template->bos_token(), loaded.chat_template->eos_token()));
  }
  served->tool_format = detect_tool_call_format(served->chat->source());
  const LlamaConfig& c = served->model->config();
  served->stats = model_stats(*served->model);
  EngineOptions engine_options = options;
  engine_options.metrics_model = spec.name;
  if (served->draft) engine_options.draft = served->draft.get();
  served->engine = std::make_shared<Engine>(*served->model, *served->tokenizer, engine_options);
  const Tokenizer& tok = *served->tokenizer;
  for (std::int32_t id = 0; id < tok.n_vocab(); ++id)
    served->max_token_bytes = std::max({served->max_token_bytes, tok.token_to_piece(id).size(),
                                        tok.vocab().tokens[static_cast<std::size_t>(id)].size()});
  served->memory_bytes = served->model->source().file_size() +
                         static_cast<std::size_t>(served->engine->options().kv_cache_tokens) * kv_bytes_per_token(c, served->engine->options().kv_type);
  if (served->draft)
    served->memory_bytes += served->draft->source().file_size() +
                            static_cast<std::size_t>(served->engine->options().kv_cache_tokens) *
                                kv_bytes_per_token(served->draft->config(), served->engine->options().kv_type);
  return served;
}

ModelLoader make_model_loader(const EngineOptions& options, std::map<std::string, std::string> chat_templates,
                              std::map<std::string, std::string> drafts) {
  ModelLoader loader;
  loader.estimate_bytes = [options, drafts](const ModelSpec& spec) {
    // A draft adds its file and a KV pool of its own (about what the same options give it).
    const auto draft = drafts.find(spec.name);
    return estimate_model_bytes(spec.path, options) +
           (draft == drafts.end() ? 0 : estimate_model_bytes(draft->second, options));
  };
  loader.load = [options, chat_templates = std::move(chat_templates), drafts](const ModelSpec& spec) {
    const auto it = chat_templates.find(spec.name);
    const auto draft = drafts.find(spec.name);
    return load_served_model(spec, options, it == chat_templates.end() ? std::string() : it->second,
                             draft == drafts.end() ? std::string() : draft->second);
  };
  return loader;
}

ChatTemplate chat_template_override(const std::string& name_or_file, std::string bos_token, std::string eos_token) {
  for (std::string_view name : ChatTemplate::builtin_names())
    if (name == name_or_file) return ChatTemplate::builtin(name, std::move(bos_token), std::move(eos_token));
  std::error_code ec;
  if (!std::filesystem::is_regular_file(name_or_file, ec)) {
    std::string names;
    for (std::string_view name : ChatTemplate::builtin_names()) names += (names.empty() ? "" : ", ") + std::string(name);
    fail("--chat-template '{}' is neither a built-in template ({}) nor a file", name_or_file, names);
  }
  std::ifstream in(name_or_file, std::ios::binary);
  std::stringstream source;
  source << in.rdbuf();
  if (!in) fail("--chat-template {}: cannot read the file", name_or_file);
  try {
    return ChatTemplate(source.str(), std::move(bos_token), std::move(eos_token), "file");
  } catch (const Error& e) {
    fail("--chat-template {}: {}", name_or_file, e.what());
  }
}

std::vector<ModelSpec> scan_models_dir(const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  std::vector<ModelSpec> specs;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    if (!it->is_regular_file() || it->path().extension() != ".gguf") continue;
    specs.push_back({it->path().stem().string(), it->path().string(), false});
  }
  if (ec) fail("{}: cannot read the models folder: {}", dir, ec.message());
  if (specs.empty()) fail("{}: the models folder holds no .gguf file", dir);
  std::sort(specs.begin(), specs.end(), [](const ModelSpec& a, const ModelSpec& b) { return a.name < b.name; });
  return specs;
}

}  // namespace kiln::serve
