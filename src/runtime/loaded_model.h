#pragma once
// A model file made ready to run: the weights, the tokenizer its GGUF carries and its chat
// template, loaded and checked against each other in one place, so that every command that runs
// a model (run, chat, bench, serve) fails the same way, with one message naming the file.
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "model/llama_model.h"
#include "chat/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace kiln {

enum class TokenizerNeed {
  skip,      // weights only (timing runs that feed token ids)
  optional,  // the GGUF's tokenizer when it has one; none for llama2.c checkpoints
  required,  // an error when the model carries no tokenizer
};

enum class ChatTemplateNeed {
  skip,
  // The GGUF's tokenizer.chat_template, or the guessed built-in when it has none; a template
  // kiln's Jinja cannot parse is an error.
  model,
  // As `model`, but a template kiln's Jinja cannot parse is replaced by the built-in that fits
  // the model, so that plain completions still work and chat gets the closest known format.
  model_or_builtin,
};

struct ModelNeeds {
  TokenizerNeed tokenizer = TokenizerNeed::optional;
  ChatTemplateNeed chat_template = ChatTemplateNeed::skip;  // anything but skip needs TokenizerNeed::required
  // Who needs the tokenizer, for the error when there is none: "chat", "kiln serve", ...
  std::string_view needed_by = "this command";
};

struct LoadedModel {
  std::string path;
  std::unique_ptr<LlamaModel> model;
  std::unique_ptr<Tokenizer> tokenizer;       // null when skipped or the model has none
  std::optional<ChatTemplate> chat_template;  // set when asked for
};

// Loads `path` with what `needs` asks for. Throws kiln::Error naming the file: when the model
// cannot be read, lacks a required tokenizer, its tokenizer's vocabulary disagrees with the
// embedding, or its chat template is bad (ChatTemplateNeed::model).
LoadedModel load_model(const std::string& path, const ModelNeeds& needs = {});

// A draft model for speculative decoding with `target` (runtime/speculative.h): loaded with its
// tokenizer and checked to share the target's vocabulary token for token. Throws kiln::Error
// naming the draft's file, before any work starts, when either model has no tokenizer or the
// vocabularies differ (check_draft_compatible names the first difference).
LoadedModel load_draft_model(const std::string& path, const LoadedModel& target);

// The model's tokenizer from its GGUF, or nullptr when it has none (llama2.c checkpoints).
// Throws kiln::Error when the vocabulary's size disagrees with the model's embedding.
std::unique_ptr<Tokenizer> load_model_tokenizer(const LlamaModel& model);

}  // namespace kiln
