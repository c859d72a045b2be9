#pragma once
// The files of kiln serve's static pages, compiled into the binary: CMake writes their bytes into
// build/generated/<page>_files.cpp (cmake/embed_files.cmake), so `kiln serve` needs no file beside
// it and serves the pages of its own version.
#include <span>
#include <string_view>

namespace kiln::serve {

struct EmbeddedFile {
  std::string_view name;  // "index.html": the file's name in its page's folder
  std::string_view etag;  // quoted, as the ETag header carries it: a hash of the bytes
  std::string_view bytes;
};

// Every file of src/serve/dashboard/ (the /dashboard page), sorted by name.
std::span<const EmbeddedFile> dashboard_files();

// Every file of src/serve/chat_page/ (the chat page at /), sorted by name.
std::span<const EmbeddedFile> chat_page_files();

}  // namespace kiln::serve
