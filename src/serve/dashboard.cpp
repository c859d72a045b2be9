#include "serve/dashboard.h"

#include <fmt/format.h>

#include <string_view>

#include "serve/api_error.h"
#include "serve/embedded_files.h"
#include "serve/static_page.h"

namespace kiln::serve {

namespace {

constexpr std::string_view kPrefix = "/dashboard";
constexpr std::string_view kIndex = "index.html";

}  // namespace

bool is_dashboard_path(const std::string& path) {
  return path == kPrefix || (path.size() > kPrefix.size() && path.starts_with(kPrefix) && path[kPrefix.size()] == '/');
}

HttpResponse dashboard_response(const HttpRequest& request) {
  const std::string& path = request.path;
  // The page links its files relative to /dashboard; from /dashboard/ they would miss.
  if (path == "/dashboard/") return HttpResponse{308, "", "", {{"Location", "../dashboard"}}};
  const std::string_view name = path == kPrefix ? kIndex : std::string_view(path).substr(kPrefix.size() + 1);
  const EmbeddedFile* file = name == kIndex && path != kPrefix ? nullptr : find_embedded_file(dashboard_files(), name);
  if (file == nullptr)
    throw ApiError(404, "invalid_request_error", fmt::format("no such file of the dashboard: {}", path), "", "not_found");
  return embedded_file_response(request, *file);
}

}  // namespace kiln::serve
