#include "eval/suite.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>

#include "core/util/error.h"

namespace emo {

Json run_suite(Model& model, const Tokenizer& tok, const RoutingControl* routing, const SuiteTasks& t) {
  auto start = std::chrono::steady_clock::now();
  Json out = Json::object();
  if (!t.ppl_docs.empty()) {
    PplOptions po = t.ppl;
    po.routing = routing;
    PplResult r = evaluate_perplexity(model, tok, t.ppl_docs, po);
    Json d = Json::object();
    for (const auto& [domain, s] : r.by_domain)
      d[domain] = {{"loss", s.loss()},
                   {"perplexity", s.perplexity()},
                   {"bits_per_byte", s.bits_per_byte()},
                   {"tokens", s.tokens},
                   {"bytes", s.bytes},
                   {"documents", s.docs}};
    out["ppl"] = d;
    out["ppl_tokens_per_second"] = r.tokens_per_second();
  }
  if (!t.gsm8k_items.empty()) {
    Gsm8kEvalOptions go = t.gsm8k;
    go.routing = routing;
    out["gsm8k"]["bits_per_byte"] = summary_json(evaluate_gsm8k_bpb(model, tok, t.gsm8k_items, go));
    out["gsm8k"]["bits_per_byte"]["protocol"] = go.protocol;
    out["gsm8k"]["bits_per_byte"]["shots"] = go.shots;
    if (t.gsm8k_generate) {
      out["gsm8k"]["generate"] = summary_json(evaluate_gsm8k_generate(model, tok, t.gsm8k_items, go));
      out["gsm8k"]["generate"]["shots"] = go.shots;
    }
  }
  for (const auto& m : t.mc) {
    McOptions mo = m.options;
    mo.routing = routing;
    Json s = summary_json(evaluate_mc(model, tok, m.items, m.fewshot, mo, m.fewshot_path), m.primary_metric);
    s["data"] = m.path;
    s["shots"] = mo.prompt.shots;
    out["mc"][m.name] = s;
  }
  out["seconds"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return out;
}

namespace {

const Json* find(const Json& j, std::initializer_list<const char*> path) {
  const Json* at = &j;
  for (const char* k : path) {
    if (!at->is_object() || !at->contains(k)) return nullptr;
    at = &(*at)[k];
  }
  return at;
}

std::string percent_with_interval(const Json* acc) {
  if (!acc) return "-";
  const auto& ci = (*acc)["ci95"];
  return fixed(100 * (*acc)["value"].get<double>(), 1) + " [" + fixed(100 * ci[0].get<double>(), 1) + ", " +
         fixed(100 * ci[1].get<double>(), 1) + "]";
}

}  // namespace

Table suite_table(const std::vector<std::string>& names, const std::vector<Json>& cols) {
  Table t;
  t.header.push_back("metric");
  for (const auto& n : names) t.header.push_back(n);
  // Row keys in first-seen order over the columns.
  std::vector<std::string> domains, mc;
  bool gsm_bpb = false, gsm_gen = false;
  for (const auto& c : cols) {
    if (const Json* p = find(c, {"ppl"}))
      for (auto it = p->begin(); it != p->end(); ++it)
        if (std::find(domains.begin(), domains.end(), it.key()) == domains.end()) domains.push_back(it.key());
    gsm_bpb = gsm_bpb || find(c, {"gsm8k", "bits_per_byte"});
    gsm_gen = gsm_gen || find(c, {"gsm8k", "generate"});
    if (const Json* m = find(c, {"mc"}))
      for (auto it = m->begin(); it != m->end(); ++it)
        if (std::find(mc.begin(), mc.end(), it.key()) == mc.end()) mc.push_back(it.key());
  }
  // "all" last among the domains.
  auto all = std::find(domains.begin(), domains.end(), "all");
  if (all != domains.end()) domains.erase(all), domains.push_back("all");
  for (const auto& d : domains) {
    std::vector<std::string> row = {"perplexity " + d};
    for (const auto& c : cols) {
      const Json* v = find(c, {"ppl", d.c_str(), "perplexity"});
      row.push_back(v ? fixed(v->get<double>(), 3) : "-");
    }
    t.rows.push_back(row);
  }
  if (gsm_bpb) {
    std::vector<std::string> row = {"gsm8k bits/byte"};
    for (const auto& c : cols) {
      const Json* v = find(c, {"gsm8k", "bits_per_byte", "bits_per_byte"});
      row.push_back(v ? fixed(v->get<double>(), 4) : "-");
    }
    t.rows.push_back(row);
  }
  if (gsm_gen) {
    std::vector<std::string> row = {"gsm8k accuracy %"}, em = {"gsm8k exact match % (paper)"};
    for (const auto& c : cols) {
      row.push_back(percent_with_interval(find(c, {"gsm8k", "generate", "accuracy"})));
      em.push_back(percent_with_interval(find(c, {"gsm8k", "generate", "exact_match"})));
    }
    t.rows.push_back(row);
    t.rows.push_back(em);
  }
  for (const auto& m : mc) {
    std::string metric;
    for (const auto& c : cols)
      if (const Json* p = find(c, {"mc", m.c_str(), "primary_metric"})) metric = p->get<std::string>();
    std::vector<std::string> row = {m + " " + metric + " %"};
    for (const auto& c : cols) row.push_back(percent_with_interval(find(c, {"mc", m.c_str(), metric.c_str()})));
    t.rows.push_back(row);
  }
  std::vector<std::string> secs = {"seconds"};
  for (const auto& c : cols) {
    const Json* v = find(c, {"seconds"});
    secs.push_back(v ? fixed(v->get<double>(), 1) : "-");
  }
  t.rows.push_back(secs);
  return t;
}

}  // namespace emo
