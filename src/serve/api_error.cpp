#include "serve/api_error.h"

#include <nlohmann/json.hpp>

namespace kiln::serve {

std::string error_json(const ApiError& e) {
  nlohmann::json body = {{"error",
                          {{"message", e.message},
                           {"type", e.type},
                           {"param", e.param.empty() ? nlohmann::json(nullptr) : nlohmann::json(e.param)},
                           {"code", e.code.empty() ? nlohmann::json(nullptr) : nlohmann::json(e.code)}}}};
  // Messages may quote client bytes that are not valid UTF-8: replace rather than throw.
  return body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

HttpResponse error_response(const ApiError& e) {
  HttpResponse r;
  r.status = e.status;
  r.body = error_json(e);
  r.headers = e.headers;
  if (e.status == 401) r.headers.emplace_back("WWW-Authenticate", "Bearer");
  return r;
}

}  // namespace kiln::serve
