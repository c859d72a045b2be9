#include "tokenizer/bpe_tokenizer.h"

#include <algorithm>
#include <bit>
#include <climits>
#include <utility>

#include "core/error.h"
#include "tokenizer/byte_unicode.h"
#include "tokenizer/utf8.h"

namespace kiln {
namespace {

// Words up to this many bytes take the rescanning merge: for them a scan over a few pairs costs
// less than keeping a heap (most English words are well below it).
constexpr std::size_t kRescanMaxBytes = 24;
// Words from this many bytes on take the rank buckets, whose fixed cost is a walk over all ranks.
constexpr std::size_t kBucketsMinBytes = 4096;

// A symbol of the word being merged: a token in a linked list over the word's bytes.
struct Symbol {
  std::int32_t id;    // current token; -1 once merged into its left neighbour
  std::int32_t prev;  // index of the previous live symbol, -1 at the start
  std::int32_t next;  // index of the next live symbol, -1 at the end
};

// A candidate merge of two adjacent symbols. It goes stale when either side changes, which
// the ids show: a symbol's id only ever grows into a longer token, so equal ids mean unchanged.
struct Candidate {
  std::int32_t rank;
  std::int32_t left;
  std::int32_t right;
  std::int32_t left_id;
  std::int32_t right_id;
  std::int32_t result;
};

// Min-heap order (std::push_heap builds a max-heap, hence the reversed comparisons): lowest
// rank first, then the leftmost pair, as llama.cpp and Hugging Face order their queues.
struct CandidateAfter {
  bool operator()(const Candidate& a, const Candidate& b) const {
    return a.rank > b.rank || (a.rank == b.rank && a.left > b.left);
  }
};

PretokenizerSpec spec_for(const Vocab& vocab) {
  if (!vocab.pre_patterns.empty()) return PretokenizerSpec{vocab.pre_patterns, vocab.ignore_merges, vocab.add_bos};
  std::optional<PretokenizerSpec> spec = find_pretokenizer_spec(vocab.pre);
  KILN_CHECK(spec.has_value(), "{}: tokenizer.ggml.pre = \"{}\" is not a pre-tokenizer kiln knows ({})", vocab.source,
             vocab.pre, kKnownPretokenizers);
  return *spec;
}

}  // namespace

BpeTokenizer::BpeTokenizer(Vocab vocab)
    : Tokenizer(std::move(vocab)),
      pretokenizer_(spec_for(vocab_).patterns),
      ignore_merges_(spec_for(vocab_).ignore_merges),
      always_split_(vocab_, {TokenType::UserDefined}),
      special_split_(vocab_, {TokenType::UserDefined, TokenType::Control, TokenType::Unknown}) {
  const auto n = static_cast<std::size_t>(vocab_.size());
  token_bytes_.resize(n);
  std::vector<std::string> word_pieces(n);  // id -> bytes for the normal tokens, "" otherwise
  for (std::int32_t id = 0; id < vocab_.size(); ++id) {
    const std::string& text = vocab_.tokens[static_cast<std::size_t>(id)];
    std::string& bytes = token_bytes_[static_cast<std::size_t>(id)];
    switch (vocab_.type(id)) {
      case TokenType::Control:
        break;  // invisible in decoded text, as in llama.cpp without unparse_special
      case TokenType::UserDefined:
      case TokenType::Unknown:
        bytes = text;  // added tokens are stored as plain text, not byte-mapped
        break;
      case TokenType::Byte:
        bytes.push_back(static_cast<char>(std::stoi(text.substr(3, 2), nullptr, 16)));
        break;
      case TokenType::Normal:
      case TokenType::Undefined:
      case TokenType::Unused:
        // A text outside the byte mapping is not a byte-level token; keep it as written.
        if (!byte_unicode::decode(text, bytes)) bytes = text;
        if (vocab_.type(id) != TokenType::Unused) word_pieces[static_cast<std::size_t>(id)] = bytes;
        break;
    }
    if (vocab_.type(id) == TokenType::UserDefined) has_user_defined_ = true;
  }
  // A vocabulary may hold two tokens for the same bytes (a raw and a mapped spelling); the first wins.
  word_index_.build(word_pieces);

  build_merges();
  for (int b = 0; b < 256; ++b) {
    byte_token_[static_cast<std::size_t>(b)] = vocab_.find(byte_unicode::byte_to_utf8(static_cast<std::uint8_t>(b)));
    KILN_CHECK(byte_token_[static_cast<std::size_t>(b)] >= 0 || vocab_.unk_id >= 0,
               "{}: byte-level vocabulary has no token for byte 0x{:02X} (\"{}\") and no unknown token", vocab_.source,
               b, byte_unicode::byte_to_utf8(static_cast<std::uint8_t>(b)));
  }
}

void BpeTokenizer::build_merges() {
  const std::size_t n = vocab_.merges.size();
  KILN_CHECK(n < (std::size_t{1} << 31), "{}: tokenizer.ggml.merges has too many entries ({})", vocab_.source, n);
  const std::size_t capacity = std::bit_ceil(std::max<std::size_t>(16, n * 2));
  merge_slots_.assign(capacity, MergeSlot{kEmptyKey, 0, 0});
  merge_mask_ = capacity - 1;
  merge_shift_ = 64 - std::countr_zero(capacity);
  std::string merged;
  for (std::size_t rank = 0; rank < n; ++rank) {
    const auto& [left_text, right_text] = vocab_.merges[rank];
    const std::int32_t left = vocab_.find(left_text);
    const std::int32_t right = vocab_.find(right_text);
    KILN_CHECK(left >= 0, "{}: tokenizer.ggml.merges[{}] = \"{} {}\" names \"{}\", which is not a token", vocab_.source,
               rank, left_text, right_text, left_text);
    KILN_CHECK(right >= 0, "{}: tokenizer.ggml.merges[{}] = \"{} {}\" names \"{}\", which is not a token",
               vocab_.source, rank, left_text, right_text, right_text);
    merged = left_text;
    merged += right_text;
    const std::int32_t result = vocab_.find(merged);
    KILN_CHECK(result >= 0, "{}: tokenizer.ggml.merges[{}] = \"{} {}\" merges into \"{}\", which is not a token",
               vocab_.source, rank, left_text, right_text, merged);
    const std::uint64_t key = (static_cast<std::uint64_t>(static_cast<std::uint32_t>(left)) << 32) |
                              static_cast<std::uint32_t>(right);
    std::size_t i = (key * 0x9E3779B97F4A7C15ull) >> merge_shift_;
    while (merge_slots_[i].key != kEmptyKey && merge_slots_[i].key != key) i = (i + 1) & merge_mask_;
    // A repeated rule keeps its first (lowest) rank, as a rank map built in list order does.
    if (merge_slots_[i].key == key) continue;
    merge_slots_[i] = {key, static_cast<std::int32_t>(rank), result};
    ++n_merges_;
  }
}

std::vector<std::int32_t> BpeTokenizer::encode(std::string_view text, bool add_bos, bool parse_special) const {
  std::vector<std::int32_t> ids;
  ids.reserve(text.size() / 4 + 2);
  if (add_bos && vocab_.bos_id >= 0) ids.push_back(vocab_.bos_id);
  if (!parse_special && !has_user_defined_) {
    encode_text(text, ids);
    return ids;
  }
  for (const TextFragment& f : (parse_special ? special_split_ : always_split_).split(text)) {
    if (f.token >= 0) {
      ids.push_back(f.token);
    } else {
      encode_text(f.text, ids);
    }
  }
  return ids;
}

void BpeTokenizer::encode_text(std::string_view text, std::vector<std::int32_t>& out) const {
  // Symbols and candidates hold 32-bit indices.
  KILN_CHECK(text.size() < (std::size_t{1} << 31), "text of {} bytes is too long to encode at once (limit 2 GiB)",
             text.size());
  thread_local std::vector<std::string_view> words;
  thread_local std::string prefixed;
  if (vocab_.add_space_prefix && !text.empty() && text[0] != ' ') {
    // Hugging Face's ByteLevel add_prefix_space (GPT-2's " Hello" for "Hello").
    prefixed.assign(1, ' ');
    prefixed += text;
    text = prefixed;
  }
  pretokenizer_.split(text, words);
  for (std::string_view word : words) encode_word(word, out);
  constexpr std::size_t kKeepScratchWords = std::size_t{1} << 16;
  if (words.capacity() > kKeepScratchWords) words = std::vector<std::string_view>();
}

void BpeTokenizer::encode_word(std::string_view word, std::vector<std::int32_t>& out) const {
  if (ignore_merges_) {
    const std::int32_t id = word_index_.find(word);
    if (id >= 0) {
      out.push_back(id);
      return;
    }
  }
  merge_word(word, out);
}

void BpeTokenizer::merge_word(std::string_view word, std::vector<std::int32_t>& out, MergePath path,
                              MergeWork* work) const {
  if (word.empty()) return;
  if (word.size() == 1) {
    const std::int32_t id = byte_token_[static_cast<unsigned char>(word[0])];
    out.push_back(id >= 0 ? id : vocab_.unk_id);
    return;
  }
  if (path == MergePath::Auto) {
    path = word.size() <= kRescanMaxBytes                      ? MergePath::Rescan
           : word.size() >= kBucketsMinBytes ? MergePath::Buckets
                                             : MergePath::Heap;
  }
  MergeWork counted;
  if (path == MergePath::Rescan) {
    merge_rescan(word, out, counted);
  } else if (path == MergePath::Buckets) {
    merge_buckets(word, out, counted);
  } else {
    merge_heap(word, out, counted);
  }
  if (work != nullptr) *work += counted;
}

void BpeTokenizer::merge_rescan(std::string_view word, std::vector<std::int32_t>& out, MergeWork& work) const {
  thread_local std::vector<std::int32_t> ids;  // (n_symbols) current tokens, in order
  ids.clear();
  for (char c : word) ids.push_back(byte_token_[static_cast<unsigned char>(c)]);
  for (;;) {
    // The lowest-ranked pair, leftmost among equals (a strict < keeps the first).
    std::int32_t best_rank = INT32_MAX, best_result = -1;
    std::size_t best_at = 0;
    for (std::size_t i = 0; i + 1 < ids.size(); ++i) {
      if (ids[i] < 0 || ids[i + 1] < 0) continue;
      ++work.pairs_considered;
      const MergeSlot* m = find_merge(ids[i], ids[i + 1]);
      if (m != nullptr && m->rank < best_rank) {
        best_rank = m->rank;
        best_result = m->result;
        best_at = i;
      }
    }
    if (best_result < 0) break;
    ++work.merges;
    ids[best_at] = best_result;
    ids.erase(ids.begin() + static_cast<std::ptrdiff_t>(best_at) + 1);
  }
  for (std::int32_t id : ids) out.push_back(id >= 0 ? id : vocab_.unk_id);
  constexpr std::size_t kKeepScratch = std::size_t{1} << 16;
  if (ids.capacity() > kKeepScratch) ids = std::vector<std::int32_t>();
}

void BpeTokenizer::merge_heap(std::string_view word, std::vector<std::int32_t>& out, MergeWork& work) const {
  thread_local std::vector<Symbol> symbols;  // (n_bytes) one per byte of the word, linked past merged ones
  thread_local std::vector<Candidate> heap;
  const auto n = static_cast<std::int32_t>(word.size());
  symbols.resize(static_cast<std::size_t>(n));
  for (std::int32_t i = 0; i < n; ++i) {
    symbols[static_cast<std::size_t>(i)] = {byte_token_[static_cast<unsigned char>(word[static_cast<std::size_t>(i)])],
                                            i - 1, i + 1 < n ? i + 1 : -1};
  }
  heap.clear();
  auto consider = [&](std::int32_t left, std::int32_t right) {
    if (left < 0 || right < 0) return;
    const std::int32_t left_id = symbols[static_cast<std::size_t>(left)].id;
    const std::int32_t right_id = symbols[static_cast<std::size_t>(right)].id;
    if (left_id < 0 || right_id < 0) return;
    ++work.pairs_considered;
    const MergeSlot* m = find_merge(left_id, right_id);
    if (m == nullptr) return;
    heap.push_back({m->rank, left, right, left_id, right_id, m->result});
    std::push_heap(heap.begin(), heap.end(), CandidateAfter{});
  };
  for (std::int32_t i = 0; i + 1 < n; ++i) consider(i, i + 1);
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), CandidateAfter{});
    const Candidate top = heap.back();
    heap.pop_back();
    ++work.candidates_taken;
    Symbol& left = symbols[static_cast<std::size_t>(top.left)];
    Symbol& right = symbols[static_cast<std::size_t>(top.right)];
    if (left.id != top.left_id || right.id != top.right_id || left.next != top.right) continue;
    ++work.merges;
    left.id = top.result;
    left.next = right.next;
    if (right.next >= 0) symbols[static_cast<std::size_t>(right.next)].prev = top.left;
    right.id = -1;
    right.next = -1;
    consider(left.prev, top.left);
    consider(top.left, left.next);
  }
  // A symbol whose byte has no token is -1 from the start and never merges: the unknown token.
  for (std::int32_t i = 0; i >= 0; i = symbols[static_cast<std::size_t>(i)].next) {
    const std::int32_t id = symbols[static_cast<std::size_t>(i)].id;
    out.push_back(id >= 0 ? id : vocab_.unk_id);
  }
  constexpr std::size_t kKeepScratch = std::size_t{1} << 16;
  if (symbols.capacity() > kKeepScratch) {
    symbols = std::vector<Symbol>();
    heap = std::vector<Candidate>();
  }
}

