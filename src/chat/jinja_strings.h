#pragma once
// Python's str operations on UTF-8 text, as the chat-template interpreter needs them: indexing
// and length count code points (an invalid byte counts as one), strip() knows Unicode
// whitespace, splitlines() Python's line boundaries. Case mapping is ASCII-only.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace kiln::jinja::text {

// Byte offset of each code point of `s`, plus s.size() at the end.
std::vector<std::size_t> char_offsets(std::string_view s);
std::size_t char_count(std::string_view s);
// The code points of `s` as separate strings.
std::vector<std::string> chars(std::string_view s);

// Byte length of the Unicode whitespace (Python's isspace) at the start / end of `s`.
std::size_t leading_space_bytes(std::string_view s);
std::size_t trailing_space_bytes(std::string_view s);

// str.strip / lstrip / rstrip: Unicode whitespace, or the code points of `chars` when given.
std::string strip(std::string_view s, const std::optional<std::string>& chars, bool left, bool right);
// str.split(): runs of whitespace when `sep` is absent, else exact separators. maxsplit < 0: all.
std::vector<std::string> split(std::string_view s, const std::optional<std::string>& sep, std::int64_t maxsplit);
// str.splitlines() (without keepends).
std::vector<std::string> splitlines(std::string_view s);
// str.replace(old, new, count); count < 0 replaces all.
std::string replace(std::string_view s, std::string_view old, std::string_view with, std::int64_t count);

std::string upper(std::string_view s);
std::string lower(std::string_view s);
std::string capitalize(std::string_view s);  // str.capitalize / Jinja's capitalize filter
std::string python_title(std::string_view s);  // str.title()
std::string jinja_title(std::string_view s);   // Jinja's title filter (words split at spaces, -, ( { [ <)

}  // namespace kiln::jinja::text
