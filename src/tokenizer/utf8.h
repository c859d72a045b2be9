#pragma once
// UTF-8 helpers shared by the tokenizers: strict validation (Unicode Table 3-7: no overlongs,
// no surrogates, nothing above U+10FFFF), splitting text into characters, and assembling
// decoded bytes into complete characters for streaming output.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace kiln::utf8 {

// U+FFFD, what invalid bytes become, one per byte (as sentencepiece and Python do).
inline constexpr std::string_view kReplacementCharacter = "\xEF\xBF\xBD";

// What the bytes at the start of a string hold.
enum class PrefixKind {
  Complete,    // one whole valid character of `length` bytes
  Incomplete,  // all bytes so far could begin a valid character, but more are needed
  Invalid,     // the first byte cannot begin a valid character here: consume `length` == 1
};
struct Prefix {
  PrefixKind kind;
  std::size_t length;
};

// Classifies the first character of `s` (which must not be empty).
Prefix scan_prefix(std::string_view s);

// True when every byte of `s` belongs to a complete valid character.
bool is_valid(std::string_view s);

// Byte length of the character that `lead` starts judged by the lead byte alone, capped at
// `available` (sentencepiece's OneCharLen): 1 for ASCII and stray bytes, 2/3/4 otherwise.
std::size_t char_length_from_lead(unsigned char lead, std::size_t available);

// Copies `s` to `out`, each invalid byte replaced with U+FFFD.
void append_sanitized(std::string_view s, std::string& out);

// Moves the complete characters at the front of `pending` to `out`, replacing bytes that can no
// longer start a valid character with U+FFFD. A trailing incomplete character stays in `pending`
// unless `flush`, in which case it is also turned into U+FFFD (one per byte).
void drain_complete(std::string& pending, std::string& out, bool flush);

// Appends the UTF-8 encoding of code point `cp` (at most U+10FFFF; the caller checks).
void append_code_point(std::uint32_t cp, std::string& out);

}  // namespace kiln::utf8
