#pragma once
// Names read from a file (keys, tensor names, file names), made safe for a one-line message.
#include <string>
#include <string_view>

namespace kiln {

// `s` in single quotes, control bytes, backslashes and quotes escaped as \xNN so the message
// stays one line, and cut short so a corrupt multi-megabyte name cannot flood the terminal.
std::string quoted_name(std::string_view s);

}  // namespace kiln
