#include "core/io/svg_chart.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <set>

namespace emo {

namespace {

// Panel geometry in SVG user units: the plot area, with room on the left for the y tick
// labels, below for two lines of x tick labels and the axis label, right for the legend.
constexpr double kWidth = 760, kHeight = 380;
constexpr double kLeft = 80, kRight = 560, kTop = 44, kBottom = 300;
constexpr const char* kPalette[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
                                    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};
// Legend text at font-size 12 takes at most this much width per character.
constexpr double kCharWidth = 7.5;

std::string num(double v, int digits = 2) { return svg_number(v, digits); }

std::string short_number(double v) {
  char b[64];
  std::snprintf(b, sizeof b, "%g", v);
  return b;
}

const char* color(size_t i) { return kPalette[i % (sizeof kPalette / sizeof *kPalette)]; }

// A linear map from [d0, d1] to [r0, r1].
struct Scale {
  double d0, d1, r0, r1;
  double operator()(double v) const { return r0 + (v - d0) / (d1 - d0) * (r1 - r0); }
};

bool drawable(const LineChart& c, double x, double y) {
  return std::isfinite(y) && std::isfinite(x) && (!c.log2_x || x > 0) && (!c.log_y || y > 0);
}

double x_position(const LineChart& c, double x) { return c.log2_x ? std::log2(x) : x; }
double y_position(const LineChart& c, double y) { return c.log_y ? std::log10(y) : y; }

// Ticks of a log axis covering [lo, hi] (0 < lo <= hi): `mantissas` times powers of ten,
// from the largest at or below lo to the smallest at or above hi.
std::vector<double> log_ticks(double lo, double hi, const std::vector<double>& mantissas) {
  std::vector<double> all;
  for (int e = int(std::floor(std::log10(lo))) - 1; e <= int(std::ceil(std::log10(hi))); ++e)
    for (double m : mantissas) all.push_back(m * std::pow(10.0, e));
  std::vector<double> ticks;
  for (size_t i = 0; i < all.size(); ++i)
    if ((i + 1 < all.size() && all[i + 1] > lo && all[i] <= hi) || (i > 0 && all[i - 1] < hi && all[i] >= lo))
      ticks.push_back(all[i]);
  return ticks;
}

// Decimals that tell ticks `step` apart.
int tick_decimals(double step) { return std::max(0, int(-std::floor(std::log10(step) + 1e-9))); }

Scale x_scale(const LineChart& c, const std::set<double>& xs) {
  double lo = x_position(c, *xs.begin()), hi = x_position(c, *xs.rbegin());
  if (c.round_x_ticks) return {lo, hi, kLeft, kRight};  // xs are the round ticks around the data
  double pad = lo == hi ? 1 : 0.06 * (hi - lo);
  return {lo - pad, hi + pad, kLeft, kRight};
}

std::vector<double> y_ticks(const LineChart& c) {
  double lo = INFINITY, hi = -INFINITY;
  for (const auto& s : c.series)
    for (size_t i = 0; i < s.y.size(); ++i)
      if (drawable(c, s.x[i], s.y[i])) lo = std::min(lo, s.y[i]), hi = std::max(hi, s.y[i]);
  for (const auto& r : c.references)
    if (std::isfinite(r.y)) lo = std::min(lo, r.y), hi = std::max(hi, r.y);
  if (!(lo <= hi)) lo = 0, hi = 1;  // nothing to draw
  if (lo == hi) {
    double pad = std::max(std::abs(lo) * 0.05, 0.5);
    lo -= pad, hi += pad;
  }
  if (c.log_y && lo > 0) {
    // 1-2-3-5 per decade; a range of less than a decade gets the finer 1-1.5-2-3-...-8.
    std::vector<double> ticks = log_ticks(lo, hi, {1, 2, 3, 5});
    return ticks.size() >= 5 ? ticks : log_ticks(lo, hi, {1, 1.5, 2, 3, 4, 5, 6, 7, 8});
  }
  return nice_ticks(lo, hi);
}

std::string axes(const LineChart& c, const Scale& sx, const Scale& sy, const std::set<double>& xs,
                 const std::vector<double>& yt) {
  std::string o;
  o += "<rect x=\"" + num(kLeft) + "\" y=\"" + num(kTop) + "\" width=\"" + num(kRight - kLeft) + "\" height=\"" +
       num(kBottom - kTop) + "\" fill=\"none\" stroke=\"#999\"/>\n";
  int decimals = yt.size() > 1 ? tick_decimals(yt[1] - yt[0]) : 2;
  for (double t : yt) {
    std::string y = num(sy(y_position(c, t)));
    o += "<line class=\"y-tick\" x1=\"" + num(kLeft) + "\" x2=\"" + num(kRight) + "\" y1=\"" + y + "\" y2=\"" + y +
         "\" stroke=\"#e5e5e5\"/>\n";
    o += "<text x=\"" + num(kLeft - 6) + "\" y=\"" + y + "\" text-anchor=\"end\" dominant-baseline=\"middle\">" +
         (c.log_y ? short_number(t) : num(t, decimals)) + "</text>\n";
  }
  for (double v : xs) {
    std::string x = num(sx(x_position(c, v)));
    o += "<line class=\"x-tick\" x1=\"" + x + "\" x2=\"" + x + "\" y1=\"" + num(kBottom) + "\" y2=\"" +
         num(kBottom + 5) + "\" stroke=\"#999\"/>\n";
    o +=
        "<text x=\"" + x + "\" y=\"" + num(kBottom + 18) + "\" text-anchor=\"middle\">" + short_number(v) + "</text>\n";
    auto note = c.x_notes.find(v);
    if (note != c.x_notes.end())
      o += "<text x=\"" + x + "\" y=\"" + num(kBottom + 32) +
           "\" text-anchor=\"middle\" font-size=\"10\" fill=\"#666\">" + xml_escape(note->second) + "</text>\n";
  }
  o += "<text x=\"" + num((kLeft + kRight) / 2) + "\" y=\"" + num(kBottom + 54) + "\" text-anchor=\"middle\">" +
       xml_escape(c.x_label) + "</text>\n";
  o += "<text transform=\"translate(18 " + num((kTop + kBottom) / 2) + ") rotate(-90)\" text-anchor=\"middle\">" +
       xml_escape(c.y_label) + "</text>\n";
  o += "<text x=\"" + num((kLeft + kRight) / 2) + "\" y=\"" + num(kTop - 16) +
       "\" text-anchor=\"middle\" font-size=\"15\" font-weight=\"bold\">" + xml_escape(c.title) + "</text>\n";
  return o;
}

std::string series_marks(const LineChart& c, const ChartSeries& s, const char* stroke, const Scale& sx,
                         const Scale& sy) {
  std::string line, dots;
  for (size_t i = 0; i < s.x.size(); ++i) {
    if (!drawable(c, s.x[i], s.y[i])) continue;
    std::string px = num(sx(x_position(c, s.x[i]))), py = num(sy(y_position(c, s.y[i])));
    line += (line.empty() ? "" : " ") + px + "," + py;
    dots += "<circle class=\"point\" data-chart=\"" + xml_escape(c.key) + "\" data-series=\"" + xml_escape(s.name) +
            "\" data-x=\"" + exact_number(s.x[i]) + "\" data-y=\"" + exact_number(s.y[i]) + "\" cx=\"" + px + "\" cy=\"" + py +
            "\" r=\"3.5\" fill=\"" + stroke + "\"><title>" + xml_escape(s.name) + ", " + short_number(s.x[i]) + ": " +
            exact_number(s.y[i]) + "</title></circle>\n";
  }
  std::string o;
  if (!line.empty())
    o += "<polyline class=\"series\" data-series=\"" + xml_escape(s.name) + "\" points=\"" + line +
         "\" fill=\"none\" stroke=\"" + stroke + "\" stroke-width=\"2\"/>\n";
  return o + dots;
}

std::string reference_line(const LineChart& c, const ChartReference& r, const Scale& sy) {
  if (!std::isfinite(r.y) || (c.log_y && r.y <= 0)) return "";
  std::string y = num(sy(y_position(c, r.y)));
  return "<line class=\"reference\" data-series=\"" + xml_escape(r.name) + "\" data-y=\"" + exact_number(r.y) + "\" x1=\"" +
         num(kLeft) + "\" x2=\"" + num(kRight) + "\" y1=\"" + y + "\" y2=\"" + y +
         "\" stroke=\"#555\" stroke-width=\"1.5\" stroke-dasharray=\"6 4\"/>\n";
}

std::string legend(const LineChart& c) {
  std::string o = "<g class=\"legend\">\n";
  double y = kTop + 10;
  auto entry = [&](const std::string& name, const std::string& mark) {
    std::string yy = num(y);
    o += mark + "<text x=\"" + num(kRight + 46) + "\" y=\"" + yy + "\" dominant-baseline=\"middle\">" +
         xml_escape(name) + "</text>\n";
    y += 20;
  };
  for (size_t i = 0; i < c.series.size(); ++i) {
    std::string yy = num(y);
    entry(c.series[i].name, "<line x1=\"" + num(kRight + 14) + "\" x2=\"" + num(kRight + 38) + "\" y1=\"" + yy +
                                "\" y2=\"" + yy + "\" stroke=\"" + color(i) + "\" stroke-width=\"2\"/>");
  }
  for (const auto& r : c.references) {
    std::string yy = num(y);
    entry(r.name, "<line x1=\"" + num(kRight + 14) + "\" x2=\"" + num(kRight + 38) + "\" y1=\"" + yy + "\" y2=\"" + yy +
                      "\" stroke=\"#555\" stroke-width=\"1.5\" stroke-dasharray=\"6 4\"/>");
  }
  return o + "</g>\n";
}

std::string panel(const LineChart& c) {
  std::set<double> xs;
  for (const auto& s : c.series)
    for (size_t i = 0; i < s.x.size(); ++i)
      if (drawable(c, s.x[i], s.y[i])) xs.insert(s.x[i]);
  if (xs.empty()) xs.insert(1);  // an empty frame, still a valid chart
  if (c.round_x_ticks && *xs.begin() < *xs.rbegin()) {
    std::vector<double> t = nice_ticks(*xs.begin(), *xs.rbegin(), 6);
    xs = std::set<double>(t.begin(), t.end());
  }
  Scale sx = x_scale(c, xs);
  std::vector<double> yt = y_ticks(c);
  Scale sy{y_position(c, yt.front()), y_position(c, yt.back()), kBottom, kTop};
  std::string o = axes(c, sx, sy, xs, yt);
  for (const auto& r : c.references) o += reference_line(c, r, sy);
  for (size_t i = 0; i < c.series.size(); ++i) o += series_marks(c, c.series[i], color(i), sx, sy);
  return o + legend(c);
}

}  // namespace

std::vector<double> nice_ticks(double lo, double hi, int target) {
  double span = hi - lo;
  double magnitude = std::pow(10.0, std::floor(std::log10(span / target)));
  double step = magnitude;
  for (double m : {1.0, 2.0, 5.0, 10.0}) {
    step = m * magnitude;
    if (span / step <= target) break;
  }
  double first = std::floor(lo / step), last = std::ceil(hi / step);
  std::vector<double> ticks;
  for (double i = first; i <= last; ++i) ticks.push_back(i * step == 0 ? 0.0 : i * step);  // no "-0"
  return ticks;
}

std::string svg_number(double v, int digits) {
  char b[64];
  std::snprintf(b, sizeof b, "%.*f", digits, v);
  return b;
}

std::string exact_number(double v) {
  char b[64];
  std::snprintf(b, sizeof b, "%.17g", v);
  return b;
}

std::string xml_escape(const std::string& s) {
  std::string o;
  for (char ch : s) switch (ch) {
      case '&':
        o += "&amp;";
        break;
      case '<':
        o += "&lt;";
        break;
      case '>':
        o += "&gt;";
        break;
      case '"':
        o += "&quot;";
        break;
      case '\'':
        o += "&apos;";
        break;
      default:
        o += ch;
    }
  return o;
}

namespace {

// The picture's width: the panel and a legend wide enough for its longest entry.
double svg_width(const std::vector<LineChart>& charts) {
  size_t longest = 0;
  for (const auto& c : charts) {
    for (const auto& s : c.series) longest = std::max(longest, s.name.size());
    for (const auto& r : c.references) longest = std::max(longest, r.name.size());
  }
  return std::max(kWidth, std::ceil(kRight + 46 + kCharWidth * double(longest) + 12));
}

}  // namespace

std::string render_svg(const std::vector<LineChart>& charts, const std::string& title) {
  double height = kHeight * double(std::max<size_t>(1, charts.size())), width = svg_width(charts);
  std::string o = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";
  o += "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" + num(width, 0) + "\" height=\"" + num(height, 0) +
       "\" viewBox=\"0 0 " + num(width, 0) + " " + num(height, 0) +
       "\" font-family=\"Helvetica, Arial, sans-serif\" font-size=\"12\">\n";
  o += "<title>" + xml_escape(title) + "</title>\n";
  o += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  for (size_t i = 0; i < charts.size(); ++i)
    o += "<g class=\"chart\" data-chart=\"" + xml_escape(charts[i].key) + "\" transform=\"translate(0 " +
         num(kHeight * double(i), 0) + ")\">\n" + panel(charts[i]) + "</g>\n";
  return o + "</svg>\n";
}

}  // namespace emo
