#include "serve/reasoning_parser.h"

#include <algorithm>

namespace kiln::serve {

namespace {

constexpr std::size_t npos = std::string_view::npos;
constexpr std::string_view kOpen = "<think>";
constexpr std::string_view kClose = "</think>";

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

std::size_t partial_marker_at_end(std::string_view text, std::string_view marker) {
  for (std::size_t n = std::min(text.size(), marker.size() - 1); n > 0; --n)
    if (text.substr(text.size() - n) == marker.substr(0, n)) return n;
  return 0;
}

}  // namespace

ReasoningParser::ReasoningParser(bool starts_in_reasoning)
    : state_(starts_in_reasoning ? State::reasoning : State::start) {}

void ReasoningParser::push(std::string_view text, ReasoningPiece& out) {
  buf_.append(text);
  step(out, false);
}

void ReasoningParser::finish(ReasoningPiece& out) {
  step(out, true);
  const std::string_view rest = std::string_view(buf_).substr(pos_);
  if (state_ == State::reasoning)
    out.reasoning.append(rest);
  else
    out.content.append(rest);
  pos_ = buf_.size();
}

void ReasoningParser::step(ReasoningPiece& out, bool at_end) {
  for (;;) {
    const std::string_view rest = std::string_view(buf_).substr(pos_);
    switch (state_) {
      case State::start: {
        std::size_t j = 0;
        while (j < rest.size() && is_space(rest[j])) ++j;
        const std::string_view tail = rest.substr(j);
        if (tail.substr(0, kOpen.size()) == kOpen) {
          pos_ += j + kOpen.size();
          state_ = State::reasoning;
          continue;
        }
        if (!at_end && tail.size() < kOpen.size() && kOpen.substr(0, tail.size()) == tail) return;
        state_ = State::content;
        continue;
      }
      case State::reasoning: {
        const std::size_t k = rest.find(kClose);
        const std::size_t take = k != npos ? k : rest.size() - (at_end ? 0 : partial_marker_at_end(rest, kClose));
        std::string_view piece = rest.substr(0, take);
        // Whitespace right after <think> and right before </think> is layout, not reasoning.
        if (!reasoning_started_) {
          std::size_t j = 0;
          while (j < piece.size() && is_space(piece[j])) ++j;
          piece.remove_prefix(j);
        }
        std::size_t last = piece.size();
        while (last > 0 && is_space(piece[last - 1])) --last;
        if (last > 0) {
          out.reasoning += held_space_;
          out.reasoning.append(piece.substr(0, last));
          held_space_.assign(piece.substr(last));
          reasoning_started_ = true;
        } else if (reasoning_started_) {
          held_space_.append(piece);
        }
        pos_ += take;
        if (k == npos) return;
        held_space_.clear();
        pos_ += kClose.size();
        state_ = State::after_reasoning;
        continue;
      }
      case State::after_reasoning: {
        std::size_t j = 0;
        while (j < rest.size() && is_space(rest[j])) ++j;
        pos_ += j;
        if (j == rest.size()) return;
        state_ = State::content;
        continue;
      }
      case State::content:
        out.content.append(rest);
        pos_ = buf_.size();
        return;
    }
  }
}

bool prompt_opens_reasoning(std::string_view prompt) {
  const std::size_t open = prompt.rfind(kOpen);
  if (open == npos) return false;
  const std::size_t close = prompt.rfind(kClose);
  return close == npos || close < open;
}

}  // namespace kiln::serve
