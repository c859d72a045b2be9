#pragma once
// Splits a thinking model's text into its reasoning and its answer, as llama-server's
// "deepseek" reasoning format and vLLM's reasoning parsers return them (reasoning_content beside
// content): the text of a <think>...</think> block at the start of the answer is reasoning, the
// rest is content. A template whose generation prompt already opened the block (DeepSeek R1,
// Qwen3 with thinking on) starts the parser inside it. Pieces of a tag cut between tokens are
// held back until decided.
#include <cstddef>
#include <string>
#include <string_view>

namespace kiln::serve {

struct ReasoningPiece {
  std::string reasoning;
  std::string content;
};

class ReasoningParser {
 public:
  explicit ReasoningParser(bool starts_in_reasoning = false);
  void push(std::string_view text, ReasoningPiece& out);
  void finish(ReasoningPiece& out);

 private:
  enum class State { start, reasoning, after_reasoning, content };
  void step(ReasoningPiece& out, bool at_end);

  State state_;
  std::string buf_;
  std::size_t pos_ = 0;
  std::string held_space_;  // trailing whitespace of the reasoning, kept if more reasoning follows
  bool reasoning_started_ = false;
};

// Whether `prompt` ends inside an open <think> block (its last <think> comes after its last
// </think>): the model's first words are then reasoning.
bool prompt_opens_reasoning(std::string_view prompt);

}  // namespace kiln::serve
