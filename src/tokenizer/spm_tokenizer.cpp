#include "tokenizer/spm_tokenizer.h"

#include <algorithm>
#include <unordered_map>
#include <utility>

#include "core/error.h"
#include "tokenizer/special_tokens.h"
#include "tokenizer/utf8.h"

namespace kiln {
namespace {

constexpr std::string_view kSpaceSymbol = "\xE2\x96\x81";       // U+2581, stands for ' ' in pieces
constexpr std::string_view kUnknownSurface = " \xE2\x81\x87 ";  // " ⁇ ", sentencepiece's default

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return c - 'a' + 10;
}

// Appends `piece` with every U+2581 turned back into a space.
void append_with_spaces(std::string_view piece, std::string& out) {
  for (std::size_t at; (at = piece.find(kSpaceSymbol)) != std::string_view::npos;) {
    out.append(piece.substr(0, at));
    out.push_back(' ');
    piece.remove_prefix(at + kSpaceSymbol.size());
  }
  out.append(piece);
}

// True if `piece` has a "▁" right after a character other than "▁".
bool has_space_after_other_char(std::string_view piece) {
  for (std::size_t at = piece.find(kSpaceSymbol, 1); at != std::string_view::npos;
       at = piece.find(kSpaceSymbol, at + kSpaceSymbol.size())) {
    if (at < kSpaceSymbol.size() || piece.substr(at - kSpaceSymbol.size(), kSpaceSymbol.size()) != kSpaceSymbol) {
      return true;
    }
  }
  return false;
}

// A symbol of the text being merged: a byte range of the normalized text in a linked list.
struct Symbol {
  std::int32_t prev;    // index of the previous live symbol, -1 at the start
  std::int32_t next;    // index of the next live symbol, -1 at the end
  std::uint32_t begin;  // byte offset in the normalized text
  std::uint32_t size;   // byte length; 0 once merged into its left neighbour
  bool frozen;          // user-defined pieces never merge
};

// A candidate merge of two adjacent symbols. Entries go stale when either side changes; they
// are recognised by the size no longer adding up and skipped when popped.
struct Candidate {
  float score;
  std::int32_t left;
  std::int32_t right;
  std::uint32_t size;
};

// Max-heap order of sentencepiece's agenda: higher score first, then the leftmost pair.
struct CandidateLess {
  bool operator()(const Candidate& a, const Candidate& b) const {
    return a.score < b.score || (a.score == b.score && a.left > b.left);
  }
};

}  // namespace

SpmTokenizer::SpmTokenizer(Vocab vocab)
    : Tokenizer(std::move(vocab)), specials_(vocab_, {TokenType::Control, TokenType::Unknown}) {
  const auto n = static_cast<std::size_t>(vocab_.size());
  mergeable_.assign(n, 0);
  byte_values_.assign(n, -1);
  byte_ids_.fill(-1);
  for (std::int32_t id = 0; id < vocab_.size(); ++id) {
    const std::string& piece = vocab_.tokens[static_cast<std::size_t>(id)];
    switch (vocab_.type(id)) {
      case TokenType::Normal:
      case TokenType::Undefined:
        mergeable_[static_cast<std::size_t>(id)] = 1;
        break;
      case TokenType::Unused:
        mergeable_[static_cast<std::size_t>(id)] = 1;
        has_unused_ = true;
        break;
      case TokenType::UserDefined:
        mergeable_[static_cast<std::size_t>(id)] = 1;
        has_user_defined_ = true;
        user_defined_by_first_byte_[static_cast<unsigned char>(piece[0])].push_back(id);
        break;
      case TokenType::Byte: {
        const int value = hex_value(piece[3]) * 16 + hex_value(piece[4]);
        byte_values_[static_cast<std::size_t>(id)] = static_cast<std::int16_t>(value);
        byte_ids_[static_cast<std::size_t>(value)] = id;
        byte_fallback_ = true;
        break;
      }
      case TokenType::Unknown:
      case TokenType::Control:
        break;
    }
  }
  for (auto& ids : user_defined_by_first_byte_) {
    std::stable_sort(ids.begin(), ids.end(), [&](std::int32_t a, std::int32_t b) {
      return vocab_.tokens[static_cast<std::size_t>(a)].size() > vocab_.tokens[static_cast<std::size_t>(b)].size();
    });
  }
  split_before_spaces_ = !has_unused_;
  for (std::int32_t id = 0; id < vocab_.size() && split_before_spaces_; ++id) {
    if (mergeable_[static_cast<std::size_t>(id)] &&
        has_space_after_other_char(vocab_.tokens[static_cast<std::size_t>(id)])) {
      split_before_spaces_ = false;
    }
  }
  KILN_CHECK(byte_fallback_ || vocab_.unk_id >= 0,
             "tokenizer.ggml.unknown_token_id: a SentencePiece vocabulary without byte tokens needs an unknown token");
}

