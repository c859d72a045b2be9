#include "serve/request_guard.h"

#include <boost/asio/ip/address.hpp>

#include <algorithm>
#include <cctype>
#include <string_view>

#include <fmt/format.h>

#include "core/error.h"

namespace kiln::serve {

namespace {

namespace ip = boost::asio::ip;

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

// RFC 3986 reg-name characters (unreserved, sub-delims, '%' of percent-encoding).
bool reg_name_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || std::string_view("-._~!$&'()*+,;=%").find(c) != std::string_view::npos;
}

// RFC 9110 token characters (media types' type and subtype).
bool token(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s)
    if (!std::isalnum(static_cast<unsigned char>(c)) && std::string_view("!#$%&'*+-.^_`|~").find(c) == std::string_view::npos)
      return false;
  return true;
}

// The text of an IP address in canonical form ("::1", "127.0.0.1"), or "" when `s` is not one.
std::string canonical_address(const std::string& s) {
  boost::system::error_code ec;
  const ip::address a = ip::make_address(s, ec);
  return ec ? std::string() : a.to_string();
}

// 127.0.0.0/8, ::1, and 127.x written as an IPv4-mapped IPv6 address.
bool loopback_address(const std::string& s) {
  boost::system::error_code ec;
  const ip::address a = ip::make_address(s, ec);
  if (ec) return false;
  if (a.is_v6() && a.to_v6().is_v4_mapped()) return ip::make_address_v4(ip::v4_mapped, a.to_v6()).is_loopback();
  return a.is_loopback();
}

// A Host header's value, or an origin's authority: the name lower-cased, without IPv6 brackets
// or one trailing dot ("localhost." is localhost), IP addresses in canonical form; the port as
// written ("" when absent).
struct HostPort {
  std::string name, port;
};

std::optional<HostPort> parse_host_port(std::string_view s) {
  HostPort hp;
  std::string_view rest;
  if (!s.empty() && s.front() == '[') {
    const std::size_t close = s.find(']');
    if (close == std::string_view::npos) return std::nullopt;
    boost::system::error_code ec;
    const ip::address_v6 a = ip::make_address_v6(std::string(s.substr(1, close - 1)), ec);
    if (ec) return std::nullopt;
    hp.name = a.to_string();
    rest = s.substr(close + 1);
  } else {
    const std::size_t colon = s.find(':');
    const std::string_view name = s.substr(0, colon);
    if (name.empty() || !std::all_of(name.begin(), name.end(), reg_name_char)) return std::nullopt;
    hp.name = lower(name);
    if (hp.name.size() > 1 && hp.name.back() == '.') hp.name.pop_back();
    if (const std::string a = canonical_address(hp.name); !a.empty()) hp.name = a;
    if (colon != std::string_view::npos) rest = s.substr(colon);
  }
  if (!rest.empty()) {
    if (rest.front() != ':') return std::nullopt;
    rest.remove_prefix(1);
    if (rest.size() > 5 || !std::all_of(rest.begin(), rest.end(), [](char c) { return c >= '0' && c <= '9'; }))
      return std::nullopt;
    hp.port = std::string(rest);
  }
  return hp;
}

std::string default_port(std::string_view scheme) {
  if (scheme == "http") return "80";
  if (scheme == "https") return "443";
  return "";
}

// An origin as browsers send it: scheme://host[:port], nothing after the authority.
struct Origin {
  std::string scheme;
  HostPort host;
};

std::optional<Origin> parse_origin(std::string_view s) {
  const std::size_t sep = s.find("://");
  if (sep == std::string_view::npos || sep == 0) return std::nullopt;
  Origin o;
  o.scheme = lower(s.substr(0, sep));
  if (!std::isalpha(static_cast<unsigned char>(o.scheme.front())) ||
      !std::all_of(o.scheme.begin(), o.scheme.end(), [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '+' || c == '-' || c == '.'; }))
    return std::nullopt;
  const std::string_view authority = s.substr(sep + 3);
  if (authority.find_first_of("/?#@") != std::string_view::npos) return std::nullopt;
  auto hp = parse_host_port(authority);
  if (!hp) return std::nullopt;
  o.host = std::move(*hp);
  if (o.host.port == default_port(o.scheme)) o.host.port.clear();
  return o;
}

std::string serialize(const Origin& o) {
  const bool v6 = o.host.name.find(':') != std::string::npos;
  return o.scheme + "://" + (v6 ? "[" + o.host.name + "]" : o.host.name) + (o.host.port.empty() ? "" : ":" + o.host.port);
}

bool web_scheme(const Origin& o) { return o.scheme == "http" || o.scheme == "https"; }

