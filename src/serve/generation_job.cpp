#include "serve/generation_job.h"

#include <algorithm>
#include <atomic>
#include <mutex>
#include <random>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "runtime/engine.h"
#include "serve/api_error.h"
#include "serve/sse.h"

namespace kiln::serve {

using json = nlohmann::json;

namespace {

// Token texts may be partial UTF-8 (a byte token): replace rather than throw when dumping.
std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

json byte_array(const std::string& s) {
  json a = json::array();
  for (unsigned char c : s) a.push_back(static_cast<int>(c));
  return a;
}

struct Choice {
  int prompt_index = 0;
  std::string text;            // everything released so far
  json chat_logprobs = json::array();  // chat: logprobs.content entries
  json tokens = json::array(), token_logprobs = json::array(), top_logprobs = json::array(), text_offset = json::array();
  bool finished = false;
  FinishReason reason = FinishReason::Stop;
  std::string error;
  Usage usage;
  double total_s = 0, queue_s = 0, prefill_s = 0, decode_s = 0, first_token_s = 0;  // from the engine's Finish
  std::unique_ptr<ChatOutputParser> parser;  // chat: reasoning, content and tool calls
  ChatDelta primed;                          // the calls a prefill began, streamed first
};

// A chat delta as OpenAI streams it: reasoning_content, content and tool_calls pieces. A call's
// first piece carries its index, id, type and name; later ones its index and arguments.
json chat_delta_json(const ChatDelta& d) {
  json delta = json::object();
  if (!d.reasoning.empty()) delta["reasoning_content"] = d.reasoning;
  if (!d.content.empty()) delta["content"] = d.content;
  if (!d.calls.empty()) {
    json calls = json::array();
    for (const ToolCallEvent& e : d.calls) {
      if (!e.begins && !calls.empty() && calls.back()["index"] == e.index) {
        calls.back()["function"]["arguments"] = calls.back()["function"]["arguments"].get<std::string>() + e.arguments;
        continue;
      }
      json c = {{"index", e.index}};
      if (e.begins) {
        c["id"] = e.id;
        c["type"] = "function";
        c["function"] = {{"name", e.name}, {"arguments", e.arguments}};
      } else {
        c["function"] = {{"arguments", e.arguments}};
      }
      calls.push_back(std::move(c));
    }
    delta["tool_calls"] = std::move(calls);
  }
  return delta;
}

// Whitespace around tool calls is layout: an answer that is only calls has null content.
bool only_space(const std::string& s) { return s.find_first_not_of(" \t\r\n") == std::string::npos; }

struct Job : std::enable_shared_from_this<Job> {
  std::mutex mu;
  std::shared_ptr<ServedModel> model;
  GenerationParams params;
  JobContext ctx;
  std::shared_ptr<HttpExchange> ex;
  const ApiMetrics* metrics = nullptr;
  std::vector<std::vector<std::int32_t>> prompts;
  std::vector<Choice> choices;
  std::vector<std::shared_ptr<RequestHandle>> handles;
  std::vector<std::string> pending;  // stream events produced before the stream started
  std::unique_ptr<ResponsesStream> responses_stream;  // /v1/responses, streaming
  bool started = false;   // every choice submitted (and, streaming, the header sent)
  bool aborted = false;   // submission failed: the caller answers, callbacks are ignored
  bool completed = false;
  bool error_sent = false;
  int n_finished = 0;

  const char* object() const { return params.chat ? "chat.completion.chunk" : "text_completion"; }

  json chunk_base() const {
    return json{{"id", ctx.id},
                {"object", object()},
                {"created", ctx.created},
                {"model", params.model},
                {"system_fingerprint", ctx.system_fingerprint}};
  }

  void emit(std::string event) {
    if (!started) {
      pending.push_back(std::move(event));
    } else {
      ex->write(std::move(event));
    }
  }

  // One streamed piece of choice `index`: text and/or one token's logprobs and/or the end.
  void emit_chunk(int index, const std::string& text, const json* logprobs, const char* finish_reason,
                  const ChatDelta* delta = nullptr) {
    json c = chunk_base();
    json choice;
    choice["index"] = index;
    if (params.chat) {
      choice["delta"] = delta ? chat_delta_json(*delta) : text.empty() ? json::object() : json{{"content", text}};
    } else {
      choice["text"] = text;
    }
    choice["logprobs"] = logprobs ? *logprobs : json(nullptr);
    choice["finish_reason"] = finish_reason ? json(finish_reason) : json(nullptr);
    c["choices"] = json::array({choice});
    if (params.include_usage) c["usage"] = nullptr;
    emit(sse_event(dump(c)));
  }

