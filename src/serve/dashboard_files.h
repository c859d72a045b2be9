#pragma once
// The files of the dashboard page (src/serve/dashboard/), compiled into the binary: CMake writes
// their bytes into build/generated/dashboard_files.cpp (cmake/embed_files.cmake), so `kiln serve`
// needs no file beside it and serves the page of its own version.
#include <span>
#include <string_view>

namespace kiln::serve {

struct EmbeddedFile {
  std::string_view name;   // "index.html": the file's name in src/serve/dashboard/
  std::string_view etag;   // quoted, as the ETag header carries it: a hash of the bytes
  std::string_view bytes;
};

// Every file, sorted by name.
std::span<const EmbeddedFile> dashboard_files();

}  // namespace kiln::serve
