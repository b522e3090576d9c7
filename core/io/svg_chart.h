// Line charts as standalone SVG, written by the project itself so that a sweep's picture
// needs no plotting tool: one or more panels stacked vertically, each with its axes, tick
// labels, a legend and a title. Every data point is a <circle class="point"> carrying
// its series, chart key and exact values (data-series, data-chart, data-x, data-y with
// 17 significant digits, which read back as the same double), so the picture can be
// checked against the numbers it was drawn from.
#pragma once

#include <algorithm>
#include <map>
#include <string>
#include <vector>

namespace emo {

struct ChartSeries {
  std::string name;
  std::vector<double> x, y;  // the same length; points with a non-finite y are not drawn
};

// A horizontal reference line across the plot (the full model), drawn dashed.
struct ChartReference {
  std::string name;
  double y = 0;
};

struct LineChart {
  std::string key;  // data-chart of its points
  std::string title, x_label, y_label;
  bool log2_x = false;  // x positions at log2(x): budgets that double are evenly spaced
  bool round_x_ticks = false;  // x ticks at round values over the range, not at every point's x
  bool log_y = false;          // y positions at log10(y), ticks at 1, 2, 3, 5 x 10^k (finer within a
                               // decade): equal ratios, equal distances
  std::vector<ChartSeries> series;
  std::vector<ChartReference> references;
  // A second line under an x tick label (e.g. the module size at that budget).
  std::map<double, std::string> x_notes;
};

// The series of `points` (anything with a `series` name) in the order they first appear:
// a chart's legend order.
template <typename Point>
std::vector<std::string> series_in_order(const std::vector<Point>& points) {
  std::vector<std::string> names;
  for (const auto& p : points)
    if (std::find(names.begin(), names.end(), p.series) == names.end()) names.push_back(p.series);
  return names;
}

// One SVG document with the charts one below the other; `title` is its <title>.
std::string render_svg(const std::vector<LineChart>& charts, const std::string& title);

// Tick values for [lo, hi]: multiples of 1, 2 or 5 times a power of ten, about `target`
// of them, covering the range (lo < hi).
std::vector<double> nice_ticks(double lo, double hi, int target = 5);

// Text and attribute values with &, <, >, " and ' escaped.
std::string xml_escape(const std::string& s);
// "%.*f" of a coordinate or label.
std::string svg_number(double v, int digits);
// 17 significant digits: reads back as the same double (values in data attributes).
std::string exact_number(double v);

}  // namespace emo
