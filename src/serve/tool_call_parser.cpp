#include "serve/tool_call_parser.h"

#include <algorithm>
#include <cctype>
#include <nlohmann/json.hpp>

#include "serve/json_prefix_scan.h"

namespace kiln::serve {

namespace {

constexpr std::size_t npos = std::string_view::npos;
constexpr std::string_view kHermesOpen = "<tool_call>";
constexpr std::string_view kHermesClose = "</tool_call>";
constexpr std::string_view kMistralOpen = "[TOOL_CALLS]";
constexpr std::string_view kMistralArgs = "[ARGS]";
constexpr std::string_view kPythonTag = "<|python_tag|>";

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

std::size_t skip_space(std::string_view s, std::size_t i) {
  while (i < s.size() && is_space(s[i])) ++i;
  return i;
}

// The longest end of `text` that `marker` starts with (a marker possibly cut by the next token).
std::size_t partial_marker_at_end(std::string_view text, std::string_view marker) {
  for (std::size_t n = std::min(text.size(), marker.size() - 1); n > 0; --n)
    if (text.substr(text.size() - n) == marker.substr(0, n)) return n;
  return 0;
}

std::string_view open_marker(ToolCallFormat f) {
  switch (f) {
    case ToolCallFormat::hermes:
      return kHermesOpen;
    case ToolCallFormat::mistral:
      return kMistralOpen;
    case ToolCallFormat::llama3_json:
      return kPythonTag;
    case ToolCallFormat::generic:
      break;
  }
  return {};
}

bool is_arguments_key(const std::string& key) { return key == "arguments" || key == "parameters"; }

// Keys a bare JSON answer may have and still be a call; any other makes it plain JSON content.
bool is_call_key(const std::string& key) {
  return key == "name" || is_arguments_key(key) || key == "type" || key == "id";
}

}  // namespace

ToolCallParser::ToolCallParser(ToolCallFormat format, int max_calls)
    : format_(format), max_calls_(std::max(1, max_calls)) {}

bool ToolCallParser::bare_json() const {
  return format_ == ToolCallFormat::llama3_json || format_ == ToolCallFormat::generic;
}

void ToolCallParser::push(std::string_view text, ToolCallPiece& out) {
  buf_.append(text);
  step(out, false);
}

void ToolCallParser::prime(std::string_view text, ToolCallPiece& out) {
  buf_.append(text);
  primed_ = buf_.size();
  step(out, false);
}

void ToolCallParser::release_range(std::size_t begin, std::size_t end, ToolCallPiece& out) {
  begin = std::max(begin, primed_);
  if (begin < end) release_content(std::string_view(buf_).substr(begin, end - begin), out);
}

void ToolCallParser::finish(ToolCallPiece& out) {
  step(out, true);
  switch (state_) {
    case State::call:
    case State::mistral_args:
      if (named_) {
        // Cut off (max_tokens): the call is reported with the arguments it got.
        std::string args;
        if (state_ == State::call && !streaming_args_) {
          const JsonObjectPrefix scan = scan_json_object_prefix(std::string_view(buf_).substr(call_begin_));
          args = "{}";
          for (const JsonPrefixMember& m : scan.members)
            if (is_arguments_key(m.key)) args = buf_.substr(call_begin_ + m.value_begin);
        }
        end_call(std::move(args), out);
        pos_ = buf_.size();
      } else {
        fall_back_to_content(buf_.size(), out);
      }
      break;
    case State::mistral_name:
    case State::call_open:
      fall_back_to_content(buf_.size(), out);
      break;
    default:
      break;
  }
  if (!broken_) release_range(pos_, buf_.size(), out);
  pos_ = buf_.size();
  // Whitespace between calls and around them is no content of its own.
  if (n_calls_ == 0 && !held_space_.empty()) out.content += held_space_;
  held_space_.clear();
}

void ToolCallParser::release_content(std::string_view text, ToolCallPiece& out) {
  if (text.empty()) return;
  std::size_t last = text.size();
  while (last > 0 && is_space(text[last - 1])) --last;
  if (last == 0) {
    held_space_.append(text);
    return;
  }
  out.content += held_space_;
  held_space_.clear();
  out.content.append(text.substr(0, last));
  held_space_.assign(text.substr(last));
  seen_text_ = true;
}

void ToolCallParser::begin_call(std::string name, ToolCallPiece& out) {
  named_ = true;
  args_sent_ = 0;
  streaming_args_ = false;
  dropping_ = n_calls_ >= max_calls_;
  if (dropping_) return;
  ToolCallEvent e;
  e.index = n_calls_;
  e.begins = true;
  e.name = std::move(name);
  out.calls.push_back(std::move(e));
}

void ToolCallParser::stream_arguments(std::size_t value_begin, std::size_t available_end, ToolCallPiece& out) {
  streaming_args_ = true;
  const std::size_t from = value_begin + args_sent_;
  if (available_end <= from) return;
  if (!dropping_) {
    ToolCallEvent e;
    e.index = n_calls_;
    e.arguments = buf_.substr(from, available_end - from);
    out.calls.push_back(std::move(e));
  }
  args_sent_ = available_end - value_begin;
}

void ToolCallParser::end_call(std::string final_arguments, ToolCallPiece& out) {
  if (!dropping_) {
    if (!final_arguments.empty()) {
      ToolCallEvent e;
      e.index = n_calls_;
      e.arguments = std::move(final_arguments);
      out.calls.push_back(std::move(e));
    }
    ++n_calls_;
  }
  named_ = dropping_ = streaming_args_ = false;
  args_sent_ = 0;
}

void ToolCallParser::fall_back_to_content(std::size_t resume_at, ToolCallPiece& out) {
  release_range(fallback_from_, resume_at, out);
  pos_ = resume_at;
  named_ = dropping_ = streaming_args_ = in_array_ = false;
  state_ = State::text;
  // A bare answer that was not a call is the answer: later braces are its content too.
  if (bare_json()) seen_text_ = true;
}

void ToolCallParser::step(ToolCallPiece& out, bool at_end) {
  if (broken_) {
    pos_ = buf_.size();
    return;
  }
  const std::string_view marker = open_marker(format_);
  for (;;) {
    const std::string_view rest = std::string_view(buf_).substr(pos_);
    switch (state_) {
      case State::text: {
        if (bare_json() && !seen_text_) {
          // Llama 3 and generic calls are the whole answer: a '{' first (after whitespace, and
          // after the ';' or newlines between calls) opens one.
          std::size_t j = 0;
          while (j < rest.size() && (is_space(rest[j]) || (n_calls_ > 0 && rest[j] == ';'))) ++j;
          if (j == rest.size()) {
            if (!at_end) return;
          } else if (rest[j] == '{') {
            if (n_calls_ == 0) held_space_.clear();
            fallback_from_ = call_begin_ = pos_ + j;
            pos_ = call_begin_;
            state_ = State::call;
            continue;
          }
        }
        const std::size_t k = marker.empty() ? npos : rest.find(marker);
        if (k != npos) {
          release_range(pos_, pos_ + k, out);
          fallback_from_ = pos_ + k;
          pos_ += k + marker.size();
          state_ = State::call_open;
          continue;
        }
        const std::size_t hold = at_end || marker.empty() ? 0 : partial_marker_at_end(rest, marker);
        release_range(pos_, pos_ + rest.size() - hold, out);
        pos_ += rest.size() - hold;
        return;
      }
      case State::call_open: {
        const std::size_t j = skip_space(rest, 0);
        if (j == rest.size()) return;
        const char c = rest[j];
        if (c == '{') {
          call_begin_ = pos_ + j;
          pos_ = call_begin_;
          state_ = State::call;
        } else if (c == '[' && format_ == ToolCallFormat::mistral) {
          in_array_ = true;
          pos_ += j + 1;
          state_ = State::array_next;
        } else if (format_ == ToolCallFormat::mistral && (std::isalnum(static_cast<unsigned char>(c)) || c == '_')) {
          pos_ += j;
          state_ = State::mistral_name;
        } else {
          fall_back_to_content(pos_, out);
        }
        continue;
      }
      case State::array_next: {
        std::size_t j = skip_space(rest, 0);
        if (j < rest.size() && rest[j] == ',') j = skip_space(rest, j + 1);
        if (j == rest.size()) return;
        if (rest[j] == ']') {
          in_array_ = false;
          pos_ += j + 1;
          state_ = State::text;
        } else if (rest[j] == '{') {
          fallback_from_ = call_begin_ = pos_ + j;
          pos_ = call_begin_;
          state_ = State::call;
        } else {
          fallback_from_ = pos_;
          fall_back_to_content(pos_, out);
        }
        continue;
      }
      case State::call: {
        const std::string_view call = std::string_view(buf_).substr(call_begin_);
        const JsonObjectPrefix scan = scan_json_object_prefix(call);
        bool plain_json = scan.error;
        const JsonPrefixMember* args = nullptr;
        for (const JsonPrefixMember& m : scan.members) {
          if (bare_json() && !is_call_key(m.key)) plain_json = true;
          if (!named_ && m.key == "name" && m.value_end != npos) {
            std::string name;
            try {
              const nlohmann::json v = nlohmann::json::parse(call.substr(m.value_begin, m.value_end - m.value_begin));
              if (v.is_string()) name = v.get<std::string>();
            } catch (const nlohmann::json::exception&) {
            }
            if (name.empty())
              plain_json = true;
            else if (!plain_json)
              begin_call(std::move(name), out);
          }
          if (is_arguments_key(m.key)) args = &m;
        }
        if (plain_json && !named_) {
          fall_back_to_content(call_begin_ + 1, out);
          continue;
        }
        if (scan.error) {
          // A call that broke off into something that is not JSON: it ends with what it had,
          // and what follows is no answer to show.
          end_call("", out);
          broken_ = true;
          pos_ = buf_.size();
          state_ = State::text;
          return;
        }
        if (named_ && args && call[args->value_begin] == '{')
          stream_arguments(call_begin_ + args->value_begin,
                           args->value_end == npos ? buf_.size() : call_begin_ + args->value_end, out);
        if (!scan.complete) return;
        if (!named_) {
          fall_back_to_content(call_begin_ + 1, out);
          continue;
        }
        std::string final_args;
        if (!args) {
          final_args = "{}";
        } else if (!streaming_args_) {
          // Arguments sent as a JSON string (some models do) are that string's text.
          const std::string_view raw = call.substr(args->value_begin, args->value_end - args->value_begin);
          try {
            const nlohmann::json v = nlohmann::json::parse(raw);
            final_args = v.is_string() ? v.get<std::string>() : std::string(raw);
          } catch (const nlohmann::json::exception&) {
            final_args = std::string(raw);
          }
        }
        end_call(std::move(final_args), out);
        pos_ = call_begin_ + scan.end;
        state_ = State::after_call;
        continue;
      }
      case State::after_call: {
        if (format_ == ToolCallFormat::hermes) {
          const std::size_t j = skip_space(rest, 0);
          const std::string_view tail = rest.substr(j);
          if (tail.substr(0, kHermesClose.size()) == kHermesClose) {
            pos_ += j + kHermesClose.size();
          } else if (tail.size() < kHermesClose.size() && kHermesClose.substr(0, tail.size()) == tail && !at_end) {
            return;  // the closing tag may still be arriving
          }
        }
        state_ = in_array_ ? State::array_next : State::text;
        continue;
      }
      case State::mistral_name: {
        // Mistral v11+: [TOOL_CALLS]name[ARGS]{...}. The name runs to [ARGS], which may still be arriving.
        const auto identifier = [](std::string_view s) {
          return std::all_of(s.begin(), s.end(), [](char c) {
            return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.';
          });
        };
        const std::size_t k = rest.find(kMistralArgs);
        // The name ends at the first character that cannot be in one; [ARGS] must come there.
        std::size_t name_end = 0;
        while (name_end < rest.size() && identifier(rest.substr(name_end, 1))) ++name_end;
        if (name_end == rest.size() || (k == npos && rest.size() - name_end < kMistralArgs.size() &&
                                        kMistralArgs.substr(0, rest.size() - name_end) == rest.substr(name_end))) {
          return;  // the name or the [ARGS] after it is still arriving
        }
        if (k != name_end || name_end == 0) {
          fall_back_to_content(pos_, out);
          continue;
        }
        const std::string_view name = rest.substr(0, k);
        begin_call(std::string(name), out);
        pos_ += k + kMistralArgs.size();
        state_ = State::mistral_args;
        continue;
      }
      case State::mistral_args: {
        const std::size_t j = skip_space(rest, 0);
        if (j == rest.size()) return;
        call_begin_ = pos_ + j;
        bool error = false;
        const std::size_t end = scan_json_value(buf_, call_begin_, error);
        if (error) {
          end_call("", out);
          broken_ = true;
          pos_ = buf_.size();
          state_ = State::text;
          return;
        }
        stream_arguments(call_begin_, end == npos ? buf_.size() : end, out);
        if (end == npos) {
          pos_ = call_begin_;  // rescanned from here next time
          return;
        }
        end_call("", out);
        pos_ = end;
        state_ = State::text;
        continue;
      }
    }
  }
}

}  // namespace kiln::serve
