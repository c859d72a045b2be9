// kiln serve: an OpenAI-compatible HTTP server over one or more models, each batched by its own
// engine. Binds 127.0.0.1 unless told otherwise; SIGTERM/SIGINT drain (stop accepting, let
// in-flight requests finish within --grace-seconds, then cut them) and exit 0. Its log (one line
// per request and per lifecycle event, JSON or text) goes to stderr or --log-file, which SIGHUP
// reopens.
#include <fmt/format.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "commands.h"
#include "common_options.h"
#include "core/error.h"
#include "model/llama_model.h"
#include "monitor/build_info.h"
#include "monitor/log_sink.h"
#include "monitor/process_metrics.h"
#include "monitor/registry.h"
#include "runtime/embedding_pooling.h"
#include "runtime/engine.h"
#include "serve/auth.h"
#include "serve/http_metrics.h"
#include "serve/http_server.h"
#include "serve/model_loader.h"
#include "serve/model_registry.h"
#include "serve/model_registry_metrics.h"
#include "serve/open_files_limit.h"
#include "serve/openai_api.h"
#include "serve/request_guard.h"
#include "serve/server_log.h"

namespace kiln::cli {
namespace {

struct ServeOptions {
  std::string model;                    // positional
  std::vector<std::string> named;       // --model name=path
  std::vector<std::string> chat_templates;  // --chat-template [model=]NAME|FILE
  std::string reasoning_format = "deepseek";
  std::string models_dir;
  std::string host = "127.0.0.1";
  int port = 8080;
  int http_threads = 2;
  int api_threads = 2;
  std::string api_key, api_key_file;
  std::vector<std::string> allowed_hosts, cors_origins;
  bool api_key_given = false;
  int threads = 0;
  int ctx = 0;
  int kv_tokens = 0;
  std::string kv_type = "f16";
  int max_batch_tokens = 512;
  int decode_step_tokens = 64;
  int max_running = 64;
  int max_queued = 256;
  bool no_prefix_cache = false;
  DraftOptions draft;
  std::size_t max_body_bytes = 4 << 20;
  std::size_t max_header_bytes = 16 << 10;
  int max_prompt_tokens = 0;
  int max_connections = 1024;
  long long max_request_tokens = 0;
  int max_connections_per_client = -1;  // -1: a quarter of the connection cap
  double idle_timeout = 60, header_timeout = 10, read_timeout = 30, request_timeout = 600, grace_seconds = 30;
  double idle_ttl = 0;
  std::string memory_budget = "0";
  std::string kv_memory = "0";
  bool lazy = false;
  bool quiet = false;
  bool metrics_open = false;
  std::string log_format;  // empty: text on a terminal, JSON otherwise
  std::string log_file;    // empty: stderr
  std::string log_level = "info";
  std::string pooling;     // empty: each model's own (<arch>.pooling_type), else mean
  int embd_normalize = 2;  // /v1/embeddings' normalisation (llama-server's --embd-normalize)
};

// The server's log: where --log-file, --log-format and --log-level say.
std::shared_ptr<monitor::LogSink> open_log(const ServeOptions& o) {
  monitor::LogSinkOptions log;
  log.path = o.log_file;
  if (o.log_format.empty())
    log.format = o.log_file.empty() ? monitor::default_log_format(2) : monitor::LogFormat::json;
  else if (auto f = monitor::parse_log_format(o.log_format))
    log.format = *f;
  else
    fail("serve: --log-format '{}' is not text or json", o.log_format);
  if (auto l = monitor::parse_log_level(o.log_level))
    log.level = *l;
  else
    fail("serve: --log-level '{}' is not debug, info, warn or error", o.log_level);
  log.context.service_name = "kiln";
  log.context.service_version = monitor::build_version();
  log.context.pid = ::getpid();
  log.context.text_prefix = "kiln serve: ";
  try {
    return std::make_shared<monitor::LogSink>(std::move(log));
  } catch (const Error& e) {
    fail("serve: --log-file: {}", e.what());
  }
}

// A lifecycle event of the server (event.category process).
monitor::LogEvent server_event(monitor::LogLevel level, const char* action, const char* type, std::string message) {
  monitor::LogEvent e(level, action, std::move(message));
  e.type = type;
  return e;
}

std::size_t parse_bytes(const std::string& text, const char* flag) {
  std::size_t used = 0;
  double v = 0;
  try {
    v = std::stod(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  std::string unit = text.substr(used);
  double mul = 1;
  if (unit == "" || unit == "B") mul = 1;
  else if (unit == "K" || unit == "KiB") mul = 1024.0;
  else if (unit == "M" || unit == "MiB") mul = 1024.0 * 1024;
  else if (unit == "G" || unit == "GiB") mul = 1024.0 * 1024 * 1024;
  else used = 0;
  if (used == 0 || v < 0) fail("{}: '{}' is not a size (expected e.g. 512M, 8G or a byte count)", flag, text);
  return static_cast<std::size_t>(v * mul);
}

std::chrono::milliseconds seconds_flag(double s) { return std::chrono::milliseconds(static_cast<long long>(s * 1000)); }

std::vector<serve::ModelSpec> model_specs(const ServeOptions& o) {
  std::vector<serve::ModelSpec> specs;
  if (!o.draft.model.empty() && o.model.empty())
    fail("serve: --draft drafts for the positional MODEL; give one");
  if (!o.model.empty()) specs.push_back({std::filesystem::path(o.model).stem().string(), o.model, !o.lazy});
  for (const std::string& m : o.named) {
    const std::size_t eq = m.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == m.size())
      fail("serve: --model '{}' is not name=path", m);
    const std::string path = m.substr(eq + 1);
    if (!std::filesystem::is_regular_file(path)) fail("serve: --model {}: no such file '{}'", m.substr(0, eq), path);
    specs.push_back({m.substr(0, eq), path, !o.lazy});
  }
  if (!o.models_dir.empty())
    for (serve::ModelSpec& s : serve::scan_models_dir(o.models_dir)) specs.push_back(std::move(s));  // loaded on first use
  if (specs.empty()) fail("serve: no model given (MODEL, --model name=path or --models-dir DIR)");
  return specs;
}

// --draft: the positional MODEL's draft, by its served name.
std::map<std::string, std::string> draft_flags(const ServeOptions& o) {
  if (o.draft.model.empty()) return {};
  return {{std::filesystem::path(o.model).stem().string(), o.draft.model}};
}

// --chat-template NAME|FILE sets every model's template; MODEL=NAME|FILE one model's (later flags
// win). Each is checked now, so that a typo fails at startup rather than at a model's first use.
std::map<std::string, std::string> chat_template_flags(const ServeOptions& o, const std::vector<serve::ModelSpec>& specs) {
  std::map<std::string, std::string> out;
  for (const std::string& t : o.chat_templates) {
    const std::size_t eq = t.find('=');
    std::string target, value = t;
    if (eq != std::string::npos &&
        std::any_of(specs.begin(), specs.end(), [&](const serve::ModelSpec& s) { return s.name == t.substr(0, eq); })) {
      target = t.substr(0, eq);
      value = t.substr(eq + 1);
    }
    try {
      (void)serve::chat_template_override(value, "", "");
    } catch (const Error& e) {
      fail("serve: {}", e.what());
    }
    for (const serve::ModelSpec& s : specs)
      if (target.empty() || s.name == target) out[s.name] = value;
  }
  return out;
}

int serve_main(const ServeOptions& o) {
  // Signals are taken by sigwait on this thread only: block them before any thread starts, so
  // every thread (I/O, API, engines) inherits the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  // SIGHUP reopens the log file (logrotate renames it, then signals); without a log file it keeps
  // its default (the process ends, as when its terminal closes).
  if (!o.log_file.empty()) sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  ::signal(SIGPIPE, SIG_IGN);
  const std::shared_ptr<monitor::LogSink> log = open_log(o);
  using monitor::LogLevel;

  std::string key = o.api_key;
  // An empty key must not quietly turn authentication off (an unset variable in a deploy
  // script gives --api-key ""); an empty key file is refused the same way.
  if (o.api_key_given && key.empty()) fail("serve: --api-key is empty (leave the flag out to serve without a key)");
  if (!o.api_key_file.empty()) {
    if (!key.empty()) fail("serve: give --api-key or --api-key-file, not both");
    key = serve::ApiKeyAuth::read_key_file(o.api_key_file);
  }
  // Checked before any model loads: a mistyped entry fails at once.
  serve::RequestGuardOptions guard;
  guard.bind_address = o.host;
  guard.allowed_hosts = o.allowed_hosts;
  guard.cors_origins = o.cors_origins;
  serve::RequestGuard request_guard(guard);

  // One registry for the whole server: the engines, the model registry, the HTTP server and the
  // API record into it; /metrics and /stats read it.
  auto metrics = std::make_shared<monitor::Registry>();
  const monitor::ScopedCollector build_metrics = monitor::add_build_info(*metrics);
  const monitor::ScopedCollector process_metrics = monitor::add_process_metrics(*metrics);

  EngineOptions engine;
  engine.metrics = metrics;
  engine.threads = o.threads;
  engine.context_tokens = o.ctx;
  engine.kv_cache_tokens = o.kv_tokens;
  engine.kv_memory_bytes = parse_bytes(o.kv_memory, "--kv-memory");
  engine.kv_type = kv_type_from_flag(o.kv_type, "serve");
  engine.max_batch_tokens = o.max_batch_tokens;
  engine.decode_step_tokens = o.decode_step_tokens;
  engine.max_running = o.max_running;
  engine.max_queued = o.max_queued;
  engine.prefix_cache = !o.no_prefix_cache;
  o.draft.speculative.validate();
  engine.speculative = o.draft.speculative;

  serve::RegistryOptions reg;
  reg.on_event = [log](const serve::ModelEvent& e) { log->write(serve::model_log_event(e)); };
  reg.idle_ttl = seconds_flag(o.idle_ttl);
  reg.memory_budget = parse_bytes(o.memory_budget, "--memory-budget");
  std::vector<serve::ModelSpec> specs = model_specs(o);
  const bool any_preload = std::any_of(specs.begin(), specs.end(), [](const serve::ModelSpec& s) { return s.preload; });
  serve::ModelRegistry registry(specs, serve::make_model_loader(engine, chat_template_flags(o, specs), draft_flags(o)), reg);
  const monitor::ScopedCollector registry_metrics = serve::add_model_registry_metrics(*metrics, registry);
  registry.start_sweeper(std::chrono::milliseconds(std::max<long long>(100, reg.idle_ttl.count() / 4)));

  serve::ApiOptions api_options;
  api_options.max_prompt_tokens = o.max_prompt_tokens;
  api_options.max_request_tokens = o.max_request_tokens;
  if (!o.pooling.empty()) {
    api_options.pooling = parse_pooling(o.pooling);
    if (!api_options.pooling) fail("serve: --pooling '{}' is not none, mean, cls or last", o.pooling);
    // llama-server refuses it on /v1/embeddings too: OpenAI's shape has one vector per input.
    if (*api_options.pooling == Pooling::None)
      fail(
          "serve: --pooling none gives a vector per token, and /v1/embeddings answers one per input: use mean, cls or "
          "last (kiln embed --pooling none prints the vectors of every token)");
  }
  if (o.embd_normalize < -1)
    fail("serve: --embd-normalize {} is not -1 (none), 0, 1, 2 (unit length) or a p-norm", o.embd_normalize);
  api_options.embedding_normalize = o.embd_normalize;
  api_options.request_timeout = seconds_flag(o.request_timeout);
  api_options.api_threads = o.api_threads;
  api_options.metrics = metrics;
  api_options.metrics_open = o.metrics_open;
  api_options.log = log;
  if (o.reasoning_format != "none" && o.reasoning_format != "deepseek")
    fail("serve: --reasoning-format '{}' is not none or deepseek", o.reasoning_format);
  api_options.reasoning_split = o.reasoning_format == "deepseek";
  serve::OpenAiApi api(registry, serve::ApiKeyAuth(key), std::move(request_guard), api_options);

  serve::HttpServerOptions http;
  http.host = o.host;
  http.port = o.port;
  http.io_threads = o.http_threads;
  http.max_body_bytes = o.max_body_bytes;
  http.max_header_bytes = o.max_header_bytes;
  // Every connection is a file descriptor, the probe reserve's too: both must fit under the
  // open-file limit, or a full table ends in accept() failing (EMFILE) instead of a 503.
  const std::size_t open_files = serve::raise_open_files_limit();
  const serve::ConnectionLimits limits = serve::connection_limits(o.max_connections, serve::kReserveConnections, open_files);
  http.max_connections = limits.connections;
  http.reserve_connections = limits.reserve;
  http.max_connections_per_client = o.max_connections_per_client;
  http.idle_timeout = seconds_flag(o.idle_timeout);
  http.header_timeout = seconds_flag(o.header_timeout);
  http.read_timeout = seconds_flag(o.read_timeout);
  if (!o.quiet) {
    // On the connection's I/O thread, once the response is out: formatting and writing the line
    // stay off the engines' threads.
    http.access_log = [log](const serve::AccessLogEntry& e) {
      if (log->enabled(serve::request_log_level(e))) log->write(serve::request_log_event(e));
    };
  }
  serve::HttpServer server(http, [&api](serve::HttpRequest r, std::shared_ptr<serve::HttpExchange> ex) {
    api.handle(std::move(r), std::move(ex));
  });
  api.attach_server(&server);
  const monitor::ScopedCollector http_metrics = serve::add_http_server_metrics(*metrics, server);
  server.start();
  std::string names;
  std::vector<std::string> model_names;
  for (const auto& s : specs) names += (names.empty() ? "" : ", ") + s.name, model_names.push_back(s.name);
  {
    monitor::LogEvent e = server_event(
        LogLevel::info, "server-listening", "start",
        fmt::format("listening on http://{}:{} ({} model{}: {}; {}{})", o.host, server.port(), specs.size(),
                    specs.size() == 1 ? "" : "s", names, key.empty() ? "no API key" : "API key required",
                    !key.empty() && o.metrics_open ? ", /metrics open" : ""));
    e.str("server.address", o.host).num("server.port", server.port()).list("kiln.models", model_names);
    e.flag("kiln.api_key_required", !key.empty());
    log->write(e);
  }
  if (http.max_connections < o.max_connections || http.reserve_connections < serve::kReserveConnections) {
    monitor::LogEvent e = server_event(
        LogLevel::warn, "connection-limit", "info",
        fmt::format(
            "connections: at most {} and {} more for /health and /ready (the open-file limit is {}, {} kept for the "
            "server itself; raise it with ulimit -n to allow --max-connections {})",
            http.max_connections, http.reserve_connections, open_files, serve::kReservedFileDescriptors,
            o.max_connections));
    e.num("kiln.connections.max", http.max_connections).num("kiln.connections.reserve", http.reserve_connections);
    e.num("kiln.connections.requested", o.max_connections)
        .num("kiln.open_files_limit", static_cast<std::int64_t>(open_files));
    log->write(e);
  }

  // Models load in the background: /health answers at once, /ready once they are in.
  std::atomic<bool> load_failed{false};
  // Each load is logged by the registry (model-loading, model-loaded or model-load-failed).
  const auto started = std::chrono::steady_clock::now();
  std::thread loader([&] {
    try {
      registry.preload_all();
      api.set_ready(true);
      monitor::LogEvent e = server_event(LogLevel::info, "server-ready", "info",
                                         any_preload ? "ready" : "ready (models load on first use)");
      e.duration_ns =
          std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - started).count();
      log->write(e);
    } catch (const std::exception& e) {
      monitor::LogEvent ev =
          server_event(LogLevel::error, "server-start-failed", "end", fmt::format("stopping: {}", e.what()));
      ev.outcome = "failure";
      log->write(ev);
      load_failed = true;
      ::kill(::getpid(), SIGTERM);
    }
  });

  int sig = 0;
  for (;;) {
    sigwait(&signals, &sig);
    if (sig != SIGHUP) break;
    // Lines written meanwhile go whole to the old file or whole to the new one.
    std::string error;
    if (log->reopen(&error)) {
      log->write(server_event(LogLevel::info, "log-reopened", "change",
                              fmt::format("SIGHUP: reopened the log file {}", o.log_file)));
    } else {
      monitor::LogEvent e = server_event(LogLevel::error, "log-reopen-failed", "change",
                                         fmt::format("SIGHUP: {}; still writing "
                                                     "to the old file",
                                                     error));
      e.outcome = "failure";
      e.str("error.message", error);
      log->write(e);
    }
  }
  const auto grace = seconds_flag(o.grace_seconds);
  if (!load_failed) {
    monitor::LogEvent e =
        server_event(LogLevel::info, "server-draining", "change",
                     fmt::format("{} received: draining (no new connections; in-flight requests get {} s)",
                                 sig == SIGINT ? "SIGINT" : "SIGTERM", o.grace_seconds));
    e.str("kiln.signal", sig == SIGINT ? "SIGINT" : "SIGTERM").real("kiln.grace_seconds", o.grace_seconds);
    log->write(e);
  }
  api.set_draining(true);
  server.stop_accepting();
  loader.join();
  // Every request accepted before the signal runs to completion within the grace period. The
  // HTTP server counts a request from its request line to the end of its response, so this
  // covers the whole of it: reading, tokenizing, rendering the chat template, generating and
  // writing, not only the part the engines see.
  const bool finished = server.wait_idle(grace);
  if (!finished) api.set_grace_over(true);
  // Past the grace period, every engine cancels what it still runs (in parallel); the requests
  // end with what they have, and a request not yet in an engine is refused by it.
  std::vector<std::thread> drains;
  for (const std::string& name : registry.names()) {
    if (auto served = registry.acquire_if_loaded(name); served && served->engine)
      drains.emplace_back([served] { served->engine->drain(std::chrono::milliseconds(0)); });
  }
  for (auto& t : drains) t.join();
  // The last responses are being written: give them a moment, then close everything.
  server.wait_idle(std::chrono::seconds(2));
  server.stop();
  // The API threads return their leases (a request still tokenizing when the grace period
  // ended finishes that first), then the engines go, running their last callbacks while the
  // API they report to still exists.
  api.join();
  registry.unload_all();
  if (load_failed) return 1;
  monitor::LogEvent e = server_event(
      LogLevel::info, "server-stopped", "end",
      fmt::format("stopped{}", finished ? "" : " (requests still running after the grace period were cancelled)"));
  e.outcome = finished ? "success" : "failure";
  e.flag("kiln.requests_cancelled", !finished);
  log->write(e);
  return 0;
}

}  // namespace

void register_serve_command(CLI::App& app) {
  auto o = std::make_shared<ServeOptions>();
  CLI::App* cmd = app.add_subcommand("serve", "Serve models over an OpenAI-compatible HTTP API with continuous batching");
  cmd->add_option("model", o->model, "Model file (.gguf with a tokenizer), served under its file stem")->check(CLI::ExistingFile);
  cmd->add_option("--model", o->named, "Another model as name=path (repeatable)");
  cmd->add_option("--chat-template", o->chat_templates,
                  "Chat template instead of the model's: a built-in name (llama3, chatml, mistral, ...) or a Jinja file; "
                  "MODEL=NAME|FILE for one served model (repeatable)");
  cmd->add_option("--reasoning-format", o->reasoning_format,
                  "deepseek: a <think>...</think> block at the start of a chat answer goes to message.reasoning_content; "
                  "none: it stays in content")
      ->capture_default_str();
  cmd->add_option("--models-dir", o->models_dir, "Serve every *.gguf in this folder, named by file stem, loaded on first use")
      ->check(CLI::ExistingDirectory);
  cmd->add_option("--host", o->host, "Address to bind (0.0.0.0 exposes the server to the network)")->capture_default_str();
  cmd->add_option("--port", o->port, "Port to listen on (0: any free port, printed at startup)")->capture_default_str();
  cmd->add_option_function<std::string>(
      "--api-key", [o](const std::string& k) { o->api_key = k, o->api_key_given = true; },
      "Require 'Authorization: Bearer KEY' (not for /health, /ready and the /dashboard page)");
  cmd->add_option("--api-key-file", o->api_key_file, "Read the API key from the first line of this file")->check(CLI::ExistingFile);
  cmd->add_option("--allowed-hosts", o->allowed_hosts,
                  "Host names to answer besides localhost, loopback addresses and --host, comma-separated (*.example.com: "
                  "its subdomains; *: any). Bound to a loopback address, other Host headers get 403 (DNS rebinding); "
                  "bound elsewhere, any Host is answered unless this is given")
      ->delimiter(',')
      ->allow_extra_args(false);  // one value per use: a following MODEL is not taken for a name
  cmd->add_option("--cors-origins", o->cors_origins,
                  "Web origins whose pages may call the API from a browser, comma-separated (e.g. https://app.example.com; "
                  "*: any). Pages on localhost and the server's own origin always may; requests from other origins get 403")
      ->delimiter(',')
      ->allow_extra_args(false);  // one value per use: a following MODEL is not taken for a name
  add_threads_option(cmd, o->threads, "per model");
  cmd->add_option("-c,--ctx", o->ctx, "Context size in tokens per sequence (0: the model's training context, within --kv-memory)")
      ->capture_default_str();
  cmd->add_option("--kv-tokens", o->kv_tokens, "KV cache pool in positions over all sequences (0: 4 x ctx, within --kv-memory)")
      ->capture_default_str();
  cmd->add_option("--kv-memory", o->kv_memory,
                  "Bytes each model's KV pool may take when --ctx or --kv-tokens is 0, e.g. 2G (0: a quarter of physical memory)")
      ->capture_default_str();
  add_kv_type_option(cmd, o->kv_type);
  cmd->add_option("--max-batch-tokens", o->max_batch_tokens, "Tokens per engine step (decode + prefill chunks)")
      ->capture_default_str();
  cmd->add_option("--decode-step-tokens", o->decode_step_tokens,
                  "Tokens per engine step while sequences decode: decodes first, prompt chunks fill the rest, so new "
                  "prompts never stall running streams (0: --max-batch-tokens)")
      ->capture_default_str();
  cmd->add_option("--max-running", o->max_running, "Sequences decoding at once per model")->capture_default_str();
  cmd->add_option("--max-queued", o->max_queued, "Requests waiting per model; beyond it 429 with Retry-After")->capture_default_str();
  cmd->add_flag("--no-prefix-cache", o->no_prefix_cache, "Do not share KV blocks between prompts with a common prefix");
  add_draft_options(cmd, o->draft, true);
  cmd->add_option("--max-body-bytes", o->max_body_bytes, "Largest request body (413 beyond)")->capture_default_str();
  cmd->add_option("--max-header-bytes", o->max_header_bytes, "Largest request header (431 beyond)")->capture_default_str();
  cmd->add_option("--max-prompt-tokens", o->max_prompt_tokens, "Longest prompt in tokens (0: the context)")->capture_default_str();
  cmd->add_option("--max-request-tokens", o->max_request_tokens,
                  "Tokens one request may hold: prompt + max_tokens summed over its completions (0: 16 x ctx)")
      ->capture_default_str();
  cmd->add_option("--pooling", o->pooling,
                  "How /v1/embeddings pools a sequence's final hidden states: mean, cls (the first token's) or last "
                  "(default: the model's <arch>.pooling_type when it is one of these, else mean)")
      ->check(CLI::IsMember({"none", "mean", "cls", "last"}));
  cmd->add_option("--embd-normalize", o->embd_normalize,
                  "Normalisation of /v1/embeddings' vectors, as llama-server's: 2 unit length (OpenAI's), -1 none, 0 "
                  "max-abs to 32760, 1 taxicab, p > 2 p-norm")
      ->capture_default_str();
  cmd->add_option("--max-connections", o->max_connections,
                  "Open connections at most; beyond, the connection that has waited longest without a request in "
                  "flight is closed to make room, and only when all are busy is a new one refused (503; /health "
                  "and /ready are still answered)")
      ->capture_default_str();
  cmd->add_option("--max-connections-per-client", o->max_connections_per_client,
                  "Open connections of one client address at most, made room for among its own connections the "
                  "same way (default: a quarter of --max-connections, loopback clients uncapped; a value caps "
                  "loopback clients too; 0: no cap, e.g. behind a proxy on another host, whose address every client "
                  "then has)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--http-threads", o->http_threads, "I/O threads for all connections")->capture_default_str();
  cmd->add_option("--api-threads", o->api_threads, "Threads that parse, tokenize and wait for model loads")->capture_default_str();
  cmd->add_option("--idle-timeout", o->idle_timeout, "Seconds a keep-alive connection may wait for its next request")
      ->capture_default_str();
  cmd->add_option("--header-timeout", o->header_timeout,
                  "Seconds to receive a request's whole header, from its first byte (from connecting on a new "
                  "connection; 408 beyond)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--read-timeout", o->read_timeout, "Seconds to receive a request body (408 beyond)")->capture_default_str();
  cmd->add_option("--request-timeout", o->request_timeout, "Seconds a generation request may take (0: no limit; beyond it 504, "
                  "or an error event that ends the stream)")->capture_default_str();
  cmd->add_option("--grace-seconds", o->grace_seconds, "On SIGTERM/SIGINT, how long in-flight requests may finish")
      ->capture_default_str();
  cmd->add_option("--idle-ttl", o->idle_ttl, "Unload a model idle this many seconds (0: never)")->capture_default_str();
  cmd->add_option("--memory-budget", o->memory_budget,
                  "Bytes for loaded models and their KV pools, e.g. 8G; least recently used idle models are unloaded "
                  "to make room (0: no budget)")
      ->capture_default_str();
  cmd->add_flag("--lazy", o->lazy, "Load MODEL and --model models on first use instead of at startup");
  cmd->add_flag("-q,--quiet", o->quiet, "No per-request log lines (lifecycle events are still logged)");
  cmd->add_option(
         "--log-format", o->log_format,
         "text or json: one line per request and per event; json is one object per line with Elastic Common "
         "Schema field names (docs/operations.md) (default: text when the log goes to a terminal, json otherwise)")
      ->check(CLI::IsMember({"text", "json"}));
  cmd->add_option("--log-file", o->log_file,
                  "Append the log to this file instead of stderr; SIGHUP reopens it (rename it, then send SIGHUP: "
                  "logrotate's default, no copytruncate)");
  cmd->add_option("--log-level", o->log_level,
                  "debug, info, warn or error: the least severe events written (debug adds answered /health, /ready "
                  "and /metrics requests)")
      ->check(CLI::IsMember({"debug", "info", "warn", "error"}))
      ->capture_default_str();
  cmd->add_flag("--metrics-open", o->metrics_open,
                "Serve /metrics (Prometheus text format) without the API key; by default it needs the key, as /stats "
                "does, when the server has one");
  add_load_mode_option(cmd);
  cmd->footer(
      "Examples:\n"
      "  kiln serve model.gguf --port 8080\n"
      "  kiln serve --model small=a.gguf --model big=b.gguf --idle-ttl 600 --memory-budget 16G\n"
      "  kiln serve --models-dir ./models --api-key-file key.txt --host 0.0.0.0\n"
      "  kiln serve model.gguf --log-file /var/log/kiln/serve.log   # JSON lines; logrotate + SIGHUP\n"
      "  curl http://127.0.0.1:8080/v1/chat/completions -H 'Content-Type: application/json' \\\n"
      "    -d '{\"model\":\"model\",\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}]}'");
  cmd->callback([o] {
    const int code = serve_main(*o);
    if (code != 0) throw Error("serve: stopped because a model failed to load (see above)");
  });
}

}  // namespace kiln::cli
