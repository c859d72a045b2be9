// kiln chat MODEL: an interactive chat in the terminal with the model's own chat template.
//
// Each turn renders the whole conversation with the template and hands it to the serving
// engine (the same one `kiln serve` runs). The engine's prefix cache keeps the key/value blocks
// of earlier turns, so a turn only computes what is new, as long as the template renders the
// history the same way each time (every common template does). When the conversation outgrows
// the context, the oldest exchanges are dropped (the system message stays).
//
// Lines starting with '/' are commands: /reset, /system TEXT, /history, /help, /exit. Input that
// is not a terminal works too (one user message per line), which makes the command scriptable.
#include <unistd.h>

#include <condition_variable>
#include <fstream>
#include <iterator>
#include <cstdio>
#include <iostream>
#include <mutex>
#include <string>
#include <vector>

#include "commands.h"
#include "common_options.h"
#include "core/error.h"
#include "runtime/engine.h"
#include "runtime/loaded_model.h"
#include "sample/sampler.h"
#include "chat/chat_template.h"
#include "grammar/gbnf.h"
#include "grammar/grammar_matcher.h"
#include "grammar/json_schema_grammar.h"

namespace kiln::cli {
namespace {

struct ChatOptions {
  std::string model;
  std::string system;
  std::string template_name;  // a built-in instead of the model's own
  int n_predict = 512;        // per reply
  int threads = 0;
  int ctx = 0;
  std::string kv_type = "f16";
  bool show_stats = false;
  SamplingOptions sampling = interactive_sampling_defaults();
  DraftOptions draft;
  std::string grammar_file;      // every reply constrained to this GBNF grammar
  std::string json_schema_file;  // or to JSON valid under this schema
};

// The constraint of --grammar or --json-schema, compiled for the tokenizer; nullptr for none.
std::shared_ptr<const grammar::CompiledGrammar> reply_grammar(const ChatOptions& o, const Tokenizer& tokenizer) {
  if (o.grammar_file.empty() && o.json_schema_file.empty()) return nullptr;
  if (!o.grammar_file.empty() && !o.json_schema_file.empty()) fail("chat: give --grammar or --json-schema, not both");
  const std::string& path = o.grammar_file.empty() ? o.json_schema_file : o.grammar_file;
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("chat: cannot read {}", path);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::string gbnf = text;
  if (!o.json_schema_file.empty()) {
    nlohmann::ordered_json schema;
    try {
      schema = nlohmann::ordered_json::parse(text);
    } catch (const nlohmann::ordered_json::exception&) {
      fail("chat: {} is not valid JSON", path);
    }
    gbnf = grammar::json_schema_to_gbnf(schema);
  }
  return std::make_shared<const grammar::CompiledGrammar>(grammar::parse_gbnf(gbnf),
                                                          grammar::TokenVocabulary::from_tokenizer(tokenizer));
}

const char* kHelp =
    "commands: /reset (forget the conversation), /system TEXT (set the system message and reset),\n"
    "          /history (print the conversation), /help, /exit (or end of input)\n";

class ChatSession {
 public:
  // `sampling` carries the seed of the first turn (given or drawn).
  ChatSession(const ChatOptions& o, const SamplerParams& sampling, const Tokenizer& tokenizer, ChatTemplate tmpl,
              Engine& engine)
      : o_(o), sampling_(sampling), tokenizer_(tokenizer), template_(std::move(tmpl)), engine_(engine) {
    if (!o.system.empty()) set_system(o.system);
  }

  void set_system(const std::string& text) {
    history_.clear();
    if (!text.empty()) history_.push_back({"system", text, {}, {}, {}});
  }
  void reset() {
    std::vector<ChatMessage> keep;
    if (!history_.empty() && history_.front().role == "system") keep.push_back(history_.front());
    history_ = std::move(keep);
  }
  void print_history() const {
    for (const ChatMessage& m : history_) std::printf("[%s] %s\n", m.role.c_str(), m.content.c_str());
  }

