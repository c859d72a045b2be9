// `kiln data prepare` (text, folders and JSONL to deduplicated, split token shards and a
// manifest) and `kiln data inspect` (the manifest's summary, token statistics, --verify of the
// shard hashes). The work lives in src/data/; this file holds the flags and the printing.
#include <fmt/format.h>

#include <cstdio>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "commands.h"
#include "common_options.h"
#include "core/error.h"
#include "data/corpus_prepare.h"
#include "data/data_shard.h"
#include "data/data_shard_stats.h"
#include "data/manifest.h"
#include "monitor/progress.h"
#include "tokenizer/load_tokenizer.h"
#include "tokenizer/tokenizer.h"

namespace kiln::cli {
namespace {

struct InspectOptions {
  std::string dir;
  std::string tokenizer;
  bool json = false;
  bool verify = false;
  std::size_t top = 20;
};

struct PrepareCommand {
  data::PrepareOptions prepare;
  monitor::ProgressMode progress = monitor::ProgressMode::automatic;
};

void run_prepare(PrepareCommand cmd) {
  data::PrepareOptions& o = cmd.prepare;
  std::unique_ptr<Tokenizer> tok = load_tokenizer_file(o.tokenizer_path);
  std::error_code ec;
  const std::filesystem::path abs = std::filesystem::absolute(o.tokenizer_path, ec);
  if (!ec) o.tokenizer_path = abs.lexically_normal().string();
  // Progress in bytes of input text; documents, duplicates and tokens as the detail.
  monitor::Progress progress("data prepare", cmd.progress);
  bool started = false;
  auto report = [&](const data::PrepareProgress& p) {
    if (!started) progress.stage("tokenize", static_cast<std::int64_t>(p.bytes_total), "bytes");
    started = true;
    progress.detail(fmt::format("{}/{} files, {} documents, {} duplicates, {} tokens", p.files_done, p.files_total,
                                p.documents, p.duplicates, p.tokens));
    progress.set(static_cast<std::int64_t>(p.bytes_done));
  };
  const data::PrepareResult r = data::prepare_corpus(*tok, o, report);
  progress.finish();
  std::printf("read %llu documents, removed %llu exact duplicates\n", static_cast<unsigned long long>(r.documents_read),
              static_cast<unsigned long long>(r.duplicates_removed));
  std::printf("train: %llu documents, %llu tokens\n", static_cast<unsigned long long>(r.train_documents),
              static_cast<unsigned long long>(r.train_tokens));
  std::printf("val:   %llu documents, %llu tokens\n", static_cast<unsigned long long>(r.val_documents),
              static_cast<unsigned long long>(r.val_tokens));
  std::printf("wrote %zu shards and %s/%s\n", r.shards_written.size(), o.out_dir.c_str(), data::kManifestName);
}

std::string printable(const std::string& bytes) {
  std::string out;
  for (unsigned char c : bytes) {
    if (c == '\n') out += "\\n";
    else if (c == '\t') out += "\\t";
    else if (c == '\\') out += "\\\\";
    else if (c < 0x20 || c == 0x7f) out += fmt::format("\\x{:02x}", c);
    else out += static_cast<char>(c);
  }
  return out;
}

// A token's text as the listing shows it: its bytes, or for control tokens (which decode to
// nothing) their written form such as <s>.
std::string shown_piece(const Tokenizer& tok, std::int32_t id) {
  const std::string piece = tok.token_to_piece(id);
  return piece.empty() ? tok.vocab().tokens[static_cast<std::size_t>(id)] : printable(piece);
}

void run_inspect(const InspectOptions& o) {
  const data::Manifest m = data::read_manifest(o.dir + "/" + data::kManifestName);
  // The tokenizer gives the tokens their text and types; the one named here or, when absent,
  // the one the manifest recorded, if it is still there and still the same.
  std::unique_ptr<Tokenizer> tok;
  std::string tokenizer_note;
  const std::string tok_path = o.tokenizer.empty() ? m.tokenizer_path : o.tokenizer;
  if (!o.tokenizer.empty() || std::filesystem::exists(tok_path)) {
    tok = load_tokenizer_file(tok_path);
    if (data::tokenizer_hash(tok->vocab()) != m.tokenizer_hash) {
      if (!o.tokenizer.empty())
        fail("data inspect: {} is not the tokenizer the folder was prepared with (sha256 {})", tok_path,
             data::hash_hex(m.tokenizer_hash));
      tok.reset();
      tokenizer_note = "the tokenizer at the recorded path has changed";
    }
  } else {
    tokenizer_note = "the recorded tokenizer is not found (give --tokenizer)";
  }
  std::size_t verified = 0;
  if (o.verify) verified = data::verify_shards(o.dir, m);
  const data::CorpusStats stats = data::compute_corpus_stats(o.dir, m);
  std::uint64_t source_bytes = 0;
  for (const data::ManifestSource& s : m.sources) source_bytes += s.bytes;
  const auto top = stats.top_tokens(o.top);
  const double total = static_cast<double>(stats.total_tokens);
  auto share = [&](std::uint64_t n) { return stats.total_tokens ? static_cast<double>(n) / total : 0.0; };

  if (o.json) {
    nlohmann::json j = data::manifest_to_json(m);
    nlohmann::json splits = nlohmann::json::object();
    for (const auto& [name, s] : stats.splits)
      splits[name] = {{"shards", s.shards},
                      {"tokens", s.tokens},
                      {"documents", s.documents},
                      {"mean_document_tokens", s.mean_document_tokens},
                      {"median_document_tokens", s.median_document_tokens}};
    nlohmann::json tops = nlohmann::json::array();
    for (const auto& [id, n] : top) {
      nlohmann::json t = {{"id", id}, {"count", n}, {"share", share(n)}};
      if (tok) t["piece"] = tok->token_to_piece(id), t["token"] = tok->vocab().tokens[static_cast<std::size_t>(id)];
      tops.push_back(t);
    }
    nlohmann::json st = {{"total_tokens", stats.total_tokens}, {"splits", splits}, {"top_tokens", tops}};
    if (tok) {
      st["unknown_tokens"] = stats.unknown_tokens(tok->vocab());
      st["byte_fallback_tokens"] = stats.byte_tokens(tok->vocab());
    }
    j["stats"] = st;
    if (o.verify) j["verified_shards"] = verified;
    std::printf("%s\n", j.dump(2).c_str());
    return;
  }
  std::printf("folder:     %s\n", o.dir.c_str());
  std::printf("tokenizer:  %s (vocab %u, sha256 %s)\n", m.tokenizer_path.c_str(), m.vocab_size,
              data::hash_hex(m.tokenizer_hash).c_str());
  std::printf("sources:    %zu files, %llu bytes; %zu prepare runs; %llu exact duplicates removed\n", m.sources.size(),
              static_cast<unsigned long long>(source_bytes), m.runs.size(),
              static_cast<unsigned long long>(m.duplicates_removed));
  std::printf("%-6s %7s %10s %12s %12s %12s\n", "split", "shards", "documents", "tokens", "mean len", "median len");
  for (const auto& [name, s] : stats.splits)
    std::printf("%-6s %7llu %10llu %12llu %12.1f %12.1f\n", name.c_str(), static_cast<unsigned long long>(s.shards),
                static_cast<unsigned long long>(s.documents), static_cast<unsigned long long>(s.tokens),
                s.mean_document_tokens, s.median_document_tokens);
  if (tok) {
    const std::uint64_t unk = stats.unknown_tokens(tok->vocab()), bytes = stats.byte_tokens(tok->vocab());
    std::printf("unknown:    %llu tokens (%.4f%%); byte fallback: %llu tokens (%.4f%%)\n",
                static_cast<unsigned long long>(unk), 100 * share(unk), static_cast<unsigned long long>(bytes),
                100 * share(bytes));
  } else {
    std::printf("unknown and byte-fallback shares: not shown: %s\n", tokenizer_note.c_str());
  }
  std::printf("most frequent tokens:\n");
  for (const auto& [id, n] : top)
    std::printf("  %7d %12llu %7.3f%%  %s\n", id, static_cast<unsigned long long>(n), 100 * share(n),
                tok ? ("'" + shown_piece(*tok, id) + "'").c_str() : "");
  if (o.verify) std::printf("verified:   %zu shards match the manifest's sha256\n", verified);
}

}  // namespace

void register_data_command(CLI::App& app) {
  CLI::App* data_cmd = app.add_subcommand("data", "Prepare and inspect tokenized training data (token shards)");
  data_cmd->require_subcommand(1);

  auto cmd = std::make_shared<PrepareCommand>();
  data::PrepareOptions* p = &cmd->prepare;
  CLI::App* prep = data_cmd->add_subcommand(
      "prepare", "Tokenize text files, folders and JSONL into deduplicated train/val token shards with a manifest");
  prep->add_option("inputs", p->inputs, "Text files, .jsonl/.ndjson files, or folders (read recursively, sorted)")
      ->required();
  prep->add_option("--tokenizer", p->tokenizer_path,
                   "A GGUF model, tokenizer.json, tokenizer.model, encoder.json (vocab.bpe beside it) or a directory")
      ->required();
  prep->add_option("-o,--out", p->out_dir, "Folder for the shards and manifest.json (created; a folder prepared "
                                           "before with the same tokenizer gets new shards)")
      ->required();
  prep->add_option("--jsonl-field", p->corpus.jsonl_field, "The field of each JSONL record that holds the text")
      ->capture_default_str();
  prep->add_flag("--paragraphs", p->corpus.paragraphs,
                 "Split text files into one document per paragraph (runs of lines between blank lines)");
  prep->add_flag("--eos", p->add_eos,
                 "End every document with the tokenizer's end-of-sequence token (a model learns where documents "
                 "end, and stops there)");
  prep->add_option("--val-fraction", p->val_fraction,
                   "Share of documents for validation, chosen by a seeded hash of each document's text")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  prep->add_option("--seed", p->seed, "Seed of the train/validation hash")->capture_default_str();
  prep->add_option("--shard-tokens", p->shard_tokens, "Most tokens in one shard")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  prep->add_option("-t,--threads", p->threads, "Tokenizer threads")->capture_default_str()->check(CLI::Range(1, 256));
  add_progress_options(prep, cmd->progress);
  prep->callback([cmd] { run_prepare(*cmd); });

  auto i = std::make_shared<InspectOptions>();
  CLI::App* insp = data_cmd->add_subcommand("inspect", "Summarize a prepared folder: splits, documents, token statistics");
  insp->add_option("dir", i->dir, "A folder written by kiln data prepare")->required();
  insp->add_option("--tokenizer", i->tokenizer,
                   "Tokenizer for token texts and byte-fallback shares (default: the one the manifest records)");
  insp->add_flag("--json", i->json, "Print the manifest and the statistics as JSON");
  insp->add_flag("--verify", i->verify, "Check every shard's size and SHA-256 against the manifest");
  insp->add_option("--top", i->top, "How many of the most frequent tokens to list")->capture_default_str();
  insp->callback([i] { run_inspect(*i); });
}

}  // namespace kiln::cli
