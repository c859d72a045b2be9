#pragma once
// GET /dashboard: the operator's live view of a running `kiln serve`. The page is static (HTML,
// CSS and JavaScript from src/serve/dashboard/, compiled into the binary); the browser polls
// /metrics and draws the charts itself. The page holds no data, so it is answered without the
// API key; the requests it makes for /metrics carry the key the operator pastes into it. Its
// files' headers (Content-Security-Policy, ETag) are those of every static page (static_page.h).
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
