// The tasks of a suite (and so of a sweep), each a registry row: its name (the suite
// record's key), what it measures, whether a SuiteTasks asks for it, how it scores a model
// into the record, its rows of the suite table and its metrics in a sweep. run_suite,
// suite_table and sweep_metrics loop over eval_tasks(); a new task is one file defining
// its row (eval/task_*.cpp) and one line in eval/tasks.cpp.
#pragma once

#include <initializer_list>
#include <string>
#include <vector>

#include "core/io/json.h"
#include "core/model/model.h"
#include "core/text/tokenizer.h"
#include "eval/report.h"

namespace emo {

struct SuiteTasks;  // eval/suite.h: the tasks' data and settings

// One number of a record: "ppl/math", "perplexity math", 14.1.
struct SweepMetric {
  std::string key, label;
  double value = 0;
};

struct EvalTask {
  const char* name;
  const char* description;
  bool (*wanted)(const SuiteTasks& tasks);
  // Scores the model (restricted by `routing` when given) and writes the task's keys of the record.
  void (*run)(Model& model, const Tokenizer& tok, const RoutingControl* routing, const SuiteTasks& tasks,
              Json& record);
  // Appends the task's rows of the suite table: a label, then one cell per record ("-" where
  // a record lacks the task).
  void (*rows)(const std::vector<Json>& records, Table& table);
  // Appends the task's numbers of one record, in table order.
  void (*metrics)(const Json& record, std::vector<SweepMetric>& out);
};
const std::vector<EvalTask>& eval_tasks();  // in table order

// For task files: the value at a path of keys (nullptr where absent), the keys of
// records[i][key] in first-seen order, and an accuracy with its 95% interval in percent.
const Json* json_at(const Json& j, std::initializer_list<const char*> path);
std::vector<std::string> keys_seen(const std::vector<Json>& records, const char* key);
std::string percent_with_interval(const Json* accuracy);

}  // namespace emo
