#pragma once
// The options several subcommands share, each declared once here so that every command spells
// it the same way, with the same default and help text: sampling, worker threads, context size,
// KV cache type, the load mode (--no-mmap), the chunks that eval and imatrix run over, and how
// long jobs show their progress.
#include <CLI/CLI.hpp>

#include <cstdint>
#include <string>
#include <string_view>

#include "core/dtype.h"
#include "eval/chunk_source.h"
#include "monitor/progress.h"
#include "runtime/speculative_options.h"
#include "sample/sampler.h"

namespace kiln::cli {

struct SamplingOptions {
  SamplerParams params;
  bool seed_given = false;  // -s/--seed on the command line; otherwise a random seed is drawn
};

// llama.cpp's defaults for interactive generation (run, chat): temperature 0.8, top-k 40,
// top-p 0.95, min-p 0.05; the penalties stay off.
SamplingOptions interactive_sampling_defaults();

// --temp, --top-k, --top-p, --typical, --min-p, --repeat-penalty, --repeat-last-n,
// --presence-penalty, --frequency-penalty and -s/--seed into `sampling`; its values when called
// are the defaults shown in --help.
void add_sampling_options(CLI::App* cmd, SamplingOptions& sampling);

// The sampler's parameters with the seed the user gave, or a random one.
SamplerParams seeded_sampling(const SamplingOptions& sampling);

// -t/--threads. `whose` says whose threads they are where that is not plain ("per model").
void add_threads_option(CLI::App* cmd, int& threads, std::string_view whose = "");
// --threads as a count: 0 (or less) means all hardware threads.
int thread_count(int requested);

// -c/--ctx: the context of a generation in tokens, 0 for the model's capped at 4096. `whose`
// as for --threads ("per sequence").
void add_context_option(CLI::App* cmd, int& ctx, std::string_view whose = "");
// --ctx as a count of tokens: 0 (or less) means the training context, at most 4096.
int context_tokens(int requested, int n_ctx_train);

// --kv-type: the KV cache's element type, kept as text until the command runs so that a bad
// name fails with the command's own message (kv_type_from_flag).
void add_kv_type_option(CLI::App* cmd, std::string& kv_type);
// The same option under another flag (eval kld's --base-kv-type), its help starting with `what`.
void add_kv_type_option(CLI::App* cmd, std::string& kv_type, const std::string& flag, std::string_view what);
DType kv_type_from_flag(const std::string& kv_type, std::string_view command, std::string_view flag = "--kv-type");

// --no-mmap: the load mode of every command that loads a model to run it.
void add_load_mode_option(CLI::App* cmd);

// --text, --tokens, -c/--ctx (tokens per chunk), --chunks and --no-bos: the chunks a model is
// run over by eval and imatrix (eval/chunk_source.h).
void add_chunk_source_options(CLI::App* cmd, eval::ChunkSource& source);

// --progress auto|bar|json|none and -q/--quiet (as --progress none): how a long job shows its
// progress on stderr (monitor/progress.h). The two exclude each other.
void add_progress_options(CLI::App* cmd, monitor::ProgressMode& mode);

// Speculative decoding: --draft MODEL (also --model-draft, llama.cpp's name), --draft-max N
// (also --draft-n), --draft-min N and --draft-p-min P; with `serve`, --draft-max-sequences N.
struct DraftOptions {
  std::string model;  // empty: no speculative decoding
  SpeculativeOptions speculative;
};
void add_draft_options(CLI::App* cmd, DraftOptions& draft, bool serve = false);

}  // namespace kiln::cli