std::vector<std::int32_t> SpmTokenizer::encode(std::string_view text, bool add_bos, bool parse_special) const {
  std::vector<std::int32_t> ids;
  ids.reserve(text.size() / 3 + 2);
  if (add_bos && vocab_.bos_id >= 0) ids.push_back(vocab_.bos_id);
  if (!parse_special) {
    encode_text(text, vocab_.add_space_prefix, ids);
    return ids;
  }
  // As llama.cpp: text after a special token (or at the start) gets the dummy prefix again.
  bool after_special = true;
  for (const TextFragment& f : specials_.split(text)) {
    if (f.token >= 0) {
      ids.push_back(f.token);
      after_special = true;
    } else {
      encode_text(f.text, vocab_.add_space_prefix && after_special, ids);
      after_special = false;
    }
  }
  return ids;
}

void SpmTokenizer::normalize(std::string_view text, bool add_space_prefix, std::string& normalized) const {
  normalized.clear();
  if (text.empty()) return;
  if (add_space_prefix) normalized.append(kSpaceSymbol);
  while (!text.empty()) {
    const utf8::Prefix p = utf8::scan_prefix(text);
    if (p.kind != utf8::PrefixKind::Complete) {
      normalized.append(utf8::kReplacementCharacter);
      text.remove_prefix(1);
    } else if (text[0] == ' ') {
      normalized.append(kSpaceSymbol);
      text.remove_prefix(1);
    } else {
      normalized.append(text.substr(0, p.length));
      text.remove_prefix(p.length);
    }
  }
}

std::size_t SpmTokenizer::match_user_defined(std::string_view s) const {
  for (std::int32_t id : user_defined_by_first_byte_[static_cast<unsigned char>(s[0])]) {
    const std::string& piece = vocab_.tokens[static_cast<std::size_t>(id)];
    if (s.starts_with(piece)) return piece.size();
  }
  return 0;
}

void SpmTokenizer::encode_text(std::string_view text, bool add_space_prefix, std::vector<std::int32_t>& out,
                               MergeWork* work) const {
  MergeWork counted;
  // Reused across calls on the same thread: encoding many short lines would otherwise spend
  // much of its time in malloc.
  thread_local std::string normalized;
  normalize(text, add_space_prefix, normalized);
  // Symbols hold 32-bit offsets and indices.
  KILN_CHECK(normalized.size() < (std::size_t{1} << 31), "text of {} bytes is too long to encode at once (limit 2 GiB)",
             text.size());
  const std::string_view norm = normalized;
  bool prev_unknown = false;
  if (!split_before_spaces_) {
    merge_segment(norm, prev_unknown, out, counted);
  } else {
    // Cut before every "▁" that follows another character: no piece spans such a point, so
    // the parts merge independently, and small agendas stay in cache on long texts.
    std::size_t begin = 0;
    for (std::size_t at = norm.find(kSpaceSymbol, 1); at != std::string_view::npos;
         at = norm.find(kSpaceSymbol, at + kSpaceSymbol.size())) {
      // UTF-8 synchronizes: three bytes E2 96 81 right before `at` can only be one "▁".
      if (at >= kSpaceSymbol.size() && norm.substr(at - kSpaceSymbol.size(), kSpaceSymbol.size()) == kSpaceSymbol) {
        continue;
      }
      merge_segment(norm.substr(begin, at - begin), prev_unknown, out, counted);
      begin = at;
    }
    merge_segment(norm.substr(begin), prev_unknown, out, counted);
  }
  if (work != nullptr) *work += counted;
  constexpr std::size_t kKeepScratchBytes = std::size_t{1} << 20;
  if (normalized.capacity() > kKeepScratchBytes) normalized = std::string();
}

