// The request guard's policy without sockets: which Host names a bind answers (ports, IPv6,
// trailing dots, wildcards), which origins may call from a browser (same-origin, loopback,
// listed, null), the CORS headers and preflight answers, and the JSON content type.
#include "serve/request_guard.h"

#include <gtest/gtest.h>

#include "core/error.h"

namespace kiln::serve {
namespace {

HttpRequest make(std::string method, std::string path, HttpHeaders headers, unsigned version = 11) {
  HttpRequest r;
  r.method = std::move(method);
  r.path = r.target = std::move(path);
  r.headers = std::move(headers);
  r.version = version;
  return r;
}

HttpRequest get_with_host(const std::string& host) { return make("GET", "/v1/models", {{"host", host}}); }

// The value of a header of the verdict, or "" when absent.
std::string header(const GuardVerdict& v, const std::string& name) {
  for (const auto& [n, value] : v.headers)
    if (n == name) return value;
  return "";
}

RequestGuard guard(std::string bind, std::vector<std::string> hosts = {}, std::vector<std::string> origins = {}) {
  return RequestGuard(RequestGuardOptions{std::move(bind), std::move(hosts), std::move(origins)});
}

TEST(RequestGuard, LoopbackBindAnswersOnlyLoopbackNames) {
  const RequestGuard g = guard("127.0.0.1");
  EXPECT_TRUE(g.checks_hosts());
  for (const char* ok : {"localhost", "localhost:8080", "LOCALHOST", "localhost.", "localhost.:8080", "app.localhost:3000",
                         "127.0.0.1", "127.0.0.1:8080", "127.1.2.3:80", "[::1]", "[::1]:8080", "[0:0:0:0:0:0:0:1]:8080",
                         "[::ffff:127.0.0.1]:8080", " localhost:8080 "}) {
    const GuardVerdict v = g.check(get_with_host(ok));
    EXPECT_EQ(v.refused, GuardRefusal::none) << ok;
    EXPECT_FALSE(v.error) << ok;
  }
  for (const char* bad : {"evil.example", "evil.example:8080", "localhost.evil.example", "evillocalhost", "10.0.0.5:8080",
                          "0.0.0.0:8080", "[::2]:8080", "127.0.0.1.evil.example", "[::ffff:10.0.0.1]"}) {
    const GuardVerdict v = g.check(get_with_host(bad));
    EXPECT_EQ(v.refused, GuardRefusal::host) << bad;
    ASSERT_TRUE(v.error) << bad;
    EXPECT_EQ(v.error->status, 403) << bad;
    EXPECT_EQ(v.error->code, "host_not_allowed") << bad;
    EXPECT_NE(v.error->message.find("--allowed-hosts"), std::string::npos) << v.error->message;
  }
  // The IPv6 loopback bind, too.
  EXPECT_FALSE(guard("::1").check(get_with_host("[::1]:8080")).error);
  EXPECT_TRUE(guard("::1").check(get_with_host("evil.example")).error);
}

TEST(RequestGuard, MissingRepeatedOrMalformedHostIs400) {
  const RequestGuard g = guard("0.0.0.0");
  for (const char* bad : {"", "a b", "[::1", "[nothing]:80", "host:port", "host:123456", "::1", "[::1]x", "a/b"}) {
    const GuardVerdict v = g.check(get_with_host(bad));
    ASSERT_TRUE(v.error) << bad;
    EXPECT_EQ(v.error->status, 400) << bad;
    EXPECT_EQ(v.error->code, "invalid_host") << bad;
  }
  const GuardVerdict none = g.check(make("GET", "/health", {}));
  ASSERT_TRUE(none.error);
  EXPECT_EQ(none.error->status, 400);
  const GuardVerdict two = g.check(make("GET", "/health", {{"host", "localhost"}, {"host", "evil.example"}}));
  ASSERT_TRUE(two.error);
  EXPECT_EQ(two.error->status, 400);
  // HTTP/1.0 has no Host requirement; a browser always sends one.
  EXPECT_FALSE(guard("127.0.0.1").check(make("GET", "/health", {}, 10)).error);
}

TEST(RequestGuard, OtherBindsAnswerAnyHostUnlessNamesAreGiven) {
  EXPECT_FALSE(guard("0.0.0.0").checks_hosts());
  EXPECT_FALSE(guard("0.0.0.0").check(get_with_host("10.1.2.3:8080")).error);  // a Kubernetes probe: the pod's IP
  EXPECT_FALSE(guard("::").check(get_with_host("anything.example")).error);
  EXPECT_FALSE(guard("10.0.0.5").check(get_with_host("whatever:1")).error);
  // With names given, only those, the bound address and loopback names.
  const RequestGuard g = guard("10.0.0.5", {"kiln.internal"});
  EXPECT_TRUE(g.checks_hosts());
  for (const char* ok : {"kiln.internal", "KILN.INTERNAL:8080", "kiln.internal.", "10.0.0.5:8080", "localhost", "127.0.0.1"})
    EXPECT_FALSE(g.check(get_with_host(ok)).error) << ok;
  for (const char* bad : {"evil.example", "a.kiln.internal", "10.0.0.6"}) {
    const GuardVerdict v = g.check(get_with_host(bad));
    ASSERT_TRUE(v.error) << bad;
    EXPECT_EQ(v.error->status, 403) << bad;
  }
}

TEST(RequestGuard, AllowedHostsTakeNamesWildcardsAndAddresses) {
  const RequestGuard g = guard("127.0.0.1", {"kiln.internal", "*.corp.example", " Upper.Example ", "fd00::5", "[fd00::6]", "10.0.0.7"});
  for (const char* ok : {"kiln.internal:8080", "a.corp.example", "b.a.corp.example:443", "upper.example", "[fd00::5]:8080",
                         "[FD00:0::6]", "10.0.0.7:1"})
    EXPECT_FALSE(g.check(get_with_host(ok)).error) << ok;
  // "*." allows subdomains only; a suffix must match at a dot.
  for (const char* bad : {"corp.example", "evilcorp.example", "kiln.internal.evil.example", "[fd00::7]", "10.0.0.8"})
    EXPECT_TRUE(g.check(get_with_host(bad)).error) << bad;
  // "*" allows any name (a well-formed one).
  const RequestGuard any = guard("127.0.0.1", {"*"});
  EXPECT_FALSE(any.checks_hosts());
  EXPECT_FALSE(any.check(get_with_host("evil.example")).error);
  EXPECT_TRUE(any.check(get_with_host("a b")).error);
  // Entries that are not host names fail at startup, naming the flag.
  for (const char* bad : {"kiln.internal:8080", "http://kiln.internal", "a b", "", "*.", "*.10.0.0.1", "kiln/x"}) {
    try {
      guard("127.0.0.1", {bad});
      ADD_FAILURE() << "accepted --allowed-hosts " << bad;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("--allowed-hosts"), std::string::npos) << e.what();
    }
  }
}

HttpRequest from_origin(const std::string& method, const std::string& origin, const std::string& host = "127.0.0.1:8080",
                        HttpHeaders more = {}) {
  HttpHeaders h = {{"host", host}, {"origin", origin}};
  h.insert(h.end(), more.begin(), more.end());
  return make(method, "/v1/chat/completions", std::move(h));
}

TEST(RequestGuard, ForeignOriginsAreRefused) {
  const RequestGuard g = guard("127.0.0.1");
  for (const char* bad : {"https://evil.example", "http://evil.example:8080", "null", "http://127.0.0.1.evil.example",
                          "http://localhost.evil.example", "file://", "chrome-extension://abc", "https://evil.example/path",
                          "garbage"}) {
    const GuardVerdict v = g.check(from_origin("POST", bad, "127.0.0.1:8080", {{"content-type", "text/plain"}}));
    EXPECT_EQ(v.refused, GuardRefusal::origin) << bad;
    ASSERT_TRUE(v.error) << bad;
    EXPECT_EQ(v.error->status, 403) << bad;
    EXPECT_EQ(v.error->code, "origin_not_allowed") << bad;
    EXPECT_NE(v.error->message.find("--cors-origins"), std::string::npos) << v.error->message;
    EXPECT_EQ(header(v, "Access-Control-Allow-Origin"), "") << bad;
    EXPECT_EQ(header(v, "Vary"), "Origin");
  }
  // A page of another port on this machine is refused if its Host is not loopback: Host first.
  EXPECT_EQ(g.check(from_origin("POST", "https://evil.example", "evil.example")).refused, GuardRefusal::host);
  // Two Origin headers are not a browser's.
  HttpRequest two = from_origin("GET", "http://localhost:3000", "127.0.0.1:8080", {{"origin", "https://evil.example"}});
  EXPECT_EQ(g.check(two).refused, GuardRefusal::origin);
}

TEST(RequestGuard, SameOriginAndLoopbackOriginsAreAllowed) {
  const RequestGuard g = guard("127.0.0.1");
  struct Case {
    const char* origin;
    const char* host;
  };
  for (const Case& c : {Case{"http://127.0.0.1:8080", "127.0.0.1:8080"}, Case{"http://localhost:3000", "127.0.0.1:8080"},
                        Case{"https://localhost", "localhost:8080"}, Case{"http://127.0.0.2:1", "localhost"},
                        Case{"http://[::1]:5173", "[::1]:8080"}, Case{"HTTP://LOCALHOST:3000", "localhost:8080"},
                        Case{"http://app.localhost:8080", "app.localhost:8080"}, Case{"http://localhost", "localhost:80"}}) {
    const GuardVerdict v = g.check(from_origin("POST", c.origin, c.host, {{"content-type", "application/json"}}));
    EXPECT_FALSE(v.error) << c.origin << " on " << c.host;
    EXPECT_EQ(header(v, "Access-Control-Allow-Origin"), c.origin);
    EXPECT_EQ(header(v, "Vary"), "Origin");
    EXPECT_FALSE(v.preflight);
  }
  // Same origin needs the same port (a default one counts): another port is another origin.
  const RequestGuard named = guard("127.0.0.1", {"kiln.internal"});
  EXPECT_FALSE(named.check(from_origin("GET", "http://kiln.internal", "kiln.internal:80")).error);
  EXPECT_FALSE(named.check(from_origin("GET", "https://kiln.internal", "kiln.internal")).error);
  EXPECT_TRUE(named.check(from_origin("GET", "http://kiln.internal:9999", "kiln.internal:8080")).error);
  EXPECT_TRUE(named.check(from_origin("GET", "https://kiln.internal", "kiln.internal:80")).error);
  // No Origin (curl, SDKs on a server): no CORS headers at all.
  const GuardVerdict plain = g.check(get_with_host("localhost:8080"));
  EXPECT_FALSE(plain.error);
  EXPECT_TRUE(plain.headers.empty());
}

TEST(RequestGuard, CorsOriginsAreListedExactlyOrAny) {
  const RequestGuard g = guard("127.0.0.1", {}, {"https://app.example", "http://tool.example:8000/", "HTTPS://Upper.Example:443"});
  for (const char* ok : {"https://app.example", "https://app.example:443", "http://tool.example:8000", "https://upper.example"}) {
    const GuardVerdict v = g.check(from_origin("POST", ok));
    EXPECT_FALSE(v.error) << ok;
    EXPECT_EQ(header(v, "Access-Control-Allow-Origin"), ok);
    EXPECT_EQ(header(v, "Access-Control-Expose-Headers"), "Retry-After, X-Request-Id");
  }
  for (const char* bad : {"http://app.example", "https://app.example:8443", "https://sub.app.example", "http://tool.example", "null"})
    EXPECT_TRUE(g.check(from_origin("POST", bad)).error) << bad;
  // "*": any origin, "null" included, answered with "*".
  const RequestGuard any = guard("127.0.0.1", {}, {"*"});
  for (const char* o : {"https://evil.example", "null"}) {
    const GuardVerdict v = any.check(from_origin("POST", o));
    EXPECT_FALSE(v.error) << o;
    EXPECT_EQ(header(v, "Access-Control-Allow-Origin"), "*");
  }
  for (const char* bad : {"app.example", "https://app.example/api", "https://", "https://user@app.example", "null", ""}) {
    try {
      guard("127.0.0.1", {}, {bad});
      ADD_FAILURE() << "accepted --cors-origins " << bad;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("--cors-origins"), std::string::npos) << e.what();
    }
  }
}

