// emo select as one call: choose a module's experts from routing statistics (read from
// `emo route` files or collected from examples; one task or several composed) and write the
// experts file. emo select's flags and a recipe select step's settings are
// select_request_spec()'s rows.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "core/io/json.h"
#include "core/util/fields.h"
#include "core/util/fs.h"
#include "surgery/examples.h"
#include "surgery/module.h"

namespace emo {

struct SelectRequest {
  fs::path model;
  // One task: one FILE in `stats` or `data`. Several: NAME=FILE entries in either, composed
  // by `compose`, weighted by `weights` (NAME=W), `and_not` names tasks to leave out.
  std::vector<std::string> stats, data;
  ExampleRequest examples;  // how `data` is read and routed (its source.path comes from `data`)
  std::string method = "router-prob";
  BudgetRequest budget;
  std::vector<std::string> weights, and_not;
  std::string compose = "joint";
  bool exclude = false;
  uint64_t seed = 0;
  fs::path out;     // the experts file, written atomically
  fs::path report;  // also the selection report (JSON), when given
  // Route the first 1, 2, 4, ... examples of one --data task and stop when successive
  // selections agree (Jaccard >= threshold, `patience` sizes in a row); the curve goes to
  // `chart` (default OUT.stability.svg).
  bool stability = false;
  double threshold = 0.9;
  int64_t patience = 1;
  fs::path chart;
  fs::path tokenizer;  // "": the model's
  std::string device = "auto";
};

struct SelectResult {
  fs::path out;
  std::string method;
  Json report;  // choose_module's report (with "stability" when asked)
  int64_t module_top_k() const;
};

// progress(stage, done, total): "route" (or "route NAME" per task) in tokens.
using SelectProgress = std::function<void(const std::string& stage, uint64_t done, uint64_t total)>;
SelectResult run_select(const SelectRequest& request, const SelectProgress& progress = {});

const RequestSpec<SelectRequest>& select_request_spec();

// --weight NAME=W: emo::Error unless W is a positive number.
std::pair<std::string, double> parse_weight(const std::string& text);

}  // namespace emo
