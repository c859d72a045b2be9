// `kiln tokenizer train`: learns a byte-level BPE vocabulary from text files and writes it as a
// Hugging Face tokenizer.json and a tokenizer-only GGUF, both of which every kiln command takes
// as MODEL|TOKENIZER (see src/tokenizer/bpe_trainer.h for the algorithm).
#include <fmt/format.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "commands.h"
#include "core/error.h"
#include "tokenizer/bpe_trainer.h"

namespace kiln::cli {
namespace {

namespace fs = std::filesystem;

struct TrainOptions {
  std::int32_t vocab_size = 0;
  std::string out;
  std::string pattern = "llama3";
  std::vector<std::string> specials;
  std::uint64_t min_frequency = 2;
  int threads = 2;
  bool quiet = false;
  std::vector<std::string> inputs;
};

struct OutputPaths {
  std::string json, gguf;
  std::string config;  // tokenizer_config.json, only in an output directory of its own
};

// The files an --out names: DIR -> DIR/tokenizer.json, DIR/tokenizer_config.json (BOS, EOS) and
// DIR/tokenizer.gguf; NAME.json or NAME.gguf -> NAME.json + NAME.gguf (no config beside them: a
// tokenizer_config.json in a shared folder would speak for other tokenizer files there too).
OutputPaths output_paths(const std::string& out) {
  const fs::path p(out);
  const std::string ext = p.extension().string();
  if (ext == ".json" || ext == ".gguf") {
    return {fs::path(p).replace_extension(".json").string(), fs::path(p).replace_extension(".gguf").string(), ""};
  }
  std::error_code ec;
  fs::create_directories(p, ec);
  KILN_CHECK(!ec && fs::is_directory(p), "{}: cannot create the output directory: {}", out, ec.message());
  return {(p / "tokenizer.json").string(), (p / "tokenizer.gguf").string(), (p / "tokenizer_config.json").string()};
}

void run_train(const TrainOptions& o) {
  using clock = std::chrono::steady_clock;
  const auto t0 = clock::now();
  const std::string pre = bpe_pretokenizer_name(o.pattern);
  BpeTrainOptions options;
  options.vocab_size = o.vocab_size;
  options.min_frequency = o.min_frequency;
  for (const std::string& s : o.specials) options.special_tokens.push_back(s);
  // Check the size before reading gigabytes of text.
  KILN_CHECK(o.vocab_size >= 256 + static_cast<std::int32_t>(options.special_tokens.size()),
             "tokenizer train: --vocab-size {} leaves no room for the 256 byte tokens and {} special tokens",
             o.vocab_size, options.special_tokens.size());
  const OutputPaths paths = output_paths(o.out);

  BpeWordCounts counts(pre);
  for (const std::string& path : o.inputs) {
    counts.add_file(path, o.threads);
    if (!o.quiet) {
      std::fprintf(stderr, "tokenizer train: counted %s (%zu distinct words so far)\n", path.c_str(),
                   counts.counts().size());
    }
  }
  const double count_s = std::chrono::duration<double>(clock::now() - t0).count();
  if (!o.quiet) {
    std::fprintf(stderr, "tokenizer train: %.1f MB, %zu distinct words, pre-tokenizer %s (%.2f s)\n",
                 static_cast<double>(counts.n_bytes()) / 1e6, counts.counts().size(), pre.c_str(), count_s);
    options.progress = [](std::size_t done, std::size_t wanted) {
      std::fprintf(stderr, "\rtokenizer train: merges %zu / %zu", done, wanted);
      if (done == wanted) std::fputc('\n', stderr);
    };
  }
  const BpeTrainResult result = train_bpe(counts, options);
  // The progress line ends itself when every merge was made; a training that stopped short ends it here.
  if (!o.quiet &&
      result.vocab.merges.size() < static_cast<std::size_t>(o.vocab_size) - 256 - options.special_tokens.size()) {
    std::fputc('\n', stderr);
  }
  write_hf_tokenizer_json(result.vocab, paths.json);
  if (!paths.config.empty()) write_hf_tokenizer_config(result.vocab, paths.config);
  write_tokenizer_gguf(result.vocab, paths.gguf);
  const double total_s = std::chrono::duration<double>(clock::now() - t0).count();
  std::printf("%d tokens (%zu merges, %zu special), pre-tokenizer %s, %.2f s\n%s\n%s\n", result.vocab.size(),
              result.vocab.merges.size(), options.special_tokens.size(), pre.c_str(), total_s, paths.json.c_str(),
              paths.gguf.c_str());
  if (static_cast<std::int32_t>(result.vocab.size()) < o.vocab_size) {
    std::fprintf(stderr,
                 "tokenizer train: stopped at %d tokens: no pair occurs --min-frequency (%llu) times any more\n",
                 result.vocab.size(), static_cast<unsigned long long>(o.min_frequency));
  }
}

}  // namespace

void register_tokenizer_commands(CLI::App& app) {
  CLI::App* group = app.add_subcommand("tokenizer", "Make tokenizers: train a byte-level BPE vocabulary");
  group->require_subcommand(1);
  auto o = std::make_shared<TrainOptions>();
  CLI::App* train = group->add_subcommand(
      "train", "Learn a byte-level BPE vocabulary (Llama 3 style) from text files; writes tokenizer.json and a GGUF");
  train->add_option("--vocab-size", o->vocab_size, "Total tokens: 256 bytes + merges + special tokens")
      ->required()
      ->check(CLI::Range(257, 1 << 24));
  train
      ->add_option("--out", o->out,
                   "Output directory (tokenizer.json + tokenizer.gguf in it) or NAME.json / NAME.gguf (both written)")
      ->required();
  train
      ->add_option(
          "--pattern", o->pattern,
          "Pre-tokenizer: llama3 (default), gpt4 (cl100k), gpt4o (o200k), gpt2, qwen2, or a tokenizer.ggml.pre "
          "name kiln knows")
      ->capture_default_str();
  train->add_option("--special", o->specials,
                    "Extra special tokens, after <|begin_of_text|> (BOS) and <|end_of_text|> (EOS)");
  train->add_option("--min-frequency", o->min_frequency, "Do not merge pairs seen fewer times than this")
      ->capture_default_str();
  train->add_option("-t,--threads", o->threads, "Threads counting words")
      ->capture_default_str()
      ->check(CLI::Range(1, 256));
  train->add_flag("-q,--quiet", o->quiet, "No progress on stderr");
  train->add_option("inputs", o->inputs, "Text files to learn from")->required();
  train->callback([o] { run_train(*o); });
}

}  // namespace kiln::cli