TEST(RequestGuard, PreflightsFromAllowedOriginsAreAnswered) {
  const RequestGuard g = guard("127.0.0.1", {}, {"https://app.example"});
  // What the official openai client asks for (its X-Stainless-* headers), plus one it may not send.
  const GuardVerdict v = g.check(from_origin(
      "OPTIONS", "https://app.example", "127.0.0.1:8080",
      {{"access-control-request-method", "POST"},
       {"access-control-request-headers", "authorization,content-type,x-stainless-arch, X-Stainless-Lang ,x-stainless-os,"
                                          "x-stainless-package-version,x-stainless-retry-count,x-stainless-runtime,"
                                          "x-stainless-runtime-version,x-stainless-timeout,openai-organization,"
                                          "openai-project,x-request-id,x-evil,cookie"}}));
  EXPECT_FALSE(v.error);
  EXPECT_TRUE(v.preflight);
  EXPECT_EQ(header(v, "Access-Control-Allow-Origin"), "https://app.example");
  EXPECT_EQ(header(v, "Access-Control-Allow-Methods"), "GET, POST, OPTIONS, HEAD");
  EXPECT_EQ(header(v, "Access-Control-Allow-Headers"),
            "authorization, content-type, x-stainless-arch, x-stainless-lang, x-stainless-os, x-stainless-package-version, "
            "x-stainless-retry-count, x-stainless-runtime, x-stainless-runtime-version, x-stainless-timeout, "
            "openai-organization, openai-project, x-request-id");
  EXPECT_EQ(header(v, "Access-Control-Max-Age"), "600");
  EXPECT_EQ(header(v, "Vary"), "Origin");
  EXPECT_EQ(header(v, "Access-Control-Allow-Private-Network"), "");
  // Nothing requested: no Allow-Headers. Chrome's private-network question is answered.
  const GuardVerdict bare = g.check(from_origin("OPTIONS", "https://app.example", "localhost",
                                                {{"access-control-request-method", "GET"},
                                                 {"access-control-request-private-network", "true"}}));
  EXPECT_TRUE(bare.preflight);
  EXPECT_EQ(header(bare, "Access-Control-Allow-Headers"), "");
  EXPECT_EQ(header(bare, "Access-Control-Allow-Private-Network"), "true");
  // Any path, any Content-Type: a preflight has no body.
  HttpRequest odd = from_origin("OPTIONS", "http://localhost:3000", "localhost", {{"access-control-request-method", "POST"}});
  odd.path = "/no/such/path";
  EXPECT_TRUE(g.check(odd).preflight);
  // From a refused origin: 403, no CORS answer.
  const GuardVerdict refused = g.check(from_origin("OPTIONS", "https://evil.example", "127.0.0.1:8080",
                                                   {{"access-control-request-method", "POST"}}));
  EXPECT_FALSE(refused.preflight);
  ASSERT_TRUE(refused.error);
  EXPECT_EQ(refused.error->status, 403);
  EXPECT_EQ(header(refused, "Access-Control-Allow-Origin"), "");
  // OPTIONS without Origin or without Access-Control-Request-Method is no preflight: routed as any request.
  EXPECT_FALSE(g.check(make("OPTIONS", "/v1/models", {{"host", "localhost"}})).preflight);
  EXPECT_FALSE(g.check(from_origin("OPTIONS", "https://app.example")).preflight);
}