void SpmTokenizer::merge_segment(std::string_view norm, bool& prev_unknown, std::vector<std::int32_t>& out,
                                 MergeWork& work) const {
  if (norm.empty()) return;
  thread_local std::vector<Symbol> symbols;  // (n_chars) in text order, linked past merged entries
  thread_local std::vector<Candidate> agenda;
  symbols.clear();
  for (std::size_t at = 0; at < norm.size();) {
    std::size_t len = has_user_defined_ ? match_user_defined(norm.substr(at)) : 0;
    const bool frozen = len > 0;
    if (!frozen) len = utf8::char_length_from_lead(static_cast<unsigned char>(norm[at]), norm.size() - at);
    const auto index = static_cast<std::int32_t>(symbols.size());
    symbols.push_back({index - 1, -1, static_cast<std::uint32_t>(at), static_cast<std::uint32_t>(len), frozen});
    if (index > 0) symbols[static_cast<std::size_t>(index - 1)].next = index;
    at += len;
  }

  // Pieces that unused tokens were merged from, so they can be split again (sentencepiece never
  // emits unused ids). Keyed by the merged text; only filled for vocabularies with unused pieces.
  std::unordered_map<std::string_view, std::pair<std::string_view, std::string_view>> unmerge;

  agenda.clear();
  auto piece_of = [&](const Symbol& s) { return norm.substr(s.begin, s.size); };
  auto consider_pair = [&](std::int32_t left, std::int32_t right) {
    if (left < 0 || right < 0) return;
    const Symbol& l = symbols[static_cast<std::size_t>(left)];
    const Symbol& r = symbols[static_cast<std::size_t>(right)];
    if (l.frozen || r.frozen) return;
    ++work.pairs_considered;
    const std::string_view merged = norm.substr(l.begin, l.size + r.size);
    const std::int32_t id = vocab_.find(merged);
    if (id < 0 || !mergeable_[static_cast<std::size_t>(id)]) return;
    agenda.push_back({vocab_.scores[static_cast<std::size_t>(id)], left, right, l.size + r.size});
    std::push_heap(agenda.begin(), agenda.end(), CandidateLess{});
    if (vocab_.type(id) == TokenType::Unused) unmerge[merged] = {piece_of(l), piece_of(r)};
  };

  for (std::size_t i = 1; i < symbols.size(); ++i) {
    consider_pair(static_cast<std::int32_t>(i - 1), static_cast<std::int32_t>(i));
  }
  while (!agenda.empty()) {
    std::pop_heap(agenda.begin(), agenda.end(), CandidateLess{});
    const Candidate top = agenda.back();
    agenda.pop_back();
    ++work.candidates_taken;
    Symbol& left = symbols[static_cast<std::size_t>(top.left)];
    Symbol& right = symbols[static_cast<std::size_t>(top.right)];
    if (left.size == 0 || right.size == 0 || left.size + right.size != top.size) continue;
    ++work.merges;
    left.size += right.size;
    left.next = right.next;
    if (right.next >= 0) symbols[static_cast<std::size_t>(right.next)].prev = top.left;
    right.size = 0;
    consider_pair(left.prev, top.left);
    consider_pair(top.left, left.next);
  }

  // Splits a piece that is an unused token back into the pieces it was merged from.
  auto resegment = [&](auto&& self, std::string_view piece) -> void {
    if (has_unused_) {
      const std::int32_t id = vocab_.find(piece);
      if (id >= 0 && vocab_.type(id) == TokenType::Unused) {
        if (const auto it = unmerge.find(piece); it != unmerge.end()) {
          self(self, it->second.first);
          self(self, it->second.second);
          return;
        }
      }
    }
    emit_piece(piece, prev_unknown, out);
  };
  for (std::int32_t i = 0; i >= 0; i = symbols[static_cast<std::size_t>(i)].next) {
    resegment(resegment, piece_of(symbols[static_cast<std::size_t>(i)]));
  }

  // One huge input should not pin its scratch memory to the thread for good.
  constexpr std::size_t kKeepScratchSymbols = std::size_t{1} << 16;
  if (symbols.capacity() > kKeepScratchSymbols) {
    symbols = std::vector<Symbol>();
    agenda = std::vector<Candidate>();
  }
}

