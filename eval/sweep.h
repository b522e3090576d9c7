// `emo eval sweep`: quality against module size. For each budget (experts kept per MoE
// layer, shared ones included, as `emo select --keep` counts them) a module is chosen by
// the surgery code (choose_module: routing statistics -> a selection method) and
// evaluated *masked*: the full model with routing restricted to the module's experts,
// which computes what the extracted module computes, with nothing written. With a
// random baseline, a seeded random module is evaluated at every budget too. The tasks
// are a suite's (run_suite), so every number is the one the single commands report.
//
// Memory is the bytes of the module's weights in the model's storage dtype, from the
// config alone: every non-MoE tensor, the kept experts (shared ones included) and the
// router rows of the kept experts: what `emo extract` would write.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/checkpoint/experts.h"
#include "core/io/dtype.h"
#include "core/io/json.h"
#include "core/model/model.h"
#include "eval/report.h"
#include "eval/suite.h"
#include "core/io/svg_chart.h"
#include "eval/tasks.h"
#include "surgery/module.h"

namespace emo {

struct SweepRequest {
  std::string method = "router-prob";  // a selection method (surgery/selection.h)
  std::vector<int64_t> keep;           // budgets: experts kept per MoE layer, shared included
  bool random_baseline = false;        // also a seeded random module at each budget
  uint64_t seed = 0;                   // of the random baseline (and of --method random)
};

// The budgets sorted, each checked as a uniform budget of `config` (at least one routed
// expert, at most the layer's experts) and the method checked: emo::Error naming the
// flag and the budget otherwise (a repeated budget, an empty list, the explicit method,
// which lists one module instead of choosing one per budget).
std::vector<int64_t> check_sweep_request(const ModelConfig& config, const SweepRequest& request);

// Parameters of the module keeping `selection` (layers not listed keep every expert).
uint64_t module_param_count(const ModelConfig& config, const ExpertSelection& selection);

// The expert count of the model's widest MoE layer: a whole model's `keep` in a sweep or a
// Pareto chart (layers may differ: num_experts_per_layer).
int64_t largest_layer(const ModelConfig& config);

struct SweepPoint {
  std::string series;  // the method's name, or "random" for the baseline
  int64_t keep = 0;    // experts per MoE layer, shared included
  int64_t module_top_k = 0;
  uint64_t params = 0, bytes = 0;  // of the module's weights (bytes in the storage dtype)
  ExpertSelection experts;
  Json results;  // run_suite's record of the masked model
};

struct SweepResult {
  Json full;  // run_suite's record of the unrestricted model: the reference
  uint64_t full_params = 0, full_bytes = 0;
  int64_t full_keep = 0;           // the largest layer's experts
  std::vector<SweepPoint> points;  // by budget, the method before the baseline
};

// `sources` are what selection needs (statistics on the examples; model and examples for
// the layer-wise method); `storage` is the dtype the checkpoint stores its weights in.
// `on_point(done, total, what)` reports progress before each evaluation.
SweepResult run_sweep(Model& model, const Tokenizer& tokenizer, const SweepRequest& request,
                      const SelectionSources& sources, const SuiteTasks& tasks, DType storage,
                      const std::function<void(size_t done, size_t total, const std::string& what)>& on_point = {});

// The numbers a sweep compares, from one run_suite record, in table order: perplexity
// per domain ("ppl/<domain>", "all" last), GSM8K bits per byte ("gsm8k/bits_per_byte"),
// accuracy with --generate ("gsm8k/accuracy"), each MC task's primary metric
// ("mc/<task>/<metric>").
std::vector<SweepMetric> sweep_metrics(const Json& suite_record);

// sweep.json's body: "method", "budgets", "random", "seed", "metrics" (key, label),
// "full" and "points" (series, keep, module_top_k, params, bytes, metrics {key: value},
// experts, results).
Json sweep_json(const SweepRequest& request, const SweepResult& result);
// One row per point, then the full model: series, experts kept, top-k, parameters,
// memory, and every metric.
Table sweep_table(const SweepResult& result);
// One chart per metric: x = experts kept (log2), one series per method, the full model
// as a dashed reference line; tick notes give the module size at each budget.
std::vector<LineChart> sweep_charts(const SweepResult& result);

}  // namespace emo
