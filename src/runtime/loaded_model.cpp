#include "runtime/loaded_model.h"

#include "core/error.h"
#include "format/gguf_file.h"
#include "runtime/speculative.h"
#include "tokenizer/load_tokenizer.h"

namespace kiln {

namespace {

// The template kiln falls back to when the model's own does not parse: the built-in that fits
// the model, with the vocabulary's BOS and EOS texts.
ChatTemplate fallback_template(const GgufFile& gguf, const Tokenizer& tokenizer) {
  const Vocab& v = tokenizer.vocab();
  const auto text = [&](std::int32_t id) {
    return id >= 0 && id < v.size() ? v.tokens[static_cast<std::size_t>(id)] : std::string();
  };
  return ChatTemplate::builtin(ChatTemplate::guess_builtin(ChatTemplate::hints_from_gguf(gguf)), text(v.bos_id),
                               text(v.eos_id));
}

}  // namespace

std::unique_ptr<Tokenizer> load_model_tokenizer(const LlamaModel& model) {
  const GgufFile* gguf = model.source().gguf();
  if (gguf == nullptr || gguf->find("tokenizer.ggml.tokens") == nullptr) return nullptr;
  std::unique_ptr<Tokenizer> t = load_tokenizer(*gguf);
  if (t->n_vocab() != model.config().n_vocab)
    fail("{}: the tokenizer has {} tokens but the model's embedding has {}", model.source().path(), t->n_vocab(),
         model.config().n_vocab);
  return t;
}

LoadedModel load_model(const std::string& path, const ModelNeeds& needs) {
  KILN_CHECK(needs.chat_template == ChatTemplateNeed::skip || needs.tokenizer == TokenizerNeed::required,
             "load_model: a chat template needs the tokenizer required");
  LoadedModel m;
  m.path = path;
  m.model = LlamaModel::load(path);
  if (needs.tokenizer == TokenizerNeed::skip) return m;
  m.tokenizer = load_model_tokenizer(*m.model);
  if (!m.tokenizer && needs.tokenizer == TokenizerNeed::required)
    fail("{}: {} needs a model with a tokenizer (a GGUF with tokenizer.ggml.*)", path, needs.needed_by);
  if (needs.chat_template == ChatTemplateNeed::skip) return m;
  const GgufFile& gguf = *m.model->source().gguf();
  if (needs.chat_template == ChatTemplateNeed::model) {
    m.chat_template.emplace(ChatTemplate::from_gguf(gguf));
    return m;
  }
  try {
    m.chat_template.emplace(ChatTemplate::from_gguf(gguf));
  } catch (const Error&) {
    m.chat_template.emplace(fallback_template(gguf, *m.tokenizer));
  }
  return m;
}

LoadedModel load_draft_model(const std::string& path, const LoadedModel& target) {
  if (!target.tokenizer)
    fail("{}: a draft model needs a target with a tokenizer to compare vocabularies with", target.path);
  LoadedModel draft = load_model(path, {.tokenizer = TokenizerNeed::required, .needed_by = "a draft model"});
  try {
    check_draft_compatible(*target.model, *target.tokenizer, *draft.model, *draft.tokenizer);
  } catch (const Error& e) {
    fail("{}: {}", path, e.what());
  }
  return draft;
}

}  // namespace kiln
