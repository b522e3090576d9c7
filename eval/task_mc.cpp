// The suite's multiple-choice tasks: each file one row, its primary metric with a 95%
// interval (eval/multiple_choice.h, OLMES' RC format).
#include "eval/suite.h"
#include "eval/tasks.h"

namespace emo {

namespace {

void run(Model& model, const Tokenizer& tok, const RoutingControl* routing, const SuiteTasks& t, Json& record) {
  for (const auto& m : t.mc) {
    McOptions mo = m.options;
    mo.routing = routing;
    Json s = summary_json(evaluate_mc(model, tok, m.items, m.fewshot, mo, m.fewshot_path), m.primary_metric);
    s["data"] = m.path;
    s["shots"] = mo.prompt.shots;
    record["mc"][m.name] = s;
  }
}

void rows(const std::vector<Json>& records, Table& t) {
  for (const auto& m : keys_seen(records, "mc")) {
    std::string metric;
    for (const auto& r : records)
      if (const Json* p = json_at(r, {"mc", m.c_str(), "primary_metric"})) metric = p->get<std::string>();
    std::vector<std::string> row = {m + " " + metric + " %"};
    for (const auto& r : records) row.push_back(percent_with_interval(json_at(r, {"mc", m.c_str(), metric.c_str()})));
    t.rows.push_back(row);
  }
}

void metrics(const Json& record, std::vector<SweepMetric>& out) {
  for (const auto& m : keys_seen({record}, "mc")) {
    const Json& task = record["mc"][m];
    const std::string metric = task["primary_metric"].get<std::string>();
    out.push_back({"mc/" + m + "/" + metric, m + " " + metric, task[metric]["value"].get<double>()});
  }
}

}  // namespace

const EvalTask& mc_task() {
  static const EvalTask task{"mc", "multiple choice (ARC, MMLU, HellaSwag, ... as JSONL), OLMES' RC format",
                             [](const SuiteTasks& t) { return !t.mc.empty(); }, run, rows, metrics};
  return task;
}

}  // namespace emo
