#include "eval/pareto.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <optional>
#include <set>

#include "core/checkpoint/checkpoint.h"
#include "core/checkpoint/content_hash.h"
#include "core/io/sha256.h"
#include "core/model/generate.h"
#include "core/text/tokenizer.h"
#include "core/util/error.h"
#include "eval/sweep.h"
#include "surgery/extract.h"
#include "surgery/module.h"

namespace emo {

namespace {

// One domain of the corpus: the documents choosing the few-example module, the ones
// scored, and all of them (what the whole-split module is chosen from).
struct DomainSplit {
  std::string name;
  std::vector<TextDoc> examples, scored, all;
};

std::vector<DomainSplit> split_domains(const ParetoRequest& r, const Tokenizer& tok) {
  std::map<std::string, std::vector<TextDoc>> by;
  for (const auto& d : r.docs) by[d.domain].push_back(d);
  std::vector<DomainSplit> out;
  for (auto& [name, docs] : by) {
    // The first long-enough documents, else (too few of them) the longest of the rest.
    std::vector<size_t> tokens(docs.size());
    for (size_t i = 0; i < docs.size(); ++i) tokens[i] = tok.encode(docs[i].text).size();
    std::vector<size_t> pick;
    for (size_t i = 0; i < docs.size() && pick.size() < r.example_docs; ++i)
      if (int64_t(tokens[i]) >= r.example_min_tokens) pick.push_back(i);
    std::vector<size_t> rest;
    for (size_t i = 0; i < docs.size(); ++i)
      if (std::find(pick.begin(), pick.end(), i) == pick.end()) rest.push_back(i);
    std::stable_sort(rest.begin(), rest.end(), [&](size_t a, size_t b) { return tokens[a] > tokens[b]; });
    for (size_t i = 0; pick.size() < r.example_docs && i < rest.size(); ++i) pick.push_back(rest[i]);
    DomainSplit d;
    d.name = name;
    for (size_t i = 0; i < docs.size(); ++i) {
      bool example = std::find(pick.begin(), pick.end(), i) != pick.end();
      if (example) d.examples.push_back(docs[i]);
      else if (!r.docs_per_domain || d.scored.size() < r.docs_per_domain) d.scored.push_back(docs[i]);
    }
    d.all = std::move(docs);
    if (d.scored.empty())
      fail("--corpus", "domain " + name, "no document left to score after the ", r.example_docs, " example(s)");
    out.push_back(std::move(d));
  }
  return out;
}

// A checkpoint and what evaluating it needs.
struct Loaded {
  Checkpoint checkpoint;
  Tokenizer tokenizer;
  Model model;
};

Loaded load(const ParetoModel& m, const LoadOptions& options) {
  Checkpoint ck = Checkpoint::open(m.dir);
  fs::path tok = fs::path(m.dir) / "tokenizer.json";
  if (!fs::exists(tok)) fail(tok.string(), "", "no tokenizer (every compared model needs its tokenizer.json)");
  Tokenizer t = Tokenizer::load(tok.string());
  Model model = Model::load(ck, options);
  return Loaded{std::move(ck), std::move(t), std::move(model)};
}

double domain_ppl(Loaded& m, const DomainSplit& d, const PplOptions& base, const RoutingControl* routing) {
  PplOptions o = base;
  o.routing = routing;
  return evaluate_perplexity(m.model, m.tokenizer, d.scored, o).by_domain.at(d.name).perplexity();
}

ParetoPoint whole_model_point(const std::string& series, const std::string& model, const Checkpoint& ck) {
  ParetoPoint p;
  p.series = series;
  p.model = model;
  p.keep = largest_layer(ck.config());
  p.params = module_param_count(ck.config(), ExpertSelection{});
  p.bytes = p.params * dtype_size(ck.main_dtype());
  return p;
}

ParetoPoint module_point(const std::string& series, const std::string& model, double fraction, const Checkpoint& ck,
                         const ModuleChoice& choice) {
  ParetoPoint p;
  p.series = series;
  p.model = model;
  p.fraction = fraction;
  p.keep = *std::max_element(choice.budget.keep.begin(), choice.budget.keep.end());
  p.params = module_param_count(ck.config(), choice.selection);
  p.bytes = p.params * dtype_size(ck.main_dtype());
  return p;
}

// Routing statistics of `docs` on the model, for selection.
struct Routed {
  TokenizedExamples tokens;
  RouteStats stats;
};

Routed route_docs(Loaded& m, const std::string& model_hash, const std::vector<TextDoc>& docs, const std::string& domain,
                  const std::string& what) {
  Examples ex;
  ex.format = "text";
  std::string joined;
  for (const auto& d : docs) {
    ex.texts.push_back(d.text);
    joined += sha256_hex(d.text);
  }
  ex.set_hash = sha256_hex(joined);
  Routed r;
  r.tokens = tokenize_examples(ex, m.tokenizer, m.model.config().max_position_embeddings);
  r.stats = route_examples(m.model, model_hash, ex, r.tokens, CollectOptions{},
                           Json{{"domain", domain}, {"documents", what}});
  return r;
}

std::string documents_label(size_t n) { return n == 1 ? "1 document" : std::to_string(n) + " documents"; }

// The series of a model's modules, in table order.
std::string few_series(const ParetoRequest& r, const std::string& model) {
  return model + ": module, " + documents_label(r.example_docs);
}
std::string whole_series(const std::string& model) { return model + ": module, whole split"; }
std::string random_series(const std::string& model) { return model + ": random module"; }

size_t evaluations(const ParetoRequest& r, size_t domains) {
  size_t per_budget = (r.example_docs ? 1 : 0) + (r.whole_split ? 1 : 0) + (r.random ? 1 : 0);
  return (1 + r.baselines.size()) * (1 + r.fractions.size() * per_budget) * domains + r.scratch.size() * domains;
}

std::string percent(double fraction) {
  double p = 100 * fraction;
  return (p == std::floor(p) ? fixed(p, 0) : fixed(p, 1)) + "%";
}

std::string megabytes(uint64_t bytes) { return fixed(double(bytes) / 1e6, 2) + " MB"; }

const ParetoPoint* find_point(const ParetoResult& r, const std::string& series, double fraction) {
  for (const auto& p : r.points)
    if (p.series == series && p.fraction == fraction) return &p;
  return nullptr;
}

// Whether `model` has module points (its whole-model point then ends their lines).
bool has_modules(const ParetoResult& r, const std::string& model) {
  for (const auto& p : r.points)
    if (p.model == model && p.fraction < 1) return true;
  return false;
}

}  // namespace

double ParetoPoint::mean_ppl() const {
  double sum = 0;
  for (const auto& [domain, v] : ppl) sum += v;
  return ppl.empty() ? std::nan("") : sum / double(ppl.size());
}

void check_pareto_request(const ParetoRequest& r) {
  if (r.fractions.empty()) fail("--keep-fraction", "", "give the budgets, e.g. 0.125,0.25,0.5");
  std::set<double> seen;
  for (double f : r.fractions) {
    if (!(f > 0 && f < 1))
      fail("--keep-fraction", fixed(f, 4), "a budget is a fraction of the experts in (0, 1); 1 is the full model");
    if (!seen.insert(f).second) fail("--keep-fraction", fixed(f, 4), "budget listed twice");
  }
  const SelectionMethod& method = find_selection_method(r.method);
  if (!method.needs_stats())
    fail("--method", r.method, "a pareto run chooses modules from routing statistics; random is its baseline (--random)");
  if (!r.example_docs && !r.whole_split && !r.random)
    fail("--example-docs", "0", "no module to measure: give examples, keep the whole-split module or --random");
  if (r.docs.empty()) fail("--corpus", "", "no documents");
  std::set<std::string> names = {r.model.name};
  for (const auto& b : r.baselines)
    if (!names.insert(b.name).second) fail("--baseline", b.name + "=" + b.dir, "a model of that name is already given");
  for (const auto& s : r.scratch)
    if (names.count(s.name)) fail("--scratch", s.name + "=" + s.dir, "names a model whose modules are measured");
  // Every checkpoint opens (its config read) before any model loads.
  Checkpoint::open(r.model.dir);
  for (const auto& b : r.baselines) Checkpoint::open(b.dir);
  for (const auto& s : r.scratch) Checkpoint::open(s.dir);
}

ParetoResult run_pareto(const ParetoRequest& r,
                        const std::function<void(size_t, size_t, const std::string&)>& on_progress) {
  check_pareto_request(r);
  auto t0 = std::chrono::steady_clock::now();
  ParetoResult result;
  Loaded main = load(r.model, r.load);
  std::vector<DomainSplit> domains = split_domains(r, main.tokenizer);
  for (const auto& d : domains) {
    result.domains.push_back(d.name);
    for (const auto& e : d.examples) result.example_ids[d.name].push_back(e.id);
    result.scored_docs[d.name] = d.scored.size();
  }
  size_t done = 0, total = evaluations(r, domains.size());
  auto note = [&](const std::string& what) {
    if (on_progress) on_progress(done, total, what);
  };
  // Each domain scored by the point's own routing (one module per domain, or one for all).
  auto score = [&](Loaded& m, ParetoPoint p, const std::function<const RoutingControl*(size_t domain)>& routing) {
    for (size_t i = 0; i < domains.size(); ++i, ++done) {
      note(p.series + " (" + percent(p.fraction) + "), " + domains[i].name);
      p.ppl[domains[i].name] = domain_ppl(m, domains[i], r.ppl, routing(i));
    }
    result.points.push_back(std::move(p));
  };

  // A model that is both a baseline and a from-scratch point (a standard MoE of the full
  // size) is scored once: its whole-model point, by canonical directory.
  std::map<std::string, size_t> whole_point;
  std::vector<ParetoModel> modular = {r.model};
  modular.insert(modular.end(), r.baselines.begin(), r.baselines.end());
  for (size_t mi = 0; mi < modular.size(); ++mi) {
    const ParetoModel& spec = modular[mi];
    note("loading " + spec.name + " (" + spec.dir + ")");
    std::optional<Loaded> other;
    if (mi) other.emplace(load(spec, r.load));
    Loaded& m = mi ? *other : main;
    const ModelConfig& c = m.checkpoint.config();
    const std::string hash = parent_content_hash(m.checkpoint, false);
    score(m, whole_model_point(spec.name, spec.name, m.checkpoint), [](size_t) { return nullptr; });
    whole_point[fs::weakly_canonical(spec.dir).string()] = result.points.size() - 1;

    // Statistics per domain: from the examples and from the whole split.
    std::vector<Routed> few, whole;
    for (const auto& d : domains) {
      note("routing " + spec.name + " on " + d.name);
      if (r.example_docs) few.push_back(route_docs(m, hash, d.examples, d.name, documents_label(d.examples.size())));
      if (r.whole_split) whole.push_back(route_docs(m, hash, d.all, d.name, "whole split"));
    }
    auto choose = [&](const std::string& method, double fraction, const Routed* routed, uint64_t seed) {
      ModuleRequest req;
      req.method = method;
      req.budget.keep_fraction = fraction;
      req.seed = seed;
      SelectionSources src;
      src.model = &m.model;
      if (routed) src.stats = &routed->stats, src.examples = &routed->tokens;
      return choose_module(c, req, src);
    };
    for (double f : r.fractions) {
      for (auto* source : {&few, &whole}) {
        if (source->empty()) continue;
        std::vector<ModuleChoice> choices;
        std::vector<RoutingControl> routing;
        for (const auto& routed : *source) choices.push_back(choose(r.method, f, &routed, r.seed));
        for (const auto& ch : choices) routing.push_back(routing_for(ch.selection, c));
        const std::string series = source == &few ? few_series(r, spec.name) : whole_series(spec.name);
        ParetoPoint p = module_point(series, spec.name, f, m.checkpoint, choices.front());
        for (size_t i = 0; i < domains.size(); ++i) p.experts[domains[i].name] = choices[i].selection;
        score(m, std::move(p), [&](size_t i) { return &routing[i]; });
      }
      if (r.random) {
        ModuleChoice ch = choose("random", f, nullptr, r.seed);
        RoutingControl routing = routing_for(ch.selection, c);
        ParetoPoint p = module_point(random_series(spec.name), spec.name, f, m.checkpoint, ch);
        for (const auto& d : domains) p.experts[d.name] = ch.selection;
        score(m, std::move(p), [&](size_t) { return &routing; });
      }
    }
  }
  for (const auto& s : r.scratch) {
    const std::string model = fs::path(s.dir).filename().string();
    auto scored = whole_point.find(fs::weakly_canonical(s.dir).string());
    if (scored != whole_point.end()) {
      ParetoPoint p = result.points[scored->second];
      p.series = s.name;
      p.model = model;
      note(s.name + ": the checkpoint of an earlier point, its perplexities reused");
      done += domains.size();
      result.points.push_back(std::move(p));
      continue;
    }
    note("loading " + s.name + " (" + s.dir + ")");
    Loaded m = load(s, r.load);
    score(m, whole_model_point(s.name, model, m.checkpoint), [](size_t) { return nullptr; });
  }
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return result;
}

Json pareto_json(const ParetoRequest& r, const ParetoResult& result) {
  auto model_json = [](const ParetoModel& m) { return Json{{"name", m.name}, {"dir", m.dir}}; };
  Json baselines = Json::array(), scratch = Json::array(), domains = Json::array(), points = Json::array();
  for (const auto& b : r.baselines) baselines.push_back(model_json(b));
  for (const auto& s : r.scratch) scratch.push_back(model_json(s));
  for (const auto& d : result.domains)
    domains.push_back({{"domain", d}, {"examples", result.example_ids.at(d)}, {"scored_docs", result.scored_docs.at(d)}});
  for (const auto& p : result.points) {
    Json ppl = Json::object();
    for (const auto& [d, v] : p.ppl) ppl[d] = v;
    Json experts = Json::object();
    for (const auto& [d, sel] : p.experts) experts[d] = sel.to_json();
    points.push_back({{"series", p.series},
                      {"model", p.model},
                      {"fraction", p.fraction},
                      {"keep", p.keep},
                      {"params", p.params},
                      {"bytes", p.bytes},
                      {"ppl", ppl},
                      {"mean_ppl", p.mean_ppl()},
                      {"experts", experts}});
  }
  return {{"model", model_json(r.model)},
          {"baselines", baselines},
          {"scratch", scratch},
          {"fractions", r.fractions},
          {"method", r.method},
          {"example_docs", r.example_docs},
          {"example_min_tokens", r.example_min_tokens},
          {"whole_split", r.whole_split},
          {"random", r.random},
          {"seed", r.seed},
          {"docs_per_domain", r.docs_per_domain},
          {"window", r.ppl.window},
          {"domains", domains},
          {"points", points},
          {"seconds", result.seconds}};
}

Table pareto_table(const ParetoResult& result) {
  Table t;
  t.header = {"", "experts kept", "parameters", "weights"};
  for (const auto& d : result.domains) t.header.push_back(d);
  t.header.push_back("mean");
  for (const auto& p : result.points) {
    std::vector<std::string> row = {p.series + (p.fraction < 1 ? " " + percent(p.fraction) : ""),
                                    p.keep ? std::to_string(p.keep) : "dense", fixed(double(p.params) / 1e6, 2) + "M",
                                    megabytes(p.bytes)};
    for (const auto& d : result.domains) row.push_back(fixed(p.ppl.at(d), 2));
    row.push_back(fixed(p.mean_ppl(), 2));
    t.rows.push_back(row);
  }
  return t;
}

LineChart pareto_chart(const ParetoResult& result) {
  LineChart chart;
  chart.key = "pareto";
  chart.title = "Quality vs memory: mean perplexity over domains";
  chart.x_label = "weights (MB)";
  chart.y_label = "perplexity (mean over domains, log scale)";
  chart.round_x_ticks = true;  // every point has its own size
  chart.log_y = true;          // random and standard modules run to several times the full model's
  for (const auto& name : series_in_order(result.points)) {
    if (has_modules(result, name)) continue;  // a model with modules is where its module lines end
    std::vector<const ParetoPoint*> pts;
    for (const auto& p : result.points)
      if (p.series == name) pts.push_back(&p);
    // A model's module lines end at the model itself (100%).
    for (const auto& p : result.points)
      if (p.fraction == 1 && p.series == p.model && name != p.model && name.rfind(p.model + ": ", 0) == 0)
        pts.push_back(&p);
    std::sort(pts.begin(), pts.end(), [](const ParetoPoint* a, const ParetoPoint* b) { return a->bytes < b->bytes; });
    ChartSeries s;
    s.name = name;
    for (const auto* p : pts) s.x.push_back(double(p->bytes) / 1e6), s.y.push_back(p->mean_ppl());
    chart.series.push_back(std::move(s));
  }
  return chart;
}

std::vector<std::string> pareto_findings(const ParetoRequest& r, const ParetoResult& result) {
  std::vector<std::string> out;
  std::vector<std::string> kinds;
  for (const auto& s : r.scratch)
    if (std::find(kinds.begin(), kinds.end(), s.name) == kinds.end()) kinds.push_back(s.name);
  std::vector<double> fractions = r.fractions;
  std::sort(fractions.begin(), fractions.end());
  const std::string few = few_series(r, r.model.name), whole = whole_series(r.model.name);
  for (double f : fractions) {
    const ParetoPoint* mod = find_point(result, r.example_docs ? few : whole, f);
    if (!mod) continue;
    std::string s = "At " + percent(f) + " (" + std::to_string(mod->keep) + " experts per layer, " +
                    megabytes(mod->bytes) + "), " + mod->series + ": " + fixed(mod->mean_ppl(), 2);
    if (r.example_docs && r.whole_split)
      if (const ParetoPoint* w = find_point(result, whole, f)) s += " (whole split: " + fixed(w->mean_ppl(), 2) + ")";
    for (const auto& b : r.baselines)
      if (const ParetoPoint* bp = find_point(result, r.example_docs ? few_series(r, b.name) : whole_series(b.name), f))
        s += "; " + bp->series + ": " + fixed(bp->mean_ppl(), 2);
    for (const auto& kind : kinds) {
      const ParetoPoint* near = nullptr;
      for (const auto& p : result.points)
        if (p.series == kind && std::fabs(double(p.bytes) - double(mod->bytes)) <= 0.1 * double(mod->bytes) &&
            (!near || std::fabs(double(p.bytes) - double(mod->bytes)) < std::fabs(double(near->bytes) - double(mod->bytes))))
          near = &p;
      if (!near) continue;
      double diff = mod->mean_ppl() / near->mean_ppl() - 1;
      s += "; " + kind + " from scratch (" + near->model + ", " + megabytes(near->bytes) + "): " +
           fixed(near->mean_ppl(), 2) + ", the module " + fixed(100 * std::fabs(diff), 1) + "% " +
           (diff <= 0 ? "lower" : "higher");
    }
    out.push_back(s + ".");
  }
  return out;
}

std::string pareto_markdown(const ParetoRequest& r, const ParetoResult& result) {
  std::string md = "# Quality vs memory: " + r.model.name + "'s modules against models trained from scratch\n\n";
  md += "Modules of `" + r.model.dir + "`";
  for (const auto& b : r.baselines) md += " and of `" + b.dir + "` (" + b.name + ")";
  md += ", " + r.method + ", chosen per domain from " + documents_label(r.example_docs) + " (the domain's first of >= " +
        std::to_string(r.example_min_tokens) + " tokens)" + (r.whole_split ? " and from the domain's whole split" : "") +
        (r.random ? ", and seeded random modules" : "") +
        "; each domain is scored by its own module (the full model restricted to the module's experts), on the "
        "domain's documents other than the examples, " +
        std::to_string(r.ppl.window) +
        "-token windows. From scratch: every model on the same documents. Weights: parameters in each checkpoint's "
        "storage dtype.\n\n";
  md += "Scored documents per domain:";
  for (const auto& d : result.domains) md += " " + d + " " + std::to_string(result.scored_docs.at(d)) + ",";
  md.back() = '.';
  md += "\n\n";
  for (const auto& f : pareto_findings(r, result)) md += "- " + f + "\n";
  md += "\n" + render_markdown(pareto_table(result)) + "\n![mean perplexity vs weights](pareto.svg)\n";
  return md;
}

}  // namespace emo
