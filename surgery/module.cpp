#include "surgery/module.h"

#include <set>

#include "core/model/generate.h"
#include "core/util/error.h"
#include "core/util/log.h"

namespace emo {

namespace {

// --per-layer auto: the total of --keep or --keep-fraction spread over the layers by the scores.
Budget spread_if_asked(const BudgetRequest& r, const ModelConfig& c, const BudgetInputs& in, Budget b, Json& notes) {
  if (!r.per_layer_auto) return b;
  b.validate(c);  // the total must be a budget the model can hold before it is spread
  notes["per_layer"] = {{"mode", "auto"}, {"spread_by", in.spread.by}};
  return Budget::spread(c, b, in.spread);
}

Budget resolve_keep(const BudgetRequest& r, const ModelConfig& c, const BudgetInputs& in, Json& notes) {
  return spread_if_asked(r, c, in, Budget::uniform(c, *r.keep), notes);
}

Budget resolve_fraction(const BudgetRequest& r, const ModelConfig& c, const BudgetInputs& in, Json& notes) {
  return spread_if_asked(r, c, in, Budget::fraction(c, *r.keep_fraction), notes);
}

Budget resolve_per_layer(const BudgetRequest& r, const ModelConfig& c, const BudgetInputs&, Json&) {
  return Budget::per_layer(c, r.keep_per_layer);
}

Budget resolve_mass(const BudgetRequest& r, const ModelConfig& c, const BudgetInputs& in, Json& notes) {
  bool padded = false;
  Budget b = Budget::mass(c, *r.keep_mass, in.mass_scores, &padded);
  notes["keep_mass"] = {{"p", *r.keep_mass}, {"padded_to_one_count", padded}};
  return b;
}

Budget resolve_bytes(const BudgetRequest& r, const ModelConfig& c, const BudgetInputs& in, Json& notes) {
  if (!in.bytes) fail("--max-bytes", "", "needs the parent checkpoint's tensor sizes");
  bool spread = false;
  Budget b = Budget::bytes(c, *r.max_bytes, *in.bytes, in.spread, &spread);
  notes["max_bytes"] = {{"limit", *r.max_bytes}, {"planned_bytes", in.bytes->of(c, b)}};
  if (spread) notes["max_bytes"]["spread_by"] = in.spread.by;
  else notes["max_bytes"]["one_count_in_every_layer"] = true;
  return b;
}

}  // namespace

const std::vector<BudgetKind>& budget_kinds() {
  static const std::vector<BudgetKind> kinds = {
      {"keep", "K", [](const BudgetRequest& r) { return r.keep.has_value(); }, resolve_keep},
      {"keep-fraction", "F", [](const BudgetRequest& r) { return r.keep_fraction.has_value(); }, resolve_fraction},
      {"keep-per-layer", "K0,K1,...", [](const BudgetRequest& r) { return !r.keep_per_layer.empty(); }, resolve_per_layer},
      {"keep-mass", "P", [](const BudgetRequest& r) { return r.keep_mass.has_value(); }, resolve_mass},
      {"max-bytes", "SIZE", [](const BudgetRequest& r) { return r.max_bytes.has_value(); }, resolve_bytes},
  };
  return kinds;
}

bool BudgetRequest::given() const {
  for (const auto& k : budget_kinds())
    if (k.given(*this)) return true;
  return per_layer_auto;
}

Budget BudgetRequest::resolve(const ModelConfig& c, const BudgetInputs& in, Json* notes) const {
  const BudgetKind* chosen = nullptr;
  int count = 0;
  std::string ways;
  for (const auto& k : budget_kinds()) {
    if (k.given(*this)) chosen = &k, ++count;
    ways += cat(ways.empty() ? "" : ", ", "--", k.name, " ", k.value);
  }
  if (count != 1) fail("budget", "--keep", "give exactly one of ", ways);
  if (per_layer_auto && !keep && !keep_fraction)
    fail("--per-layer auto", "", "spreads the total of --keep or --keep-fraction over the layers; give one of them");
  Json n = Json::object();
  Budget b = chosen->resolve(*this, c, in, n);
  b.validate(c);
  if (notes) *notes = n;
  return b;
}

Json BudgetRequest::to_json() const {
  Json j = Json::object();
  if (keep) j["keep"] = *keep;
  if (keep_fraction) j["keep_fraction"] = *keep_fraction;
  if (!keep_per_layer.empty()) j["keep_per_layer"] = keep_per_layer;
  if (keep_mass) j["keep_mass"] = *keep_mass;
  if (max_bytes) j["max_bytes"] = *max_bytes;
  if (per_layer_auto) j["per_layer"] = "auto";
  return j;
}

void check_stats_model(const RouteStats& stats, const std::string& model_hash, const ModelConfig& config,
                       const std::string& stats_path) {
  if (stats.model_hash != model_hash)
    fail(stats_path, "model_hash", "statistics were computed on model ", stats.model_hash, ", not on this model (",
         model_hash, ")");
  // The hash is the file's word; the shapes are checked too, so a file that lies about
  // its model cannot index past a layer's experts.
  auto specs = config.layers();
  if (stats.layers.size() != specs.size())
    fail(stats_path, "num_layers", stats.layers.size(), " layers, the model has ", specs.size());
  for (size_t l = 0; l < specs.size(); ++l) {
    const LayerStats& s = stats.layers[l];
    if (s.moe != !specs[l].dense())
      fail(stats_path, cat("moe_layers: layer ", l), s.moe ? "has statistics but is a dense layer of the model"
                                                           : "has no statistics but is an MoE layer of the model");
    if (s.moe && s.prob_sum.size(0) != specs[l].num_experts)
      fail(stats_path, cat("layers.", l, ".prob_sum"), s.prob_sum.size(0), " experts, the model's layer has ",
           specs[l].num_experts);
  }
}

RouteStats route_examples(Model& model, const std::string& model_hash, const Examples& examples,
                          const TokenizedExamples& tokens, const CollectOptions& options, const Json& settings) {
  RouteStats s = collect_route_stats(model, tokens, options);
  s.model_hash = model_hash;
  s.examples_hash = examples.set_hash;
  s.data_hash = examples.file_hash;
  s.settings = settings;
  s.settings["truncated_examples"] = tokens.truncated;
  return s;
}

RoutedExamples read_routed_examples(const ExampleRequest& request, const Model& model, const Tokenizer& tokenizer) {
  if (request.source.path.empty()) fail("examples", "--data", "give the task examples with --data FILE");
  RoutedExamples r;
  r.examples = load_examples(request.source);
  const int64_t max_len = request.max_length > 0 ? request.max_length : model.config().max_position_embeddings;
  r.tokens = tokenize_examples(r.examples, tokenizer, max_len);
  if (r.tokens.truncated) log_warn(r.tokens.truncated, " example(s) longer than ", max_len, " tokens were truncated");
  if (r.tokens.ids.empty()) fail(request.source.path, "", "the examples tokenize to nothing");
  return r;
}

RouteStats route_example_request(Model& model, const std::string& model_hash, const RoutedExamples& ex,
                                 const ExampleRequest& request, const CollectOptions& options) {
  const ExampleSource& src = request.source;
  Json settings = {{"data", src.path},     {"format", ex.examples.format}, {"text_field", src.text_field},
                   {"domain", src.domain}, {"shots", src.shots},           {"limit", src.limit},
                   {"skip", src.skip},     {"max_length", request.max_length}, {"restricted", options.routing != nullptr}};
  return route_examples(model, model_hash, ex.examples, ex.tokens, options, settings);
}

namespace {

// Whether `method` ranks by a per-expert score of the statistics (layer_scores).
bool has_scores(const SelectionMethod& method, const ModelConfig& c, const RouteStats& stats) {
  auto specs = c.layers();
  for (int l = 0; l < int(specs.size()); ++l)
    if (!specs[size_t(l)].dense()) return method.layer_scores(stats, l).defined();
  return false;
}

// Several tasks compose through the method's scores; each needs statistics, a positive
// weight and its own name, and at least one task must be wanted.
void check_tasks(const SelectionMethod& method, const ModelConfig& c, const std::vector<TaskScores>& tasks) {
  std::set<std::string> names;
  bool wanted = false;
  for (const auto& t : tasks) {
    if (!names.insert(t.name).second) fail("--data", t.name, "two tasks have this name");
    if (!(t.weight > 0)) fail("--weight", t.name, "must be a positive number, got ", t.weight);
    if (!t.stats) fail("--data", t.name, "has no routing statistics");
    if (!has_scores(method, c, *t.stats))
      fail("--method " + method.name(), "--data",
           "composes tasks by the method's per-expert scores: use router-prob, frequency, reap or easy-ep");
    wanted = wanted || !t.avoid;
  }
  if (!wanted) fail("--and-not", "", "every task is left out: name at least one task to keep");
}

// The share of layer `layer`'s routed score (always-active experts left out, as
// Budget::mass sums it) that `ids` hold: what --keep-mass promised to reach.
double routed_share(const ModelConfig& c, int layer, const torch::Tensor& score, const std::vector<int64_t>& ids) {
  auto v = routed_mass_scores(c.layers()[size_t(layer)], score);
  const double total = v.sum().item<double>();
  double kept = 0;
  for (int64_t e : ids) kept += v[e].item<double>();
  return total > 0 ? kept / total : 0.0;
}

}  // namespace

namespace {

// The selection with every MoE layer listed (a layer it does not restrict keeps all its
// routed experts), so reports and provenance name each layer's experts.
ExpertSelection every_layer(ExpertSelection sel, const ModelConfig& c) {
  auto specs = c.layers();
  for (int l = 0; l < int(specs.size()); ++l)
    if (!specs[size_t(l)].dense() && !sel.restricts(l)) sel.kept[l] = sel.routed_kept(c, l);
  return sel;
}

// What a selection keeps, as a budget (experts per layer, shared ones included).
Budget kept_budget(const ExpertSelection& sel, const ModelConfig& c) {
  Budget b;
  auto specs = c.layers();
  for (int l = 0; l < int(specs.size()); ++l)
    b.keep.push_back(specs[size_t(l)].dense() ? 0 : int64_t(sel.routed_kept(c, l).size()) + specs[size_t(l)].num_shared_experts);
  return b;
}

}  // namespace

ModuleChoice choose_module(const ModelConfig& config, const ModuleRequest& req, const SelectionSources& src) {
  const SelectionMethod& method = find_selection_method(req.method);
  ModuleChoice out;
  const bool composed = !src.tasks.empty();
  if (composed) check_tasks(method, config, src.tasks);
  else if (method.needs_stats() && !src.stats)
    fail("--method " + req.method, "--data", "needs routing statistics: give --data FILE (or --stats FILE)");
  // The scores the budget sums (--keep-mass) and spreads by: the method's on the task, or
  // the tasks' joint share; empty where the method has none.
  std::function<torch::Tensor(int)> scores;
  if (composed) scores = [&](int l) { return joint_share(config, method, src.tasks, l); };
  else if (src.stats && has_scores(method, config, *src.stats))
    scores = [&](int l) { return method.layer_scores(*src.stats, l); };
  BudgetInputs budget_in;
  budget_in.mass_scores = [&](int l) {
    if (!scores || !method.score_is_share())
      fail("--keep-mass", "--method " + method.name(),
           "sums a score from the routing statistics: use --method router-prob (ESFT's average gate score) or "
           "frequency (ESFT's token selection ratio)");
    return scores(l);
  };
  if (scores) budget_in.spread = {scores, composed ? "joint share of " + method.name() : method.name()};
  else if (src.stats) budget_in.spread = {[&](int l) { return src.stats->mean_prob(l); }, "router-prob"};
  budget_in.bytes = src.bytes;
  Json budget_notes = Json::object();
  if (method.uses_budget()) out.budget = req.budget.resolve(config, budget_in, &budget_notes);
  else if (req.budget.given())
    fail("--method " + method.name(), "--keep", "takes no budget: its module is ", method.description());
  const bool spread_used = budget_notes.contains("per_layer") ||
                           (budget_notes.contains("max_bytes") && budget_notes["max_bytes"].contains("spread_by"));
  if (composed) {
    out.selection = compose_tasks(config, out.budget, method, src.tasks, req.compose);
  } else {
    if (method.needs_forward() && (!src.model || !src.examples))
      fail("--method " + req.method, "--data", "runs the model on the examples: give --model and --data");
    SelectionInput in{config, out.budget, src.stats, req.seed, {}, src.listed};
    in.restricted_stats = [&](int layer, const ExpertSelection& kept) {
      if (src.on_step) src.on_step(cat("layer ", layer));
      RoutingControl rc = routing_for(kept, config);
      CollectOptions co;
      co.batch = src.batch;
      co.last_layer = layer;
      co.routing = &rc;
      return collect_route_stats(*src.model, *src.examples, co);
    };
    out.selection = method.select(in);
  }
  if (req.exclude) out.selection = complement(out.selection, config);
  out.selection = every_layer(out.selection, config);
  if (!method.uses_budget()) out.budget = kept_budget(out.selection, config);
  out.selection.validate(config, "selection");
  // Report: kept experts and, when statistics exist, their share of the layer's probability.
  Json layers = Json::object();
  for (const auto& [l, ids] : out.selection.kept) {
    Json entry = {{"kept", ids}};
    if (src.stats && src.stats->layers[size_t(l)].moe) {
      auto share = normalised(src.stats->mean_prob(l));
      double kept_mass = 0;
      for (int64_t e : ids) kept_mass += share[e].item<double>();
      entry["router_prob_mass_kept"] = kept_mass;  // of every column's probability, shared ones included
    }
    if (req.budget.keep_mass) entry["score_mass_kept"] = routed_share(config, l, budget_in.mass_scores(l), ids);
    if (spread_used) entry["spread_share_kept"] = routed_share(config, l, budget_in.spread.score(l), ids);
    layers[std::to_string(l)] = entry;
  }
  out.report = {{"method", req.method}, {"budget", out.budget.to_json()}, {"exclude", req.exclude},
                {"module_top_k", out.budget.module_top_k(config)}, {"layers", layers}};
  out.report.update(budget_notes);
  if (composed) {
    out.report["compose"] = req.compose;
    out.report["tasks"] = task_report(config, out.budget, method, src.tasks, out.selection);
  }
  if (req.budget.keep_mass) out.report["keep_mass"]["score"] = req.method;
  return out;
}

}  // namespace emo
