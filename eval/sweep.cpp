#include "eval/sweep.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <set>

#include "core/checkpoint/arch.h"
#include "core/model/generate.h"
#include "core/util/error.h"
#include "core/util/log.h"
#include "eval/tasks.h"

namespace emo {

namespace {

// The selection, its routing restriction on the full model, and the suite under it.
SweepPoint evaluate_point(Model& model, const Tokenizer& tok, const std::string& series, int64_t keep,
                          const ModuleChoice& choice, const SuiteTasks& tasks, DType storage) {
  const ModelConfig& c = model.config();
  SweepPoint p;
  p.series = series;
  p.keep = keep;
  p.module_top_k = choice.budget.module_top_k(c);
  p.experts = choice.selection;
  p.params = module_param_count(c, p.experts);
  p.bytes = p.params * dtype_size(storage);
  RoutingControl rc = routing_for(p.experts, c);
  p.results = run_suite(model, tok, &rc, tasks);
  return p;
}

Json metric_values(const Json& record) {
  Json m = Json::object();
  for (const auto& s : sweep_metrics(record)) m[s.key] = s.value;
  return m;
}

double metric_of(const Json& record, const std::string& key) {
  for (const auto& s : sweep_metrics(record))
    if (s.key == key) return s.value;
  return std::numeric_limits<double>::quiet_NaN();
}

// Perplexities read best with three decimals, bits per byte with four, accuracies as
// percentages.
std::string format_metric(const std::string& key, double v) {
  if (key.rfind("ppl/", 0) == 0) return fixed(v, 3);
  if (key == "gsm8k/bits_per_byte") return fixed(v, 4);
  return fixed(100 * v, 1) + "%";
}

}  // namespace

std::vector<int64_t> check_sweep_request(const ModelConfig& c, const SweepRequest& req) {
  const SelectionMethod& method = find_selection_method(req.method);
  if (!method.uses_budget())
    fail("--method", req.method, "a sweep chooses a module per budget; explicit lists one module (use emo eval suite)");
  if (req.random_baseline && method.name() == "random")
    fail("--random", "", "--method random is already the random baseline");
  if (req.keep.empty()) fail("--keep", "", "give the budgets to sweep, e.g. --keep 8,16,32");
  std::vector<int64_t> keep = req.keep;
  std::sort(keep.begin(), keep.end());
  for (size_t i = 0; i < keep.size(); ++i) {
    if (i && keep[i] == keep[i - 1]) fail("--keep", std::to_string(keep[i]), "budget listed twice");
    Budget::uniform(c, keep[i]).validate(c);
  }
  return keep;
}

int64_t largest_layer(const ModelConfig& c) {
  int64_t most = 0;
  for (const auto& s : c.layers()) most = std::max(most, s.num_experts);
  return most;
}

uint64_t module_param_count(const ModelConfig& c, const ExpertSelection& sel) {
  auto specs = c.layers();
  uint64_t n = 0;
  for (const auto& t : canonical_tensors(c)) {
    if (t.role != Role::Expert && t.role != Role::Router) {
      n += shape_numel(t.shape, "", t.name);
      continue;
    }
    const LayerSpec& s = specs[size_t(t.layer)];
    std::vector<int64_t> routed = sel.routed_kept(c, t.layer);
    if (t.role == Role::Router) {
      // One row per kept expert: the kept routed ones and every shared one.
      n += uint64_t(int64_t(routed.size()) + s.num_shared_experts) * shape_numel(t.shape, "", t.name) / uint64_t(t.shape[0]);
      continue;
    }
    bool shared = t.expert >= s.num_routed();
    if (shared || std::binary_search(routed.begin(), routed.end(), int64_t(t.expert))) n += shape_numel(t.shape, "", t.name);
  }
  return n;
}

SweepResult run_sweep(Model& model, const Tokenizer& tok, const SweepRequest& req, const SelectionSources& sources,
                      const SuiteTasks& tasks, DType storage,
                      const std::function<void(size_t, size_t, const std::string&)>& on_point) {
  const ModelConfig& c = model.config();
  std::vector<int64_t> budgets = check_sweep_request(c, req);
  std::vector<std::string> methods = {req.method};
  if (req.random_baseline) methods.push_back("random");
  const size_t total = 1 + budgets.size() * methods.size();
  size_t done = 0;
  auto note = [&](const std::string& what) {
    if (on_point) on_point(done, total, what);
    ++done;
  };
  SweepResult r;
  r.full_keep = largest_layer(c);
  r.full_params = module_param_count(c, ExpertSelection{});
  r.full_bytes = r.full_params * dtype_size(storage);
  note("full model");
  r.full = run_suite(model, tok, nullptr, tasks);
  for (int64_t keep : budgets)
    for (const auto& method : methods) {
      note(cat(method, ", keep ", keep));
      ModuleRequest mr;
      mr.method = method;
      mr.budget.keep = keep;
      mr.seed = req.seed;
      r.points.push_back(evaluate_point(model, tok, method, keep, choose_module(c, mr, sources), tasks, storage));
    }
  return r;
}

std::vector<SweepMetric> sweep_metrics(const Json& rec) {
  std::vector<SweepMetric> out;
  for (const auto& task : eval_tasks()) task.metrics(rec, out);
  return out;
}

Json sweep_json(const SweepRequest& req, const SweepResult& r) {
  Json metrics = Json::array();
  for (const auto& m : sweep_metrics(r.full)) metrics.push_back({{"key", m.key}, {"label", m.label}});
  std::vector<int64_t> budgets;
  for (const auto& p : r.points)
    if (budgets.empty() || budgets.back() != p.keep) budgets.push_back(p.keep);
  Json points = Json::array();
  for (const auto& p : r.points)
    points.push_back({{"series", p.series},
                      {"keep", p.keep},
                      {"module_top_k", p.module_top_k},
                      {"params", p.params},
                      {"bytes", p.bytes},
                      {"metrics", metric_values(p.results)},
                      {"experts", p.experts.to_json()},
                      {"results", p.results}});
  return {{"method", req.method},
          {"budgets", budgets},
          {"random", req.random_baseline},
          {"seed", req.seed},
          {"metrics", metrics},
          {"full",
           {{"series", "full"},
            {"keep", r.full_keep},
            {"params", r.full_params},
            {"bytes", r.full_bytes},
            {"metrics", metric_values(r.full)},
            {"results", r.full}}},
          {"points", points}};
}

Table sweep_table(const SweepResult& r) {
  std::vector<SweepMetric> metrics = sweep_metrics(r.full);
  Table t;
  t.header = {"series", "experts", "top-k", "params", "memory"};
  for (const auto& m : metrics) t.header.push_back(m.label);
  auto row = [&](const std::string& series, int64_t keep, const std::string& top_k, uint64_t params, uint64_t bytes,
                 const Json& rec) {
    std::vector<std::string> cells = {series, std::to_string(keep), top_k, human_count(double(params)),
                                      human_bytes(double(bytes))};
    for (const auto& m : metrics) cells.push_back(format_metric(m.key, metric_of(rec, m.key)));
    t.rows.push_back(cells);
  };
  for (const auto& p : r.points) row(p.series, p.keep, std::to_string(p.module_top_k), p.params, p.bytes, p.results);
  row("full", r.full_keep, "-", r.full_params, r.full_bytes, r.full);
  return t;
}

std::vector<LineChart> sweep_charts(const SweepResult& r) {
  std::vector<LineChart> charts;
  for (const auto& m : sweep_metrics(r.full)) {
    LineChart c;
    c.key = m.key;
    c.title = m.label + " vs experts kept";
    c.x_label = "experts kept per layer (log2 scale), module size below";
    c.y_label = m.label;
    c.log2_x = true;
    for (const auto& name : series_in_order(r.points)) {
      ChartSeries s{name, {}, {}};
      for (const auto& p : r.points)
        if (p.series == name) {
          s.x.push_back(double(p.keep));
          s.y.push_back(metric_of(p.results, m.key));
          c.x_notes[double(p.keep)] = human_bytes(double(p.bytes));
        }
      c.series.push_back(s);
    }
    c.references.push_back({"full model (" + std::to_string(r.full_keep) + ")", m.value});
    charts.push_back(c);
  }
  return charts;
}

}  // namespace emo
