#pragma once
// Base64 (RFC 4648's standard alphabet, with padding): how /v1/embeddings sends vectors with
// encoding_format "base64", as OpenAI does.
#include <cstddef>
#include <string>

namespace kiln::serve {

// Appends the base64 text of `n` bytes at `data` to `out`.
void append_base64(std::string& out, const void* data, std::size_t n);

}  // namespace kiln::serve