  void on_token(int index, const TokenEvent& ev) {
    std::lock_guard lock(mu);
    if (aborted || completed) return;
    Choice& ch = choices[static_cast<std::size_t>(index)];
    json lp_chunk;
    const bool want_lp = params.logprobs >= 0;
    if (want_lp) {
      const Tokenizer& tok = *model->tokenizer;
      const std::string piece = tok.token_to_piece(ev.id);
      if (params.chat) {
        json top = json::array();
        for (const TokenLogprob& t : ev.top) {
          const std::string p = tok.token_to_piece(t.id);
          top.push_back({{"token", p}, {"logprob", t.logprob}, {"bytes", byte_array(p)}});
        }
        json entry = {{"token", piece}, {"logprob", ev.logprob}, {"bytes", byte_array(piece)}, {"top_logprobs", top}};
        if (params.stream) lp_chunk = json{{"content", json::array({entry})}};
        else ch.chat_logprobs.push_back(std::move(entry));
      } else {
        json top = json::object();
        for (const TokenLogprob& t : ev.top) top[tok.token_to_piece(t.id)] = t.logprob;
        if (params.stream) {
          lp_chunk = json{{"tokens", {piece}}, {"token_logprobs", {ev.logprob}}, {"top_logprobs", json::array({top})},
                          {"text_offset", {ch.text.size()}}};
        } else {
          ch.tokens.push_back(piece);
          ch.token_logprobs.push_back(ev.logprob);
          ch.top_logprobs.push_back(std::move(top));
          ch.text_offset.push_back(ch.text.size());
        }
      }
    }
    if (ch.parser) {
      const ChatDelta d = ch.parser->push(ev.text);
      if (responses_stream) {
        for (std::string& e : responses_stream->delta(d)) emit(std::move(e));
      } else if (params.stream && (!d.empty() || want_lp)) {
        emit_chunk(index, "", want_lp ? &lp_chunk : nullptr, nullptr, &d);
      }
    } else if (params.stream && (!ev.text.empty() || want_lp)) {
      emit_chunk(index, ev.text, want_lp ? &lp_chunk : nullptr, nullptr);
    }
    ch.text += ev.text;
  }

  void on_finish(int index, const Finish& f) {
    std::lock_guard lock(mu);
    if (aborted || completed) return;
    Choice& ch = choices[static_cast<std::size_t>(index)];
    ch.finished = true;
    ch.reason = f.reason;
    ch.error = f.error;
    ch.usage = f.usage;
    ch.text += f.text;
    ch.total_s = f.total_s, ch.queue_s = f.queue_s, ch.prefill_s = f.prefill_s, ch.decode_s = f.decode_s;
    ch.first_token_s = f.time_to_first_token_s;
    ChatDelta last;
    if (ch.parser) {
      last = ch.parser->push(f.text);
      ChatDelta end = ch.parser->finish();
      last.reasoning += end.reasoning;
      last.content += end.content;
      last.calls.insert(last.calls.end(), end.calls.begin(), end.calls.end());
    }
    if (params.stream) {
      if (responses_stream && (f.reason == FinishReason::Stop || f.reason == FinishReason::Length)) {
        for (std::string& e : responses_stream->delta(last)) emit(std::move(e));  // the end comes with the usage
      } else if (f.reason == FinishReason::Stop || f.reason == FinishReason::Length) {
        if (ch.parser) {
          if (!last.empty()) emit_chunk(index, "", nullptr, nullptr, &last);
        } else if (!f.text.empty()) {
          emit_chunk(index, f.text, nullptr, nullptr);
        }
        emit_chunk(index, "", nullptr, finish_reason_of(ch));
      } else if (f.reason != FinishReason::Cancelled || !ex->closed()) {
        emit_error(ch);
      }
    }
    ++n_finished;
    if (started && n_finished == static_cast<int>(choices.size())) complete();
  }

  // OpenAI's "tool_calls" when a choice that stopped by itself made calls.
  static const char* finish_reason_of(const Choice& ch) {
    if (ch.reason == FinishReason::Stop && ch.parser && !ch.parser->tool_calls().empty()) return "tool_calls";
    return finish_reason_name(ch.reason);
  }

  ApiError choice_error(const Choice& ch) const {
    switch (ch.reason) {
      case FinishReason::Deadline:
        return ApiError(504, "timeout", "the request took longer than the server's --request-timeout", "", "request_timeout");
      case FinishReason::Cancelled:
        return ApiError(503, "server_error", "the request was cancelled (the server is shutting down)", "", "cancelled");
      default:
        return ApiError(500, "server_error", fmt::format("generation failed: {}", ch.error), "", "generation_failed");
    }
  }

