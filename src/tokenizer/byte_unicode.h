#pragma once
// GPT-2's byte-to-unicode mapping, shared by every byte-level BPE vocabulary: each of the 256
// byte values stands for one printable character, so that token texts are readable strings
// without spaces or control characters. Bytes that are already printable Latin-1 characters
// ('!'..'~', U+00A1..U+00AC, U+00AE..U+00FF) stand for themselves; the other 68 take the code
// points U+0100.. in byte order (so ' ' is "Ġ" U+0120 and '\n' is "Ċ" U+010A).
#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace kiln::byte_unicode {

// The code point that byte `b` stands for.
char32_t byte_to_code_point(std::uint8_t b);

// The UTF-8 text of the character that byte `b` stands for (2 bytes except for ASCII).
std::string_view byte_to_utf8(std::uint8_t b);

// Appends the mapped form of every byte of `bytes` (the form token texts are written in).
void encode(std::string_view bytes, std::string& out);

// Appends the bytes that the mapped text `text` stands for. Returns false, leaving `out` with
// whatever was decoded before, when `text` holds a character outside the mapping (or invalid
// UTF-8): such a text is not a byte-level token.
bool decode(std::string_view text, std::string& out);

}  // namespace kiln::byte_unicode
