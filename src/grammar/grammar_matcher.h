#pragma once
// Grammar-constrained decoding over a tokenizer's vocabulary.
//
// CompiledGrammar is immutable and shared (std::shared_ptr) by every request that uses the
// same grammar on the same vocabulary: the byte-level grammar, each token's bytes, and the
// vocabulary as a trie laid out in preorder, so that tokens sharing a prefix are checked once.
// It also keeps the mask cache: a mask depends only on the parser state (the set of stacks,
// as grammar positions), and constrained JSON returns to the same few states over and over
// (inside a string, after a comma, ...), so a state's mask is computed once per grammar and
// vocabulary and then copied, across requests too.
//
// GrammarMatcher is one sequence's parser: a pushdown automaton over bytes, run as llama.cpp
// runs GBNF, with every stack a node of a hash-consed persistent stack (a stack is its top
// node; equal stacks are the same node). A state is the sorted set of stacks whose top is a
// byte terminal, plus node 0, the empty stack, when the grammar may end here. Advancing a
// stack past its terminal does not depend on which byte of the terminal's set was read, so
// each node's successor set is computed once and reused: a mask is a preorder walk of the
// token trie that, per trie edge, unions the successors of the stacks the byte fits.
//
// fill_mask_reference() checks each token on its own, byte by byte, with no trie and no
// cache: the fast path is tested against it.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "grammar/gbnf.h"

namespace kiln {
class Tokenizer;
}

namespace kiln::grammar {

// The vocabulary as a trie in preorder: node i's subtree is nodes [i, subtree_end[i]).
struct TokenTrie {
  std::vector<std::uint8_t> byte;          // (n_nodes) the byte on the edge into the node
  std::vector<std::uint16_t> depth;        // (n_nodes) 1 for children of the (implicit) root
  std::vector<std::uint32_t> subtree_end;  // (n_nodes)
  std::vector<std::uint32_t> token_begin;  // (n_nodes + 1) tokens ending at node i: token_ids[token_begin[i]..token_begin[i+1])
  std::vector<std::int32_t> token_ids;
  int max_depth = 0;

  static TokenTrie build(const std::vector<std::string>& token_bytes);
};

// The vocabulary as the matcher sees it, built once per tokenizer and shared by its grammars.
struct TokenVocabulary {
  std::vector<std::string> token_bytes;  // (n_vocab) empty: a control token no grammar allows
  std::vector<std::int32_t> end_tokens;  // ids that end generation, allowed where the grammar may end
  TokenTrie trie;

  static std::shared_ptr<const TokenVocabulary> make(std::vector<std::string> token_bytes,
                                                     std::vector<std::int32_t> end_tokens);
  // token_to_piece bytes; EOS, EOT and EOM end.
  static std::shared_ptr<const TokenVocabulary> from_tokenizer(const Tokenizer& tokenizer);
};

class CompiledGrammar {
 public:
  CompiledGrammar(Grammar grammar, std::shared_ptr<const TokenVocabulary> vocabulary,
                  std::size_t mask_cache_bytes = std::size_t{64} << 20);

  const Grammar& grammar() const { return grammar_; }
  const TokenVocabulary& vocabulary() const { return *vocab_; }
  std::int32_t n_vocab() const { return static_cast<std::int32_t>(vocab_->token_bytes.size()); }
  std::size_t mask_words() const { return (vocab_->token_bytes.size() + 31) / 32; }
  const std::string& token_bytes(std::int32_t id) const { return vocab_->token_bytes[static_cast<std::size_t>(id)]; }
  std::span<const std::int32_t> end_tokens() const { return vocab_->end_tokens; }
  bool is_end_token(std::int32_t id) const;
  const TokenTrie& trie() const { return vocab_->trie; }

  // The mask cache (thread-safe). Masks cover the tokens with bytes only, no end tokens.
  std::shared_ptr<const std::vector<std::uint32_t>> cached_mask(const std::string& state_key) const;
  void store_mask(const std::string& state_key, std::shared_ptr<const std::vector<std::uint32_t>> mask) const;
  std::size_t cached_masks() const;

