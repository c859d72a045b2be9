#pragma once
// A small scatter-plot writer (SVG 1.1, no dependencies): axes with "nice" ticks, a linear or
// log-scale y axis, grid lines, and points labelled by name. Used by `kiln eval compare` to
// plot quality (KLD or PPL) against bits per weight.
#include <string>
#include <vector>

namespace kiln::eval {

struct PlotPoint {
  double x = 0;
  double y = 0;
  std::string label;
};

struct ScatterPlot {
  std::string title;
  std::string x_label;
  std::string y_label;
  bool log_y = false;
  std::vector<PlotPoint> points;
};

// The plot as an SVG document. Throws kiln::Error when there is no point, a value is not
// finite, or log_y is set and a y value is not positive.
std::string render_svg(const ScatterPlot& plot);

// Writes render_svg(plot) to `path` through a temporary file renamed into place.
void write_svg(const std::string& path, const ScatterPlot& plot);

// Tick positions covering [lo, hi] at a step of 1, 2 or 5 times a power of ten, about
// `target` of them (exposed for tests).
std::vector<double> nice_ticks(double lo, double hi, int target);

}  // namespace kiln::eval
