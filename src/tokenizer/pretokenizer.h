#pragma once
// The pre-tokenizer of byte-level BPE: regular expressions that cut text into the pieces
// ("words") that merges run within, so that no token spans a word boundary. Each family of
// vocabularies has its own expressions, named by tokenizer.ggml.pre in GGUF files; a Hugging Face
// tokenizer.json spells them out. They need Unicode categories (\p{L}, \p{N}) and look-ahead,
// so they run on PCRE2 in UTF mode with Unicode properties (JIT-compiled when available).
//
// With several expressions, each one splits the pieces the previous one made, looking only
// inside a piece (as llama.cpp and Hugging Face's Sequence pre-tokenizer do). Text between two
// matches is a piece of its own, so the pieces always cover the text exactly; bytes that are not
// valid UTF-8 never match and so end up in such in-between pieces.
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace kiln {

// What a pre-tokenizer name stands for.
struct PretokenizerSpec {
  std::vector<std::string> patterns;  // PCRE2 syntax, applied in order
  bool ignore_merges = false;         // a piece that is a token as a whole is emitted unmerged
  bool add_bos = false;               // the family prepends BOS unless the file says otherwise
};

// The spec for tokenizer.ggml.pre = `name` ("llama-bpe", "gpt-2", "qwen2", "smollm", "tekken",
// "deepseek-llm", "falcon", ...; "" or "default" for files written before the key existed), or
// nullopt for a name kiln does not know.
std::optional<PretokenizerSpec> find_pretokenizer_spec(std::string_view name);
// The tokenizer.ggml.pre name llama.cpp knows whose expressions and ignore_merges are exactly
// `patterns` and `ignore_merges` (as read from a tokenizer.json: "llama-bpe" for Llama 3's,
// "qwen2", "gpt-2", "tekken", ...), so that a GGUF written from them names its pre-tokenizer;
// "" when no name cuts text the same way. GPT-2's expression with or without its final "\s+"
// counts as the same (both cut text alike); nothing else is treated as equivalent.
std::string pretokenizer_name_for(const std::vector<std::string>& patterns, bool ignore_merges);
// The names find_pretokenizer_spec knows, for error messages.
extern const char* const kKnownPretokenizers;

// GPT-2's own expression, which Hugging Face's ByteLevel pre-tokenizer applies when use_regex is set.
extern const char* const kGpt2Pattern;

class Pretokenizer {
 public:
  // Compiles `patterns`; throws kiln::Error naming the pattern and PCRE2's message on a bad one.
  explicit Pretokenizer(const std::vector<std::string>& patterns);
  ~Pretokenizer();
  Pretokenizer(Pretokenizer&&) noexcept;
  Pretokenizer& operator=(Pretokenizer&&) noexcept;

  // Replaces `pieces` with the pieces of `text`, in order; their concatenation is `text`, none
  // is empty. Throws kiln::Error if PCRE2 gives up on the input (a match or depth limit).
  void split(std::string_view text, std::vector<std::string_view>& pieces) const;

  std::size_t n_patterns() const { return regexes_.size(); }

 private:
  struct Regex;
  std::vector<std::unique_ptr<Regex>> regexes_;
};

}  // namespace kiln
