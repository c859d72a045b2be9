// The two line formats of the log sink: JSON with ECS names (every line parses, strings survive
// any bytes: control characters escaped, invalid UTF-8 replaced by U+FFFD) and the text format
// for terminals (one event, one line).
#include "monitor/log_format.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>

namespace kiln::monitor {
namespace {

using json = nlohmann::json;
using std::chrono::milliseconds;
using std::chrono::system_clock;

LogContext context() {
  LogContext c;
  c.service_name = "kiln";
  c.service_version = "0.1.0";
  c.pid = 4242;
  c.text_prefix = "kiln serve: ";
  return c;
}

// Parses strictly: nlohmann refuses a string with invalid UTF-8 or a raw control character.
json parse_line(const std::string& line) {
  EXPECT_FALSE(line.empty());
  EXPECT_EQ(line.back(), '\n');
  EXPECT_EQ(line.find('\n'), line.size() - 1) << line;
  return json::parse(line.substr(0, line.size() - 1));
}

TEST(LogFormat, TimestampsAreRfc3339UtcWithMilliseconds) {
  EXPECT_EQ(rfc3339_utc_ms(system_clock::time_point(milliseconds(0))), "1970-01-01T00:00:00.000Z");
  EXPECT_EQ(rfc3339_utc_ms(system_clock::time_point(milliseconds(1709251199999))), "2024-02-29T23:59:59.999Z");
  EXPECT_EQ(rfc3339_utc_ms(system_clock::time_point(milliseconds(1700000000123))), "2023-11-14T22:13:20.123Z");
  EXPECT_EQ(rfc3339_utc_ms(system_clock::time_point(milliseconds(-1))), "1969-12-31T23:59:59.999Z");
}

TEST(LogFormat, JsonLineCarriesEcsFieldsInOrder) {
  LogEvent e(LogLevel::warn, "http-request", "GET /v1/models 200");
  e.time = system_clock::time_point(milliseconds(1700000000123));
  e.category = "web";
  e.type = "access";
  e.outcome = "success";
  e.duration_ns = 1500000;
  e.str("url.path", "/v1/models")
      .num("http.response.status_code", 200)
      .real("kiln.timing.queue_ms", 1.25)
      .flag("kiln.stream", true)
      .list("kiln.finish_reasons", {"stop", "length"});
  const std::string line = format_json_line(e, context());
  EXPECT_EQ(line.rfind("{\"@timestamp\":\"2023-11-14T22:13:20.123Z\",\"log.level\":\"warn\",\"message\":", 0), 0u)
      << line;
  const json j = parse_line(line);
  EXPECT_EQ(j["@timestamp"], "2023-11-14T22:13:20.123Z");
  EXPECT_EQ(j["log.level"], "warn");
  EXPECT_EQ(j["message"], "GET /v1/models 200");
  EXPECT_EQ(j["ecs.version"], std::string(kEcsVersion));
  EXPECT_EQ(j["service.name"], "kiln");
  EXPECT_EQ(j["service.version"], "0.1.0");
  EXPECT_EQ(j["process.pid"], 4242);
  EXPECT_EQ(j["event.kind"], "event");
  EXPECT_EQ(j["event.category"], json::array({"web"}));
  EXPECT_EQ(j["event.type"], json::array({"access"}));
  EXPECT_EQ(j["event.action"], "http-request");
  EXPECT_EQ(j["event.outcome"], "success");
  EXPECT_EQ(j["event.duration"], 1500000);
  EXPECT_EQ(j["url.path"], "/v1/models");
  EXPECT_EQ(j["http.response.status_code"], 200);
  EXPECT_DOUBLE_EQ(j["kiln.timing.queue_ms"].get<double>(), 1.25);
  EXPECT_EQ(j["kiln.stream"], true);
  EXPECT_EQ(j["kiln.finish_reasons"], json::array({"stop", "length"}));
  // The event's fields follow in the order they were added.
  EXPECT_LT(line.find("\"url.path\""), line.find("\"http.response.status_code\""));
  EXPECT_LT(line.find("\"event.duration\""), line.find("\"url.path\""));
}

TEST(LogFormat, EmptyOptionalPartsAreLeftOut) {
  LogEvent e(LogLevel::info, "", "hello");
  e.category = e.type = "";
  LogContext c;  // no version, no pid
  const json j = parse_line(format_json_line(e, c));
  for (const char* key : {"service.version", "process.pid", "event.category", "event.type", "event.action",
                          "event.outcome", "event.duration"})
    EXPECT_FALSE(j.contains(key)) << key << " in " << j.dump();
  EXPECT_EQ(j["service.name"], "kiln");
}

TEST(LogFormat, NonFiniteRealsAreNull) {
  LogEvent e(LogLevel::info, "x", "m");
  e.real("a", std::numeric_limits<double>::infinity()).real("b", std::nan("")).real("c", -0.5);
  const json j = parse_line(format_json_line(e, context()));
  EXPECT_TRUE(j["a"].is_null());
  EXPECT_TRUE(j["b"].is_null());
  EXPECT_DOUBLE_EQ(j["c"].get<double>(), -0.5);
}

TEST(LogFormat, JsonEscapesEveryControlCharacterAndKeepsValidUtf8) {
  std::string text;
  for (int c = 1; c < 0x20; ++c) text += static_cast<char>(c);
  text += "\"quote\" back\\slash \x7f del, caf\xc3\xa9, \xe2\x82\xac, \xf0\x9f\x98\x80";
  text += '\0';
  text += "after NUL";
  LogEvent e(LogLevel::info, "x", text);
  e.str("user_agent.original", text);
  const std::string line = format_json_line(e, context());
  for (std::size_t i = 0; i + 1 < line.size(); ++i) {
    const auto c = static_cast<unsigned char>(line[i]);
    ASSERT_TRUE(c >= 0x20 && c != 0x7f) << "raw byte " << int(c) << " at " << i << ": " << line;
  }
  EXPECT_NE(line.find("\\n"), std::string::npos);
  EXPECT_NE(line.find("\\u0001"), std::string::npos);
  EXPECT_NE(line.find("\\u007f"), std::string::npos);
  EXPECT_NE(line.find("\\u0000after NUL"), std::string::npos);
  const json j = parse_line(line);
  EXPECT_EQ(j["message"].get<std::string>(), text);  // valid UTF-8 round-trips exactly
  EXPECT_EQ(j["user_agent.original"].get<std::string>(), text);
}

TEST(LogFormat, JsonReplacesEachInvalidUtf8ByteWithReplacementCharacter) {
  const std::string fffd = "\xef\xbf\xbd";
  const struct {
    std::string in, out;
  } cases[] = {
      {"a\xff"
       "b",
       "a" + fffd + "b"},                               // never valid
      {"\x80", fffd},                                   // a stray continuation byte
      {"\xc0\x80", fffd + fffd},                        // overlong NUL
      {"\xe0\x80\xaf", fffd + fffd + fffd},             // overlong '/'
      {"\xed\xa0\x80", fffd + fffd + fffd},             // a UTF-16 surrogate
      {"\xf4\x90\x80\x80", fffd + fffd + fffd + fffd},  // beyond U+10FFFF
      {"end \xe2\x82", "end " + fffd + fffd},           // cut short at the end
      {"\xe2\x82"
       "x",
       fffd + fffd + "x"},                  // cut short before ASCII
      {"\xc3\xa9\xc3", "\xc3\xa9" + fffd},  // valid, then a cut one
  };
  for (const auto& c : cases) {
    LogEvent e(LogLevel::info, "x", c.in);
    const std::string line = format_json_line(e, context());
    const json j = parse_line(line);
    EXPECT_EQ(j["message"].get<std::string>(), c.out) << line;
  }
}

TEST(LogFormat, TextLineIsOneReadableLine) {
  LogEvent e(LogLevel::info, "server-ready", "ready");
  e.time = system_clock::time_point(milliseconds(1700000000123));
  EXPECT_EQ(format_text_line(e, context()), "2023-11-14T22:13:20.123Z kiln serve: ready\n");
  e.level = LogLevel::warn;
  e.message = "two\nlines\tand \x01 and \xff and caf\xc3\xa9";
  EXPECT_EQ(format_text_line(e, context()),
            "2023-11-14T22:13:20.123Z kiln serve: warning: two\\nlines\\tand \\x01 and \\xff and caf\xc3\xa9\n");
  e.level = LogLevel::error;
  e.message = "boom";
  EXPECT_EQ(format_text_line(e, context()), "2023-11-14T22:13:20.123Z kiln serve: error: boom\n");
  EXPECT_EQ(format_line(LogFormat::text, e, context()), format_text_line(e, context()));
  EXPECT_EQ(format_line(LogFormat::json, e, context()), format_json_line(e, context()));
}

TEST(LogFormat, NamesParse) {
  EXPECT_EQ(parse_log_level("debug"), LogLevel::debug);
  EXPECT_EQ(parse_log_level("info"), LogLevel::info);
  EXPECT_EQ(parse_log_level("warn"), LogLevel::warn);
  EXPECT_EQ(parse_log_level("error"), LogLevel::error);
  EXPECT_FALSE(parse_log_level("warning"));
  EXPECT_FALSE(parse_log_level("INFO"));
  EXPECT_EQ(parse_log_format("json"), LogFormat::json);
  EXPECT_EQ(parse_log_format("text"), LogFormat::text);
  EXPECT_FALSE(parse_log_format("ecs"));
  EXPECT_STREQ(log_format_name(LogFormat::json), "json");
  EXPECT_STREQ(log_level_name(LogLevel::warn), "warn");
}

}  // namespace
}  // namespace kiln::monitor