  // One user turn: renders, generates while streaming to stdout, records the reply.
  void turn(const std::string& user) {
    history_.push_back({"user", user, {}, {}, {}});
    std::vector<std::int32_t> prompt = fit_prompt();
    GenerationRequest r;
    r.prompt = std::move(prompt);
    r.sampling = sampling_;
    r.sampling.seed = sampling_.seed + turns_++;  // reproducible per turn, not the same draws each turn
    r.max_tokens = std::min(o_.n_predict, engine_.context_tokens() - static_cast<int>(r.prompt.size()));
    r.grammar = grammar;

    std::mutex mu;
    std::condition_variable cv;
    bool done = false;
    Finish fin;
    std::string reply;
    const EngineStats before = engine_.stats();
    engine_.submit(std::move(r), {[&](const TokenEvent& e) {
                                    std::fwrite(e.text.data(), 1, e.text.size(), stdout);
                                    std::fflush(stdout);
                                    std::lock_guard<std::mutex> lk(mu);
                                    reply += e.text;
                                  },
                                  [&](const Finish& f) {
                                    std::fwrite(f.text.data(), 1, f.text.size(), stdout);
                                    std::lock_guard<std::mutex> lk(mu);
                                    reply += f.text;
                                    fin = f;
                                    done = true;
                                    cv.notify_all();
                                  }});
    {
      std::unique_lock<std::mutex> lk(mu);
      cv.wait(lk, [&] { return done; });
    }
    std::printf("\n");
    std::fflush(stdout);
    if (fin.reason == FinishReason::Error) fail("chat: generation failed: {}", fin.error);
    if (o_.show_stats)
      std::fprintf(stderr, "[prompt %d tokens (%d from cache), reply %d tokens, first token %.2f s, %.1f tok/s, %s]\n",
                   fin.usage.prompt_tokens, fin.usage.cached_tokens, fin.usage.completion_tokens,
                   fin.time_to_first_token_s,
                   fin.total_s > fin.time_to_first_token_s
                       ? (fin.usage.completion_tokens - 1) / (fin.total_s - fin.time_to_first_token_s)
                       : 0.0,
                   finish_reason_name(fin.reason));
    if (o_.show_stats && engine_.options().draft) {
      const EngineStats after = engine_.stats();
      const auto drafted = after.draft_tokens_total - before.draft_tokens_total;
      const auto accepted = after.accepted_tokens_total - before.accepted_tokens_total;
      std::fprintf(stderr, "[draft accepted %llu of %llu tokens (%.1f%%)]\n", static_cast<unsigned long long>(accepted),
                   static_cast<unsigned long long>(drafted), drafted > 0 ? 100.0 * accepted / drafted : 0.0);
    }
    // Trim the whitespace templates put around replies, so the next rendering matches what
    // the model saw (and the prefix cache keeps hitting).
    const auto b = reply.find_first_not_of(" \n");
    const auto e = reply.find_last_not_of(" \n");
    history_.push_back({"assistant", b == std::string::npos ? std::string() : reply.substr(b, e - b + 1), {}, {}, {}});
  }

 private:
  std::vector<std::int32_t> encode(const std::vector<ChatMessage>& messages) const {
    const std::string text = template_.render(messages, true);
    // Templates usually write the BOS text themselves; add the id only when they do not.
    const bool starts_with_bos = !template_.bos_token().empty() && text.rfind(template_.bos_token(), 0) == 0;
    return tokenizer_.encode(text, tokenizer_.vocab().add_bos && !starts_with_bos, true);
  }

  // The conversation's tokens, dropping the oldest exchanges until a reply of a useful length
  // still fits in the context.
  std::vector<std::int32_t> fit_prompt() {
    const int room = engine_.context_tokens() - std::min(o_.n_predict, engine_.context_tokens() / 2);
    for (;;) {
      std::vector<std::int32_t> ids = encode(history_);
      if (static_cast<int>(ids.size()) <= room) return ids;
      const std::size_t first = !history_.empty() && history_.front().role == "system" ? 1 : 0;
      if (history_.size() - first <= 1)
        fail("chat: the message is {} tokens, more than the context leaves room for ({} tokens)", ids.size(), room);
      // Drop the oldest message (and the reply to it, so roles keep alternating).
      history_.erase(history_.begin() + static_cast<std::ptrdiff_t>(first));
      if (history_.size() > first + 1 && history_[first].role == "assistant")
        history_.erase(history_.begin() + static_cast<std::ptrdiff_t>(first));
      std::fprintf(stderr, "[the conversation outgrew the context: dropped the oldest exchange]\n");
    }
  }

  const ChatOptions& o_;
  const SamplerParams sampling_;
  const Tokenizer& tokenizer_;
  ChatTemplate template_;
  Engine& engine_;
  std::vector<ChatMessage> history_;
  std::uint64_t turns_ = 0;

