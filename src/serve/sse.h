#pragma once
// Server-sent events framing (the WHATWG EventSource format that OpenAI's streams use): each
// event is "data: <payload>" lines and a blank line; the stream ends with "data: [DONE]".
#include <string>
#include <string_view>

namespace kiln::serve {

// One event carrying `payload`. A payload with line breaks becomes several data: lines (the
// client joins them with "\n"), so any text round-trips.
std::string sse_event(std::string_view payload);
// OpenAI's end-of-stream marker.
inline std::string sse_done() { return "data: [DONE]\n\n"; }

}  // namespace kiln::serve
