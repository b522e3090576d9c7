// The suite's GSM8K task: the paper's bits per byte of the normalised solution, and with
// gsm8k_generate greedy generation accuracy (eval/gsm8k_eval.h).
#include "eval/suite.h"
#include "eval/tasks.h"

namespace emo {

namespace {

void run(Model& model, const Tokenizer& tok, const RoutingControl* routing, const SuiteTasks& t, Json& record) {
  Gsm8kEvalOptions go = t.gsm8k;
  go.routing = routing;
  Json& g = record["gsm8k"];
  g["bits_per_byte"] = summary_json(evaluate_gsm8k_bpb(model, tok, t.gsm8k_items, go));
  g["bits_per_byte"]["protocol"] = go.protocol;
  g["bits_per_byte"]["shots"] = go.shots;
  if (t.gsm8k_generate) {
    g["generate"] = summary_json(evaluate_gsm8k_generate(model, tok, t.gsm8k_items, go));
    g["generate"]["shots"] = go.shots;
  }
}

bool any_has(const std::vector<Json>& records, const char* part) {
  for (const auto& r : records)
    if (json_at(r, {"gsm8k", part})) return true;
  return false;
}

void rows(const std::vector<Json>& records, Table& t) {
  if (any_has(records, "bits_per_byte")) {
    std::vector<std::string> row = {"gsm8k bits/byte"};
    for (const auto& r : records) {
      const Json* v = json_at(r, {"gsm8k", "bits_per_byte", "bits_per_byte"});
      row.push_back(v ? fixed(v->get<double>(), 4) : "-");
    }
    t.rows.push_back(row);
  }
  if (any_has(records, "generate")) {
    std::vector<std::string> row = {"gsm8k accuracy %"}, em = {"gsm8k exact match % (paper)"};
    for (const auto& r : records) {
      row.push_back(percent_with_interval(json_at(r, {"gsm8k", "generate", "accuracy"})));
      em.push_back(percent_with_interval(json_at(r, {"gsm8k", "generate", "exact_match"})));
    }
    t.rows.push_back(row);
    t.rows.push_back(em);
  }
}

void metrics(const Json& record, std::vector<SweepMetric>& out) {
  if (const Json* v = json_at(record, {"gsm8k", "bits_per_byte", "bits_per_byte"}))
    out.push_back({"gsm8k/bits_per_byte", "gsm8k bits/byte", v->get<double>()});
  if (const Json* v = json_at(record, {"gsm8k", "generate", "accuracy", "value"}))
    out.push_back({"gsm8k/accuracy", "gsm8k accuracy", v->get<double>()});
}

}  // namespace

const EvalTask& gsm8k_task() {
  static const EvalTask task{"gsm8k", "GSM8K bits per byte of the solution (the paper's), optionally accuracy",
                             [](const SuiteTasks& t) { return !t.gsm8k_items.empty(); }, run, rows, metrics};
  return task;
}

}  // namespace emo
