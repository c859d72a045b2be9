// kiln run MODEL -p PROMPT: generate text and stream it to stdout.
// Models without a tokenizer (llama2.c checkpoints) are driven by ids: --tokens 1,2,3 and
// --print-ids. Timings go to stderr so stdout holds only the generated text (or ids).
#include <cstdio>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "commands.h"
#include "common_options.h"
#include "core/error.h"
#include "runtime/generator.h"
#include "runtime/loaded_model.h"
#include "sample/sampler.h"
#include "tokenizer/text_stream_decoder.h"

namespace kiln::cli {
namespace {

struct RunOptions {
  std::string model;
  std::string prompt;
  bool prompt_given = false;
  std::string tokens;
  int n_predict = 128;
  int threads = 0;
  int ctx = 0;
  int batch = 512;
  std::string kv_type = "f16";
  bool ignore_eos = false;
  bool print_ids = false;
  bool no_bos = false;
  bool parse_special = false;
  bool echo = false;
  bool quiet = false;
  SamplingOptions sampling = interactive_sampling_defaults();
  DraftOptions draft;
};

std::vector<int> parse_token_list(const std::string& text) {
  std::vector<int> ids;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    std::size_t used = 0;
    long v = 0;
    try {
      v = std::stol(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    while (used < item.size() && item[used] == ' ') ++used;
    if (item.empty() || used != item.size() || v < 0 || v > 0x7fffffff)
      fail("--tokens: '{}' is not a token id (expected comma-separated non-negative integers)", item);
    ids.push_back(static_cast<int>(v));
  }
  if (ids.empty()) fail("--tokens: no token ids given");
  return ids;
}

void run_generation(const RunOptions& o) {
  if (o.prompt_given == !o.tokens.empty())
    fail("run: give exactly one of -p/--prompt (text) and --tokens (ids)");
  const LoadedModel loaded = load_model(o.model);
  LlamaModel* model = loaded.model.get();
  const Tokenizer* tokenizer = loaded.tokenizer.get();
  const LlamaConfig& c = model->config();

  std::vector<int> prompt;
  if (o.prompt_given) {
    if (!tokenizer) fail("{}: this model has no tokenizer; drive it by ids with --tokens and --print-ids", o.model);
    std::vector<std::int32_t> ids = tokenizer->encode(o.prompt, tokenizer->vocab().add_bos && !o.no_bos, o.parse_special);
    prompt.assign(ids.begin(), ids.end());
  } else {
    prompt = parse_token_list(o.tokens);
  }

  o.draft.speculative.validate();
  LoadedModel draft_model;
  std::optional<KvCache> draft_cache;
  SpeculativeDraft draft;
  const int ctx = context_tokens(o.ctx, c.n_ctx_train);
  if (!o.draft.model.empty()) {
    draft_model = load_draft_model(o.draft.model, loaded);
    draft_cache.emplace(draft_model.model->make_kv_cache(ctx, kv_type_from_flag(o.kv_type, "run")));
    draft = SpeculativeDraft{draft_model.model.get(), &*draft_cache, o.draft.speculative};
  }
  KvCache cache = model->make_kv_cache(ctx, kv_type_from_flag(o.kv_type, "run"));
  ThreadPool pool(thread_count(o.threads));
  const SamplerParams sampling = seeded_sampling(o.sampling);
  Sampler sampler(sampling);

  GenerateOptions g;
  g.n_predict = o.n_predict;
  g.batch = o.batch;
  g.ignore_eos = o.ignore_eos;

  // The decoder is primed with the prompt so that the first generated token keeps its leading
  // space (a fresh sentencepiece text drops it).
  std::unique_ptr<TextStreamDecoder> decoder;
  std::string text;
  if (tokenizer && !o.print_ids) {
    decoder = std::make_unique<TextStreamDecoder>(*tokenizer);
    const std::vector<std::int32_t> context(prompt.begin(), prompt.end());
    if (o.echo) {
      for (std::int32_t id : context) text += decoder->push(id);
      std::fwrite(text.data(), 1, text.size(), stdout);
    } else {
      decoder->prime(context);
    }
  } else if (o.echo) {
    for (std::size_t i = 0; i < prompt.size(); ++i) std::printf("%s%d", i ? " " : "", prompt[i]);
  }
  std::fflush(stdout);
  bool first = !o.echo;
  auto on_token = [&](int id) {
    if (!decoder) {
      std::printf("%s%d", first ? "" : " ", id);
    } else if (!tokenizer->is_eog(id)) {
      text = decoder->push(id);
      std::fwrite(text.data(), 1, text.size(), stdout);
    }
    first = false;
    std::fflush(stdout);
    return true;
  };
  auto is_eog = [&](int id) {
    if (tokenizer) return tokenizer->is_eog(id);
    return id == 2;  // llama2.c checkpoints end stories with EOS = 2 (and BOS = 1)
  };
  GenerateResult r = generate(*model, cache, pool, sampler, prompt, g, is_eog, on_token, draft_cache ? &draft : nullptr);
  if (decoder) {
    text = decoder->finish();
    std::fwrite(text.data(), 1, text.size(), stdout);
  }
  std::printf("\n");
  std::fflush(stdout);
  if (!o.quiet) {
    const double pf = r.prefill_seconds > 0 ? r.n_prompt / r.prefill_seconds : 0;
    const int decoded = static_cast<int>(r.tokens.size()) - 1;  // the first token comes from prefill
    const double dc = decoded > 0 && r.decode_seconds > 0 ? decoded / r.decode_seconds : 0;
    std::fprintf(stderr, "\nkiln run: prompt %d tokens in %.3f s (%.1f tok/s), generated %zu tokens (%.1f tok/s), stop: %s, seed %llu\n",
                 r.n_prompt, r.prefill_seconds, pf, r.tokens.size(), dc, r.stop_reason.c_str(),
                 static_cast<unsigned long long>(sampling.seed));
    if (draft_cache)
      std::fprintf(stderr, "kiln run: draft accepted %d of %d tokens (%.1f%%) in %d steps, %.2f tokens per step\n",
                   r.accepted, r.drafted, r.drafted > 0 ? 100.0 * r.accepted / r.drafted : 0.0, r.rounds,
                   r.rounds > 0 ? static_cast<double>(r.accepted + r.rounds) / r.rounds : 0.0);
  }
}

}  // namespace

void register_run_command(CLI::App& app) {
  auto o = std::make_shared<RunOptions>();
  CLI::App* cmd = app.add_subcommand("run", "Generate text from a prompt (or token ids) and stream it");
  cmd->add_option("model", o->model, "Model file (.gguf or llama2.c .bin)")->required()->check(CLI::ExistingFile);
  cmd->add_option_function<std::string>("-p,--prompt", [o](const std::string& p) { o->prompt = p, o->prompt_given = true; },
                                        "Prompt text");
  cmd->add_option("--tokens", o->tokens, "Prompt as comma-separated token ids, e.g. 1,415,2232");
  cmd->add_option("-n,--n-predict", o->n_predict, "Tokens to generate (-1: until the context is full)")
      ->capture_default_str();
  add_threads_option(cmd, o->threads);
  add_context_option(cmd, o->ctx);
  cmd->add_option("-b,--batch", o->batch, "Largest prefill batch")->capture_default_str()->check(CLI::PositiveNumber);
  add_kv_type_option(cmd, o->kv_type);
  add_sampling_options(cmd, o->sampling);
  add_draft_options(cmd, o->draft);
  // run prints the seed it used, so that a random draw can be repeated.
  cmd->get_option("--seed")->description("Random seed (default: random; printed at the end)");
  cmd->add_flag("--ignore-eos", o->ignore_eos, "Keep generating past end-of-sequence tokens");
  cmd->add_flag("--print-ids", o->print_ids, "Print generated token ids instead of text");
  cmd->add_flag("--no-bos", o->no_bos, "Do not prepend the BOS token to a text prompt");
  cmd->add_flag("--special", o->parse_special, "Recognize special-token texts such as <s> in the prompt");
  cmd->add_flag("--echo", o->echo, "Print the prompt before the generated text");
  cmd->add_flag("-q,--quiet", o->quiet, "Do not print timings to stderr");
  add_load_mode_option(cmd);
  cmd->callback([o] { run_generation(*o); });
}

}  // namespace kiln::cli
