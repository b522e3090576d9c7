// The suite's perplexity task: loss, perplexity and bits per byte per domain of a corpus
// (eval/perplexity.h), "all" over every scored token.
#include <algorithm>

#include "eval/suite.h"
#include "eval/tasks.h"

namespace emo {

namespace {

void run(Model& model, const Tokenizer& tok, const RoutingControl* routing, const SuiteTasks& t, Json& record) {
  PplOptions po = t.ppl;
  po.routing = routing;
  PplResult r = evaluate_perplexity(model, tok, t.ppl_docs, po);
  Json d = Json::object();
  for (const auto& [domain, s] : r.by_domain)
    d[domain] = {{"loss", s.loss()},         {"perplexity", s.perplexity()}, {"bits_per_byte", s.bits_per_byte()},
                 {"tokens", s.tokens},       {"bytes", s.bytes},             {"documents", s.docs}};
  record["ppl"] = d;
  record["ppl_tokens_per_second"] = r.tokens_per_second();
}

// The domains in first-seen order, "all" last.
std::vector<std::string> domains(const std::vector<Json>& records) {
  std::vector<std::string> d = keys_seen(records, "ppl");
  auto all = std::find(d.begin(), d.end(), "all");
  if (all != d.end()) d.erase(all), d.push_back("all");
  return d;
}

void rows(const std::vector<Json>& records, Table& t) {
  for (const auto& d : domains(records)) {
    std::vector<std::string> row = {"perplexity " + d};
    for (const auto& r : records) {
      const Json* v = json_at(r, {"ppl", d.c_str(), "perplexity"});
      row.push_back(v ? fixed(v->get<double>(), 3) : "-");
    }
    t.rows.push_back(row);
  }
}

void metrics(const Json& record, std::vector<SweepMetric>& out) {
  for (const auto& d : domains({record}))
    out.push_back({"ppl/" + d, "perplexity " + d, record["ppl"][d]["perplexity"].get<double>()});
}

}  // namespace

const EvalTask& ppl_task() {
  static const EvalTask task{"ppl", "per-domain perplexity and bits per byte of a corpus",
                             [](const SuiteTasks& t) { return !t.ppl_docs.empty(); }, run, rows, metrics};
  return task;
}

}  // namespace emo
