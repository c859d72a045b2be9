#pragma once
// The HTTP server's own counts as metrics, read at each collection: connections open, accepted
// and refused, accept() failures, requests in flight and read. kiln_http_requests_total counts
// every request the server read, also those it answered itself (413, 431, 408) before the API
// saw them; kiln_requests_total (the API's) counts what the API answered.
#include "monitor/registry.h"
#include "serve/http_server.h"

namespace kiln::serve {

// `server` must outlive the returned handle.
[[nodiscard]] monitor::ScopedCollector add_http_server_metrics(monitor::Registry& registry, const HttpServer& server);

}  // namespace kiln::serve
