#include "monitor/progress.h"

#include <sys/ioctl.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace kiln::monitor {

namespace {

// The rate is measured over at least this long, so that bursts of tiny updates do not make it
// jump; the smoothing then follows a change of pace over options.rate_time_constant_s.
constexpr double kRateSampleSeconds = 0.25;

// Erases from the cursor to the end of the line (ECMA-48 EL), after a carriage return.
constexpr std::string_view kClearLine = "\r\033[K";

void write_stderr(std::string_view bytes) {
  std::fwrite(bytes.data(), 1, bytes.size(), stderr);
  std::fflush(stderr);
}

double steady_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

int terminal_columns() {
  winsize ws{};
  if (::ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) return ws.ws_col;
  if (const char* env = std::getenv("COLUMNS")) {
    const int n = std::atoi(env);
    if (n > 0) return n;
  }
  return 80;
}

bool stderr_is_terminal() {
  if (::isatty(STDERR_FILENO) == 0) return false;
  const char* term = std::getenv("TERM");
  return term == nullptr || std::strcmp(term, "dumb") != 0;
}

}  // namespace

std::optional<ProgressMode> parse_progress_mode(std::string_view name) {
  if (name == "auto") return ProgressMode::automatic;
  if (name == "bar") return ProgressMode::bar;
  if (name == "json") return ProgressMode::json;
  if (name == "none") return ProgressMode::none;
  return std::nullopt;
}

std::string_view progress_mode_name(ProgressMode mode) {
  switch (mode) {
    case ProgressMode::automatic:
      return "auto";
    case ProgressMode::bar:
      return "bar";
    case ProgressMode::json:
      return "json";
    case ProgressMode::none:
      return "none";
  }
  return "auto";
}

Progress::Progress(std::string job, ProgressOptions options) : job_(std::move(job)), options_(std::move(options)) {
  if (!options_.sink) options_.sink = write_stderr;
  if (!options_.clock) options_.clock = steady_seconds;
  if (!options_.columns) options_.columns = terminal_columns;
  mode_ = options_.mode;
  if (mode_ == ProgressMode::automatic)
    mode_ = options_.terminal.value_or(stderr_is_terminal()) ? ProgressMode::bar : ProgressMode::json;
  if (mode_ != ProgressMode::none && options_.tick_interval_s > 0) ticker_ = std::thread([this] { ticker_loop(); });
}

Progress::Progress(std::string job, ProgressMode mode)
    : Progress(std::move(job), [mode] {
        ProgressOptions o;
        o.mode = mode;
        return o;
      }()) {}

Progress::~Progress() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  ticker_cv_.notify_all();
  if (ticker_.joinable()) ticker_.join();
  // Mid-stage means an error is on its way out: leave the line empty for it, and write no "end"
  // for a stage that did not end.
  std::lock_guard lock(mu_);
  try {
    clear_line();
  } catch (...) {
  }
}

void Progress::stage(std::string name, std::optional<std::int64_t> total, std::string unit) {
  std::lock_guard lock(mu_);
  end_stage_locked();
  const double now = options_.clock();
  in_stage_ = true;
  stage_ = std::move(name);
  unit_ = std::move(unit);
  detail_.clear();
  total_ = total;
  done_ = 0;
  stage_start_ = now;
  rate_.reset();
  rate_sample_time_ = now;
  rate_sample_done_ = 0;
  eta_.reset();
  eta_time_ = now;
  if (mode_ == ProgressMode::json) write_json(ProgressEvent::start, now);
  if (mode_ == ProgressMode::bar) draw(now);
}

void Progress::advance(std::int64_t n) {
  std::lock_guard lock(mu_);
  update(done_ + n);
}

void Progress::set(std::int64_t done) {
  std::lock_guard lock(mu_);
  update(done);
}

void Progress::set_total(std::optional<std::int64_t> total) {
  std::lock_guard lock(mu_);
  total_ = total;
  update(done_);
}

void Progress::detail(std::string text) {
  std::lock_guard lock(mu_);
  detail_ = std::move(text);
}

