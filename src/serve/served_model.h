#pragma once
// One loaded model as the server uses it: the weights, the tokenizer, the chat template and the
// engine that batches every request for it. The registry owns these and lends them out.
#include <cstddef>
#include <memory>
#include <mutex>
#include <string>

#include "grammar/grammar_matcher.h"
#include "model/llama_model.h"
#include "serve/tool_call_format.h"
#include "runtime/model_stats.h"
#include "tokenizer/tokenizer.h"

namespace kiln {
class Engine;
class ChatTemplate;
}  // namespace kiln

namespace kiln::serve {

struct ServedModel {
  std::string name;
  std::string path;
  std::unique_ptr<LlamaModel> model;
  std::unique_ptr<Tokenizer> tokenizer;
  std::shared_ptr<const ChatTemplate> chat;  // turns messages into the prompt text
  ToolCallFormat tool_format = ToolCallFormat::generic;  // how its template's model writes tool calls
  // shared_ptr so that a ServedModel without an engine (tests) needs no Engine code at all.
  std::shared_ptr<Engine> engine;
  // The draft model of speculative decoding (--draft), which the engine runs; null without one.
  std::unique_ptr<LlamaModel> draft;
  std::unique_ptr<Tokenizer> draft_tokenizer;
  std::size_t memory_bytes = 0;  // weights + KV pool, as counted against --memory-budget
  ModelStats stats;              // parameters and weight bytes (runtime/model_stats.h)
  // The most bytes of text one token can stand for (its piece, or its text as a special token):
  // a text longer than n x this has more than n tokens, known without tokenizing it.
  std::size_t max_token_bytes = 0;
  // Compiled grammars of structured-output requests for this vocabulary, made on first use
  // (serve/generation_job.cpp): the token trie is built once, each grammar once.
  std::once_flag grammars_once;
  std::unique_ptr<grammar::CompiledGrammarCache> grammars;

  ServedModel() = default;
  ServedModel(const ServedModel&) = delete;
  ServedModel& operator=(const ServedModel&) = delete;
  // The engine goes first: its thread uses the model and the tokenizer until it is joined.
  ~ServedModel() { engine.reset(); }
};

}  // namespace kiln::serve
