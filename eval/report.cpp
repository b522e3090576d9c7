#include "eval/report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "core/text/utf8.h"
#include "core/util/fs.h"
#include "core/util/version.h"

namespace emo {

Interval wilson_interval(size_t k, size_t n, double z) {
  if (n == 0) return {0, 1};
  const double N = double(n), p = double(k) / N, z2 = z * z;
  const double denom = 1 + z2 / N;
  const double center = (p + z2 / (2 * N)) / denom;
  const double half = z / denom * std::sqrt(p * (1 - p) / N + z2 / (4 * N * N));
  return {std::max(0.0, center - half), std::min(1.0, center + half)};
}

Json accuracy_json(size_t k, size_t n) {
  Interval ci = wilson_interval(k, n);
  return {{"value", n ? double(k) / double(n) : 0.0}, {"correct", k}, {"total", n}, {"ci95", {ci.lo, ci.hi}}};
}

std::string fixed(double v, int digits) {
  if (std::isnan(v)) return "-";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

namespace {

// Display width of UTF-8 text: code points (every cell here is narrow text).
size_t width(const std::string& s) { return utf8_length(s); }

std::vector<size_t> column_widths(const Table& t) {
  std::vector<size_t> w(t.header.size(), 0);
  auto take = [&](const std::vector<std::string>& row) {
    if (row.size() > w.size()) w.resize(row.size(), 0);
    for (size_t c = 0; c < row.size(); ++c) w[c] = std::max(w[c], width(row[c]));
  };
  take(t.header);
  for (const auto& r : t.rows) take(r);
  return w;
}

}  // namespace

std::string render_text(const Table& t) {
  std::vector<size_t> w = column_widths(t);
  std::string out;
  auto line = [&](const std::vector<std::string>& row) {
    std::string s;
    for (size_t c = 0; c < w.size(); ++c) {
      std::string cell = c < row.size() ? row[c] : "";
      std::string padding(w[c] - width(cell), ' ');
      if (c) s += "  ";
      s += c == 0 ? cell + padding : padding + cell;
    }
    while (!s.empty() && s.back() == ' ') s.pop_back();
    out += s + "\n";
  };
  line(t.header);
  for (const auto& r : t.rows) line(r);
  return out;
}

std::string render_markdown(const Table& t) {
  auto esc = [](const std::string& s) {
    std::string o;
    for (char c : s) o += c == '|' ? std::string("\\|") : std::string(1, c);
    return o;
  };
  std::vector<size_t> w = column_widths(t);
  std::string out = "|";
  for (size_t c = 0; c < w.size(); ++c) out += " " + esc(c < t.header.size() ? t.header[c] : "") + " |";
  out += "\n|";
  for (size_t c = 0; c < w.size(); ++c) out += c == 0 ? " --- |" : " ---: |";
  out += "\n";
  for (const auto& r : t.rows) {
    out += "|";
    for (size_t c = 0; c < w.size(); ++c) out += " " + esc(c < r.size() ? r[c] : "") + " |";
    out += "\n";
  }
  return out;
}

Json eval_header(const std::string& task, const std::string& model, const std::string& experts,
                 const std::vector<std::string>& command_line) {
  return {{"task", task},
          {"model", model},
          {"experts", experts.empty() ? Json(nullptr) : Json(experts)},
          {"emo_version", emo_version()},
          {"command", command_line}};
}

void write_eval_dir(const std::string& dir, bool overwrite, const std::vector<Json>& examples, const Json& summary) {
  AtomicDir out(dir, overwrite);
  std::string lines;
  for (const auto& e : examples) lines += e.dump() + "\n";
  write_file_atomic(out / "examples.jsonl", lines);
  write_file_atomic(out / "summary.json", summary.dump(2) + "\n");
  out.commit();
}

const std::vector<ReportFormat>& report_formats() {
  static const std::vector<ReportFormat> formats = {
      {"text", "the table, columns aligned with spaces",
       [](const Json&, const Table& t) { return render_text(t); }},
      {"markdown", "the table in GitHub-flavoured Markdown", [](const Json&, const Table& t) { return render_markdown(t); }},
      {"json", "every number (suite.json / sweep.json)", [](const Json& j, const Table&) { return j.dump(2) + "\n"; }},
  };
  return formats;
}

}  // namespace emo
