#pragma once
// What kiln serve's static pages (the dashboard at /dashboard, the chat page at /) share: the
// answer to a request for one of their files, compiled into the binary (embedded_files.h).
//
// Every answer carries a Content-Security-Policy that lets the page load only its own files and
// talk only to its own origin (no inline script or style, no other site, no framing), and an ETag
// with "Cache-Control: no-cache": the browser keeps the files and revalidates them, getting 304
// while the binary is the same and the new files after an upgrade.
#include <span>
#include <string_view>

#include "serve/embedded_files.h"
#include "serve/http_server.h"

namespace kiln::serve {

// The file of `files` named `name`, or nullptr.
const EmbeddedFile* find_embedded_file(std::span<const EmbeddedFile> files, std::string_view name);

// The answer to GET or HEAD of `file`: 200 with its bytes and content type (from its name's
// extension), or 304 when the request's If-None-Match names its ETag.
HttpResponse embedded_file_response(const HttpRequest& request, const EmbeddedFile& file);

}  // namespace kiln::serve