  void emit_error(const Choice& ch) {
    if (error_sent) return;
    error_sent = true;
    emit(sse_event(error_json(choice_error(ch))));
  }

  Usage total_usage() const {
    Usage u;
    const int n = params.n;
    for (std::size_t p = 0; p < prompts.size(); ++p) {
      // OpenAI counts a prompt once however many choices it has.
      u.prompt_tokens += static_cast<int>(prompts[p].size());
      u.cached_tokens += choices[p * static_cast<std::size_t>(n)].usage.cached_tokens;
    }
    for (const Choice& ch : choices) u.completion_tokens += ch.usage.completion_tokens;
    return u;
  }

  static json usage_json(const Usage& u) {
    return json{{"prompt_tokens", u.prompt_tokens},
                {"completion_tokens", u.completion_tokens},
                {"total_tokens", u.prompt_tokens + u.completion_tokens},
                {"prompt_tokens_details", {{"cached_tokens", u.cached_tokens}}}};
  }

  void complete() {
    completed = true;
    const Usage usage = total_usage();
    const Choice* failed = nullptr;
    for (const Choice& ch : choices)
      if (ch.reason != FinishReason::Stop && ch.reason != FinishReason::Length) failed = failed ? failed : &ch;
    note(failed, usage);
    record(failed, usage);
    if (responses_stream) {
      if (!failed)
        for (std::string& e : responses_stream->end(*choices.front().parser, choices.front().reason, usage)) ex->write(std::move(e));
      ex->end_stream();
      return;
    }
    if (params.stream) {
      if (params.include_usage && !failed) {
        json c = chunk_base();
        c["choices"] = json::array();
        c["usage"] = usage_json(usage);
        ex->write(sse_event(dump(c)));
      }
      ex->write(sse_done());
      ex->end_stream();
      return;
    }
    if (failed) {
      ex->respond(error_response(choice_error(*failed)));
      return;
    }
    if (params.responses) {
      const Choice& ch = choices.front();
      ex->respond(HttpResponse{200, "application/json", dump(response_object(ctx.response, *ch.parser, ch.reason, usage)), {}});
      return;
    }
    json body = {{"id", ctx.id},
                 {"object", params.chat ? "chat.completion" : "text_completion"},
                 {"created", ctx.created},
                 {"model", params.model},
                 {"system_fingerprint", ctx.system_fingerprint}};
    json list = json::array();
    for (std::size_t i = 0; i < choices.size(); ++i) {
      const Choice& ch = choices[i];
      json c;
      c["index"] = i;
      if (params.chat && ch.parser) {
        const auto& calls = ch.parser->tool_calls();
        const std::string& content = ch.parser->content();
        json message = {{"role", "assistant"},
                        {"content", calls.empty() || !only_space(content) ? json(content) : json(nullptr)},
                        {"refusal", nullptr}};
        if (!ch.parser->reasoning().empty()) message["reasoning_content"] = ch.parser->reasoning();
        if (!calls.empty()) {
          json list = json::array();
          for (const ToolCall& t : calls)
            list.push_back({{"id", t.id}, {"type", "function"}, {"function", {{"name", t.name}, {"arguments", t.arguments}}}});
          message["tool_calls"] = std::move(list);
        }
        c["message"] = std::move(message);
        c["logprobs"] = params.logprobs >= 0 ? json{{"content", ch.chat_logprobs}, {"refusal", nullptr}} : json(nullptr);
      } else if (params.chat) {
        c["message"] = {{"role", "assistant"}, {"content", ch.text}, {"refusal", nullptr}};
        c["logprobs"] = params.logprobs >= 0 ? json{{"content", ch.chat_logprobs}, {"refusal", nullptr}} : json(nullptr);
      } else {
        c["text"] = ch.text;
        c["logprobs"] = params.logprobs >= 0 ? json{{"tokens", ch.tokens},
                                                    {"token_logprobs", ch.token_logprobs},
                                                    {"top_logprobs", ch.top_logprobs},
                                                    {"text_offset", ch.text_offset}}
                                             : json(nullptr);
      }
      c["finish_reason"] = finish_reason_of(ch);
      list.push_back(std::move(c));
    }
    body["choices"] = std::move(list);
    body["usage"] = usage_json(usage);
    ex->respond(HttpResponse{200, "application/json", dump(body), {}});
  }

