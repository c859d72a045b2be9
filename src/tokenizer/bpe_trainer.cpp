#include "tokenizer/bpe_trainer.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <queue>
#include <thread>
#include <unordered_set>

#include "core/error.h"
#include "format/gguf_writer.h"
#include "tokenizer/byte_unicode.h"
#include "tokenizer/pretokenizer.h"
#include "tokenizer/vocab_gguf.h"

namespace kiln {
namespace {

using PairKey = std::uint64_t;  // left << 32 | right

PairKey pair_key(std::int32_t left, std::int32_t right) {
  return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(left)) << 32) | static_cast<std::uint32_t>(right);
}
std::int32_t pair_left(PairKey k) { return static_cast<std::int32_t>(k >> 32); }
std::int32_t pair_right(PairKey k) { return static_cast<std::int32_t>(k & 0xFFFFFFFFu); }

void count_words(const Pretokenizer& pre, std::string_view text, std::unordered_map<std::string, std::uint64_t>& out) {
  std::vector<std::string_view> pieces;
  pre.split(text, pieces);
  for (std::string_view p : pieces) ++out[std::string(p)];
}

// Where a block may be cut so that no word spans the cut: after a line break that is followed
// by a character that is neither white space nor a line break (every family's expressions end
// a word there). Returns 0 when the block has no such place.
std::size_t safe_cut(std::string_view block) {
  for (std::size_t i = block.size(); i-- > 1;) {
    const char c = block[i];
    const char prev = block[i - 1];
    if ((prev == '\n' || prev == '\r') && c != ' ' && c != '\t' && c != '\n' && c != '\r' && c != '\v' && c != '\f' &&
        static_cast<unsigned char>(c) < 0x80) {
      return i;
    }
  }
  return 0;
}

}  // namespace

std::string bpe_pretokenizer_name(std::string_view pattern) {
  // cl100k (GPT-4) is the expression Llama 3 adopted; llama.cpp names it "dbrx" without
  // Llama 3's ignore_merges. o200k (GPT-4o) is "gpt-4o".
  if (pattern == "llama3") return "llama-bpe";
  if (pattern == "gpt4" || pattern == "cl100k") return "dbrx";
  if (pattern == "gpt4o" || pattern == "o200k") return "gpt-4o";
  if (pattern == "gpt2") return "gpt-2";
  KILN_CHECK(find_pretokenizer_spec(pattern).has_value() && !pattern.empty() && pattern != "default",
             "unknown pre-tokenizer pattern \"{}\" (expected llama3, gpt4, gpt4o, gpt2 or one of: {})", pattern,
             kKnownPretokenizers);
  return std::string(pattern);
}

BpeWordCounts::BpeWordCounts(const std::string& pre) : pre_(pre) {
  const std::optional<PretokenizerSpec> spec = find_pretokenizer_spec(pre);
  KILN_CHECK(spec.has_value(), "unknown pre-tokenizer \"{}\" (kiln knows {})", pre, kKnownPretokenizers);
  patterns_ = spec->patterns;
}

void BpeWordCounts::add_text(std::string_view text) {
  const Pretokenizer pre(patterns_);
  count_words(pre, text, counts_);
  n_bytes_ += text.size();
}

void BpeWordCounts::add_file(const std::string& path, int threads) {
  std::ifstream in(path, std::ios::binary);
  KILN_CHECK(in.good(), "{}: cannot open for reading: {}", path, std::strerror(errno));
  threads = std::max(1, threads);
  std::vector<Pretokenizer> pres;
  for (int t = 0; t < threads; ++t) pres.emplace_back(patterns_);
  constexpr std::size_t kBlock = std::size_t{32} << 20;
  std::string block;  // carried-over tail + what was read
  std::vector<char> buf(kBlock);
  bool eof = false;
  while (!eof) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    const auto got = static_cast<std::size_t>(in.gcount());
    KILN_CHECK(!in.bad(), "{}: read error: {}", path, std::strerror(errno));
    eof = got < buf.size();
    block.append(buf.data(), got);
    // Cut after the last safe place; the rest waits for the next block (or is the end).
    std::size_t cut = eof ? block.size() : safe_cut(block);
    if (cut == 0) continue;  // one huge line: read on until it ends
    const std::string_view todo(block.data(), cut);
    // Split the block into `threads` parts at safe places; each thread counts its own part.
    std::vector<std::string_view> parts;
    std::string_view rest = todo;
    for (int t = threads; t > 1 && !rest.empty(); --t) {
      const std::size_t at = safe_cut(rest.substr(0, rest.size() / static_cast<std::size_t>(t)));
      if (at == 0) break;
      parts.push_back(rest.substr(0, at));
      rest.remove_prefix(at);
    }
    parts.push_back(rest);
    std::vector<std::unordered_map<std::string, std::uint64_t>> maps(parts.size());
    std::vector<std::thread> workers;
    std::vector<std::exception_ptr> errors(parts.size());
    for (std::size_t i = 1; i < parts.size(); ++i) {
      workers.emplace_back([&, i] {
        try {
          count_words(pres[i], parts[i], maps[i]);
        } catch (...) {
          errors[i] = std::current_exception();
        }
      });
    }
    try {
      count_words(pres[0], parts[0], maps[0]);
    } catch (...) {
      errors[0] = std::current_exception();
    }
    for (std::thread& w : workers) w.join();
    for (const std::exception_ptr& e : errors) {
      if (e) std::rethrow_exception(e);
    }
    for (auto& m : maps) {
      for (auto& [word, n] : m) counts_[word] += n;
    }
    n_bytes_ += cut;
    block.erase(0, cut);
  }
}

