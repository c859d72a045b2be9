#include "grammar/grammar_matcher.h"

#include <algorithm>
#include <cstring>

#include "core/error.h"
#include "tokenizer/tokenizer.h"

namespace kiln::grammar {

TokenTrie TokenTrie::build(const std::vector<std::string>& token_bytes) {
  std::vector<std::int32_t> order;
  for (std::size_t id = 0; id < token_bytes.size(); ++id) {
    if (token_bytes[id].empty()) continue;
    KILN_CHECK(token_bytes[id].size() <= 4096, "grammar: token {} has {} bytes; at most 4096 are supported", id,
               token_bytes[id].size());
    order.push_back(static_cast<std::int32_t>(id));
  }
  std::sort(order.begin(), order.end(), [&](std::int32_t a, std::int32_t b) {
    const std::string& x = token_bytes[static_cast<std::size_t>(a)];
    const std::string& y = token_bytes[static_cast<std::size_t>(b)];
    return x != y ? x < y : a < b;
  });
  TokenTrie t;
  std::vector<std::uint32_t> path;  // open nodes, path[k] at depth k + 1
  std::vector<std::pair<std::uint32_t, std::int32_t>> ends;  // (node, token)
  const std::string* prev = nullptr;
  for (std::int32_t id : order) {
    const std::string& s = token_bytes[static_cast<std::size_t>(id)];
    std::size_t lcp = 0;
    if (prev) {
      while (lcp < s.size() && lcp < prev->size() && s[lcp] == (*prev)[lcp]) ++lcp;
    }
    while (path.size() > lcp) {
      t.subtree_end[path.back()] = static_cast<std::uint32_t>(t.byte.size());
      path.pop_back();
    }
    for (std::size_t k = lcp; k < s.size(); ++k) {
      path.push_back(static_cast<std::uint32_t>(t.byte.size()));
      t.byte.push_back(static_cast<std::uint8_t>(s[k]));
      t.depth.push_back(static_cast<std::uint16_t>(k + 1));
      t.subtree_end.push_back(0);
    }
    ends.push_back({path.back(), id});
    t.max_depth = std::max(t.max_depth, static_cast<int>(s.size()));
    prev = &s;
  }
  for (std::uint32_t n : path) t.subtree_end[n] = static_cast<std::uint32_t>(t.byte.size());
  // Tokens per node, in compressed-row form (ends is sorted by node: tokens arrive in preorder).
  t.token_begin.assign(t.byte.size() + 1, 0);
  for (const auto& e : ends) ++t.token_begin[e.first + 1];
  for (std::size_t i = 0; i < t.byte.size(); ++i) t.token_begin[i + 1] += t.token_begin[i];
  t.token_ids.resize(ends.size());
  std::vector<std::uint32_t> fill(t.token_begin.begin(), t.token_begin.end() - 1);
  for (const auto& e : ends) t.token_ids[fill[e.first]++] = e.second;
  return t;
}

std::shared_ptr<const TokenVocabulary> TokenVocabulary::make(std::vector<std::string> token_bytes,
                                                             std::vector<std::int32_t> end_tokens) {
  auto v = std::make_shared<TokenVocabulary>();
  for (std::int32_t id : end_tokens)
    KILN_CHECK(id >= 0 && static_cast<std::size_t>(id) < token_bytes.size(), "grammar: end token {} is outside the vocabulary", id);
  v->trie = TokenTrie::build(token_bytes);
  v->token_bytes = std::move(token_bytes);
  v->end_tokens = std::move(end_tokens);
  return v;
}

std::shared_ptr<const TokenVocabulary> TokenVocabulary::from_tokenizer(const Tokenizer& tokenizer) {
  std::vector<std::string> bytes(static_cast<std::size_t>(tokenizer.n_vocab()));
  std::vector<std::int32_t> ends;
  for (std::int32_t id = 0; id < tokenizer.n_vocab(); ++id) {
    if (tokenizer.is_eog(id)) {
      ends.push_back(id);
      continue;  // an end token is never text, whatever its piece
    }
    bytes[static_cast<std::size_t>(id)] = tokenizer.token_to_piece(id);
  }
  return make(std::move(bytes), std::move(ends));
}

CompiledGrammar::CompiledGrammar(Grammar grammar, std::shared_ptr<const TokenVocabulary> vocabulary,
                                 std::size_t mask_cache_bytes)
    : grammar_(std::move(grammar)), vocab_(std::move(vocabulary)), mask_cache_limit_(mask_cache_bytes) {
  grammar_.validate();
}

bool CompiledGrammar::is_end_token(std::int32_t id) const {
  return std::find(vocab_->end_tokens.begin(), vocab_->end_tokens.end(), id) != vocab_->end_tokens.end();
}

std::shared_ptr<const std::vector<std::uint32_t>> CompiledGrammar::cached_mask(const std::string& key) const {
  std::lock_guard<std::mutex> lk(cache_mu_);
  auto it = cache_.find(key);
  return it == cache_.end() ? nullptr : it->second;
}

void CompiledGrammar::store_mask(const std::string& key, std::shared_ptr<const std::vector<std::uint32_t>> mask) const {
  const std::size_t bytes = key.size() + mask->size() * sizeof(std::uint32_t);
  std::lock_guard<std::mutex> lk(cache_mu_);
  if (cache_bytes_ + bytes > mask_cache_limit_) {
    // Full: start over. States that matter come back within a few tokens.
    cache_.clear();
    cache_bytes_ = 0;
  }
  if (cache_.emplace(key, std::move(mask)).second) cache_bytes_ += bytes;
}

std::size_t CompiledGrammar::cached_masks() const {
  std::lock_guard<std::mutex> lk(cache_mu_);
  return cache_.size();
}

std::shared_ptr<const CompiledGrammar> CompiledGrammarCache::get(const std::string& gbnf) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    auto it = entries_.find(gbnf);
    if (it != entries_.end()) {
      it->second.second = ++clock_;
      return it->second.first;
    }
  }
  auto compiled = std::make_shared<const CompiledGrammar>(parse_gbnf(gbnf), vocab_);
  std::lock_guard<std::mutex> lk(mu_);
  if (entries_.size() >= capacity_) {
    auto oldest = std::min_element(entries_.begin(), entries_.end(),
                                   [](const auto& a, const auto& b) { return a.second.second < b.second.second; });
    entries_.erase(oldest);
  }
  entries_[gbnf] = {compiled, ++clock_};
  return compiled;
}

