// The log sink: level threshold, appending to a file, whole lines under concurrency (also lines
// longer than a pipe's atomic write), and reopen after a rename (what logrotate does) losing and
// splitting no line, even with writers running during the swap.
#include "monitor/log_sink.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "core/error.h"
#include "test_support.h"

namespace kiln::monitor {
namespace {

using json = nlohmann::json;

std::string temp_path(const std::string& name) {
  static int counter = 0;
  return test::temp_dir() + "/log_sink_" + std::to_string(::getpid()) + "_" + std::to_string(counter++) + "_" + name;
}

std::vector<std::string> read_lines(const std::string& path, bool* ends_with_newline = nullptr) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string text = ss.str();
  if (ends_with_newline) *ends_with_newline = text.empty() || text.back() == '\n';
  std::vector<std::string> lines;
  std::istringstream is(text);
  for (std::string l; std::getline(is, l);) lines.push_back(l);
  return lines;
}

LogSinkOptions json_file(const std::string& path, LogLevel level = LogLevel::info) {
  LogSinkOptions o;
  o.format = LogFormat::json;
  o.level = level;
  o.path = path;
  o.context.pid = 7;
  return o;
}

TEST(LogSink, DropsEventsBelowItsLevel) {
  const std::string path = temp_path("levels.log");
  {
    LogSink sink(json_file(path, LogLevel::warn));
    EXPECT_FALSE(sink.enabled(LogLevel::debug));
    EXPECT_FALSE(sink.enabled(LogLevel::info));
    EXPECT_TRUE(sink.enabled(LogLevel::warn));
    EXPECT_TRUE(sink.enabled(LogLevel::error));
    for (LogLevel l : {LogLevel::debug, LogLevel::info, LogLevel::warn, LogLevel::error})
      sink.write(LogEvent(l, "t", log_level_name(l)));
  }
  const std::vector<std::string> lines = read_lines(path);
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(json::parse(lines[0])["log.level"], "warn");
  EXPECT_EQ(json::parse(lines[1])["log.level"], "error");
}

TEST(LogSink, AppendsToWhatTheFileHolds) {
  const std::string path = temp_path("append.log");
  std::ofstream(path) << "an earlier line\n";
  {
    LogSink sink(json_file(path));
    sink.write(LogEvent(LogLevel::info, "t", "new"));
  }
  const std::vector<std::string> lines = read_lines(path);
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0], "an earlier line");
  EXPECT_EQ(json::parse(lines[1])["message"], "new");
}

TEST(LogSink, AFileItCannotOpenIsAnErrorNamingIt) {
  const std::string path = temp_path("no_such_dir") + "/x.log";
  try {
    LogSink sink(json_file(path));
    FAIL() << "opened " << path;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
  }
}

// Many threads, lines of very different lengths (up to 4 times a pipe's atomic PIPE_BUF): every
// line arrives whole and parses.
TEST(LogSink, ConcurrentLinesNeverInterleave) {
  const std::string path = temp_path("concurrent.log");
  constexpr int kThreads = 8, kPerThread = 400;
  {
    LogSink sink(json_file(path));
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t)
      threads.emplace_back([&sink, t] {
        for (int i = 0; i < kPerThread; ++i) {
          LogEvent e(LogLevel::info, "t", std::string(static_cast<std::size_t>((i * 37 + t * 101) % 16000), 'a' + t));
          e.num("t", t).num("i", i);
          sink.write(e);
        }
      });
    for (auto& th : threads) th.join();
    EXPECT_EQ(sink.lines_dropped(), 0u);
  }
  bool newline_end = false;
  const std::vector<std::string> lines = read_lines(path, &newline_end);
  EXPECT_TRUE(newline_end);
  ASSERT_EQ(lines.size(), static_cast<std::size_t>(kThreads * kPerThread));
  std::set<std::pair<int, int>> seen;
  for (const std::string& l : lines) {
    const json j = json::parse(l);
    const int t = j["t"], i = j["i"];
    EXPECT_EQ(j["message"].get<std::string>(),
              std::string(static_cast<std::size_t>((i * 37 + t * 101) % 16000), 'a' + t));
    seen.insert({t, i});
  }
  EXPECT_EQ(seen.size(), lines.size());
}

