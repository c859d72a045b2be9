// What kiln serve's per-request log line costs, on the connection's I/O thread once the answer
// is out (never on an engine thread):
//   BM_RequestEventBuild        the event from an access log entry (server_log.cpp)
//   BM_JsonLine, BM_TextLine    formatting it as one line of JSON (ECS) or of text
//   BM_WriteJsonLineToFile      build + format + one write(2) to an O_APPEND file, whole
//   BM_WriteJsonLineToFile/threads:4  the same from four threads at once (the sink's lock)
// docs/operations.md (Logging) quotes these.
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <cstdio>
#include <string>

#include "monitor/log_sink.h"
#include "serve/server_log.h"

namespace {

using namespace kiln;

serve::AccessLogEntry entry() {
  serve::AccessLogEntry e;
  e.remote = "10.1.2.3:40000";
  e.method = "POST";
  e.target = e.path = "/v1/chat/completions";
  e.request_id = "6b0cd9baf5e3f3c9958359386a6dfea1";
  e.user_agent = "OpenAI/Python 1.51.0";
  e.status = 200;
  e.seconds = 0.4123;
  e.request_body_bytes = 412;
  e.response_body_bytes = 5120;
  serve::RequestNote& n = e.note;
  n.endpoint = "/v1/chat/completions";
  n.model = "llama-3.2-1b-instruct";
  n.key_id = "9599f1b2";
  n.stream = true;
  n.prompt_tokens = 97;
  n.completion_tokens = 128;
  n.cached_tokens = 64;
  n.finish_reasons = {"length"};
  n.queue_s = 0.0012, n.prefill_s = 0.031, n.decode_s = 0.37, n.first_token_s = 0.0322;
  return e;
}

monitor::LogContext context() {
  monitor::LogContext c;
  c.service_version = "0.1.0";
  c.pid = 4242;
  c.text_prefix = "kiln serve: ";
  return c;
}

void BM_RequestEventBuild(benchmark::State& state) {
  const serve::AccessLogEntry e = entry();
  for (auto _ : state) benchmark::DoNotOptimize(serve::request_log_event(e));
}
BENCHMARK(BM_RequestEventBuild);

void BM_JsonLine(benchmark::State& state) {
  const monitor::LogEvent ev = serve::request_log_event(entry());
  const monitor::LogContext c = context();
  for (auto _ : state) benchmark::DoNotOptimize(monitor::format_json_line(ev, c));
  state.counters["bytes"] = static_cast<double>(monitor::format_json_line(ev, c).size());
}
BENCHMARK(BM_JsonLine);

void BM_TextLine(benchmark::State& state) {
  const monitor::LogEvent ev = serve::request_log_event(entry());
  const monitor::LogContext c = context();
  for (auto _ : state) benchmark::DoNotOptimize(monitor::format_text_line(ev, c));
}
BENCHMARK(BM_TextLine);

monitor::LogSink* shared_sink = nullptr;
std::string sink_path;

void BM_WriteJsonLineToFile(benchmark::State& state) {
  if (state.thread_index() == 0) {
    sink_path = "/tmp/kiln_log_sink_bench_" + std::to_string(::getpid()) + ".log";
    monitor::LogSinkOptions o;
    o.format = monitor::LogFormat::json;
    o.path = sink_path;
    o.context = context();
    shared_sink = new monitor::LogSink(o);
  }
  const serve::AccessLogEntry e = entry();
  for (auto _ : state) shared_sink->write(serve::request_log_event(e));
  if (state.thread_index() == 0) {
    delete shared_sink;
    std::remove(sink_path.c_str());
  }
}
BENCHMARK(BM_WriteJsonLineToFile);
BENCHMARK(BM_WriteJsonLineToFile)->Threads(4);

}  // namespace
