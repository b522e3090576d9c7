#include "eval/suite.h"

#include <chrono>

#include "eval/tasks.h"

namespace emo {

Json run_suite(Model& model, const Tokenizer& tok, const RoutingControl* routing, const SuiteTasks& t) {
  auto start = std::chrono::steady_clock::now();
  Json out = Json::object();
  for (const auto& task : eval_tasks())
    if (task.wanted(t)) task.run(model, tok, routing, t, out);
  out["seconds"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return out;
}

Table suite_table(const std::vector<std::string>& names, const std::vector<Json>& cols) {
  Table t;
  t.header.push_back("metric");
  for (const auto& n : names) t.header.push_back(n);
  for (const auto& task : eval_tasks()) task.rows(cols, t);
  std::vector<std::string> secs = {"seconds"};
  for (const auto& c : cols) {
    const Json* v = json_at(c, {"seconds"});
    secs.push_back(v ? fixed(v->get<double>(), 1) : "-");
  }
  t.rows.push_back(secs);
  return t;
}

}  // namespace emo
