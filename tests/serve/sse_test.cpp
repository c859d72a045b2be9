// Server-sent events framing: what EventSource parsers (and OpenAI's clients) read back.
#include "serve/sse.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace kiln::serve {
namespace {

// The WHATWG parsing rules for the fields kiln sends: events end at a blank line; data lines
// are joined with "\n"; one optional space after the colon is dropped.
std::vector<std::string> parse_events(const std::string& stream) {
  std::vector<std::string> events;
  std::string data;
  bool have = false;
  std::size_t pos = 0;
  while (pos < stream.size()) {
    std::size_t end = stream.find('\n', pos);
    if (end == std::string::npos) break;  // an incomplete line is not an event
    std::string line = stream.substr(pos, end - pos);
    pos = end + 1;
    if (line.empty()) {
      if (have) events.push_back(data);
      data.clear();
      have = false;
      continue;
    }
    if (line.rfind("data:", 0) == 0) {
      std::string v = line.substr(5);
      if (!v.empty() && v[0] == ' ') v.erase(0, 1);
      data += (have ? "\n" : "") + v;
      have = true;
    }
  }
  return events;
}

TEST(Sse, OneLinePayloadIsOneDataLine) {
  EXPECT_EQ(sse_event(R"({"a":1})"), "data: {\"a\":1}\n\n");
  EXPECT_EQ(sse_done(), "data: [DONE]\n\n");
}

TEST(Sse, PayloadsRoundTripThroughAnEventSourceParser) {
  const std::vector<std::string> payloads = {"", "x", "two\nlines", "crlf\r\nend", "trailing\n", "\n\nblank", " leading space"};
  std::string stream;
  for (const auto& p : payloads) stream += sse_event(p);
  stream += sse_done();
  std::vector<std::string> got = parse_events(stream);
  ASSERT_EQ(got.size(), payloads.size() + 1);
  for (std::size_t i = 0; i < payloads.size(); ++i) {
    std::string want = payloads[i];
    for (std::size_t k; (k = want.find("\r\n")) != std::string::npos;) want.replace(k, 2, "\n");
    EXPECT_EQ(got[i], want) << i;
  }
  EXPECT_EQ(got.back(), "[DONE]");
}

}  // namespace
}  // namespace kiln::serve
