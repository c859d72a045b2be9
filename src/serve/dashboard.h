#pragma once
// GET /dashboard: the operator's live view of a running `kiln serve`. The page is static (HTML,
// CSS and JavaScript from src/serve/dashboard/, compiled into the binary); the browser polls
// /metrics and draws the charts itself. The page holds no data, so it is answered without the
// API key; the requests it makes for /metrics carry the key the operator pastes into it.
//
// Every answer carries a Content-Security-Policy that lets the page load only its own files and
// talk only to its own origin (no inline script, no other site, no framing), and an ETag with
// "Cache-Control: no-cache": the browser keeps the files and revalidates them, getting 304 while
// the binary is the same and the new files after an upgrade.
#include <string>

#include "serve/http_server.h"

namespace kiln::serve {

// /dashboard, and the paths under /dashboard/ (its files).
bool is_dashboard_path(const std::string& path);

// The answer to GET or HEAD of a dashboard path: the page or one of its files (200, or 304 when
// If-None-Match names its ETag), a redirect from /dashboard/ to /dashboard. Throws ApiError 404
// for a file the page does not have.
HttpResponse dashboard_response(const HttpRequest& request);

}  // namespace kiln::serve
