#include "serve/chat_page.h"

#include <fmt/format.h>

#include <string_view>

#include "serve/api_error.h"
#include "serve/embedded_files.h"
#include "serve/static_page.h"

namespace kiln::serve {

namespace {

// The page's files live under /chat/ so that the root holds one path only; the page links them
// relative to itself (chat/chat.js), which also works behind a proxy under a prefix.
constexpr std::string_view kFilePrefix = "/chat/";
constexpr std::string_view kIndex = "index.html";

}  // namespace

bool is_chat_page_path(const std::string& path) {
  return path == "/" || (path.size() > kFilePrefix.size() && path.starts_with(kFilePrefix));
}

HttpResponse chat_page_response(const HttpRequest& request) {
  const std::string& path = request.path;
  const std::string_view name = path == "/" ? kIndex : std::string_view(path).substr(kFilePrefix.size());
  // index.html is the page at /, not a second copy under /chat/.
  const EmbeddedFile* file = name == kIndex && path != "/" ? nullptr : find_embedded_file(chat_page_files(), name);
  if (file == nullptr)
    throw ApiError(404, "invalid_request_error", fmt::format("no such file of the chat page: {}", path), "",
                   "not_found");
  return embedded_file_response(request, *file);
}

}  // namespace kiln::serve