// A page served by this very server (through the Host it was asked for): the browser names its
// own origin on some requests, and those are never cross-site.
bool same_origin(const Origin& o, const HostPort& host) {
  if (!web_scheme(o)) return false;
  const std::string fallback = default_port(o.scheme);
  return o.host.name == host.name && (o.host.port.empty() ? fallback : o.host.port) == (host.port.empty() ? fallback : host.port);
}

// Pages on this machine (any port), as Ollama allows by default: local tools and notebooks.
bool loopback_origin(const Origin& o) {
  return web_scheme(o) && (o.host.name == "localhost" || loopback_address(o.host.name));
}

// application/json, application/*+json, with any parameters (charset=utf-8).
bool json_media_type(std::string_view value) {
  const std::string_view essence = trim(value.substr(0, value.find(';')));
  const std::size_t slash = essence.find('/');
  if (slash == std::string_view::npos) return false;
  const std::string type = lower(essence.substr(0, slash)), subtype = lower(essence.substr(slash + 1));
  if (!token(type) || !token(subtype)) return false;
  return type == "application" && (subtype == "json" || (subtype.size() > 5 && ends_with(subtype, "+json")));
}

// Request headers a browser client may send, named in a preflight's
// Access-Control-Request-Headers: the API key, the JSON body's type, OpenAI's request headers,
// and what the official JavaScript client adds (User-Agent, which Firefox lists because it is
// set by script, and the X-Stainless-* platform, retry and timeout headers).
bool allowed_request_header(std::string_view name) {
  static constexpr std::string_view kAllowed[] = {"authorization", "content-type",        "accept",        "user-agent",
                                                   "x-request-id",  "openai-organization", "openai-project"};
  return std::find(std::begin(kAllowed), std::end(kAllowed), name) != std::end(kAllowed) || name.rfind("x-stainless-", 0) == 0;
}

std::string allowed_request_headers(std::string_view requested) {
  std::string out;
  while (!requested.empty()) {
    const std::size_t comma = requested.find(',');
    const std::string name = lower(trim(requested.substr(0, comma)));
    requested = comma == std::string_view::npos ? std::string_view() : requested.substr(comma + 1);
    if (!name.empty() && allowed_request_header(name)) out += (out.empty() ? "" : ", ") + name;
  }
  return out;
}

std::size_t count_headers(const HttpRequest& r, std::string_view lower_name) {
  return static_cast<std::size_t>(
      std::count_if(r.headers.begin(), r.headers.end(), [&](const auto& h) { return h.first == lower_name; }));
}

ApiError invalid_host(std::string message) {
  return ApiError(400, "invalid_request_error", std::move(message), "", "invalid_host");
}

}  // namespace

RequestGuard::RequestGuard(RequestGuardOptions o) {
  bound_ = canonical_address(o.bind_address);
  // An address the server cannot bind fails there; until then, check Host names.
  check_hosts_ = bound_.empty() || loopback_address(bound_);
  if (bound_.empty()) bound_ = lower(o.bind_address);
  for (const std::string& entry : o.allowed_hosts) {
    const std::string e = lower(trim(entry));
    std::optional<HostPort> hp;
    if (e == "*") {
      any_host_ = true;
      continue;
    }
    if (e.rfind("*.", 0) == 0) {
      hp = parse_host_port(e.substr(2));
      if (hp && hp->port.empty() && canonical_address(hp->name).empty()) {
        host_suffixes_.push_back("." + hp->name);
        continue;
      }
    } else if (const std::string a = canonical_address(e); !a.empty()) {
      exact_hosts_.push_back(a);  // an IPv6 address written without brackets
      continue;
    } else if ((hp = parse_host_port(e)) && hp->port.empty()) {
      exact_hosts_.push_back(hp->name);
      continue;
    }
    fail("serve: --allowed-hosts '{}' is not a host name without a port (expected e.g. kiln.internal, 10.0.0.5, "
         "*.example.com or *)",
         entry);
  }
  if (!o.allowed_hosts.empty()) check_hosts_ = !any_host_;
  for (const std::string& entry : o.cors_origins) {
    std::string_view e = trim(entry);
    if (e == "*") {
      any_origin_ = true;
      continue;
    }
    if (ends_with(e, "/")) e.remove_suffix(1);  // "https://app.example.com/" as copied from an address bar
    const auto origin = parse_origin(e);
    if (!origin)
      fail("serve: --cors-origins '{}' is not an origin (expected scheme://host[:port], e.g. https://app.example.com, or *)",
           entry);
    origins_.push_back(serialize(*origin));
  }
}

bool RequestGuard::host_allowed(const std::string& name) const {
  if (!check_hosts_) return true;
  if (name == "localhost" || ends_with(name, ".localhost") || loopback_address(name) || name == bound_) return true;
  if (std::find(exact_hosts_.begin(), exact_hosts_.end(), name) != exact_hosts_.end()) return true;
  return std::any_of(host_suffixes_.begin(), host_suffixes_.end(), [&](const std::string& s) { return ends_with(name, s); });
}

