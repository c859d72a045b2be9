// monitor::Progress with a fake clock and a string sink: the bar at several widths, rate and
// ETA, unknown totals, how often the bar is redrawn and JSON lines are written, stages, JSON
// lines that parse with every field, and a terminal left clean by finish(), log() and errors.
#include "monitor/progress.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace kiln::monitor {
namespace {

// The test's clock and sink: time moves only when the test says so.
struct FakeOutput {
  double now = 100.0;
  std::string written;
  int columns = 100;

  ProgressOptions options(ProgressMode mode) {
    ProgressOptions o;
    o.mode = mode;
    o.tick_interval_s = 0;  // the test calls tick() itself
    o.sink = [this](std::string_view s) { written += s; };
    o.clock = [this] { return now; };
    o.columns = [this] { return columns; };
    return o;
  }
  std::vector<nlohmann::json> json_lines() const {
    std::vector<nlohmann::json> lines;
    std::istringstream in(written);
    for (std::string line; std::getline(in, line);) lines.push_back(nlohmann::json::parse(line));
    return lines;
  }
};

// What a terminal shows after `bytes`: "\r" returns to column 0, ESC [ K erases to the end of
// the line, "\n" starts a new line; other escape sequences fail the test.
std::vector<std::string> screen(const std::string& bytes) {
  std::vector<std::string> lines(1);
  std::size_t col = 0;
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    const char c = bytes[i];
    std::string& line = lines.back();
    if (c == '\r') {
      col = 0;
    } else if (c == '\n') {
      lines.emplace_back();
      col = 0;
    } else if (c == '\033') {
      EXPECT_EQ(bytes.substr(i, 3), "\033[K") << "unexpected escape sequence";
      line.resize(std::min(line.size(), col));
      i += 2;
    } else {
      if (col < line.size())
        line[col] = c;
      else
        line.push_back(c);
      ++col;
    }
  }
  return lines;
}

int count(const std::string& haystack, const std::string& needle) {
  int n = 0;
  for (std::size_t at = haystack.find(needle); at != std::string::npos; at = haystack.find(needle, at + 1)) ++n;
  return n;
}

ProgressSnapshot quantize_snapshot() {
  ProgressSnapshot s;
  s.job = "quantize";
  s.stage = "Q4_K_M";
  s.unit = "weights";
  s.detail = "blk.3.attn_q.weight";
  s.done = 1'200'000;
  s.total = 2'670'000;
  s.rate = 3'100'000;
  s.elapsed_s = 12;
  s.eta_s = 15.2;
  return s;
}

TEST(ProgressRender, BarFitsEveryWidth) {
  const ProgressSnapshot s = quantize_snapshot();
  // Wide: everything, with the bar at its widest (40 cells, 44% filled).
  EXPECT_EQ(render_progress_bar(s, 160),
            "quantize Q4_K_M [=================>                      ]   44%  1.20M/2.67M weights  3.10M weights/s   "
            "0:12 ETA  0:15  blk.3.attn_q.weight");
  // 100 columns: the detail goes first, and the bar shrinks into the room left.
  EXPECT_EQ(render_progress_bar(s, 100),
            "quantize Q4_K_M [========>           ]   44%  1.20M/2.67M weights  3.10M weights/s   0:12 ETA  0:15");
  // 80: a bar of at least 10 cells needs the rate's room.
  EXPECT_EQ(render_progress_bar(s, 80),
            "quantize Q4_K_M [=======>         ]   44%  1.20M/2.67M weights   0:12 ETA  0:15");
  // 60: no room for a bar.
  EXPECT_EQ(render_progress_bar(s, 60), "quantize Q4_K_M   44%  1.20M/2.67M weights   0:12 ETA  0:15");
  // Narrower: whole fields while they fit, then the label cut.
  EXPECT_EQ(render_progress_bar(s, 45), "quantize Q4_K_M   44%  1.20M/2.67M weights");
  EXPECT_EQ(render_progress_bar(s, 20), "quantize Q4_K_M");
  EXPECT_EQ(render_progress_bar(s, 10), "quantize ");
  for (int width : {1, 2, 10, 20, 33, 45, 60, 79, 80, 81, 100, 120, 160, 400}) {
    const std::string line = render_progress_bar(s, width);
    EXPECT_LE(static_cast<int>(line.size()), std::max(0, width - 1)) << width << ": " << line;
  }
}

