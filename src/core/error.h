#pragma once
// Errors in kiln are exceptions of one type that carry a complete, one-line message naming
// the file, the field and what was expected. Front ends catch them at the top, print
// "kiln: <message>" and exit non-zero; nothing below the front ends prints or exits.
#include <stdexcept>
#include <string>
#include <utility>

#include <fmt/format.h>

namespace kiln {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

// Throws kiln::Error with a fmt-formatted message.
template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> format, Args&&... args) {
  throw Error(fmt::format(format, std::forward<Args>(args)...));
}

// Checks an invariant that input data must satisfy (not a programming error).
#define KILN_CHECK(cond, ...)        \
  do {                               \
    if (!(cond)) ::kiln::fail(__VA_ARGS__); \
  } while (0)

}  // namespace kiln
