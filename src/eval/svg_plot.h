#pragma once
// A small plot writer (SVG 1.1, no dependencies): axes with "nice" ticks, a linear or log-scale
// y axis, grid lines, points labelled by name, and lines (series of points joined in order,
// named in a legend). Used by `kiln eval compare` to plot quality (KLD or PPL) against bits per
// weight, and by `kiln train` for its loss curves.
#include <string>
#include <utility>
#include <vector>

namespace kiln::eval {

struct PlotPoint {
  double x = 0;
  double y = 0;
  std::string label;
};

// A named series drawn as a polyline through its points in order.
struct PlotLine {
  std::string name;
  std::vector<std::pair<double, double>> points;  // (x, y)
};

struct Plot {
  std::string title;
  std::string x_label;
  std::string y_label;
  bool log_y = false;
  std::vector<PlotPoint> points;
  std::vector<PlotLine> lines;
};

// The plot as an SVG document. Throws kiln::Error when there is neither a point nor a line
// point, a value is not finite, or log_y is set and a y value is not positive.
std::string render_svg(const Plot& plot);

// Writes render_svg(plot) to `path` through a temporary file renamed into place.
void write_svg(const std::string& path, const Plot& plot);

// Tick positions covering [lo, hi] at a step of 1, 2 or 5 times a power of ten, about
// `target` of them (exposed for tests).
std::vector<double> nice_ticks(double lo, double hi, int target);

}  // namespace kiln::eval
