#pragma once
// kiln serve's policy for the fields of a request body (docs/api.md, "Request fields"):
//  - fields kiln reads are checked by request_validation;
//  - fields kiln knows but does not implement, and that would change the answer, are refused
//    with a 400 naming the field (a client must not get an answer it did not ask for);
//  - fields that change nothing kiln does (metadata, service_tier, ...) are accepted;
//  - any other field is accepted and its name reported once in the server's log, so that a
//    misspelled or new field is visible without failing clients that send extras.
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

namespace kiln::serve {

enum class RequestKind { chat, completion, responses };

// Throws ApiError 400 for the first refused field that is set to a value that changes the
// answer; returns the names of the fields that are unknown for `kind` (in body order).
std::vector<std::string> check_request_fields(const nlohmann::json& body, RequestKind kind);

}  // namespace kiln::serve
