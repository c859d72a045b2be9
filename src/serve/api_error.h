#pragma once
// Errors of the HTTP API in OpenAI's shape: {"error": {"message", "type", "param", "code"}},
// with the HTTP status that goes with them. Handlers throw ApiError; the router turns it into
// the response, so a bad request never gets further than the check that found it.
#include <stdexcept>
#include <string>

#include "serve/http_server.h"

namespace kiln::serve {

struct ApiError : std::runtime_error {
  int status;
  std::string type;   // "invalid_request_error", "authentication_error", "not_found_error", ...
  std::string param;  // the offending field ("messages[1].content"), or "" for none
  std::string code;   // machine-readable ("model_not_found", "invalid_api_key", ...), or ""
  HttpHeaders headers;  // e.g. Retry-After on 429 and 503
  // The whole message: what() stops at the first NUL, and a message may quote client text that
  // holds one (a model name, say).
  std::string message;

  ApiError(int status_, std::string type_, std::string message_, std::string param_ = "", std::string code_ = "")
      : std::runtime_error(message_),
        status(status_),
        type(std::move(type_)),
        param(std::move(param_)),
        code(std::move(code_)),
        message(std::move(message_)) {}
};

// 400 invalid_request_error naming the field.
inline ApiError invalid_field(const std::string& param, const std::string& message) {
  return ApiError(400, "invalid_request_error", message, param, "invalid_value");
}

// The JSON body of an error (one line).
std::string error_json(const ApiError& e);
HttpResponse error_response(const ApiError& e);

}  // namespace kiln::serve