 private:
  Grammar grammar_;
  std::shared_ptr<const TokenVocabulary> vocab_;
  std::size_t mask_cache_limit_;
  mutable std::mutex cache_mu_;
  mutable std::unordered_map<std::string, std::shared_ptr<const std::vector<std::uint32_t>>> cache_;
  mutable std::size_t cache_bytes_ = 0;
};

// Compiled grammars of one vocabulary by GBNF text, so that requests repeating a schema share
// one CompiledGrammar and its mask cache. Keeps the most recently used `capacity` entries.
class CompiledGrammarCache {
 public:
  explicit CompiledGrammarCache(std::shared_ptr<const TokenVocabulary> vocabulary, std::size_t capacity = 32)
      : vocab_(std::move(vocabulary)), capacity_(capacity) {}
  // Parses (kiln::Error on a bad grammar) and compiles, or returns the cached one.
  std::shared_ptr<const CompiledGrammar> get(const std::string& gbnf);
  const std::shared_ptr<const TokenVocabulary>& vocabulary() const { return vocab_; }

 private:
  std::shared_ptr<const TokenVocabulary> vocab_;
  std::size_t capacity_;
  std::mutex mu_;
  std::uint64_t clock_ = 0;
  std::unordered_map<std::string, std::pair<std::shared_ptr<const CompiledGrammar>, std::uint64_t>> entries_;
};

struct MatcherLimits {
  std::size_t max_stacks = 1 << 14;   // stacks in one state (an ambiguous grammar multiplies them)
  std::size_t max_nodes = 1 << 22;    // stack nodes of one sequence
};

class GrammarMatcher {
 public:
  explicit GrammarMatcher(std::shared_ptr<const CompiledGrammar> compiled, const MatcherLimits& limits = {});

  // Sets bit (id % 32) of word id / 32 for every token allowed next, clears the others.
  // bitmask needs at least compiled().mask_words() words; words past them are cleared.
  void fill_mask(std::span<std::uint32_t> bitmask);
  void fill_mask_reference(std::span<std::uint32_t> bitmask);

  // Advances past a token. Returns false (state unchanged) when the grammar does not allow it.
  // An end token is allowed when can_end() and leaves the state as it is.
  bool accept(std::int32_t token);
  bool accept_bytes(std::string_view bytes);
  bool allows(std::int32_t token);  // accept() without advancing

  bool can_end() const { return !state_.empty() && state_.front() == 0; }  // the grammar is complete here
  bool is_exhausted() const { return state_.size() == 1 && state_.front() == 0; }  // and nothing may follow

  const CompiledGrammar& compiled() const { return *compiled_; }

 private:
  struct Node {
    std::uint32_t pos;    // a grammar position, never End (a stack's top is a Bytes element)
    std::int32_t parent;  // the rest of the stack (0: empty)
  };

  std::int32_t intern(std::uint32_t pos, std::int32_t parent);
  void expand(std::uint32_t pos, std::int32_t parent, std::vector<std::int32_t>& out);
  const std::vector<std::int32_t>& successors(std::int32_t node);
  void advance(const std::vector<std::int32_t>& from, std::uint8_t byte, std::vector<std::int32_t>& to);
  bool walk(std::vector<std::int32_t>& state, std::string_view bytes);
  std::string state_key() const;
  void normalize(std::vector<std::int32_t>& state) const;

  std::shared_ptr<const CompiledGrammar> compiled_;
  MatcherLimits limits_;
  std::vector<Node> nodes_;                       // (n_nodes) node 0 is the empty stack
  std::unordered_map<std::uint64_t, std::int32_t> node_ids_;
  std::vector<std::vector<std::int32_t>> successors_;  // (n_nodes) after the top's terminal, expanded
  std::vector<char> has_successors_;
  std::vector<std::int32_t> state_;
  std::vector<std::vector<std::int32_t>> levels_;  // trie-walk scratch, one state per depth
  std::vector<std::pair<std::uint32_t, std::int32_t>> work_;  // expand() scratch
};

}  // namespace kiln::grammar