GrammarMatcher::GrammarMatcher(std::shared_ptr<const CompiledGrammar> compiled, const MatcherLimits& limits)
    : compiled_(std::move(compiled)), limits_(limits) {
  nodes_.push_back({0, -1});  // node 0: the empty stack
  successors_.emplace_back();
  has_successors_.push_back(1);
  const Grammar& g = compiled_->grammar();
  for (std::uint32_t alt : g.rules[g.root].alternatives) expand(alt, 0, state_);
  normalize(state_);
}

std::int32_t GrammarMatcher::intern(std::uint32_t pos, std::int32_t parent) {
  const std::uint64_t key = (std::uint64_t{pos} << 32) | static_cast<std::uint32_t>(parent);
  auto [it, inserted] = node_ids_.emplace(key, static_cast<std::int32_t>(nodes_.size()));
  if (inserted) {
    KILN_CHECK(nodes_.size() < limits_.max_nodes, "grammar: the parser needs more than {} stack nodes", limits_.max_nodes);
    nodes_.push_back({pos, parent});
    successors_.emplace_back();
    has_successors_.push_back(0);
  }
  return it->second;
}

// Every stack reachable from position `pos` over `parent` without reading a byte: tops at
// byte terminals, or the empty stack. Terminates because parse_gbnf refuses left recursion.
void GrammarMatcher::expand(std::uint32_t pos, std::int32_t parent, std::vector<std::int32_t>& out) {
  const Grammar& g = compiled_->grammar();
  const std::size_t out_start = out.size();
  std::size_t steps = 0;
  work_.clear();
  work_.push_back({pos, parent});
  while (!work_.empty()) {
    const auto [p, par] = work_.back();
    work_.pop_back();
    KILN_CHECK(++steps <= limits_.max_stacks * 16 && out.size() - out_start <= limits_.max_stacks,
               "grammar: the grammar is too ambiguous (more than {} parses at once)", limits_.max_stacks);
    const Element& e = g.elements[p];
    switch (e.kind) {
      case ElementKind::End:
        if (par == 0) {
          out.push_back(0);
        } else {
          work_.push_back({nodes_[static_cast<std::size_t>(par)].pos, nodes_[static_cast<std::size_t>(par)].parent});
        }
        break;
      case ElementKind::Bytes: out.push_back(intern(p, par)); break;
      case ElementKind::Rule: {
        // Nothing to return to after a rule that ends its alternative: the parent continues
        // directly, so right recursion (x*) does not grow the stack.
        const std::int32_t cont = g.elements[p + 1].kind == ElementKind::End ? par : intern(p + 1, par);
        const auto& alts = g.rules[e.value].alternatives;
        for (auto it = alts.rbegin(); it != alts.rend(); ++it) work_.push_back({*it, cont});
        break;
      }
    }
  }
}