void SpmTokenizer::emit_piece(std::string_view piece, bool& prev_unknown, std::vector<std::int32_t>& out) const {
  std::int32_t id = vocab_.find(piece);
  if (id < 0) id = vocab_.unk_id;
  const bool unknown = id < 0 || vocab_.type(id) == TokenType::Unknown;
  if (unknown && byte_fallback_) {
    for (char c : piece) {
      const std::int32_t byte_id = byte_ids_[static_cast<unsigned char>(c)];
      out.push_back(byte_id >= 0 ? byte_id : vocab_.unk_id);
    }
  } else if (!(unknown && prev_unknown)) {
    // Without byte fallback, sentencepiece folds a run of unknown characters into one token.
    out.push_back(id);
  }
  prev_unknown = unknown;
}

void SpmTokenizer::decode_token(std::int32_t id, DecodeState& state, std::string& out) const {
  check_id(id);
  const std::size_t out_begin = out.size();
  const TokenType type = vocab_.type(id);
  if (type == TokenType::Byte) {
    state.pending_bytes.push_back(static_cast<char>(byte_values_[static_cast<std::size_t>(id)]));
    utf8::drain_complete(state.pending_bytes, out, /*flush=*/false);
    if (out.size() > out_begin) state.text_empty = false;
    return;
  }
  // Any other token ends a run of byte tokens: a character still incomplete is invalid.
  utf8::drain_complete(state.pending_bytes, out, /*flush=*/true);
  if (out.size() > out_begin) state.text_empty = false;

  // Sentencepiece drops the "▁" of the first token that starts with one, as long as nothing
  // visible came before; control tokens are invisible and do not count.
  if (state.leading_space_taken || !state.text_empty) state.expect_leading_space = false;
  state.leading_space_taken = false;
  if (type == TokenType::Control) return;
  if (type == TokenType::Unknown) {
    out.append(kUnknownSurface);
    state.text_empty = false;
    return;
  }
  std::string_view piece = vocab_.tokens[static_cast<std::size_t>(id)];
  if (state.expect_leading_space && vocab_.add_space_prefix && piece.starts_with(kSpaceSymbol)) {
    piece.remove_prefix(kSpaceSymbol.size());
    state.leading_space_taken = true;
  }
  const std::size_t piece_begin = out.size();
  append_with_spaces(piece, out);
  if (out.size() > piece_begin) state.text_empty = false;
}

void SpmTokenizer::decode_finish(DecodeState& state, std::string& out) const {
  const std::size_t out_begin = out.size();
  utf8::drain_complete(state.pending_bytes, out, /*flush=*/true);
  if (out.size() > out_begin) state.text_empty = false;
}

std::string SpmTokenizer::token_to_piece(std::int32_t id) const {
  check_id(id);
  std::string piece;
  switch (vocab_.type(id)) {
    case TokenType::Byte:
      piece.push_back(static_cast<char>(byte_values_[static_cast<std::size_t>(id)]));
      break;
    case TokenType::Control:
      break;
    case TokenType::Unknown:
      piece.append(kUnknownSurface);
      break;
    default:
      append_with_spaces(vocab_.tokens[static_cast<std::size_t>(id)], piece);
      break;
  }
  return piece;
}

}  // namespace kiln
