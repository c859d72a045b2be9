#pragma once
// Reads the top level of a JSON object that may still be arriving: which members it has so far,
// where each value starts and (once it is whole) ends, and whether the object is closed. The
// tool-call parser uses it to name a call as soon as its "name" is whole and to stream its
// arguments' text while they arrive, without waiting for the end of the object.
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace kiln::serve {

struct JsonPrefixMember {
  std::string key;                                 // decoded
  std::size_t value_begin = 0;                     // offset of the value's first byte
  std::size_t value_end = std::string_view::npos;  // one past its last byte; npos while incomplete
};

struct JsonObjectPrefix {
  bool error = false;                     // not a JSON object (so far): the text is no call
  bool complete = false;                  // the closing brace arrived
  std::size_t end = 0;                    // one past the closing brace, when complete
  std::vector<JsonPrefixMember> members;  // the last may be incomplete
};

// `text` starts at the object's '{'. Never reads past `text`; a value cut off by the end of
// `text` (a number included: more digits may follow) is incomplete, not an error.
JsonObjectPrefix scan_json_object_prefix(std::string_view text);

// One past the end of the JSON value starting at `text[begin]`; npos when `text` ends first;
// `error` set when it is not JSON.
std::size_t scan_json_value(std::string_view text, std::size_t begin, bool& error);

}  // namespace kiln::serve
