#pragma once
// How `kiln serve` turns a model file into a ServedModel: the weights, tokenizer and chat
// template as runtime/loaded_model.h loads them (a template kiln cannot parse falls back to the
// fitting built-in), and an Engine with the server's options.
#include <cstddef>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "chat/chat_template.h"
#include "runtime/engine.h"
#include "serve/model_registry.h"

namespace kiln::serve {

// Weights plus the KV pool the engine will allocate, in bytes: what --memory-budget counts.
std::size_t estimate_model_bytes(const std::string& path, const EngineOptions& options);

// Loads a GGUF with a tokenizer (token-id-only models cannot serve text endpoints) and starts
// its engine. Throws kiln::Error naming the file.
// `chat_template`: a built-in's name or a Jinja file used instead of the model's own (empty: the
// model's). `draft_path`: a draft model for speculative decoding (runtime/speculative.h), checked
// against the model's vocabulary before the engine starts (empty: none).
std::shared_ptr<ServedModel> load_served_model(const ModelSpec& spec, const EngineOptions& options,
                                               const std::string& chat_template = "", const std::string& draft_path = "");

// `chat_templates`: served model name -> --chat-template value, for the models that have one;
// `drafts`: served model name -> its draft model's path (--draft), for the models that have one.
ModelLoader make_model_loader(const EngineOptions& options, std::map<std::string, std::string> chat_templates = {},
                              std::map<std::string, std::string> drafts = {});

// `--chat-template NAME|FILE`: the built-in of that name, else the Jinja template in that file.
// Throws kiln::Error naming the value when it is neither, or the file's line when it does not parse.
ChatTemplate chat_template_override(const std::string& name_or_file, std::string bos_token, std::string eos_token);

// Every *.gguf in `dir`, named by file stem, sorted by name. Throws kiln::Error when the folder
// cannot be read or holds no GGUF.
std::vector<ModelSpec> scan_models_dir(const std::string& dir);

}  // namespace kiln::serve
