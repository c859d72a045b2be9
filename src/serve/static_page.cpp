#include "serve/static_page.h"

#include <string>
#include <utility>

namespace kiln::serve {

namespace {

// Only the page's own files, scripts as files (no inline script or style, no eval), requests
// only to this origin (the page's fetches of the API); no <base>, no form posts, no framing (the
// pages take an API key: another site must not overlay them).
constexpr const char* kContentSecurityPolicy =
    "default-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

std::string_view content_type(std::string_view name) {
  const auto ends_with = [&](std::string_view ext) { return name.ends_with(ext); };
  if (ends_with(".html")) return "text/html; charset=utf-8";
  if (ends_with(".css")) return "text/css; charset=utf-8";
  if (ends_with(".js")) return "text/javascript; charset=utf-8";
  if (ends_with(".svg")) return "image/svg+xml";
  return "application/octet-stream";
}

// If-None-Match holds the ETag (or "*"), in a list of entity tags, weak or not (RFC 9110 13.1.2
// compares them weakly).
bool etag_matches(const std::string* if_none_match, std::string_view etag) {
  if (if_none_match == nullptr) return false;
  std::string_view list = *if_none_match;
  while (!list.empty()) {
    const std::size_t comma = list.find(',');
    std::string_view tag = list.substr(0, comma);
    while (!tag.empty() && (tag.front() == ' ' || tag.front() == '\t')) tag.remove_prefix(1);
    while (!tag.empty() && (tag.back() == ' ' || tag.back() == '\t')) tag.remove_suffix(1);
    if (tag.starts_with("W/")) tag.remove_prefix(2);
    if (tag == "*" || tag == etag) return true;
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  return false;
}

}  // namespace

const EmbeddedFile* find_embedded_file(std::span<const EmbeddedFile> files, std::string_view name) {
  for (const EmbeddedFile& f : files)
    if (f.name == name) return &f;
  return nullptr;
}

HttpResponse embedded_file_response(const HttpRequest& request, const EmbeddedFile& file) {
  HttpHeaders headers = {{"Content-Security-Policy", kContentSecurityPolicy},
                         {"X-Content-Type-Options", "nosniff"},
                         {"Referrer-Policy", "no-referrer"},
                         {"Cache-Control", "no-cache"},
                         {"ETag", std::string(file.etag)}};
  if (etag_matches(request.header("if-none-match"), file.etag)) return HttpResponse{304, "", "", std::move(headers)};
  return HttpResponse{200, std::string(content_type(file.name)), std::string(file.bytes), std::move(headers)};
}

}  // namespace kiln::serve
