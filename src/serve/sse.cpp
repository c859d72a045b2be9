#include "serve/sse.h"

namespace kiln::serve {

std::string sse_event(std::string_view payload) {
  std::string out;
  out.reserve(payload.size() + 16);
  std::size_t start = 0;
  // EventSource splits lines on \r\n, \r and \n alike.
  for (std::size_t i = 0; i <= payload.size(); ++i) {
    if (i == payload.size() || payload[i] == '\n' || payload[i] == '\r') {
      out += "data: ";
      out.append(payload.substr(start, i - start));
      out += '\n';
      if (i + 1 < payload.size() && payload[i] == '\r' && payload[i + 1] == '\n') ++i;
      start = i + 1;
    }
  }
  out += '\n';
  return out;
}

}  // namespace kiln::serve
