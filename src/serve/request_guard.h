#pragma once
// Defences against web pages that drive the server through a user's browser. A page on any
// site can make the browser send requests to http://127.0.0.1:8080; without these checks a
// keyless server on loopback would run them:
//   - DNS rebinding: the page's own name is made to resolve to 127.0.0.1, so its requests are
//     same-origin for the browser. They still carry that name in Host, so a server bound to a
//     loopback address answers only Host names that mean "this machine" (loopback literals,
//     localhost, *.localhost, the bound address) or were configured (--allowed-hosts).
//   - Cross-site requests: a browser names the page's origin in Origin. A request from another
//     origin is refused unless the origin is loopback or listed (--cors-origins); allowed ones
//     get CORS answers, preflights (OPTIONS) included.
//   - "Simple" requests: a page may POST text/plain, form-urlencoded or multipart bodies
//     without a preflight. Every POST kiln serves takes JSON, so any other Content-Type is
//     refused (415). A POST without Content-Type is accepted: the browser APIs that can send one
//     (fetch and XMLHttpRequest with a binary body) always send Origin when cross-origin, and
//     HTML forms always send a Content-Type.
// The guard is a pure policy over the request's method, path and headers: no sockets, no state.
#include <optional>
#include <string>
#include <vector>

#include "serve/api_error.h"
#include "serve/http_server.h"

namespace kiln::serve {

struct RequestGuardOptions {
  std::string bind_address = "127.0.0.1";  // --host
  // --allowed-hosts: host names ("kiln.internal", or an IP address), "*.example.com" for its
  // subdomains, "*" for any. Empty: a loopback bind answers only loopback names; another bind
  // answers any Host.
  std::vector<std::string> allowed_hosts;
  // --cors-origins: exact origins ("https://app.example.com") or "*" for any.
  std::vector<std::string> cors_origins;
};

enum class GuardRefusal { none, host, origin, content_type };

struct GuardVerdict {
  GuardRefusal refused = GuardRefusal::none;
  std::optional<ApiError> error;  // when refused: what the client is told
  bool preflight = false;         // an allowed CORS preflight: answer 204 with `headers`, nothing more
  HttpHeaders headers;            // CORS headers for every response to this request, errors included
};

class RequestGuard {
 public:
  // Throws kiln::Error naming the flag when an --allowed-hosts or --cors-origins entry is not a
  // host name or an origin.
  explicit RequestGuard(RequestGuardOptions options = {});

  // Host, then Origin (and preflight), then Content-Type.
  GuardVerdict check(const HttpRequest& request) const;

  // Whether Host names are checked at all (a loopback bind, or --allowed-hosts given).
  bool checks_hosts() const { return check_hosts_; }

 private:
  bool host_allowed(const std::string& name) const;
  bool any_host_ = false;
  bool check_hosts_ = true;
  std::string bound_;                       // the bind address, canonical
  std::vector<std::string> exact_hosts_;    // canonical names and addresses
  std::vector<std::string> host_suffixes_;  // ".example.com" for "*.example.com"
  bool any_origin_ = false;
  std::vector<std::string> origins_;        // serialized: scheme://host[:port], default port left out
};

}  // namespace kiln::serve
