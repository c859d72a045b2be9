#pragma once
// Progress of a long job on stderr, one implementation for every command that runs one (kiln
// quantize, eval, imatrix, bench; train, convert and data prepare as they come):
//   - on a terminal, one line redrawn in place: a bar, percent, done/total, a smoothed rate,
//     elapsed time and ETA, fitted to the terminal's width and redrawn at most ten times a second;
//   - elsewhere (logs, CI), JSON lines: one when a stage starts and ends, and at most one every
//     few seconds in between, so that a log stays readable and a program can follow the job.
//
// Usage, from any thread:
//   monitor::Progress progress("quantize", mode);              // mode from --progress
//   progress.stage("Q4_K_M", total_weights, "weights");       // a stage: name, total (or nullopt), unit
//   progress.advance(n);                                      // or progress.set(done)
//   progress.detail("blk.3.attn_q.weight");                   // optional short text
//   progress.log("tensor x: falls back to q8_0");             // a line for the user, above the bar
//   progress.finish();                                        // ends the stage, clears the bar
// A new stage() ends the one before. Destroying a Progress mid-stage (an error thrown through
// it) clears the bar, so that the error starts on a clean line.
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>

#include "monitor/progress_render.h"

namespace kiln::monitor {

enum class ProgressMode {
  automatic,  // bar when stderr is a terminal (and TERM is not dumb), json otherwise
  bar,
  json,
  none,  // no progress; log() lines are still written
};
// "auto", "bar", "json", "none" (the spelling of --progress).
std::optional<ProgressMode> parse_progress_mode(std::string_view name);
std::string_view progress_mode_name(ProgressMode mode);

struct ProgressOptions {
  ProgressMode mode = ProgressMode::automatic;
  double redraw_interval_s = 0.1;     // bar: at most ten redraws a second
  double json_interval_s = 5.0;       // json: at most one progress line every five seconds
  double rate_time_constant_s = 3.0;  // how fast the smoothed rate follows a change of pace
  // A background thread calls tick() this often (0: none), so that elapsed time and ETA move and
  // JSON lines keep coming while a long unit of work reports nothing. Real time, not `clock`.
  double tick_interval_s = 1.0;

  // For tests; empty means the real thing.
  std::function<void(std::string_view)> sink;  // where bytes go (stderr)
  std::function<double()> clock;               // monotonic seconds (std::chrono::steady_clock)
  std::function<int()> columns;                // terminal width (TIOCGWINSZ on stderr, $COLUMNS, 80)
  std::optional<bool> terminal;                // what automatic decides on (isatty(stderr), TERM)
};

class Progress {
 public:
  explicit Progress(std::string job, ProgressOptions options = {});
  Progress(std::string job, ProgressMode mode);
  ~Progress();
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  // Starts a stage (ending the current one): `total` units to do, nullopt when unknown.
  void stage(std::string name, std::optional<std::int64_t> total, std::string unit);
  void advance(std::int64_t n = 1);
  void set(std::int64_t done);
  void set_total(std::optional<std::int64_t> total);
  // Short text shown after the numbers (and as "detail" in JSON) until replaced.
  void detail(std::string text);
  // Ends the current stage (a JSON "end" line, the bar cleared). Nothing if no stage is open.
  void end_stage();
  // Ends the job: the current stage ends and the terminal line is left empty. Idempotent.
  void finish();
  // Writes `line` and a newline on the sink, with the bar cleared first and redrawn after.
  void log(std::string_view line);
  // Redraws the bar or writes a JSON line if one is due; the background thread calls it.
  void tick();

  // The mode after automatic was resolved: bar, json or none.
  ProgressMode mode() const { return mode_; }
  // The current stage's state (for tests and for callers that print a summary).
  ProgressSnapshot snapshot() const;

 private:
  void update(std::int64_t done);  // mutex held
  void sample_rate(double now);    // mutex held
  ProgressSnapshot snapshot_at(double now) const;
  void draw(double now);  // mutex held
  void clear_line();      // mutex held
  void write_json(ProgressEvent event, double now);
  void end_stage_locked();
  void ticker_loop();

  std::string job_;
  ProgressOptions options_;
  ProgressMode mode_;

  mutable std::mutex mu_;
  bool in_stage_ = false;
  std::string stage_, unit_, detail_;
  std::int64_t done_ = 0;
  std::optional<std::int64_t> total_;
  double stage_start_ = 0;
  std::optional<double> rate_;   // smoothed units per second
  double rate_sample_time_ = 0;  // when the rate was last sampled
  std::int64_t rate_sample_done_ = 0;
  std::optional<double> eta_;  // ETA as of eta_time_, counted down between updates
  double eta_time_ = 0;
  bool line_drawn_ = false;  // bar: something is on the terminal line
  double last_draw_ = 0;
  double last_json_ = 0;

  std::thread ticker_;
  std::condition_variable ticker_cv_;
  bool stopping_ = false;
};

}  // namespace kiln::monitor
