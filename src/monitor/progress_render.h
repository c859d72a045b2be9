#pragma once
// How a job's progress reads (monitor/progress.h keeps the state and decides when to write):
// the one-line bar for a terminal and the JSON line for logs. Pure functions of a snapshot, so
// that every width and every unknown can be tested without a terminal or a clock.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace kiln::monitor {

// One moment of a stage of a job.
struct ProgressSnapshot {
  std::string job;     // "quantize", "eval", "imatrix", "bench"
  std::string stage;   // "Q4_K_M", "perplexity", "base": the phase within the job (may be empty)
  std::string unit;    // what done and total count: "tokens", "weights", "bytes", "repetitions"
  std::string detail;  // short free text after the numbers: the tensor being written, the running PPL
  std::int64_t done = 0;
  std::optional<std::int64_t> total;  // nullopt: not known in advance
  std::optional<double> rate;         // units per second, smoothed; nullopt before the first measurement
  double elapsed_s = 0;               // since the stage started
  std::optional<double> eta_s;        // nullopt without a total or a rate

  std::optional<double> percent() const;  // 0..100, nullopt without a total
};

// What a JSON line announces: a stage beginning, a periodic report, a stage ending.
enum class ProgressEvent { start, progress, end };
std::string_view progress_event_name(ProgressEvent event);

// The terminal line, at most columns - 1 characters (the last column would wrap on some
// terminals), without "\r" or escape codes:
//   quantize Q4_K_M [=========>          ]   44%  1.20M/2.67M weights  3.10M weights/s   0:12 ETA  0:15  12/40
//   blk.3.attn_q.weight
// The numbers are padded so that the bar keeps its width while they change. The bar takes the
// room left (10 to 40 cells); without room for 10, the detail goes, then the rate, then the bar,
// then whole fields from the right. Without a total there is no bar, percent or ETA.
std::string render_progress_bar(const ProgressSnapshot& s, int columns);

// One JSON object, no newline: {"event":..,"job":..,"stage":..,"done":..,"total":..,"unit":..,
// "rate":..,"elapsed_s":..,"eta_s":..,"percent":..} plus "detail" when there is one. Unknowns
// are null.
std::string render_progress_json(const ProgressSnapshot& s, ProgressEvent event);

// "950", "12.3K", "4.56M", "1.20G" (bytes: "512 B", "1.5 KiB", "3.20 MiB", "1.07 GiB").
std::string format_progress_count(double value, std::string_view unit);
// "0:07", "12:34", "1:02:03"; "--:--" for nullopt.
std::string format_progress_duration(std::optional<double> seconds);

}  // namespace kiln::monitor