TEST(RequestGuard, PostsMustBeJson) {
  const RequestGuard g = guard("127.0.0.1");
  const auto post = [&](const char* content_type) {
    HttpHeaders h = {{"host", "localhost:8080"}};
    if (content_type != nullptr) h.emplace_back("content-type", content_type);
    return g.check(make("POST", "/v1/completions", std::move(h)));
  };
  for (const char* ok : {"application/json", "application/json; charset=utf-8", "Application/JSON;charset=UTF-8",
                         " application/json ", "application/vnd.api+json", "application/merge-patch+json; x=1"})
    EXPECT_FALSE(post(ok).error) << ok;
  // No Content-Type: accepted (see request_guard.h).
  EXPECT_FALSE(post(nullptr).error);
  for (const char* bad : {"text/plain", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded",
                          "multipart/form-data; boundary=x", "text/json", "application/jsonx", "application/+json",
                          "application/json, text/plain", "text/plain, application/json", "", "json", "*/*"}) {
    const GuardVerdict v = post(bad);
    EXPECT_EQ(v.refused, GuardRefusal::content_type) << bad;
    ASSERT_TRUE(v.error) << bad;
    EXPECT_EQ(v.error->status, 415) << bad;
    EXPECT_EQ(v.error->code, "unsupported_media_type") << bad;
    EXPECT_NE(v.error->message.find("Content-Type: application/json"), std::string::npos) << v.error->message;
  }
  // GET carries no body to check.
  EXPECT_FALSE(g.check(make("GET", "/v1/models", {{"host", "localhost"}, {"content-type", "text/plain"}})).error);
  // An allowed cross-origin request refused for its type keeps its CORS headers: the page can read why.
  const GuardVerdict v = g.check(from_origin("POST", "http://localhost:3000", "localhost:8080", {{"content-type", "text/plain"}}));
  ASSERT_TRUE(v.error);
  EXPECT_EQ(v.error->status, 415);
  EXPECT_EQ(header(v, "Access-Control-Allow-Origin"), "http://localhost:3000");
}

}  // namespace
}  // namespace kiln::serve