BpeTrainResult train_bpe(const BpeWordCounts& counts, const BpeTrainOptions& options) {
  const auto n_special = static_cast<std::int32_t>(options.special_tokens.size());
  KILN_CHECK(options.vocab_size >= 256 + n_special,
             "vocabulary size {} leaves no room for the 256 byte tokens and {} special tokens", options.vocab_size,
             n_special);
  const std::size_t wanted = static_cast<std::size_t>(options.vocab_size - 256 - n_special);
  const std::uint64_t min_frequency = std::max<std::uint64_t>(1, options.min_frequency);

  // The words, sorted by their bytes so that everything below is independent of hash order.
  std::vector<std::pair<std::string, std::uint64_t>> sorted(counts.counts().begin(), counts.counts().end());
  std::sort(sorted.begin(), sorted.end());
  std::vector<std::vector<std::int32_t>> words(sorted.size());
  std::vector<std::uint64_t> freq(sorted.size());
  for (std::size_t w = 0; w < sorted.size(); ++w) {
    freq[w] = sorted[w].second;
    for (unsigned char c : sorted[w].first) words[w].push_back(c);
  }

  // Token bytes by id (the learned tokens are appended as they are made).
  std::vector<std::string> token_bytes(256);
  for (int b = 0; b < 256; ++b) token_bytes[static_cast<std::size_t>(b)] = std::string(1, static_cast<char>(b));

  std::unordered_map<PairKey, std::int64_t> pair_count;
  std::unordered_map<PairKey, std::vector<std::uint32_t>> pair_words;  // may hold stale or repeated words
  auto add_pairs = [&](std::uint32_t w, std::int64_t sign, std::vector<PairKey>* touched) {
    const std::vector<std::int32_t>& s = words[w];
    for (std::size_t i = 0; i + 1 < s.size(); ++i) {
      const PairKey k = pair_key(s[i], s[i + 1]);
      pair_count[k] += sign * static_cast<std::int64_t>(freq[w]);
      if (sign > 0) {
        std::vector<std::uint32_t>& ws = pair_words[k];
        if (ws.empty() || ws.back() != w) ws.push_back(w);
        if (touched) touched->push_back(k);
      }
    }
  };
  for (std::uint32_t w = 0; w < words.size(); ++w) add_pairs(w, +1, nullptr);

  // Max-heap on (count, then the smaller pair key); entries whose count is stale are refreshed
  // when they come to the top.
  struct Entry {
    std::int64_t count;
    PairKey key;
    bool operator<(const Entry& o) const { return count != o.count ? count < o.count : key > o.key; }
  };
  std::priority_queue<Entry> heap;
  for (const auto& [k, c] : pair_count) {
    if (c > 0) heap.push({c, k});
  }

  std::vector<std::pair<std::string, std::string>> merges;
  std::vector<PairKey> touched;
  while (merges.size() < wanted && !heap.empty()) {
    const Entry top = heap.top();
    heap.pop();
    const auto it = pair_count.find(top.key);
    const std::int64_t current = it == pair_count.end() ? 0 : it->second;
    if (current != top.count) {
      if (current > 0) heap.push({current, top.key});
      continue;
    }
    if (static_cast<std::uint64_t>(current) < min_frequency) break;

    const std::int32_t left = pair_left(top.key);
    const std::int32_t right = pair_right(top.key);
    const auto new_id = static_cast<std::int32_t>(token_bytes.size());
    token_bytes.push_back(token_bytes[static_cast<std::size_t>(left)] + token_bytes[static_cast<std::size_t>(right)]);
    std::string left_text, right_text;
    byte_unicode::encode(token_bytes[static_cast<std::size_t>(left)], left_text);
    byte_unicode::encode(token_bytes[static_cast<std::size_t>(right)], right_text);
    merges.emplace_back(std::move(left_text), std::move(right_text));

    // Only the words that hold the pair change: take their pairs out, merge, put them back.
    std::vector<std::uint32_t> holders = std::move(pair_words[top.key]);
    pair_words.erase(top.key);
    touched.clear();
    for (const std::uint32_t w : holders) {
      std::vector<std::int32_t>& s = words[w];
      bool has = false;
      for (std::size_t i = 0; i + 1 < s.size() && !has; ++i) has = s[i] == left && s[i + 1] == right;
      if (!has) continue;  // stale: an earlier merge already took the pair out of this word
      add_pairs(w, -1, nullptr);
      std::size_t out = 0;
      for (std::size_t i = 0; i < s.size(); ++out) {
        if (i + 1 < s.size() && s[i] == left && s[i + 1] == right) {
          s[out] = new_id;
          i += 2;
        } else {
          s[out] = s[i];
          i += 1;
        }
      }
      s.resize(out);
      add_pairs(w, +1, &touched);
    }
    pair_count.erase(top.key);
    // Only pairs with the new token can have grown; the others' heap entries refresh lazily.
    std::sort(touched.begin(), touched.end());
    touched.erase(std::unique(touched.begin(), touched.end()), touched.end());
    for (const PairKey k : touched) {
      if (pair_left(k) == new_id || pair_right(k) == new_id) heap.push({pair_count[k], k});
    }
    if (options.progress && (merges.size() % 256 == 0 || merges.size() == wanted)) {
      options.progress(merges.size(), wanted);
    }
  }

  BpeTrainResult result;
  Vocab& vocab = result.vocab;
  vocab.model = "gpt2";
  vocab.pre = counts.pre();
  const std::optional<PretokenizerSpec> spec = find_pretokenizer_spec(vocab.pre);
  vocab.ignore_merges = spec && spec->ignore_merges;
  vocab.add_space_prefix = false;
  vocab.tokens.reserve(token_bytes.size() + options.special_tokens.size());
  for (const std::string& bytes : token_bytes) {
    std::string text;
    byte_unicode::encode(bytes, text);
    vocab.tokens.push_back(std::move(text));
  }
  vocab.types.assign(vocab.tokens.size(), TokenType::Normal);
  std::unordered_set<std::string> seen(vocab.tokens.begin(), vocab.tokens.end());
  for (const std::string& special : options.special_tokens) {
    KILN_CHECK(!special.empty(), "a special token is empty");
    KILN_CHECK(seen.insert(special).second, "special token \"{}\" is given twice or is also a learned token", special);
    vocab.tokens.push_back(special);
    vocab.types.push_back(TokenType::Control);
  }
  const auto first_special = static_cast<std::int32_t>(token_bytes.size());
  if (n_special >= 1) vocab.bos_id = first_special;
  if (n_special >= 2) vocab.eos_id = first_special + 1;
  vocab.add_bos = vocab.bos_id >= 0 && spec && spec->add_bos;
  vocab.merges = std::move(merges);
  vocab.finalize("trained vocabulary");  // builds the index find() uses
  vocab.eot_id = vocab.find("<|eot_id|>");
  vocab.eom_id = vocab.find("<|eom_id|>");
  if (vocab.eot_id >= 0 && vocab.type(vocab.eot_id) != TokenType::Control) vocab.eot_id = -1;
  if (vocab.eom_id >= 0 && vocab.type(vocab.eom_id) != TokenType::Control) vocab.eom_id = -1;

  result.words.reserve(sorted.size());
  for (std::size_t w = 0; w < sorted.size(); ++w)
    result.words.emplace_back(std::move(sorted[w].first), std::move(words[w]));
  return result;
}

void write_tokenizer_gguf(const Vocab& vocab, const std::string& path) {
  GgufWriter w;
  w.add_metadata("general.type", gguf_value::string("tokenizer"));
  add_vocab_metadata(w, vocab);
  w.write(path);
}

}  // namespace kiln
