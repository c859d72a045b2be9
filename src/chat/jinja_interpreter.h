#pragma once
// kiln's Jinja interpreter for chat templates: parse a template once, render it many times
// against a dict of variables. Behaves as Jinja2 3.1 with Hugging Face's settings (trim_blocks,
// lstrip_blocks, the default Undefined: printing or testing it is fine, using it in arithmetic,
// reading its attributes or calling it is an error). Every error, at parse or render time, is
// one kiln::Error line "chat template: line L:C: ...". Renders are bounded (see RenderLimits),
// so a runaway or hostile template fails cleanly instead of hanging or exhausting memory.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "chat/jinja_lexer.h"
#include "chat/jinja_value.h"

namespace kiln::jinja {

struct Node;

struct RenderLimits {
  std::size_t max_output_bytes = 8u << 20;  // the rendered text, and any one string or block made on the way
  std::size_t max_list_items = 1u << 20;    // any one list (range(), repetition, concatenation)
  int max_depth = 400;                      // nested evaluation, which bounds macro recursion
  std::uint64_t max_steps = 20'000'000;     // evaluation steps plus bytes and items touched / 32
};

struct RenderOptions {
  RenderLimits limits;
  std::optional<long long> now;  // seconds since the epoch for strftime_now; real time when unset
};

class Template {
 public:
  // Parses `source`; throws kiln::Error with the line and column of the first problem.
  explicit Template(std::string_view source, const LexOptions& options = {});

  // Renders with `variables`, a dict (missing variables are undefined). Throws kiln::Error.
  std::string render(const Value& variables, const RenderOptions& options = {}) const;

 private:
  std::shared_ptr<const std::vector<std::unique_ptr<Node>>> body_;
};

}  // namespace kiln::jinja
