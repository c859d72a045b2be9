#include "serve/request_fields.h"

#include <fmt/format.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <string_view>

#include "serve/api_error.h"

namespace kiln::serve {

using json = nlohmann::json;

namespace {

// Read by request_validation (or tool_request / responses_request) for the endpoint.
constexpr std::string_view kCommon[] = {"model",
                                        "temperature",
                                        "top_p",
                                        "top_k",
                                        "min_p",
                                        "presence_penalty",
                                        "frequency_penalty",
                                        "repetition_penalty",
                                        "repeat_penalty",
                                        "repeat_last_n",
                                        "seed",
                                        "max_tokens",
                                        "max_completion_tokens",
                                        "stop",
                                        "n",
                                        "stream",
                                        "stream_options",
                                        "user",
                                        "ignore_eos",
                                        "logit_bias",
                                        "typical_p",
                                        "response_format",
                                        "grammar",
                                        "json_schema",
                                        "guided_json",
                                        "guided_regex",
                                        "guided_choice",
                                        "guided_grammar"};
constexpr std::string_view kChat[] = {
    "messages",  "logprobs",     "top_logprobs", "tools", "tool_choice", "parallel_tool_calls", "chat_template_kwargs",
    "functions", "function_call"};
constexpr std::string_view kCompletion[] = {"prompt", "logprobs", "echo", "suffix", "best_of"};
constexpr std::string_view kResponses[] = {"model",
                                           "input",
                                           "instructions",
                                           "max_output_tokens",
                                           "temperature",
                                           "top_p",
                                           "tools",
                                           "tool_choice",
                                           "parallel_tool_calls",
                                           "stream",
                                           "store",
                                           "previous_response_id",
                                           "conversation",
                                           "user",
                                           "text",
                                           "reasoning",
                                           "truncation",
                                           "include",
                                           "background",
                                           "max_tool_calls",
                                           "top_logprobs",
                                           "chat_template_kwargs"};
// Known and without effect on what kiln generates: accepted as they are.
constexpr std::string_view kHarmless[] = {"metadata",          "service_tier", "store",          "prompt_cache_key",
                                          "safety_identifier", "cache_prompt", "stream_options", "user"};

struct Refused {
  std::string_view name;
  std::string_view what;
};
// Known, not implemented, and would change the answer when set: refused by name. A field set to
// its neutral value (tfs_z 1, mirostat 0, modalities ["text"]) changes nothing and passes.
constexpr Refused kRefused[] = {
    {"tfs_z", "tail-free sampling"},
    {"mirostat", "Mirostat sampling"},
    {"dry_multiplier", "DRY sampling"},
    {"xtc_probability", "XTC sampling"},
    {"reasoning_effort", "reasoning effort"},
    {"audio", "audio output"},
    {"modalities", "output modalities other than text"},
    {"prediction", "predicted outputs"},
    {"web_search_options", "web search"},
};

bool neutral(std::string_view name, const json& v) {
  if (v.is_null()) return true;
  if (name == "tfs_z") return v.is_number() && v.get<double>() == 1.0;
  if (name == "mirostat" || name == "dry_multiplier" || name == "xtc_probability")
    return v.is_number() && v.get<double>() == 0.0;
  if (name == "modalities") return v == json::array({"text"});
  return false;
}

template <std::size_t N>
bool in(const std::string_view (&list)[N], std::string_view name) {
  return std::find(std::begin(list), std::end(list), name) != std::end(list);
}

}  // namespace

std::vector<std::string> check_request_fields(const json& body, RequestKind kind) {
  std::vector<std::string> unknown;
  for (auto it = body.begin(); it != body.end(); ++it) {
    const std::string& name = it.key();
    const auto refused =
        std::find_if(std::begin(kRefused), std::end(kRefused), [&](const Refused& r) { return r.name == name; });
    if (refused != std::end(kRefused)) {
      if (neutral(name, it.value())) continue;
      throw invalid_field(name, fmt::format("'{}' ({}) is not supported by kiln serve", name, refused->what));
    }
    bool known = in(kHarmless, name);
    switch (kind) {
      case RequestKind::chat:
        known = known || in(kCommon, name) || in(kChat, name);
        break;
      case RequestKind::completion:
        known = known || in(kCommon, name) || in(kCompletion, name);
        break;
      case RequestKind::responses:
        known = known || in(kResponses, name);
        break;
    }
    if (!known) unknown.push_back(name);
  }
  return unknown;
}

}  // namespace kiln::serve