TEST(ProgressRender, TheBarKeepsItsWidthWhileTheNumbersChange) {
  ProgressSnapshot s = quantize_snapshot();
  s.done = 0;
  s.rate.reset();
  s.eta_s.reset();
  s.elapsed_s = 0;
  const std::string start = render_progress_bar(s, 100);
  EXPECT_EQ(start,
            "quantize Q4_K_M [>                   ]    0%      0/2.67M weights     -- weights/s   0:00 ETA --:--");
  s.done = *s.total;
  s.rate = 950;
  s.eta_s = 0;
  s.elapsed_s = 754;
  const std::string end = render_progress_bar(s, 100);
  EXPECT_EQ(end, "quantize Q4_K_M [====================]  100%  2.67M/2.67M weights    950 weights/s  12:34 ETA  0:00");
  EXPECT_EQ(start.size(), end.size());
}

TEST(ProgressRender, CountsDurationsAndBytes) {
  EXPECT_EQ(format_progress_count(950, "tokens"), "950");
  EXPECT_EQ(format_progress_count(9999, "tokens"), "9999");
  EXPECT_EQ(format_progress_count(12'345, "tokens"), "12.3K");
  EXPECT_EQ(format_progress_count(4'560'000, "weights"), "4.56M");
  EXPECT_EQ(format_progress_count(0.42, "repetitions"), "0.4");
  EXPECT_EQ(format_progress_count(512, "bytes"), "512 B");
  EXPECT_EQ(format_progress_count(3.2 * 1024 * 1024, "bytes"), "3.20 MiB");
  EXPECT_EQ(format_progress_duration(7), "0:07");
  EXPECT_EQ(format_progress_duration(754), "12:34");
  EXPECT_EQ(format_progress_duration(3723), "1:02:03");
  EXPECT_EQ(format_progress_duration(std::nullopt), "--:--");

  ProgressSnapshot s;
  s.job = "convert";
  s.unit = "bytes";
  s.done = 3 * 1024 * 1024;
  s.total = 12 * 1024 * 1024;
  s.rate = 1024 * 1024;
  s.elapsed_s = 3;
  s.eta_s = 9;
  EXPECT_EQ(render_progress_bar(s, 80),
            "convert [===>           ]   25%  3.00 MiB/12.0 MiB  1.00 MiB/s   0:03 ETA  0:09");
}

TEST(ProgressRender, UnknownTotalHasNoBarPercentOrEta) {
  ProgressSnapshot s;
  s.job = "data";
  s.stage = "prepare";
  s.unit = "tokens";
  s.done = 48'000;
  s.rate = 1600;
  s.elapsed_s = 30;
  EXPECT_EQ(render_progress_bar(s, 80), "data prepare  48.0K tokens   1600 tokens/s   0:30");
  const nlohmann::json j = nlohmann::json::parse(render_progress_json(s, ProgressEvent::progress));
  EXPECT_TRUE(j["total"].is_null());
  EXPECT_TRUE(j["percent"].is_null());
  EXPECT_TRUE(j["eta_s"].is_null());
  EXPECT_EQ(j["done"], 48'000);
  EXPECT_DOUBLE_EQ(j["rate"].get<double>(), 1600);
}

TEST(ProgressRender, JsonEscapesAndCarriesEveryField) {
  ProgressSnapshot s = quantize_snapshot();
  s.stage = "model \"a\\b\"\n\x01 é";
  const nlohmann::json j = nlohmann::json::parse(render_progress_json(s, ProgressEvent::start));
  EXPECT_EQ(j["event"], "start");
  EXPECT_EQ(j["job"], "quantize");
  EXPECT_EQ(j["stage"], s.stage);
  EXPECT_EQ(j["done"], 1'200'000);
  EXPECT_EQ(j["total"], 2'670'000);
  EXPECT_EQ(j["unit"], "weights");
  EXPECT_DOUBLE_EQ(j["rate"].get<double>(), 3'100'000);
  EXPECT_DOUBLE_EQ(j["elapsed_s"].get<double>(), 12);
  EXPECT_DOUBLE_EQ(j["eta_s"].get<double>(), 15.2);
  EXPECT_NEAR(j["percent"].get<double>(), 44.94, 0.01);
  EXPECT_EQ(j["detail"], "blk.3.attn_q.weight");
}

TEST(Progress, ModesParseAndAutomaticFollowsTheTerminal) {
  EXPECT_EQ(parse_progress_mode("auto"), ProgressMode::automatic);
  EXPECT_EQ(parse_progress_mode("bar"), ProgressMode::bar);
  EXPECT_EQ(parse_progress_mode("json"), ProgressMode::json);
  EXPECT_EQ(parse_progress_mode("none"), ProgressMode::none);
  EXPECT_EQ(parse_progress_mode("quiet"), std::nullopt);
  for (ProgressMode m : {ProgressMode::automatic, ProgressMode::bar, ProgressMode::json, ProgressMode::none})
    EXPECT_EQ(parse_progress_mode(progress_mode_name(m)), m);

  FakeOutput out;
  ProgressOptions o = out.options(ProgressMode::automatic);
  o.terminal = true;
  EXPECT_EQ(Progress("job", o).mode(), ProgressMode::bar);
  o.terminal = false;
  EXPECT_EQ(Progress("job", o).mode(), ProgressMode::json);
}

TEST(Progress, RateAndEtaFollowThePace) {
  FakeOutput out;
  Progress p("eval", out.options(ProgressMode::none));
  p.stage("perplexity", 10'000, "tokens");
  EXPECT_EQ(p.snapshot().rate, std::nullopt);
  EXPECT_EQ(p.snapshot().eta_s, std::nullopt);
  for (int i = 0; i < 10; ++i) out.now += 1, p.advance(100);  // 100 tokens/s
  ProgressSnapshot s = p.snapshot();
  EXPECT_EQ(s.done, 1000);
  EXPECT_DOUBLE_EQ(*s.rate, 100);
  EXPECT_DOUBLE_EQ(*s.eta_s, 90);
  EXPECT_DOUBLE_EQ(s.elapsed_s, 10);
  // Twice the pace: the smoothed rate moves toward it, not to it at once.
  out.now += 1, p.advance(200);
  const double after_one = *p.snapshot().rate;
  EXPECT_GT(after_one, 100);
  EXPECT_LT(after_one, 200);
  for (int i = 0; i < 30; ++i) out.now += 1, p.advance(200);
  EXPECT_NEAR(*p.snapshot().rate, 200, 1);
  EXPECT_NEAR(*p.snapshot().eta_s, (10'000 - 7200) / 200.0, 0.1);
  // Between updates the ETA counts down.
  const double eta = *p.snapshot().eta_s;
  out.now += 2.5;
  EXPECT_DOUBLE_EQ(*p.snapshot().eta_s, eta - 2.5);
  p.set(10'000);
  EXPECT_DOUBLE_EQ(*p.snapshot().eta_s, 0);
  EXPECT_DOUBLE_EQ(*p.snapshot().percent(), 100);
}

TEST(Progress, UnknownTotalReportsRateButNoEta) {
  FakeOutput out;
  Progress p("data", out.options(ProgressMode::json));
  p.stage("prepare", std::nullopt, "tokens");
  for (int i = 0; i < 6; ++i) out.now += 1, p.advance(500);
  p.finish();
  const auto lines = out.json_lines();
  ASSERT_EQ(lines.size(), 3u) << out.written;  // start, one progress at 5 s, end
  for (const auto& j : lines) {
    EXPECT_TRUE(j["total"].is_null());
    EXPECT_TRUE(j["eta_s"].is_null());
    EXPECT_TRUE(j["percent"].is_null());
  }
  EXPECT_EQ(lines[1]["event"], "progress");
  EXPECT_DOUBLE_EQ(lines[1]["rate"].get<double>(), 500);
  EXPECT_EQ(lines[2]["done"], 3000);
}

TEST(Progress, BarRedrawsAtMostTenTimesASecond) {
  FakeOutput out;
  Progress p("quantize", out.options(ProgressMode::bar));
  p.stage("Q8_0", 102'400, "weights");
  // 1024 updates over one second (steps of 1/1024 s add up exactly).
  for (int i = 0; i < 1024; ++i) out.now += 1.0 / 1024, p.advance(100);
  // The stage's first draw, one every 103 steps (the first step 0.1 s after the last draw: 9 of
  // them), and the one at 100%, which is drawn at once.
  EXPECT_EQ(count(out.written, "quantize Q8_0"), 11) << out.written;
  EXPECT_EQ(screen(out.written).back().substr(0, 20), "quantize Q8_0 [=====");
  EXPECT_NE(screen(out.written).back().find("100%"), std::string::npos);
}

TEST(Progress, JsonLinesAtMostEveryFewSecondsPlusStageStartAndEnd) {
  FakeOutput out;
  Progress p("imatrix", out.options(ProgressMode::json));
  p.stage("collect", 2000, "tokens");
  for (int i = 0; i < 80; ++i) out.now += 0.25, p.advance(25);  // 20 s, in steps that add up exactly
  p.finish();
  const auto lines = out.json_lines();
  // start, progress at 5, 10, 15 and 20 s, end.
  ASSERT_EQ(lines.size(), 6u) << out.written;
  EXPECT_EQ(lines.front()["event"], "start");
  EXPECT_EQ(lines.back()["event"], "end");
  for (std::size_t i = 1; i + 1 < lines.size(); ++i) {
    EXPECT_EQ(lines[i]["event"], "progress");
    EXPECT_DOUBLE_EQ(lines[i]["elapsed_s"].get<double>(), 5.0 * static_cast<double>(i));
  }
  for (const auto& j : lines)
    for (const char* key : {"event", "job", "stage", "done", "total", "unit", "rate", "elapsed_s", "eta_s", "percent"})
      EXPECT_TRUE(j.contains(key)) << key << " missing from " << j.dump();
  EXPECT_EQ(lines[2]["done"], 1000);
  EXPECT_DOUBLE_EQ(lines[2]["percent"].get<double>(), 50);
  EXPECT_NEAR(lines[2]["rate"].get<double>(), 100, 1e-6);
  EXPECT_NEAR(lines[2]["eta_s"].get<double>(), 10, 1e-6);
  EXPECT_EQ(lines.back()["done"], 2000);
  EXPECT_DOUBLE_EQ(lines.back()["percent"].get<double>(), 100);
  EXPECT_DOUBLE_EQ(lines.back()["eta_s"].get<double>(), 0);
}

TEST(Progress, TickKeepsJsonLinesComingWhileAUnitOfWorkRuns) {
  FakeOutput out;
  Progress p("bench", out.options(ProgressMode::json));
  p.stage("speed", 5, "repetitions");
  out.now += 2, p.advance();
  out.now += 4, p.tick();  // 6 s after the start, nothing reported since 2 s
  const auto lines = out.json_lines();
  ASSERT_EQ(lines.size(), 2u) << out.written;
  EXPECT_DOUBLE_EQ(lines[1]["elapsed_s"].get<double>(), 6);
  EXPECT_DOUBLE_EQ(lines[1]["eta_s"].get<double>(), 4);  // 8 s at 2 s each, 4 s of which have passed
  out.now += 1, p.tick();                                // not due
  EXPECT_EQ(out.json_lines().size(), 2u);
}

TEST(Progress, StagesEachStartAndEnd) {
  FakeOutput out;
  Progress p("eval", out.options(ProgressMode::json));
  p.stage("base", 4, "chunks");
  for (int i = 0; i < 4; ++i) out.now += 1, p.advance();
  p.stage("kld", 8, "chunks");
  out.now += 1, p.advance(2);
  p.detail("PPL 12.5");
  p.end_stage();
  p.end_stage();  // nothing open: nothing written
  p.finish();
  const auto lines = out.json_lines();
  ASSERT_EQ(lines.size(), 4u) << out.written;
  EXPECT_EQ(lines[0]["event"], "start");
  EXPECT_EQ(lines[0]["stage"], "base");
  EXPECT_EQ(lines[0]["done"], 0);
  EXPECT_EQ(lines[1]["event"], "end");
  EXPECT_EQ(lines[1]["stage"], "base");
  EXPECT_EQ(lines[1]["done"], 4);
  EXPECT_DOUBLE_EQ(lines[1]["elapsed_s"].get<double>(), 4);
  EXPECT_EQ(lines[2]["event"], "start");
  EXPECT_EQ(lines[2]["stage"], "kld");
  EXPECT_DOUBLE_EQ(lines[2]["elapsed_s"].get<double>(), 0);
  EXPECT_TRUE(lines[2]["rate"].is_null());  // a new stage measures its own rate
  EXPECT_EQ(lines[3]["event"], "end");
  EXPECT_EQ(lines[3]["done"], 2);
  EXPECT_EQ(lines[3]["detail"], "PPL 12.5");
  for (const auto& j : lines) EXPECT_EQ(j["job"], "eval");
}

TEST(Progress, FinishLeavesTheTerminalLineEmpty) {
  FakeOutput out;
  out.columns = 70;
  Progress p("bench", out.options(ProgressMode::bar));
  p.stage("speed", 3, "repetitions");
  out.now += 1, p.advance();
  ASSERT_EQ(screen(out.written).size(), 1u);
  EXPECT_EQ(screen(out.written)[0].rfind("bench speed [", 0), 0u) << out.written;
  EXPECT_LE(screen(out.written)[0].size(), 69u);
  p.stage("serving", 2, "runs");  // the new stage replaces the line
  EXPECT_EQ(screen(out.written).size(), 1u);
  EXPECT_EQ(screen(out.written)[0].rfind("bench serving [", 0), 0u) << out.written;
  p.finish();
  EXPECT_EQ(screen(out.written), std::vector<std::string>{""});
  EXPECT_EQ(out.written.substr(out.written.size() - 4), "\r\033[K");
  p.finish();   // idempotent
  p.advance();  // after the end: ignored
  EXPECT_EQ(screen(out.written), std::vector<std::string>{""});
}

TEST(Progress, LogWritesAboveTheBar) {
  FakeOutput out;
  Progress p("quantize", out.options(ProgressMode::bar));
  p.stage("Q4_0", 10, "tensors");
  out.now += 1, p.advance(3);
  p.log("kiln quantize: tensor x: q4_0 -> q8_0");
  std::vector<std::string> s = screen(out.written);
  ASSERT_EQ(s.size(), 2u) << out.written;
  EXPECT_EQ(s[0], "kiln quantize: tensor x: q4_0 -> q8_0");
  EXPECT_EQ(s[1].rfind("quantize Q4_0 [", 0), 0u) << s[1];
  p.finish();
  EXPECT_EQ(screen(out.written), (std::vector<std::string>{"kiln quantize: tensor x: q4_0 -> q8_0", ""}));

  // Without progress the line is still written.
  FakeOutput quiet;
  Progress q("quantize", quiet.options(ProgressMode::none));
  q.stage("Q4_0", 10, "tensors");
  q.advance(5);
  q.log("a notice");
  q.finish();
  EXPECT_EQ(quiet.written, "a notice\n");
}

TEST(Progress, DestroyedMidStageClearsTheLineAndWritesNoEnd) {
  FakeOutput bar;
  {
    Progress p("eval", bar.options(ProgressMode::bar));
    p.stage("perplexity", 10, "chunks");
    p.advance(2);
  }
  EXPECT_EQ(screen(bar.written), std::vector<std::string>{""});

  FakeOutput json;
  {
    Progress p("eval", json.options(ProgressMode::json));
    p.stage("perplexity", 10, "chunks");
    p.advance(2);
  }
  const auto lines = json.json_lines();
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0]["event"], "start");
}

TEST(Progress, AdvanceFromManyThreads) {
  FakeOutput out;
  ProgressOptions o = out.options(ProgressMode::json);
  o.clock = [] { return 0.0; };  // the fake clock's double is not written atomically
  Progress p("quantize", o);
  p.stage("Q8_0", 40'000, "weights");
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&p] {
      for (int i = 0; i < 10'000; ++i) p.advance();
    });
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(p.snapshot().done, 40'000);
}

TEST(Progress, TickerThreadRedrawsWithoutUpdates) {
  FakeOutput out;
  ProgressOptions o = out.options(ProgressMode::bar);
  o.tick_interval_s = 0.01;
  std::mutex mu;
  std::string written;
  o.sink = [&](std::string_view s) {
    std::lock_guard lock(mu);
    written += s;
  };
  o.clock = [] { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); };
  {
    Progress p("train", o);
    p.stage("epoch 1", 100, "steps");
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
  }
  std::lock_guard lock(mu);
  EXPECT_GE(count(written, "train epoch 1"), 2) << written;
}

}  // namespace
}  // namespace kiln::monitor
