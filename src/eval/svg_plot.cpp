#include "eval/svg_plot.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <iterator>
#include <unistd.h>

#include "core/error.h"

namespace kiln::eval {

namespace {

// Canvas and plot area, in SVG user units (pixels).
constexpr double kWidth = 760, kHeight = 500;
constexpr double kLeft = 90, kRight = 40, kTop = 50, kBottom = 70;

std::string escape_xml(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '&': out += "&amp;"; break;
      case '"': out += "&quot;"; break;
      default:
        // Control bytes are not allowed in XML 1.0 text.
        if (static_cast<unsigned char>(c) >= 0x20 || c == '\t') out += c;
    }
  }
  return out;
}

std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", v);
  return buf;
}

std::string tick_label(double v) {
  char buf[32];
  if (v != 0 && (std::fabs(v) < 1e-3 || std::fabs(v) >= 1e5)) std::snprintf(buf, sizeof buf, "%.0e", v);
  else std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

}  // namespace

std::vector<double> nice_ticks(double lo, double hi, int target) {
  if (!(hi > lo)) return {lo};
  const double raw = (hi - lo) / std::max(1, target);
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  double step = mag;
  for (double m : {1.0, 2.0, 5.0, 10.0})
    if (m * mag >= raw) {
      step = m * mag;
      break;
    }
  std::vector<double> ticks;
  for (double t = std::ceil(lo / step - 1e-9) * step; t <= hi + step * 1e-9; t += step)
    ticks.push_back(std::fabs(t) < step * 1e-9 ? 0.0 : t);
  return ticks;
}

