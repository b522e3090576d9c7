// What every evaluation reports: accuracies with a 95% interval, and tables rendered for
// a terminal, as Markdown, or as JSON.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "core/io/json.h"

namespace emo {

// Wilson score interval for k successes out of n (z = 1.96 for 95%). It stays inside
// [0, 1] and is sensible for small n and for accuracies near 0 or 1, where the normal
// approximation p +- z sqrt(p(1-p)/n) is not. n = 0 gives [0, 1].
struct Interval {
  double lo = 0, hi = 1;
};
Interval wilson_interval(size_t k, size_t n, double z = 1.959963984540054);

// {"value": k/n, "correct": k, "total": n, "ci95": [lo, hi]}.
Json accuracy_json(size_t k, size_t n);

// A table of strings: a header row, then rows; the first column names the row.
struct Table {
  std::vector<std::string> header;
  std::vector<std::vector<std::string>> rows;
};
// Columns aligned with spaces; the first column left-aligned, the others right-aligned.
std::string render_text(const Table& t);
// A GitHub-flavoured Markdown table ("|" in cells escaped).
std::string render_markdown(const Table& t);

// How a report (its JSON and its table) is printed: `emo eval suite/sweep --format`.
struct ReportFormat {
  const char* name;
  const char* description;
  std::string (*render)(const Json& json, const Table& table);
};
const std::vector<ReportFormat>& report_formats();  // text, markdown, json

// "%.*f" of a number; "-" for NaN.
std::string fixed(double v, int digits);

// The record every evaluation summary starts with: what was evaluated, how (the command).
Json eval_header(const std::string& task, const std::string& model, const std::string& experts,
                 const std::vector<std::string>& command_line);

// DIR/examples.jsonl (one record per line) + DIR/summary.json, appearing together
// (AtomicDir: an existing DIR is refused unless `overwrite`).
void write_eval_dir(const std::string& dir, bool overwrite, const std::vector<Json>& examples, const Json& summary);

}  // namespace emo
