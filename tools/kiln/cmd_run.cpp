// kiln run MODEL -p PROMPT: generate text and stream it to stdout.
// Models without a tokenizer (llama2.c checkpoints) are driven by ids: --tokens 1,2,3 and
// --print-ids. Timings go to stderr so stdout holds only the generated text (or ids).
#include <cstdio>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "commands.h"
#include "load_option.h"
#include "core/error.h"
#include "format/gguf_file.h"
#include "model/llama_model.h"
#include "runtime/generator.h"
#include "sample/sampler.h"
#include "tokenizer/text_stream_decoder.h"
#include "tokenizer/load_tokenizer.h"

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
  bool seed_given = false;
  SamplerParams sampling;
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

void run_generation(RunOptions o) {
  if (o.prompt_given == !o.tokens.empty())
    fail("run: give exactly one of -p/--prompt (text) and --tokens (ids)");
  const int threads = o.threads > 0 ? o.threads : static_cast<int>(std::thread::hardware_concurrency());
  std::unique_ptr<LlamaModel> model = LlamaModel::load(o.model);
  const LlamaConfig& c = model->config();

  std::unique_ptr<Tokenizer> tokenizer;
  if (model->source().gguf() != nullptr && model->source().gguf()->find("tokenizer.ggml.tokens") != nullptr)
    tokenizer = load_tokenizer(*model->source().gguf());
  if (tokenizer && tokenizer->n_vocab() != c.n_vocab)
    fail("{}: the tokenizer has {} tokens but the model's embedding has {}", o.model, tokenizer->n_vocab(), c.n_vocab);

  std::vector<int> prompt;
  if (o.prompt_given) {
    if (!tokenizer) fail("{}: this model has no tokenizer; drive it by ids with --tokens and --print-ids", o.model);
    std::vector<std::int32_t> ids = tokenizer->encode(o.prompt, tokenizer->vocab().add_bos && !o.no_bos, o.parse_special);
    prompt.assign(ids.begin(), ids.end());
  } else {
    prompt = parse_token_list(o.tokens);
  }

  const int ctx = o.ctx > 0 ? o.ctx : std::min(c.n_ctx_train, 4096);
  std::optional<DType> kv = parse_dtype(o.kv_type);
  if (!kv) fail("run: --kv-type '{}' is not a type (expected f16 or f32)", o.kv_type);
  KvCache cache = model->make_kv_cache(ctx, *kv);
  ThreadPool pool(threads);
  if (!o.seed_given) o.sampling.seed = std::random_device{}();
  Sampler sampler(o.sampling);

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
  GenerateResult r = generate(*model, cache, pool, sampler, prompt, g, is_eog, on_token);
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
                 static_cast<unsigned long long>(o.sampling.seed));
  }
}

}  // namespace

void register_run_command(CLI::App& app) {
  auto o = std::make_shared<RunOptions>();
  // llama.cpp's defaults for interactive generation.
  o->sampling.temperature = 0.8f;
  o->sampling.top_k = 40;
  o->sampling.top_p = 0.95f;
  o->sampling.min_p = 0.05f;
  CLI::App* cmd = app.add_subcommand("run", "Generate text from a prompt (or token ids) and stream it");
  cmd->add_option("model", o->model, "Model file (.gguf or llama2.c .bin)")->required()->check(CLI::ExistingFile);
  cmd->add_option_function<std::string>("-p,--prompt", [o](const std::string& p) { o->prompt = p, o->prompt_given = true; },
                                        "Prompt text");
  cmd->add_option("--tokens", o->tokens, "Prompt as comma-separated token ids, e.g. 1,415,2232");
  cmd->add_option("-n,--n-predict", o->n_predict, "Tokens to generate (-1: until the context is full)")
      ->capture_default_str();
  cmd->add_option("-t,--threads", o->threads, "Worker threads (0: all hardware threads)")->capture_default_str();
  cmd->add_option("-c,--ctx", o->ctx, "Context size in tokens (0: the model's, at most 4096)")->capture_default_str();
  cmd->add_option("-b,--batch", o->batch, "Largest prefill batch")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--kv-type", o->kv_type, "KV cache element type: f16 or f32")->capture_default_str();
  cmd->add_option("--temp", o->sampling.temperature, "Temperature (0: greedy)")->capture_default_str();
  cmd->add_option("--top-k", o->sampling.top_k, "Keep the k most likely tokens (0: off)")->capture_default_str();
  cmd->add_option("--top-p", o->sampling.top_p, "Nucleus sampling mass (1: off)")->capture_default_str();
  cmd->add_option("--min-p", o->sampling.min_p, "Drop tokens below min-p × the top probability (0: off)")
      ->capture_default_str();
  cmd->add_option("--repeat-penalty", o->sampling.repeat_penalty, "Penalty on recently seen tokens (1: off)")
      ->capture_default_str();
  cmd->add_option("--repeat-last-n", o->sampling.repeat_last_n, "Window of the repeat penalty (-1: all)")
      ->capture_default_str();
  cmd->add_option("--presence-penalty", o->sampling.presence_penalty, "OpenAI presence penalty")->capture_default_str();
  cmd->add_option("--frequency-penalty", o->sampling.frequency_penalty, "OpenAI frequency penalty")
      ->capture_default_str();
  cmd->add_option_function<std::uint64_t>("-s,--seed", [o](std::uint64_t s) { o->sampling.seed = s, o->seed_given = true; },
                                          "Random seed (default: random; printed at the end)");
  cmd->add_flag("--ignore-eos", o->ignore_eos, "Keep generating past end-of-sequence tokens");
  cmd->add_flag("--print-ids", o->print_ids, "Print generated token ids instead of text");
  cmd->add_flag("--no-bos", o->no_bos, "Do not prepend the BOS token to a text prompt");
  cmd->add_flag("--special", o->parse_special, "Recognize special-token texts such as <s> in the prompt");
  cmd->add_flag("--echo", o->echo, "Print the prompt before the generated text");
  cmd->add_flag("-q,--quiet", o->quiet, "Do not print timings to stderr");
  add_no_mmap_flag(cmd);
  cmd->callback([o] { run_generation(*o); });
}

}  // namespace kiln::cli
