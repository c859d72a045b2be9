// `kiln tokenize MODEL|TOKENIZER TEXT` and `kiln detokenize MODEL|TOKENIZER IDS`: text to token ids
// and back with any tokenizer kiln reads (a GGUF's vocabulary, tokenizer.json, tokenizer.model,
// encoder.json + vocab.bpe, or a directory holding one), the same code the model runners use.
#include <fmt/format.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "commands.h"
#include "core/error.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/load_tokenizer.h"

namespace kiln::cli {
namespace {

struct TokenizeOptions {
  std::string tokenizer;
  std::string text;
  std::string file;  // read the text from here ("-" = stdin) instead
  bool no_bos = false;
  bool no_parse_special = false;
  bool ids_only = false;
  bool count_only = false;
  bool json = false;
  bool stats = false;
};

std::string read_all(const std::string& path) {
  if (path == "-") return std::string(std::istreambuf_iterator<char>(std::cin), {});
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("{}: cannot open", path);
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) fail("{}: read error", path);
  return ss.str();
}

// A token's bytes made printable: control characters and bytes of incomplete UTF-8 escaped, so
// a piece like "\n" or a lone byte token stays on its line.
std::string printable(const std::string& bytes) {
  std::string out;
  for (std::size_t i = 0; i < bytes.size();) {
    const unsigned char c = static_cast<unsigned char>(bytes[i]);
    int len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
    bool ok = len > 0 && i + static_cast<std::size_t>(len) <= bytes.size();
    for (int k = 1; ok && k < len; ++k) ok = (static_cast<unsigned char>(bytes[i + static_cast<std::size_t>(k)]) & 0xC0) == 0x80;
    if (!ok) {
      out += fmt::format("\\x{:02x}", c);
      ++i;
    } else if (c == '\n') {
      out += "\\n", ++i;
    } else if (c == '\t') {
      out += "\\t", ++i;
    } else if (c == '\r') {
      out += "\\r", ++i;
    } else if (c == '\\') {
      out += "\\\\", ++i;
    } else if (c < 0x20 || c == 0x7f) {
      out += fmt::format("\\x{:02x}", c);
      ++i;
    } else {
      out.append(bytes, i, static_cast<std::size_t>(len));
      i += static_cast<std::size_t>(len);
    }
  }
  return out;
}

// What a token shows as in the listing: its bytes, or for control tokens (which decode to
// nothing) their written form such as <s> or <|eot_id|>.
std::string shown_piece(const Tokenizer& tok, std::int32_t id) {
  std::string piece = tok.token_to_piece(id);
  if (piece.empty() && tok.vocab().contains(id)) return tok.vocab().tokens[static_cast<std::size_t>(id)];
  return printable(piece);
}

void run_tokenize(const TokenizeOptions& o) {
  const std::string text = o.file.empty() ? o.text : read_all(o.file);
  std::unique_ptr<Tokenizer> tok = load_tokenizer_file(o.tokenizer);
  const auto t0 = std::chrono::steady_clock::now();
  const std::vector<std::int32_t> ids = tok->encode(text, tok->vocab().add_bos && !o.no_bos, !o.no_parse_special);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  if (o.count_only) {
    std::printf("%zu\n", ids.size());
  } else if (o.json) {
    nlohmann::json j = {{"tokens", ids}};
    nlohmann::json pieces = nlohmann::json::array();
    for (std::int32_t id : ids) pieces.push_back(shown_piece(*tok, id));
    j["pieces"] = pieces;
    j["n_tokens"] = ids.size();
    j["n_bytes"] = text.size();
    std::printf("%s\n", j.dump().c_str());
  } else if (o.ids_only) {
    std::string line;
    for (std::size_t i = 0; i < ids.size(); ++i) line += (i ? "," : "") + std::to_string(ids[i]);
    std::printf("%s\n", line.c_str());
  } else {
    for (std::int32_t id : ids) std::printf("%6d  '%s'\n", id, shown_piece(*tok, id).c_str());
  }
  if (o.stats)
    std::fprintf(stderr, "%zu bytes -> %zu tokens (%.2f bytes/token) in %.3f s, %.2f MB/s\n", text.size(), ids.size(),
                 ids.empty() ? 0.0 : static_cast<double>(text.size()) / static_cast<double>(ids.size()), seconds,
                 seconds > 0 ? static_cast<double>(text.size()) / seconds / 1e6 : 0.0);
}

struct DetokenizeOptions {
  std::string tokenizer;
  std::vector<std::string> ids;  // "1,2,3" or "1 2 3" pieces; empty: read stdin
};

std::vector<std::int32_t> parse_ids(const std::string& text) {
  std::vector<std::int32_t> ids;
  std::string cur;
  auto flush = [&] {
    if (cur.empty()) return;
    std::size_t used = 0;
    long long v = 0;
    try {
      v = std::stoll(cur, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != cur.size() || v < 0 || v > INT32_MAX) fail("detokenize: '{}' is not a token id", cur);
    ids.push_back(static_cast<std::int32_t>(v));
    cur.clear();
  };
  for (char c : text) {
    if (c == ',' || c == ' ' || c == '\n' || c == '\t' || c == '\r' || c == '[' || c == ']') flush();
    else cur += c;
  }
  flush();
  return ids;
}

void run_detokenize(const DetokenizeOptions& o) {
  std::string all;
  if (o.ids.empty()) all = read_all("-");
  for (const std::string& s : o.ids) all += s + " ";
  const std::vector<std::int32_t> ids = parse_ids(all);
  std::unique_ptr<Tokenizer> tok = load_tokenizer_file(o.tokenizer);
  for (std::int32_t id : ids)
    if (id >= tok->n_vocab()) fail("detokenize: token id {} is outside the vocabulary (0..{})", id, tok->n_vocab() - 1);
  const std::string text = tok->decode(ids);
  std::fwrite(text.data(), 1, text.size(), stdout);
  std::fputc('\n', stdout);
}

}  // namespace

void register_tokenize_commands(CLI::App& app) {
  auto t = std::make_shared<TokenizeOptions>();
  CLI::App* cmd = app.add_subcommand("tokenize", "Turn text into token ids (and pieces) with a model's tokenizer");
  cmd->add_option("tokenizer", t->tokenizer,
                  "A GGUF model, tokenizer.json, tokenizer.model, encoder.json (vocab.bpe beside it) or a directory")
      ->required();
  cmd->add_option("text", t->text, "Text to tokenize (or use --file)");
  cmd->add_option("-f,--file", t->file, "Read the text from this file ('-' for stdin)");
  cmd->add_flag("--no-bos", t->no_bos, "Do not prepend BOS even where the vocabulary asks for it");
  cmd->add_flag("--no-parse-special", t->no_parse_special,
                "Treat the text of special tokens (<s>, <|eot_id|>, ...) as plain text");
  cmd->add_flag("--ids", t->ids_only, "Print only the ids, comma-separated");
  cmd->add_flag("--count", t->count_only, "Print only the number of tokens");
  cmd->add_flag("--json", t->json, "Print {tokens, pieces, n_tokens, n_bytes} as JSON");
  cmd->add_flag("--stats", t->stats, "Print bytes, tokens and encoding speed to stderr");
  cmd->callback([t] {
    if (t->text.empty() && t->file.empty()) fail("tokenize: give the text to tokenize, or --file FILE");
    if (!t->text.empty() && !t->file.empty()) fail("tokenize: give the text or --file, not both");
    run_tokenize(*t);
  });

  auto d = std::make_shared<DetokenizeOptions>();
  CLI::App* dc = app.add_subcommand("detokenize", "Turn token ids back into text");
  dc->add_option("tokenizer", d->tokenizer, "A GGUF model or tokenizer file, as for tokenize")->required();
  dc->add_option("ids", d->ids, "Token ids: '1,2,3' or '1 2 3' (read from stdin when absent)");
  dc->callback([d] { run_detokenize(*d); });
}

}  // namespace kiln::cli
