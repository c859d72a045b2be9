#include "format/safetensors_json.h"

#include <set>
#include <vector>

#include "core/error.h"
#include "format/quoted_name.h"

namespace kiln {

nlohmann::json parse_safetensors_json(std::string_view text, const std::string& path, std::string_view what,
                                      int max_depth) {
  using Json = nlohmann::json;
  std::vector<std::set<std::string>> keys_of_open_objects;
  // The callback sees each value as the parser meets it, so a duplicate key or a deep nest is
  // refused before the rest of the text is read.
  const Json::parser_callback_t check = [&](int depth, Json::parse_event_t event, Json& parsed) {
    switch (event) {
      case Json::parse_event_t::object_start:
      case Json::parse_event_t::array_start:
        if (depth >= max_depth) fail("{}: {} nests objects or arrays deeper than {} levels", path, what, max_depth);
        if (event == Json::parse_event_t::object_start) keys_of_open_objects.emplace_back();
        break;
      case Json::parse_event_t::object_end:
        keys_of_open_objects.pop_back();
        break;
      case Json::parse_event_t::key:
        if (!keys_of_open_objects.back().insert(parsed.get<std::string>()).second)
          fail("{}: {} has the key {} twice in one object", path, what, quoted_name(parsed.get<std::string>()));
        break;
      default:
        break;
    }
    return true;
  };
  // nlohmann_json stops at a NUL byte as at the end of the input, which would let anything
  // follow it; in JSON text a NUL can only be written escaped.
  if (const std::size_t nul = text.find('\0'); nul != std::string_view::npos)
    fail("{}: {} is not valid JSON: a NUL byte at offset {}", path, what, nul);
  try {
    return Json::parse(text.begin(), text.end(), check);
  } catch (const Json::exception& e) {
    // nlohmann's message ends with the text it last read, which may be long: keep its start.
    std::string message = e.what();
    if (message.size() > 200) message = message.substr(0, 200) + "...";
    for (char& c : message)
      if (static_cast<unsigned char>(c) < 0x20) c = ' ';
    fail("{}: {} is not valid JSON: {}", path, what, message);
  }
}

std::string describe_json_value(const nlohmann::json& v) {
  switch (v.type()) {
    case nlohmann::json::value_t::null:
      return "null";
    case nlohmann::json::value_t::boolean:
      return v.get<bool>() ? "true" : "false";
    case nlohmann::json::value_t::string:
      return "the string " + quoted_name(v.get<std::string>());
    case nlohmann::json::value_t::number_integer:
      return fmt::format("the integer {}", v.get<std::int64_t>());
    case nlohmann::json::value_t::number_unsigned:
      return fmt::format("the integer {}", v.get<std::uint64_t>());
    case nlohmann::json::value_t::number_float:
      return fmt::format("the number {}", v.get<double>());
    case nlohmann::json::value_t::array:
      return fmt::format("an array of {} values", v.size());
    case nlohmann::json::value_t::object:
      return fmt::format("an object of {} keys", v.size());
    default:
      return "a binary value";
  }
}

}  // namespace kiln