std::string render_svg(const Plot& plot) {
  // Every point and every line point bounds the axes.
  std::vector<PlotPoint> all = plot.points;
  for (const PlotLine& line : plot.lines)
    for (const auto& [x, y] : line.points) all.push_back(PlotPoint{x, y, line.name});
  KILN_CHECK(!all.empty(), "plot '{}' has no points", plot.title);
  double x0 = all[0].x, x1 = x0, y0 = all[0].y, y1 = y0;
  for (const PlotPoint& p : all) {
    KILN_CHECK(std::isfinite(p.x) && std::isfinite(p.y), "plot '{}': point '{}' is not finite ({}, {})", plot.title,
               p.label, p.x, p.y);
    KILN_CHECK(!plot.log_y || p.y > 0, "plot '{}': point '{}' has y = {}, which a log scale cannot show", plot.title,
               p.label, p.y);
    x0 = std::min(x0, p.x), x1 = std::max(x1, p.x), y0 = std::min(y0, p.y), y1 = std::max(y1, p.y);
  }
  // Axis ranges: padded by 8% so that no point sits on the frame; one value is widened.
  auto pad = [](double& lo, double& hi, double min_half) {
    const double span = hi - lo;
    if (span <= 0) lo -= min_half, hi += min_half;
    else lo -= span * 0.08, hi += span * 0.08;
  };
  pad(x0, x1, std::max(1.0, std::fabs(x0) * 0.1));
  std::vector<double> yticks;
  std::vector<double> yminor;
  double ly0 = 0, ly1 = 0;  // the y axis in plotted units (log10 y on a log scale)
  if (plot.log_y) {
    ly0 = std::floor(std::log10(y0) - 1e-9);
    ly1 = std::ceil(std::log10(y1) + 1e-9);
    if (ly1 - ly0 < 1) ly1 = ly0 + 1;
    const bool few = ly1 - ly0 <= 2;
    for (double d = ly0; d <= ly1 + 1e-9; d += 1) {
      yticks.push_back(std::pow(10.0, d));
      if (d < ly1)
        for (int m = 2; m <= 9; ++m) {
          const double v = m * std::pow(10.0, d);
          if (few && (m == 2 || m == 5)) yticks.push_back(v);
          else yminor.push_back(v);
        }
    }
  } else {
    pad(y0, y1, std::max(1.0, std::fabs(y0) * 0.1));
    ly0 = y0, ly1 = y1;
    yticks = nice_ticks(y0, y1, 6);
  }
  const std::vector<double> xticks = nice_ticks(x0, x1, 7);
  const double pw = kWidth - kLeft - kRight, ph = kHeight - kTop - kBottom;
  auto px = [&](double x) { return kLeft + (x - x0) / (x1 - x0) * pw; };
  auto py = [&](double y) {
    const double u = plot.log_y ? std::log10(y) : y;
    return kTop + ph - (u - ly0) / (ly1 - ly0) * ph;
  };

  std::string s;
  s += "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";
  s += "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"" + num(kWidth) + "\" height=\"" +
       num(kHeight) + "\" viewBox=\"0 0 " + num(kWidth) + " " + num(kHeight) +
       "\" font-family=\"DejaVu Sans, Arial, sans-serif\" font-size=\"13\">\n";
  s += "<rect x=\"0\" y=\"0\" width=\"" + num(kWidth) + "\" height=\"" + num(kHeight) + "\" fill=\"white\"/>\n";
  s += "<text x=\"" + num(kWidth / 2) + "\" y=\"28\" text-anchor=\"middle\" font-size=\"16\" font-weight=\"bold\">" +
       escape_xml(plot.title) + "</text>\n";
  // Grid and ticks.
  s += "<g stroke=\"#e3e3e3\" stroke-width=\"1\">\n";
  for (double v : yminor) s += "<line x1=\"" + num(kLeft) + "\" x2=\"" + num(kLeft + pw) + "\" y1=\"" + num(py(v)) + "\" y2=\"" + num(py(v)) + "\" stroke=\"#f2f2f2\"/>\n";
  for (double v : yticks) s += "<line x1=\"" + num(kLeft) + "\" x2=\"" + num(kLeft + pw) + "\" y1=\"" + num(py(v)) + "\" y2=\"" + num(py(v)) + "\"/>\n";
  for (double v : xticks) s += "<line x1=\"" + num(px(v)) + "\" x2=\"" + num(px(v)) + "\" y1=\"" + num(kTop) + "\" y2=\"" + num(kTop + ph) + "\"/>\n";
  s += "</g>\n";
  s += "<rect x=\"" + num(kLeft) + "\" y=\"" + num(kTop) + "\" width=\"" + num(pw) + "\" height=\"" + num(ph) +
       "\" fill=\"none\" stroke=\"#333\" stroke-width=\"1.2\"/>\n";
  s += "<g fill=\"#333\">\n";
  for (double v : xticks)
    s += "<text x=\"" + num(px(v)) + "\" y=\"" + num(kTop + ph + 20) + "\" text-anchor=\"middle\">" +
         escape_xml(tick_label(v)) + "</text>\n";
  for (double v : yticks)
    s += "<text x=\"" + num(kLeft - 8) + "\" y=\"" + num(py(v) + 4) + "\" text-anchor=\"end\">" +
         escape_xml(tick_label(v)) + "</text>\n";
  s += "</g>\n";
  // Axis labels.
  s += "<text x=\"" + num(kLeft + pw / 2) + "\" y=\"" + num(kHeight - 22) + "\" text-anchor=\"middle\">" +
       escape_xml(plot.x_label) + "</text>\n";
  s += "<text transform=\"translate(22," + num(kTop + ph / 2) + ") rotate(-90)\" text-anchor=\"middle\">" +
       escape_xml(plot.y_label + (plot.log_y ? " (log scale)" : "")) + "</text>\n";
  // Lines, each a polyline in its own colour, named in a legend at the top right of the frame.
  static constexpr const char* kLineColours[] = {"#1f6fb2", "#d1495b", "#2e933c", "#edae49", "#6a4c93", "#555555"};
  for (std::size_t i = 0; i < plot.lines.size(); ++i) {
    const PlotLine& line = plot.lines[i];
    const char* colour = kLineColours[i % std::size(kLineColours)];
    if (line.points.empty()) continue;
    std::string pts;
    for (const auto& [x, y] : line.points) pts += num(px(x)) + "," + num(py(y)) + " ";
    s += "<polyline fill=\"none\" stroke=\"" + std::string(colour) + "\" stroke-width=\"1.8\" points=\"" + pts + "\"/>\n";
    if (line.points.size() == 1)
      s += "<circle cx=\"" + num(px(line.points[0].first)) + "\" cy=\"" + num(py(line.points[0].second)) +
           "\" r=\"3\" fill=\"" + colour + "\"/>\n";
    const double ly = kTop + 18 + 18 * static_cast<double>(i);
    s += "<line x1=\"" + num(kLeft + pw - 150) + "\" x2=\"" + num(kLeft + pw - 126) + "\" y1=\"" + num(ly - 4) +
         "\" y2=\"" + num(ly - 4) + "\" stroke=\"" + colour + "\" stroke-width=\"2.5\"/>\n";
    s += "<text x=\"" + num(kLeft + pw - 120) + "\" y=\"" + num(ly) + "\">" + escape_xml(line.name) + "</text>\n";
  }
  // Points, each with its name; labels left of the point when it is in the right third.
  s += "<g>\n";
  for (const PlotPoint& p : plot.points) {
    const double cx = px(p.x), cy = py(p.y);
    const bool left = cx > kLeft + pw * 2 / 3;
    s += "<circle cx=\"" + num(cx) + "\" cy=\"" + num(cy) + "\" r=\"5\" fill=\"#d1495b\" stroke=\"#7a1f2b\"/>\n";
    s += "<text x=\"" + num(left ? cx - 8 : cx + 8) + "\" y=\"" + num(cy - 8) + "\" text-anchor=\"" +
         (left ? "end" : "start") + "\">" + escape_xml(p.label) + "</text>\n";
  }
  s += "</g>\n</svg>\n";
  return s;
}

void write_svg(const std::string& path, const Plot& plot) {
  const std::string svg = render_svg(plot);
  const std::string temp = path + ".tmp-" + std::to_string(::getpid());
  std::FILE* f = std::fopen(temp.c_str(), "wb");
  if (f == nullptr) fail("{}: cannot create ({})", temp, std::strerror(errno));
  const bool ok = std::fwrite(svg.data(), 1, svg.size(), f) == svg.size();
  const bool closed = std::fclose(f) == 0;
  if (!ok || !closed) {
    std::remove(temp.c_str());
    fail("{}: write failed", temp);
  }
  if (std::rename(temp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    std::remove(temp.c_str());
    fail("{}: cannot rename {} into place ({})", path, temp, std::strerror(err));
  }
}

}  // namespace kiln::eval
