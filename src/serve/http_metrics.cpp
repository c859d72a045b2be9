#include "serve/http_metrics.h"

namespace kiln::serve {

monitor::ScopedCollector add_http_server_metrics(monitor::Registry& registry, const HttpServer& server) {
  return registry.add_collector([&server](monitor::Collection& c) {
    const HttpServerStats s = server.stats();
    c.gauge("kiln_http_connections_open", "Open client connections.", s.open_connections);
    c.counter("kiln_http_connections_total", "Client connections accepted.", static_cast<double>(s.connections_total));
    c.counter("kiln_http_connections_rejected_total",
              "Connections refused with 503: over the connection cap, or out of file descriptors.",
              static_cast<double>(s.connections_rejected));
    c.counter("kiln_http_connections_evicted_total",
              "Idle connections closed to give their slot to a newer connection when the table was full.",
              static_cast<double>(s.connections_evicted));
    c.counter("kiln_http_connections_reserve_total",
              "Connections admitted to the reserve beyond the caps (they may only ask /health and /ready).",
              static_cast<double>(s.connections_reserve));
    c.counter("kiln_http_header_timeouts_total",
              "Connections closed because their request header did not arrive within --header-timeout.",
              static_cast<double>(s.header_timeouts));
    c.counter("kiln_http_accept_errors_total", "accept() failures (out of file descriptors or memory).",
              static_cast<double>(s.accept_errors));
    c.gauge("kiln_http_requests_in_flight", "Requests read and not yet fully answered.", s.requests_in_flight);
    c.counter("kiln_http_requests_total", "Requests the HTTP server read, whoever answered them.",
              static_cast<double>(s.requests_total));
  });
}

}  // namespace kiln::serve