void Progress::update(std::int64_t done) {
  if (!in_stage_) return;
  const double now = options_.clock();
  done_ = done;
  if (done_ < rate_sample_done_) {  // set() went back: measure from here
    rate_sample_done_ = done_;
    rate_sample_time_ = now;
  }
  sample_rate(now);
  if (mode_ == ProgressMode::bar) {
    const bool complete = total_ && done_ >= *total_;
    if (complete || now - last_draw_ >= options_.redraw_interval_s) draw(now);
  } else if (mode_ == ProgressMode::json && now - last_json_ >= options_.json_interval_s) {
    write_json(ProgressEvent::progress, now);
  }
}

void Progress::sample_rate(double now) {
  const double dt = now - rate_sample_time_;
  if (dt >= kRateSampleSeconds) {
    const double measured = static_cast<double>(done_ - rate_sample_done_) / dt;
    if (!rate_) {
      rate_ = measured;
    } else {
      // An exponential moving average over time (not over samples): irregular updates weigh
      // by how long they cover.
      const double alpha = 1.0 - std::exp(-dt / options_.rate_time_constant_s);
      *rate_ += alpha * (measured - *rate_);
    }
    rate_sample_time_ = now;
    rate_sample_done_ = done_;
  }
  if (total_ && done_ >= *total_) {
    eta_ = 0.0;
  } else if (total_ && rate_ && *rate_ > 0) {
    eta_ = static_cast<double>(*total_ - done_) / *rate_;
  } else {
    eta_.reset();
  }
  eta_time_ = now;
}

ProgressSnapshot Progress::snapshot() const {
  std::lock_guard lock(mu_);
  return snapshot_at(options_.clock());
}

ProgressSnapshot Progress::snapshot_at(double now) const {
  ProgressSnapshot s;
  s.job = job_;
  s.stage = stage_;
  s.unit = unit_;
  s.detail = detail_;
  s.done = done_;
  s.total = total_;
  s.rate = rate_;
  s.elapsed_s = in_stage_ ? now - stage_start_ : 0;
  // Between updates the ETA counts down, so that it moves while a long unit of work runs.
  if (eta_) s.eta_s = std::max(0.0, *eta_ - (now - eta_time_));
  return s;
}

void Progress::draw(double now) {
  if (!in_stage_) return;
  std::string out(kClearLine.substr(0, 1));  // "\r": the line is overwritten, then its rest erased
  out += render_progress_bar(snapshot_at(now), options_.columns());
  out += kClearLine.substr(1);
  options_.sink(out);
  line_drawn_ = true;
  last_draw_ = now;
}

void Progress::clear_line() {
  if (!line_drawn_) return;
  options_.sink(kClearLine);
  line_drawn_ = false;
}

void Progress::write_json(ProgressEvent event, double now) {
  options_.sink(render_progress_json(snapshot_at(now), event) + "\n");
  last_json_ = now;
}

void Progress::end_stage_locked() {
  if (!in_stage_) return;
  const double now = options_.clock();
  if (mode_ == ProgressMode::json) {
    sample_rate(now);
    write_json(ProgressEvent::end, now);
  }
  clear_line();
  in_stage_ = false;
}

void Progress::end_stage() {
  std::lock_guard lock(mu_);
  end_stage_locked();
}

void Progress::finish() {
  std::lock_guard lock(mu_);
  end_stage_locked();
  clear_line();
}

void Progress::log(std::string_view line) {
  std::lock_guard lock(mu_);
  const bool redraw = line_drawn_;
  clear_line();
  std::string out(line);
  out += '\n';
  options_.sink(out);
  if (redraw) draw(options_.clock());
}

void Progress::tick() {
  std::lock_guard lock(mu_);
  if (!in_stage_) return;
  const double now = options_.clock();
  if (mode_ == ProgressMode::bar) {
    if (now - last_draw_ >= options_.redraw_interval_s) draw(now);
  } else if (mode_ == ProgressMode::json) {
    if (now - last_json_ >= options_.json_interval_s) write_json(ProgressEvent::progress, now);
  }
}

void Progress::ticker_loop() {
  const auto interval = std::chrono::duration<double>(options_.tick_interval_s);
  std::unique_lock lock(mu_);
  while (!ticker_cv_.wait_for(lock, interval, [this] { return stopping_; })) {
    lock.unlock();
    tick();
    lock.lock();
  }
}

}  // namespace kiln::monitor