  // What the access log line says beyond HTTP (sent before the answer, which writes the line).
  // The strings are copied here, on the engine thread, once per request; the line is formatted
  // on the connection's I/O thread.
  void note(const Choice* failed, const Usage& usage) {
    RequestNote n;
    n.endpoint = ctx.record.endpoint;
    n.model = ctx.record.model;
    n.key_id = ctx.record.key_id;
    n.stream = params.stream;
    n.prompt_tokens = usage.prompt_tokens;
    n.completion_tokens = usage.completion_tokens;
    n.cached_tokens = usage.cached_tokens;
    n.finish_reasons.reserve(choices.size());
    const Choice* slowest = &choices.front();
    for (const Choice& ch : choices) {
      n.finish_reasons.emplace_back(finish_reason_of(ch));
      if (ch.total_s > slowest->total_s) slowest = &ch;
    }
    n.queue_s = slowest->queue_s;
    n.prefill_s = slowest->prefill_s;
    n.decode_s = slowest->decode_s;
    n.first_token_s = slowest->first_token_s;
    if (failed) {
      const ApiError e = choice_error(*failed);
      n.error_type = e.type;
      n.error_code = e.code;
      n.error_message = e.message;
    }
    ex->note(std::move(n));
  }

  // The request's end in the metrics: its status (a stream's is the 200 its head carried; an answer
  // the client left before is 499), a deadline it ran into, and its tokens under its API key.
  void record(const Choice* failed, const Usage& usage) {
    const RequestRecord& r = ctx.record;
    metrics->completed(r.model);
    if (std::any_of(choices.begin(), choices.end(), [](const Choice& ch) { return ch.reason == FinishReason::Deadline; }))
      metrics->cancelled(r.model, "deadline");
    metrics->key_tokens(r, usage.prompt_tokens, usage.completion_tokens);
    int status = 200;
    if (!params.stream && ex->closed()) status = 499;
    else if (!params.stream && failed) status = choice_error(*failed).status;
    metrics->answered(r, status);
  }

  // After every choice is submitted: start the stream and release what was buffered.
  void start() {
    std::lock_guard lock(mu);
    started = true;
    if (params.stream && responses_stream) {
      ex->begin_stream(200, "text/event-stream");
      for (std::string& e : responses_stream->begin()) ex->write(std::move(e));
      if (!choices.front().primed.empty())
        for (std::string& e : responses_stream->delta(choices.front().primed)) ex->write(std::move(e));
      for (std::string& e : pending) ex->write(std::move(e));
      pending.clear();
    } else if (params.stream) {
      ex->begin_stream(200, "text/event-stream");
      if (params.chat) {
        // OpenAI's first chunk of each choice carries the role.
        for (std::size_t i = 0; i < choices.size(); ++i) {
          json c = chunk_base();
          c["choices"] = json::array(
              {{{"index", i}, {"delta", {{"role", "assistant"}, {"content", ""}}}, {"logprobs", nullptr}, {"finish_reason", nullptr}}});
          if (params.include_usage) c["usage"] = nullptr;
          ex->write(sse_event(dump(c)));
          if (!choices[i].primed.empty()) {
            json p = chunk_base();
            p["choices"] = json::array(
                {{{"index", i}, {"delta", chat_delta_json(choices[i].primed)}, {"logprobs", nullptr}, {"finish_reason", nullptr}}});
            if (params.include_usage) p["usage"] = nullptr;
            ex->write(sse_event(dump(p)));
          }
        }
      }
      for (std::string& e : pending) ex->write(std::move(e));
      pending.clear();
    }
    if (n_finished == static_cast<int>(choices.size())) complete();
  }

