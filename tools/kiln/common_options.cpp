#include "common_options.h"

#include <algorithm>
#include <random>
#include <thread>

#include "core/error.h"
#include "core/mapped_file.h"
#include "model/kv_cache.h"

namespace kiln::cli {

namespace {

// "Worker threads" + " per model": a shared help text, narrowed where a command needs it.
std::string with_whose(std::string_view what, std::string_view whose) {
  std::string text(what);
  if (!whose.empty()) text.append(" ").append(whose);
  return text;
}

}  // namespace

SamplingOptions interactive_sampling_defaults() {
  SamplingOptions s;
  s.params.temperature = 0.8f;
  s.params.top_k = 40;
  s.params.top_p = 0.95f;
  s.params.min_p = 0.05f;
  return s;
}

void add_sampling_options(CLI::App* cmd, SamplingOptions& sampling) {
  SamplerParams& p = sampling.params;
  cmd->add_option("--temp", p.temperature, "Temperature (0: greedy)")->capture_default_str();
  cmd->add_option("--top-k", p.top_k, "Keep the k most likely tokens (0: off)")->capture_default_str();
  cmd->add_option("--top-p", p.top_p, "Nucleus sampling mass (1: off)")->capture_default_str();
  cmd->add_option("--typical", p.typical_p, "Locally typical sampling mass (1: off)")->capture_default_str();
  cmd->add_option("--min-p", p.min_p, "Drop tokens below min-p × the top probability (0: off)")->capture_default_str();
  cmd->add_option("--repeat-penalty", p.repeat_penalty, "Penalty on recently seen tokens (1: off)")
      ->capture_default_str();
  cmd->add_option("--repeat-last-n", p.repeat_last_n, "Window of the repeat penalty (-1: all)")->capture_default_str();
  cmd->add_option("--presence-penalty", p.presence_penalty, "OpenAI presence penalty")->capture_default_str();
  cmd->add_option("--frequency-penalty", p.frequency_penalty, "OpenAI frequency penalty")->capture_default_str();
  cmd->add_option_function<std::uint64_t>(
      "-s,--seed", [&sampling](std::uint64_t s) { sampling.params.seed = s, sampling.seed_given = true; },
      "Random seed (default: random)");
}

SamplerParams seeded_sampling(const SamplingOptions& sampling) {
  SamplerParams p = sampling.params;
  if (!sampling.seed_given) p.seed = std::random_device{}();
  return p;
}

void add_threads_option(CLI::App* cmd, int& threads, std::string_view whose) {
  cmd->add_option("-t,--threads", threads, with_whose("Worker threads", whose) + " (0: all hardware threads)")
      ->capture_default_str();
}

int thread_count(int requested) {
  return requested > 0 ? requested : static_cast<int>(std::thread::hardware_concurrency());
}

void add_context_option(CLI::App* cmd, int& ctx, std::string_view whose) {
  cmd->add_option("-c,--ctx", ctx, with_whose("Context size in tokens", whose) + " (0: the model's, at most 4096)")
      ->capture_default_str();
}

int context_tokens(int requested, int n_ctx_train) { return requested > 0 ? requested : std::min(n_ctx_train, 4096); }

void add_kv_type_option(CLI::App* cmd, std::string& kv_type) {
  add_kv_type_option(cmd, kv_type, "--kv-type", "KV cache element type");
}

void add_kv_type_option(CLI::App* cmd, std::string& kv_type, const std::string& flag, std::string_view what) {
  cmd->add_option(flag, kv_type,
                  std::string(what) +
                      ": f16, f32, q8_0 (34/64 of f16's bytes per position), q4_0 (18/64) or q4_1 (20/64); the block "
                      "types need a head size that is a multiple of 32")
      ->capture_default_str()
      ->type_name("TYPE");
}

DType kv_type_from_flag(const std::string& kv_type, std::string_view command, std::string_view flag) {
  const std::optional<DType> t = parse_dtype(kv_type);
  if (!t || !is_kv_cache_type(*t))
    fail("{}: {} '{}' is not a KV cache type (expected {})", command, flag, kv_type, kKvCacheTypeNames);
  return *t;
}

void add_load_mode_option(CLI::App* cmd) {
  cmd->add_flag_callback(
      "--no-mmap", [] { set_load_mode(LoadMode::copy); },
      "Read the weights into private huge-page memory instead of mapping the file, as llama.cpp's "
      "--no-mmap (also KILN_LOAD=copy): steadier decode where the page cache reads slowly, at the "
      "cost of page-cache sharing between processes");
}

void add_chunk_source_options(CLI::App* cmd, eval::ChunkSource& source) {
  cmd->add_option("--text", source.text, "Text file to run the model over (tokenized with the model's tokenizer)")
      ->check(CLI::ExistingFile);
  cmd->add_option("--tokens", source.tokens,
                  "File of whitespace-separated token ids instead of text (for models without a tokenizer)")
      ->check(CLI::ExistingFile);
  cmd->add_option("-c,--ctx", source.ctx, "Tokens per chunk (0: 512, or the model's context if smaller)")
      ->capture_default_str();
  cmd->add_option("--chunks", source.chunks, "At most this many chunks (0: all that fit)")->capture_default_str();
  cmd->add_flag("--no-bos", source.no_bos, "Keep each chunk's first token instead of writing BOS over it");
}

void add_progress_options(CLI::App* cmd, monitor::ProgressMode& mode) {
  CLI::Option* progress =
      cmd->add_option_function<std::string>(
             "--progress", [&mode](const std::string& name) { mode = *monitor::parse_progress_mode(name); },
             "Progress on stderr: auto (a bar on a terminal, JSON lines otherwise), bar, json or none")
          ->check(CLI::IsMember({"auto", "bar", "json", "none"}))
          ->default_str("auto")
          ->type_name("MODE");
  cmd->add_flag_callback("-q,--quiet", [&mode] { mode = monitor::ProgressMode::none; },
                         "No progress on stderr (as --progress none)")
      ->excludes(progress);
}

void add_draft_options(CLI::App* cmd, DraftOptions& draft, bool serve) {
  SpeculativeOptions& s = draft.speculative;
  cmd->add_option("--draft,--model-draft", draft.model,
                  "Draft model for speculative decoding: a small model with the same tokenizer proposes tokens that "
                  "the model verifies in one batch (output unchanged)")
      ->check(CLI::ExistingFile);
  cmd->add_option("--draft-max,--draft-n", s.draft_max,
                  "Most tokens drafted per step; the draft length adapts within [--draft-min, --draft-max]")
      ->capture_default_str();
  cmd->add_option("--draft-min", s.draft_min, "Fewest tokens drafted per step (equal to --draft-max: a fixed length)")
      ->capture_default_str();
  cmd->add_option("--draft-p-min", s.p_min,
                  "Stop drafting a step once the draft's probability of its own token is below this (0: off)")
      ->capture_default_str();
  if (serve)
    cmd->add_option("--draft-max-sequences", s.max_sequences,
                    "Speculate only while at most this many sequences decode (0: never)")
        ->capture_default_str();
}

}  // namespace kiln::cli