void BpeTokenizer::merge_buckets(std::string_view word, std::vector<std::int32_t>& out, MergeWork& work) const {
  // The ranks are walked upwards and each rank's candidates in position order, which is the
  // heap's (rank, position) order as long as merging at rank r only makes pairs of rank > r.
  // Merge lists mostly keep to that but not always (a token made by two rules of different
  // ranks), so a pair of rank <= r goes to a small heap, drained whenever its top comes first.
  // The pairs of the word's bytes are most candidates; they are grouped by rank with a counting
  // sort (sequential passes, positions stay in order). Pairs made by merges are fewer and sit
  // in a singly linked list per rank.
  struct Entry {
    std::int32_t left;
    std::int32_t right;
    std::int32_t left_id;
    std::int32_t right_id;
    std::int32_t result;
    std::int32_t next;  // next entry of the same rank, -1 at the end
  };
  thread_local std::vector<Symbol> symbols;        // (n_bytes) as in merge_heap
  thread_local std::vector<std::int32_t> pair_rank;  // (n_bytes - 1) rank of the pair at i, -1 if none
  thread_local std::vector<std::int32_t> pair_result;  // (n_bytes - 1) its merged token
  thread_local std::vector<std::int32_t> rank_end;   // (n_ranks + 1) counting-sort offsets
  thread_local std::vector<std::int32_t> by_rank;    // positions of the byte pairs, grouped by rank
  thread_local std::vector<Entry> entries;         // pairs made by merges, in order of making
  thread_local std::vector<std::int32_t> head;     // (n_ranks) first entry of each rank, -1 if none
  thread_local std::vector<std::int32_t> made;     // entries of the rank being merged, by position
  thread_local std::vector<Candidate> late;        // candidates of rank <= the current one
  const auto n = static_cast<std::int32_t>(word.size());
  const auto n_ranks = static_cast<std::int32_t>(vocab_.merges.size());
  symbols.resize(static_cast<std::size_t>(n));
  for (std::int32_t i = 0; i < n; ++i) {
    symbols[static_cast<std::size_t>(i)] = {byte_token_[static_cast<unsigned char>(word[static_cast<std::size_t>(i)])],
                                            i - 1, i + 1 < n ? i + 1 : -1};
  }
  if (head.size() != static_cast<std::size_t>(n_ranks)) head.assign(static_cast<std::size_t>(n_ranks), -1);
  if (rank_end.size() != static_cast<std::size_t>(n_ranks) + 1) rank_end.assign(static_cast<std::size_t>(n_ranks) + 1, 0);

  // The byte pairs, counted per rank, then their positions scattered into rank order.
  pair_rank.resize(static_cast<std::size_t>(n - 1));
  pair_result.resize(static_cast<std::size_t>(n - 1));
  std::int32_t lowest = INT32_MAX, highest = -1;
  for (std::int32_t i = 0; i + 1 < n; ++i) {
    const std::int32_t a = symbols[static_cast<std::size_t>(i)].id, b = symbols[static_cast<std::size_t>(i + 1)].id;
    work.pairs_considered += a >= 0 && b >= 0 ? 1 : 0;
    const MergeSlot* m = a >= 0 && b >= 0 ? find_merge(a, b) : nullptr;
    pair_rank[static_cast<std::size_t>(i)] = m != nullptr ? m->rank : -1;
    pair_result[static_cast<std::size_t>(i)] = m != nullptr ? m->result : -1;
    if (m != nullptr) {
      ++rank_end[static_cast<std::size_t>(m->rank) + 1];
      lowest = std::min(lowest, m->rank);
      highest = std::max(highest, m->rank);
    }
  }
  const std::int32_t initial_highest = highest;
  if (highest >= 0) {
    for (std::int32_t r = lowest; r <= highest; ++r) rank_end[static_cast<std::size_t>(r) + 1] += rank_end[static_cast<std::size_t>(r)];
    // rank_end[r] is now where rank r begins; scattering advances it to where r ends.
    by_rank.resize(static_cast<std::size_t>(rank_end[static_cast<std::size_t>(highest) + 1]));
    for (std::int32_t i = 0; i + 1 < n; ++i) {
      const std::int32_t r = pair_rank[static_cast<std::size_t>(i)];
      if (r >= 0) by_rank[static_cast<std::size_t>(rank_end[static_cast<std::size_t>(r)]++)] = i;
    }
  }

  entries.clear();
  late.clear();
  std::int32_t current = -1;
  auto consider = [&](std::int32_t left, std::int32_t right) {
    if (left < 0 || right < 0) return;
    const std::int32_t left_id = symbols[static_cast<std::size_t>(left)].id;
    const std::int32_t right_id = symbols[static_cast<std::size_t>(right)].id;
    if (left_id < 0 || right_id < 0) return;
    ++work.pairs_considered;
    const MergeSlot* m = find_merge(left_id, right_id);
    if (m == nullptr) return;
    if (m->rank <= current) {
      late.push_back({m->rank, left, right, left_id, right_id, m->result});
      std::push_heap(late.begin(), late.end(), CandidateAfter{});
      return;
    }
    std::int32_t& first = head[static_cast<std::size_t>(m->rank)];
    entries.push_back({left, right, left_id, right_id, m->result, first});
    first = static_cast<std::int32_t>(entries.size() - 1);
    highest = std::max(highest, m->rank);
  };
  auto apply = [&](const Candidate& c) {
    Symbol& left = symbols[static_cast<std::size_t>(c.left)];
    Symbol& right = symbols[static_cast<std::size_t>(c.right)];
    ++work.candidates_taken;
    if (left.id != c.left_id || right.id != c.right_id || left.next != c.right) return;  // stale
    ++work.merges;
    left.id = c.result;
    left.next = right.next;
    if (right.next >= 0) symbols[static_cast<std::size_t>(right.next)].prev = c.left;
    right.id = -1;
    right.next = -1;
    consider(left.prev, c.left);
    consider(c.left, left.next);
  };
  // Merges every late candidate that comes before (rank, position).
  auto drain_late = [&](std::int32_t rank, std::int32_t position) {
    while (!late.empty() &&
           (late.front().rank < rank || (late.front().rank == rank && late.front().left < position))) {
      std::pop_heap(late.begin(), late.end(), CandidateAfter{});
      const Candidate c = late.back();
      late.pop_back();
      apply(c);
    }
  };
  auto byte_pair = [&](std::int32_t rank, std::int32_t i) {
    return Candidate{rank,
                     i,
                     i + 1,
                     byte_token_[static_cast<unsigned char>(word[static_cast<std::size_t>(i)])],
                     byte_token_[static_cast<unsigned char>(word[static_cast<std::size_t>(i) + 1])],
                     pair_result[static_cast<std::size_t>(i)]};
  };
  for (std::int32_t rank = lowest; highest >= 0; ++rank) {
    ++work.ranks_walked;
    if (rank > highest) {
      // Late pairs can still be waiting, and merging them can make pairs of higher rank.
      current = rank - 1;
      drain_late(INT32_MAX, 0);
      if (rank > highest) break;
    }
    // This rank's byte pairs (already by position) and the pairs merges made (sorted here).
    std::size_t a = 0, a_end = 0;
    if (rank <= initial_highest) {
      a = rank == lowest ? 0 : static_cast<std::size_t>(rank_end[static_cast<std::size_t>(rank) - 1]);
      a_end = static_cast<std::size_t>(rank_end[static_cast<std::size_t>(rank)]);
    }
    std::int32_t& first = head[static_cast<std::size_t>(rank)];
    if (a == a_end && first < 0) continue;
    // Late pairs of lower rank go first; what merging them makes below this rank is late too.
    current = rank - 1;
    drain_late(rank, -1);
    current = rank;
    made.clear();
    for (std::int32_t e = first; e >= 0; e = entries[static_cast<std::size_t>(e)].next) made.push_back(e);
    first = -1;
    auto by_position = [&](std::int32_t x, std::int32_t y) {
      return entries[static_cast<std::size_t>(x)].left < entries[static_cast<std::size_t>(y)].left;
    };
    // Pairs made while walking one earlier rank come in position order, so the list (newest
    // first) is often exactly reversed.
    std::reverse(made.begin(), made.end());
    if (!std::is_sorted(made.begin(), made.end(), by_position)) std::sort(made.begin(), made.end(), by_position);
    std::size_t b = 0;
    while (a < a_end || b < made.size()) {
      Candidate c;
      if (b == made.size() ||
          (a < a_end && by_rank[a] < entries[static_cast<std::size_t>(made[b])].left)) {
        c = byte_pair(rank, by_rank[a++]);
      } else {
        const Entry& e = entries[static_cast<std::size_t>(made[b++])];
        c = {rank, e.left, e.right, e.left_id, e.right_id, e.result};
      }
      drain_late(rank, c.left);
      apply(c);
    }
  }
  // Leave the offsets zeroed for the next word.
  if (initial_highest >= 0) {
    std::fill(rank_end.begin() + lowest, rank_end.begin() + initial_highest + 2, 0);
  }
  for (std::int32_t i = 0; i >= 0; i = symbols[static_cast<std::size_t>(i)].next) {
    const std::int32_t id = symbols[static_cast<std::size_t>(i)].id;
    out.push_back(id >= 0 ? id : vocab_.unk_id);
  }
  constexpr std::size_t kKeepScratch = std::size_t{1} << 16;
  if (symbols.capacity() > kKeepScratch) {
    symbols = std::vector<Symbol>();
    pair_rank = std::vector<std::int32_t>();
    pair_result = std::vector<std::int32_t>();
    by_rank = std::vector<std::int32_t>();
    entries = std::vector<Entry>();
  }
}

void BpeTokenizer::decode_token(std::int32_t id, DecodeState& state, std::string& out) const {
  check_id(id);
  // Characters may span tokens (a CJK character is often two or three byte tokens), so bytes
  // wait in the state until their character is complete. Control tokens add nothing and do not
  // cut a character in two.
  state.pending_bytes += token_bytes_[static_cast<std::size_t>(id)];
  const std::size_t out_begin = out.size();
  utf8::drain_complete(state.pending_bytes, out, /*flush=*/false);
  if (out.size() > out_begin) state.text_empty = false;
}

void BpeTokenizer::decode_finish(DecodeState& state, std::string& out) const {
  const std::size_t out_begin = out.size();
  utf8::drain_complete(state.pending_bytes, out, /*flush=*/true);
  if (out.size() > out_begin) state.text_empty = false;
}

std::string BpeTokenizer::token_to_piece(std::int32_t id) const {
  check_id(id);
  return token_bytes_[static_cast<std::size_t>(id)];
}

}  // namespace kiln
