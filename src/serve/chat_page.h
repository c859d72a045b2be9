#pragma once
// GET /: a chat page for trying the served models from a browser. The page is static (HTML, CSS
// and JavaScript from src/serve/chat_page/, compiled into the binary) and talks to the server
// only through the public API: it lists /v1/models and streams /v1/chat/completions, keeping the
// conversation in the tab. The page holds no data, so it is answered without the API key, as the
// dashboard is; when the server has keys, its API calls are refused (401) until the user gives
// the key, which the page keeps in the tab's sessionStorage and sends as a Bearer token (as
// llama-server's web UI asks for its key). Its files' headers (Content-Security-Policy, ETag) are
// those of every static page (static_page.h).
#include <string>

#include "serve/http_server.h"

namespace kiln::serve {

// "/" (the page) and the paths under /chat/ (its files).
bool is_chat_page_path(const std::string& path);

// The answer to GET or HEAD of a chat page path: the page or one of its files (200, or 304 when
// If-None-Match names its ETag). Throws ApiError 404 for a file the page does not have.
HttpResponse chat_page_response(const HttpRequest& request);

}  // namespace kiln::serve