 public:
  std::shared_ptr<const grammar::CompiledGrammar> grammar;  // constrains every reply (--grammar, --json-schema)
};

void run_chat(const ChatOptions& o) {
  const DType kv_type = kv_type_from_flag(o.kv_type, "chat");
  LoadedModel loaded = load_model(
      o.model, {.tokenizer = TokenizerNeed::required, .chat_template = ChatTemplateNeed::model, .needed_by = "chat"});
  const Tokenizer& tokenizer = *loaded.tokenizer;
  ChatTemplate tmpl = std::move(*loaded.chat_template);
  if (!o.template_name.empty()) tmpl = ChatTemplate::builtin(o.template_name, tmpl.bos_token(), tmpl.eos_token());

  EngineOptions eo;
  eo.threads = o.threads;
  eo.context_tokens = context_tokens(o.ctx, loaded.model->config().n_ctx_train);
  eo.kv_cache_tokens = 2 * eo.context_tokens;  // this turn plus the cached previous one
  eo.kv_type = kv_type;
  eo.max_running = 1;
  o.draft.speculative.validate();
  LoadedModel draft;
  if (!o.draft.model.empty()) {
    draft = load_draft_model(o.draft.model, loaded);
    eo.draft = draft.model.get();
    eo.speculative = o.draft.speculative;
  }
  Engine engine(*loaded.model, tokenizer, eo);

  const bool tty = ::isatty(STDIN_FILENO) && ::isatty(STDOUT_FILENO);
  if (tty)
    std::fprintf(stderr, "kiln chat: %s, template %s, context %d tokens. /help for commands, Ctrl-D to quit.\n",
                 o.model.c_str(), tmpl.name().c_str(), eo.context_tokens);
  ChatSession chat(o, seeded_sampling(o.sampling), tokenizer, std::move(tmpl), engine);
  chat.grammar = reply_grammar(o, tokenizer);
  std::string line;
  for (;;) {
    if (tty) std::fputs("> ", stdout), std::fflush(stdout);
    if (!std::getline(std::cin, line)) break;
    if (line.empty()) continue;
    if (line[0] == '/') {
      const std::string cmd = line.substr(0, line.find(' '));
      const std::string arg = line.size() > cmd.size() ? line.substr(cmd.size() + 1) : "";
      if (cmd == "/exit" || cmd == "/quit") break;
      if (cmd == "/reset") chat.reset(), std::printf("[conversation reset]\n");
      else if (cmd == "/system") chat.set_system(arg), std::printf("[system message set; conversation reset]\n");
      else if (cmd == "/history") chat.print_history();
      else if (cmd == "/help") std::fputs(kHelp, stdout);
      else std::printf("[unknown command %s]\n%s", cmd.c_str(), kHelp);
      std::fflush(stdout);
      continue;
    }
    chat.turn(line);
  }
}

}  // namespace

void register_chat_command(CLI::App& app) {
  auto o = std::make_shared<ChatOptions>();
  CLI::App* cmd = app.add_subcommand("chat", "Chat with a model in the terminal, using its chat template");
  cmd->add_option("model", o->model, "Model file (.gguf with a tokenizer)")->required()->check(CLI::ExistingFile);
  cmd->add_option("--system", o->system, "System message");
  cmd->add_option("--template", o->template_name,
                  "Use a built-in chat template instead of the model's (llama2, llama3, mistral, chatml, gemma, phi3, ...)");
  cmd->add_option("-n,--n-predict", o->n_predict, "Most tokens per reply")->capture_default_str();
  add_threads_option(cmd, o->threads);
  add_load_mode_option(cmd);
  add_context_option(cmd, o->ctx);
  add_kv_type_option(cmd, o->kv_type);
  add_sampling_options(cmd, o->sampling);
  add_draft_options(cmd, o->draft);
  cmd->add_option("--grammar", o->grammar_file, "Constrain every reply to this GBNF grammar (llama.cpp's notation)")
      ->check(CLI::ExistingFile);
  cmd->add_option("--json-schema", o->json_schema_file, "Constrain every reply to JSON valid under this JSON Schema file")
      ->check(CLI::ExistingFile);
  cmd->add_flag("--stats", o->show_stats, "After each reply, print token counts, cache reuse and speed to stderr");
  cmd->callback([o] { run_chat(*o); });
}

}  // namespace kiln::cli