void GrammarMatcher::normalize(std::vector<std::int32_t>& state) const {
  std::sort(state.begin(), state.end());
  state.erase(std::unique(state.begin(), state.end()), state.end());
}

const std::vector<std::int32_t>& GrammarMatcher::successors(std::int32_t node) {
  const auto n = static_cast<std::size_t>(node);
  if (!has_successors_[n]) {
    std::vector<std::int32_t> next;
    expand(nodes_[n].pos + 1, nodes_[n].parent, next);
    normalize(next);
    successors_[n] = std::move(next);  // expand() may have grown successors_: index again
    has_successors_[n] = 1;
  }
  return successors_[n];
}

void GrammarMatcher::advance(const std::vector<std::int32_t>& from, std::uint8_t byte, std::vector<std::int32_t>& to) {
  const Grammar& g = compiled_->grammar();
  to.clear();
  int matched = 0;
  for (std::int32_t n : from) {
    if (n == 0) continue;
    const Element& e = g.elements[nodes_[static_cast<std::size_t>(n)].pos];
    if (!g.byte_sets[e.value].contains(byte)) continue;
    const std::vector<std::int32_t>& next = successors(n);
    to.insert(to.end(), next.begin(), next.end());
    ++matched;
  }
  if (matched > 1) normalize(to);
  KILN_CHECK(to.size() <= limits_.max_stacks, "grammar: the grammar is too ambiguous (more than {} parses at once)",
             limits_.max_stacks);
}

bool GrammarMatcher::walk(std::vector<std::int32_t>& state, std::string_view bytes) {
  std::vector<std::int32_t> next;
  for (char c : bytes) {
    advance(state, static_cast<std::uint8_t>(c), next);
    if (next.empty()) return false;
    state.swap(next);
  }
  return true;
}

std::string GrammarMatcher::state_key() const {
  std::vector<std::string> stacks;
  stacks.reserve(state_.size());
  for (std::int32_t n : state_) {
    std::string s;
    for (std::int32_t m = n; m != 0; m = nodes_[static_cast<std::size_t>(m)].parent) {
      const std::uint32_t pos = nodes_[static_cast<std::size_t>(m)].pos;
      s.append(reinterpret_cast<const char*>(&pos), sizeof pos);
    }
    stacks.push_back(std::move(s));
  }
  std::sort(stacks.begin(), stacks.end());
  std::string key;
  for (const std::string& s : stacks) {
    const auto len = static_cast<std::uint32_t>(s.size());
    key.append(reinterpret_cast<const char*>(&len), sizeof len);
    key += s;
  }
  return key;
}

