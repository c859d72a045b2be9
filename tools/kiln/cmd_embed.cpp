// kiln embed MODEL TEXT... | -f FILE: the embeddings of texts, one JSON line per input on stdout,
// computed by the serving engine as /v1/embeddings computes them (all inputs batched together),
// so the two agree. --tokens gives an input as token ids instead of text.
#include <fmt/format.h>

#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "commands.h"
#include "common_options.h"
#include "core/error.h"
#include "runtime/embedding_input.h"
#include "runtime/embedding_pooling.h"
#include "runtime/engine.h"
#include "runtime/loaded_model.h"

namespace kiln::cli {
namespace {

struct EmbedOptions {
  std::string model;
  std::vector<std::string> texts;
  std::string file;
  std::vector<std::string> token_lists;
  std::string pooling;  // empty: the model's own, else mean
  int normalize = 2;
  int threads = 0;
  int ctx = 0;
  int max_batch_tokens = 512;
  bool quiet = false;
};

std::vector<std::int32_t> parse_ids(const std::string& text) {
  std::vector<std::int32_t> ids;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    std::size_t used = 0;
    long v = -1;
    try {
      v = std::stol(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (item.empty() || used != item.size() || v < 0 || v > 0x7fffffff)
      fail("embed: --tokens: '{}' is not a token id (expected comma-separated non-negative integers)", item);
    ids.push_back(static_cast<std::int32_t>(v));
  }
  return ids;
}

// The lines of FILE ("-": standard input), empty ones skipped.
std::vector<std::string> read_lines(const std::string& path) {
  std::ifstream file;
  if (path != "-") {
    file.open(path);
    if (!file) fail("embed: cannot read {}", path);
  }
  std::istream& in = path == "-" ? std::cin : file;
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (!line.empty()) lines.push_back(std::move(line));
  }
  return lines;
}

void append_vector(std::string& out, const float* v, std::size_t n) {
  out += '[';
  for (std::size_t i = 0; i < n; ++i) fmt::format_to(std::back_inserter(out), "{}{}", i ? "," : "", v[i]);
  out += ']';
}

void embed(const EmbedOptions& o) {
  std::vector<std::string> texts = o.texts;
  if (!o.file.empty())
    for (std::string& line : read_lines(o.file)) texts.push_back(std::move(line));
  if (texts.empty() && o.token_lists.empty()) fail("embed: nothing to embed (give TEXT..., -f FILE or --tokens)");
  if (o.normalize < -1) fail("embed: --normalize {} is not -1 (none), 0, 1, 2 (unit length) or a p-norm", o.normalize);

  // The engine detokenizes what it generates, so it needs the vocabulary even for token ids.
  const LoadedModel loaded = load_model(o.model, {.tokenizer = TokenizerNeed::required, .needed_by = "kiln embed"});
  const LlamaConfig& c = loaded.model->config();
  Pooling pooling = default_embedding_pooling(loaded.model->source().metadata(), c.arch);
  if (!o.pooling.empty()) {
    const std::optional<Pooling> p = parse_pooling(o.pooling);
    if (!p) fail("embed: --pooling '{}' is not none, mean, cls or last", o.pooling);
    pooling = *p;
  }

  std::vector<EmbeddingRequest> inputs;
  for (const std::string& t : texts) inputs.push_back({embedding_tokens(*loaded.tokenizer, t), pooling});
  for (const std::string& list : o.token_lists) inputs.push_back({parse_ids(list), pooling});

  EngineOptions eo;
  eo.threads = thread_count(o.threads);
  eo.context_tokens = context_tokens(o.ctx, c.n_ctx_train);
  eo.max_batch_tokens = o.max_batch_tokens;
  eo.max_queued = static_cast<int>(inputs.size());
  eo.prefix_cache = false;
  eo.record_metrics = false;
  Engine engine(*loaded.model, *loaded.tokenizer, eo);

  std::mutex mu;
  std::condition_variable cv;
  std::vector<EmbeddingResult> results(inputs.size());
  std::size_t done = 0;
  std::vector<int> n_tokens;
  for (const EmbeddingRequest& r : inputs) n_tokens.push_back(static_cast<int>(r.tokens.size()));
  const auto t0 = std::chrono::steady_clock::now();
  engine.submit_embeddings(std::move(inputs), [&](std::size_t i, const EmbeddingResult& r) {
    std::lock_guard<std::mutex> lk(mu);
    results[i] = r;
    if (++done == results.size()) cv.notify_all();
  });
  {
    std::unique_lock<std::mutex> lk(mu);
    cv.wait(lk, [&] { return done == results.size(); });
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  const std::size_t E = static_cast<std::size_t>(c.n_embd);
  long long total_tokens = 0;
  for (std::size_t i = 0; i < results.size(); ++i) {
    EmbeddingResult& r = results[i];
    if (r.reason != FinishReason::Stop)
      fail("embed: input {}: {}", i, r.error.empty() ? finish_reason_name(r.reason) : r.error);
    std::string line = fmt::format("{{\"index\":{},\"tokens\":{},\"embedding\":", i, n_tokens[i]);
    if (pooling == Pooling::None) {
      // One vector per token, each normalised on its own.
      line += '[';
      for (std::size_t t = 0; t * E < r.embedding.size(); ++t) {
        std::span<float> row(r.embedding.data() + t * E, E);
        normalize_embedding(row, o.normalize);
        if (t) line += ',';
        append_vector(line, row.data(), E);
      }
      line += ']';
    } else {
      normalize_embedding(r.embedding, o.normalize);
      append_vector(line, r.embedding.data(), r.embedding.size());
    }
    line += "}\n";
    std::fwrite(line.data(), 1, line.size(), stdout);
    total_tokens += n_tokens[i];
  }
  std::fflush(stdout);
  if (!o.quiet)
    std::fprintf(stderr, "kiln embed: %zu inputs, %lld tokens in %.3f s (%.1f inputs/s, %.1f tok/s), pooling %s\n",
                 results.size(), total_tokens, seconds, results.size() / seconds, total_tokens / seconds,
                 pooling_name(pooling));
}

}  // namespace

void register_embed_command(CLI::App& app) {
  auto o = std::make_shared<EmbedOptions>();
  CLI::App* cmd = app.add_subcommand("embed", "Print the embeddings of texts, one JSON line per input");
  cmd->add_option("model", o->model, "Model file (.gguf)")->required()->check(CLI::ExistingFile);
  cmd->add_option("text", o->texts, "Texts to embed, one input each");
  cmd->add_option("-f,--file", o->file, "Embed each non-empty line of FILE (-: standard input)");
  cmd->add_option("--tokens", o->token_lists, "An input as comma-separated token ids, as given (repeatable)")
      ->allow_extra_args(false);  // one list per use: a following TEXT is not taken for one
  cmd->add_option("--pooling", o->pooling,
                  "mean, cls (the first token's vector), last, or none (every token's vector) (default: the model's "
                  "<arch>.pooling_type when it is mean, cls or last, else mean)")
      ->check(CLI::IsMember({"none", "mean", "cls", "last"}));
  cmd->add_option("--normalize", o->normalize,
                  "2 unit length (as kiln serve answers), -1 none, 0 max-abs to 32760, 1 taxicab, p > 2 p-norm")
      ->capture_default_str();
  add_threads_option(cmd, o->threads);
  add_context_option(cmd, o->ctx, "per input");
  cmd->add_option("--max-batch-tokens", o->max_batch_tokens, "Tokens per forward pass (inputs are batched up to it)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_flag("-q,--quiet", o->quiet, "Do not print the timing line to stderr");
  add_load_mode_option(cmd);
  cmd->footer(
      "Output: {\"index\": i, \"tokens\": n, \"embedding\": [...]} per input ([[...], ...] per token with --pooling "
      "none), in order: the TEXT arguments, then the lines of FILE, then the --tokens lists.\n"
      "Examples:\n"
      "  kiln embed model.gguf \"first text\" \"second text\"\n"
      "  kiln embed model.gguf -f lines.txt --pooling last --normalize -1");
  cmd->callback([o] { embed(*o); });
}

}  // namespace kiln::cli