GuardVerdict RequestGuard::check(const HttpRequest& req) const {
  GuardVerdict v;
  const auto refuse = [&v](GuardRefusal why, ApiError error) {
    v.refused = why;
    v.error = std::move(error);
    return v;
  };

  // 1. Host. RFC 9112 asks for 400 on a missing (HTTP/1.1), repeated or malformed Host.
  std::optional<HostPort> host;
  if (count_headers(req, "host") > 1) return refuse(GuardRefusal::host, invalid_host("the request has more than one Host header"));
  if (const std::string* h = req.header("host")) {
    host = parse_host_port(trim(*h));
    if (!host) return refuse(GuardRefusal::host, invalid_host(fmt::format("the Host header '{}' is not a host name with an optional port", *h)));
    if (!host_allowed(host->name)) {
      const bool v6 = host->name.find(':') != std::string::npos;
      return refuse(GuardRefusal::host,
                    ApiError(403, "invalid_request_error",
                             fmt::format("Host '{}' is not allowed: this server answers only for localhost, loopback addresses, "
                                         "its own address{} (else a web page could reach it by DNS rebinding); "
                                         "to allow this name, start it with --allowed-hosts {}",
                                         v6 ? "[" + host->name + "]" : host->name,
                                         exact_hosts_.empty() && host_suffixes_.empty() ? "" : " and the names given with --allowed-hosts",
                                         host->name),
                             "", "host_not_allowed"));
    }
  } else if (req.version >= 11) {
    return refuse(GuardRefusal::host, invalid_host("the request has no Host header (HTTP/1.1 requires one)"));
  }

  // 2. Origin, and CORS preflights. Only browsers send Origin; other clients pass untouched.
  if (const std::string* origin_header = req.header("origin")) {
    // The answer depends on Origin: caches must not give one origin's answer to another.
    v.headers.emplace_back("Vary", "Origin");
    const std::string value(trim(*origin_header));
    const auto origin = parse_origin(value);
    bool allowed = any_origin_;
    if (!allowed && origin && count_headers(req, "origin") == 1) {
      allowed = (host && same_origin(*origin, *host)) || loopback_origin(*origin) ||
                std::find(origins_.begin(), origins_.end(), serialize(*origin)) != origins_.end();
    }
    if (!allowed) {
      // A sandboxed frame, a file:// page or a redirect sends "null": no origin to list.
      const std::string how = origin ? "start the server with --cors-origins " + serialize(*origin)
                                     : std::string("only --cors-origins '*' allows it");
      return refuse(GuardRefusal::origin,
                    ApiError(403, "invalid_request_error",
                             fmt::format("Origin '{}' is not allowed: pages on other sites may not call this server from a "
                                         "browser; to allow this web app, {}",
                                         value, how),
                             "", "origin_not_allowed"));
    }
    // The value the browser sent, which is what it compares with. No Allow-Credentials: kiln
    // uses no cookies, and the API key travels in Authorization, set by the page's script.
    v.headers.emplace_back("Access-Control-Allow-Origin", any_origin_ ? "*" : value);
    // Response headers a page's script may read besides the safelisted ones: when to retry
    // after a 429/503, and the request id OpenAI's clients look for.
    v.headers.emplace_back("Access-Control-Expose-Headers", "Retry-After, X-Request-Id");
    if (req.method == "OPTIONS" && req.header("access-control-request-method")) {
      v.preflight = true;
      v.headers.emplace_back("Access-Control-Allow-Methods", "GET, POST, OPTIONS, HEAD");
      if (const std::string* requested = req.header("access-control-request-headers")) {
        // Only the ones the API uses: a browser then refuses a request that would send others.
        if (std::string allowed_headers = allowed_request_headers(*requested); !allowed_headers.empty())
          v.headers.emplace_back("Access-Control-Allow-Headers", std::move(allowed_headers));
      }
      v.headers.emplace_back("Access-Control-Max-Age", "600");
      // Chrome asks before a public site may call a server on this machine or network; an
      // origin the operator allowed may.
      if (const std::string* pna = req.header("access-control-request-private-network"); pna && lower(trim(*pna)) == "true")
        v.headers.emplace_back("Access-Control-Allow-Private-Network", "true");
      return v;
    }
  }

  // 3. Content type. Every POST kiln serves takes a JSON body (an endpoint that takes another
  // one would be excepted here).
  if (req.method == "POST") {
    if (const std::string* ct = req.header("content-type"); ct && !json_media_type(*ct)) {
      return refuse(GuardRefusal::content_type,
                    ApiError(415, "invalid_request_error",
                             fmt::format("Content-Type '{}' is not supported: send the JSON body with "
                                         "'Content-Type: application/json'",
                                         *ct),
                             "", "unsupported_media_type"));
    }
  }
  return v;
}

}  // namespace kiln::serve