namespace {
void set_end_tokens(const CompiledGrammar& c, bool can_end, std::span<std::uint32_t> bitmask) {
  for (std::int32_t id : c.end_tokens()) {
    const std::uint32_t bit = std::uint32_t{1} << (id & 31);
    if (can_end) {
      bitmask[static_cast<std::size_t>(id) >> 5] |= bit;
    } else {
      bitmask[static_cast<std::size_t>(id) >> 5] &= ~bit;
    }
  }
}
}  // namespace

void GrammarMatcher::fill_mask(std::span<std::uint32_t> bitmask) {
  const std::size_t words = compiled_->mask_words();
  KILN_CHECK(bitmask.size() >= words, "grammar: the mask has {} words; the vocabulary needs {}", bitmask.size(), words);
  const std::string key = state_key();
  std::shared_ptr<const std::vector<std::uint32_t>> mask = compiled_->cached_mask(key);
  if (!mask) {
    auto fresh = std::make_shared<std::vector<std::uint32_t>>(words, 0);
    const TokenTrie& t = compiled_->trie();
    levels_.resize(static_cast<std::size_t>(t.max_depth) + 1);
    levels_[0] = state_;
    const std::size_t n = t.byte.size();
    for (std::size_t i = 0; i < n;) {
      const std::size_t d = t.depth[i];
      advance(levels_[d - 1], t.byte[i], levels_[d]);
      if (levels_[d].empty()) {
        i = t.subtree_end[i];  // no token through this prefix
        continue;
      }
      for (std::uint32_t k = t.token_begin[i]; k < t.token_begin[i + 1]; ++k) {
        const auto id = static_cast<std::uint32_t>(t.token_ids[k]);
        (*fresh)[id >> 5] |= std::uint32_t{1} << (id & 31);
      }
      ++i;
    }
    compiled_->store_mask(key, fresh);
    mask = std::move(fresh);
  }
  std::memcpy(bitmask.data(), mask->data(), words * sizeof(std::uint32_t));
  std::fill(bitmask.begin() + static_cast<std::ptrdiff_t>(words), bitmask.end(), 0u);
  set_end_tokens(*compiled_, can_end(), bitmask);
}

void GrammarMatcher::fill_mask_reference(std::span<std::uint32_t> bitmask) {
  const std::size_t words = compiled_->mask_words();
  KILN_CHECK(bitmask.size() >= words, "grammar: the mask has {} words; the vocabulary needs {}", bitmask.size(), words);
  std::fill(bitmask.begin(), bitmask.end(), 0u);
  for (std::int32_t id = 0; id < compiled_->n_vocab(); ++id) {
    const std::string& bytes = compiled_->token_bytes(id);
    if (bytes.empty()) continue;
    std::vector<std::int32_t> s = state_;
    if (walk(s, bytes)) bitmask[static_cast<std::size_t>(id) >> 5] |= std::uint32_t{1} << (id & 31);
  }
  set_end_tokens(*compiled_, can_end(), bitmask);
}

bool GrammarMatcher::allows(std::int32_t token) {
  if (token < 0 || token >= compiled_->n_vocab()) return false;
  if (compiled_->is_end_token(token)) return can_end();
  const std::string& bytes = compiled_->token_bytes(token);
  if (bytes.empty()) return false;
  std::vector<std::int32_t> s = state_;
  return walk(s, bytes);
}

bool GrammarMatcher::accept(std::int32_t token) {
  if (token < 0 || token >= compiled_->n_vocab()) return false;
  if (compiled_->is_end_token(token)) return can_end();
  const std::string& bytes = compiled_->token_bytes(token);
  if (bytes.empty()) return false;
  return accept_bytes(bytes);
}

bool GrammarMatcher::accept_bytes(std::string_view bytes) {
  std::vector<std::int32_t> s = state_;
  if (!walk(s, bytes)) return false;
  state_ = std::move(s);
  return true;
}

}  // namespace kiln::grammar