TEST(LogSink, ReopenAfterRenameWritesToANewFile) {
  const std::string path = temp_path("rotate.log");
  LogSink sink(json_file(path));
  sink.write(LogEvent(LogLevel::info, "t", "before"));
  ASSERT_EQ(std::rename(path.c_str(), (path + ".1").c_str()), 0);
  sink.write(LogEvent(LogLevel::info, "t", "after rename, before reopen"));  // still the renamed file
  std::string error;
  ASSERT_TRUE(sink.reopen(&error)) << error;
  sink.write(LogEvent(LogLevel::info, "t", "after reopen"));
  const std::vector<std::string> old_lines = read_lines(path + ".1"), new_lines = read_lines(path);
  ASSERT_EQ(old_lines.size(), 2u);
  EXPECT_EQ(json::parse(old_lines[0])["message"], "before");
  EXPECT_EQ(json::parse(old_lines[1])["message"], "after rename, before reopen");
  ASSERT_EQ(new_lines.size(), 1u);
  EXPECT_EQ(json::parse(new_lines[0])["message"], "after reopen");
}

TEST(LogSink, AFailedReopenKeepsTheOldFile) {
  const std::string dir = temp_path("dir");
  ASSERT_EQ(::mkdir(dir.c_str(), 0755), 0);
  const std::string path = dir + "/x.log", moved = dir + ".x.log";
  LogSink sink(json_file(path));
  ASSERT_EQ(std::rename(path.c_str(), moved.c_str()), 0);
  ASSERT_EQ(::rmdir(dir.c_str()), 0);  // the path can no longer be created
  std::string error;
  EXPECT_FALSE(sink.reopen(&error));
  EXPECT_NE(error.find(path), std::string::npos) << error;
  sink.write(LogEvent(LogLevel::info, "t", "still written"));
  const std::vector<std::string> lines = read_lines(moved);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(json::parse(lines[0])["message"], "still written");
}

// Writers run while the file is renamed and reopened again and again: together the files hold
// every line exactly once, each whole.
TEST(LogSink, RotationUnderLoadLosesAndSplitsNoLine) {
  const std::string path = temp_path("busy.log");
  constexpr int kThreads = 4, kPerThread = 3000, kRotations = 6;
  LogSink sink(json_file(path));
  std::atomic<int> running{kThreads};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        LogEvent e(LogLevel::info, "t", std::string(static_cast<std::size_t>(100 + (i % 50) * 100), 'x'));
        e.num("t", t).num("i", i);
        sink.write(e);
      }
      running.fetch_sub(1);
    });
  std::vector<std::string> files;
  for (int r = 0; r < kRotations && running.load() > 0; ++r) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    const std::string rotated = path + "." + std::to_string(r);
    ASSERT_EQ(std::rename(path.c_str(), rotated.c_str()), 0);
    files.push_back(rotated);
    std::string error;
    ASSERT_TRUE(sink.reopen(&error)) << error;
  }
  for (auto& th : threads) th.join();
  files.push_back(path);
  ASSERT_GE(files.size(), 2u);  // at least one rotation happened while writing
  std::map<std::pair<int, int>, int> count;
  for (const std::string& f : files) {
    bool newline_end = false;
    for (const std::string& l : read_lines(f, &newline_end)) {
      const json j = json::parse(l);  // a split line would not parse
      ++count[{j["t"].get<int>(), j["i"].get<int>()}];
    }
    EXPECT_TRUE(newline_end) << f;
  }
  EXPECT_EQ(count.size(), static_cast<std::size_t>(kThreads * kPerThread));
  for (const auto& [key, n] : count) EXPECT_EQ(n, 1) << key.first << "/" << key.second;
}

TEST(LogSink, StandardErrorIsNotReopened) {
  LogSinkOptions o;
  LogSink sink(o);
  EXPECT_FALSE(sink.writes_to_file());
  EXPECT_TRUE(sink.reopen());
}

TEST(LogSink, DefaultFormatIsJsonForAFileAndTextForATerminal) {
  const std::string path = temp_path("fmt.log");
  std::FILE* f = std::fopen(path.c_str(), "w");
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(default_log_format(fileno(f)), LogFormat::json);
  std::fclose(f);
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  EXPECT_EQ(default_log_format(fds[1]), LogFormat::json);
  ::close(fds[0]);
  ::close(fds[1]);
  // A pseudo-terminal stands for the terminal a person reads.
  const int master = ::posix_openpt(O_RDWR | O_NOCTTY);
  if (master < 0) GTEST_SKIP() << "no pseudo-terminal here";
  ASSERT_EQ(::grantpt(master), 0);
  ASSERT_EQ(::unlockpt(master), 0);
  const int tty = ::open(::ptsname(master), O_RDWR | O_NOCTTY);
  ASSERT_GE(tty, 0);
  EXPECT_EQ(default_log_format(tty), LogFormat::text);
  ::close(tty);
  ::close(master);
}

}  // namespace
}  // namespace kiln::monitor