  void cancel_all() {
    std::vector<std::shared_ptr<RequestHandle>> hs;
    {
      std::lock_guard lock(mu);
      hs = handles;
    }
    for (auto& h : hs) h->cancel();
  }
};

std::uint64_t random_seed() {
  static std::mutex mu;
  static std::mt19937_64 rng{std::random_device{}()};
  std::lock_guard lock(mu);
  return rng();
}

}  // namespace

void start_generation(std::shared_ptr<ServedModel> model, GenerationParams params, std::vector<std::vector<std::int32_t>> prompts,
                      JobContext context, std::shared_ptr<HttpExchange> exchange, const ApiMetrics& metrics, bool draining) {
  auto job = std::make_shared<Job>();
  job->model = std::move(model);
  job->params = std::move(params);
  job->ctx = std::move(context);
  job->ex = std::move(exchange);
  job->metrics = &metrics;
  job->prompts = std::move(prompts);
  if (job->params.responses && job->params.stream) job->responses_stream = std::make_unique<ResponsesStream>(job->ctx.response);
  const int n = job->params.n;
  job->choices.resize(job->prompts.size() * static_cast<std::size_t>(n));
  Engine& engine = *job->model->engine;
  const int context_tokens = engine.context_tokens();
  // More choices than the queue can ever hold would be refused with 429 forever: say so once.
  if (job->choices.size() > static_cast<std::size_t>(engine.options().max_queued))
    throw ApiError(400, "invalid_request_error",
                   fmt::format("this request asks for {} completions (prompts x n), more than the server queues at once ({})",
                               job->choices.size(), engine.options().max_queued),
                   "n", "too_many_choices");

  // The choices of one request are one group: the engine shares its running slots between
  // requests, not between choices.
  std::shared_ptr<const grammar::CompiledGrammar> constraint;
  if (!job->params.grammar.empty()) {
    ServedModel& m = *job->model;
    std::call_once(m.grammars_once, [&m] {
      m.grammars = std::make_unique<grammar::CompiledGrammarCache>(grammar::TokenVocabulary::from_tokenizer(*m.tokenizer));
    });
    try {
      constraint = m.grammars->get(job->params.grammar);
    } catch (const Error& e) {
      throw invalid_field(job->params.grammar_field, fmt::format("'{}': {}", job->params.grammar_field, e.what()));
    }
  }
  static std::atomic<std::uint64_t> next_group{1};
  const std::uint64_t group = next_group.fetch_add(1);
  const std::uint64_t base_seed = job->params.seed_given ? job->params.sampling.seed : 0;
  for (std::size_t p = 0; p < job->prompts.size(); ++p) {
    for (int k = 0; k < n; ++k) {
      const int index = static_cast<int>(p) * n + k;
      Choice& choice = job->choices[static_cast<std::size_t>(index)];
      choice.prompt_index = static_cast<int>(p);
      if (job->params.chat) {
        choice.parser = std::make_unique<ChatOutputParser>(job->ctx.output);
        if (!job->ctx.prefill.empty()) choice.primed = choice.parser->prime(job->ctx.prefill);
      }
      GenerationRequest req;
      req.prompt = job->prompts[p];
      req.sampling = job->params.sampling;
      // Choices of one request differ by seed; a given seed still reproduces the whole set.
      req.sampling.seed = job->params.seed_given ? base_seed + static_cast<std::uint64_t>(k) : random_seed();
      const int room = context_tokens - static_cast<int>(req.prompt.size());
      req.max_tokens = job->params.max_tokens > 0 ? job->params.max_tokens : std::max(1, room);
      req.stop = job->params.stop;
      req.ignore_eos = job->params.ignore_eos;
      req.top_logprobs = job->params.logprobs;
      req.deadline = job->ctx.deadline;
      req.group = group;
      req.grammar = constraint;
      GenerationCallbacks cb;
      cb.on_token = [job, index](const TokenEvent& ev) { job->on_token(index, ev); };
      cb.on_finish = [job, index](const Finish& f) { job->on_finish(index, f); };
      std::shared_ptr<RequestHandle> handle;
      try {
        handle = engine.submit(std::move(req), std::move(cb));
      } catch (const QueueFullError& e) {
        {
          std::lock_guard lock(job->mu);
          job->aborted = true;
        }
        job->cancel_all();
        if (draining) throw ApiError(503, "server_error", "the server is shutting down", "", "shutting_down");
        metrics.rejected(job->ctx.record.model);
        ApiError err(429, "rate_limit_error", fmt::format("the server is at capacity: {}; retry later", e.what()), "", "queue_full");
        err.headers.emplace_back("Retry-After", "1");
        throw err;
      } catch (const Error& e) {
        {
          std::lock_guard lock(job->mu);
          job->aborted = true;
        }
        job->cancel_all();
        throw ApiError(400, "invalid_request_error", e.what(), job->params.chat ? "messages" : "prompt", "invalid_value");
      }
      std::lock_guard lock(job->mu);
      job->handles.push_back(std::move(handle));
    }
  }
  metrics.accepted(job->ctx.record.model);
  // The client going away cancels every choice; weak, so the connection does not keep the job.
  std::weak_ptr<Job> weak = job;
  job->ex->on_close([weak, &metrics] {
    if (auto j = weak.lock()) {
      metrics.cancelled(j->ctx.record.model, "client");
      j->cancel_all();
    }
  });
  job->start();
}

}  // namespace kiln::serve
