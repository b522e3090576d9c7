#include "surgery/selection.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/util/error.h"

namespace emo {

Budget Budget::uniform(const ModelConfig& c, int64_t keep) {
  Budget b;
  for (const auto& s : c.layers()) b.keep.push_back(s.dense() ? 0 : keep);
  return b;
}

Budget Budget::fraction(const ModelConfig& c, double f) {
  if (!(f > 0 && f <= 1)) fail("--keep-fraction", std::to_string(f), "must be in (0, 1]");
  Budget b;
  for (const auto& s : c.layers())
    b.keep.push_back(s.dense() ? 0 : std::max<int64_t>(s.num_shared_experts + 1, int64_t(std::llround(f * double(s.num_experts)))));
  return b;
}

Budget Budget::per_layer(const ModelConfig& c, const std::vector<int64_t>& keep) {
  if (int64_t(keep.size()) != c.num_hidden_layers)
    fail("--keep-per-layer", "", "has ", keep.size(), " entries but the model has ", c.num_hidden_layers, " layers");
  Budget b;
  auto specs = c.layers();
  for (size_t l = 0; l < specs.size(); ++l) b.keep.push_back(specs[l].dense() ? 0 : keep[l]);
  return b;
}

Budget Budget::mass(const ModelConfig& c, double p, const std::function<torch::Tensor(int)>& routed_score, bool* padded) {
  if (!(p > 0 && p <= 1)) fail("--keep-mass", std::to_string(p), "must be in (0, 1]");
  Budget b;
  auto specs = c.layers();
  int64_t largest = 0;
  for (int l = 0; l < int(specs.size()); ++l) {
    const LayerSpec& s = specs[size_t(l)];
    if (s.dense()) {
      b.keep.push_back(0);
      continue;
    }
    auto score = routed_mass_scores(s, routed_score(l));
    std::vector<double> v(score.data_ptr<double>(), score.data_ptr<double>() + score.numel());
    std::sort(v.begin(), v.end(), std::greater<double>());
    const double total = std::accumulate(v.begin(), v.end(), 0.0);
    int64_t n = 0;
    // ESFT's loop (scripts/generate_expert_config.py): add experts while the sum is below p.
    for (double sum = 0; n < int64_t(v.size()) && (n == 0 || sum < p * total); ++n) sum += v[size_t(n)];
    const int64_t shared = s.always_active.empty() ? s.num_shared_experts : 0;  // as routed_keep counts them
    const int64_t fixed = int64_t(s.always_active.size()) + shared;
    const int64_t floor = std::min(s.num_experts, c.num_experts_per_tok + shared);
    b.keep.push_back(std::min(s.num_experts, std::max(n + fixed, floor)));
    largest = std::max(largest, b.keep.back());
  }
  const bool pad = !c.family->per_layer_expert_counts;
  if (pad)
    for (size_t l = 0; l < specs.size(); ++l)
      if (!specs[l].dense()) b.keep[l] = std::min(specs[l].num_experts, largest);
  if (padded) *padded = pad;
  return b;
}

void Budget::validate(const ModelConfig& c) const {
  auto specs = c.layers();
  int64_t smallest = INT64_MAX, largest = 0;
  for (size_t l = 0; l < specs.size(); ++l) {
    if (specs[l].dense()) continue;
    const LayerSpec& s = specs[l];
    std::string where = cat("layer ", l);
    if (keep[l] < 1) fail("--keep", where, "must keep at least 1 expert, got ", keep[l]);
    if (keep[l] > s.num_experts) fail("--keep", where, "keep ", keep[l], " is larger than the layer's ", s.num_experts, " experts");
    if (keep[l] <= s.num_shared_experts)
      fail("--keep", where, "keep ", keep[l], " counts the ", s.num_shared_experts,
           " shared expert(s) and leaves no routed expert; keep at least ", s.num_shared_experts + 1);
    if (!s.always_active.empty() && keep[l] < int64_t(s.always_active.size()) + 1)
      fail("--keep", where, "keep ", keep[l], " leaves no room beside the ", s.always_active.size(), " always-active experts");
    smallest = std::min(smallest, keep[l]);
    largest = std::max(largest, keep[l]);
  }
  // top_k is one config value: layers may keep different numbers only if all keep >= top_k.
  if (smallest != largest && smallest < c.num_experts_per_tok)
    fail("--keep-per-layer", "", "per-layer budgets must each keep at least top_k = ", c.num_experts_per_tok,
         " experts (the smallest keeps ", smallest, "), since the module has one num_experts_per_tok");
  check_expressible(c, smallest, largest, "--keep-per-layer");
}

void Budget::check_expressible(const ModelConfig& c, int64_t smallest, int64_t largest, const std::string& flag) {
  if (smallest != largest && !c.family->per_layer_expert_counts)
    fail(flag, "", c.model_type(), " configs have one ", c.family->keys.experts,
         " for all layers; keep the same number in every layer (--keep or --keep-fraction)");
}

int64_t Budget::module_top_k(const ModelConfig& c) const {
  int64_t smallest = INT64_MAX;
  for (int64_t k : keep)
    if (k > 0) smallest = std::min(smallest, k);
  return std::min(c.num_experts_per_tok, smallest);
}

int64_t Budget::routed_keep(const ModelConfig& c, int layer) const {
  const LayerSpec s = c.layers()[size_t(layer)];  // a copy: layers() returns a temporary
  int64_t fixed = s.always_active.empty() ? s.num_shared_experts : 0;
  return keep[size_t(layer)] - fixed;
}

Json Budget::to_json() const { return keep; }

ExpertSelection keep_top_scored(const ModelConfig& c, const Budget& b, const std::function<torch::Tensor(int)>& routed_score) {
  ExpertSelection sel;
  auto specs = c.layers();
  for (int l = 0; l < int(specs.size()); ++l) {
    if (specs[size_t(l)].dense()) continue;
    const int64_t R = specs[size_t(l)].num_routed();
    auto score = routed_score(l).to(torch::kCPU, torch::kFloat64).narrow(0, 0, R).clone();
    // Always-active experts serve every token: a module keeps them whatever they score.
    for (int64_t a : specs[size_t(l)].always_active) score[a] = INFINITY;
    const double* v = score.data_ptr<double>();
    std::vector<int64_t> ids(static_cast<size_t>(R));
    std::iota(ids.begin(), ids.end(), 0);
    std::stable_sort(ids.begin(), ids.end(), [&](int64_t a, int64_t bb) { return v[a] > v[bb]; });
    ids.resize(size_t(b.routed_keep(c, l)));
    std::sort(ids.begin(), ids.end());
    sel.kept[l] = ids;
  }
  return sel;
}

ExpertSelection complement(const ExpertSelection& sel, const ModelConfig& c) {
  ExpertSelection out;
  auto specs = c.layers();
  for (const auto& [layer, ids] : sel.kept) {
    std::vector<int64_t> rest;
    for (int64_t e = 0; e < specs[size_t(layer)].num_routed(); ++e)
      if (!std::binary_search(ids.begin(), ids.end(), e)) rest.push_back(e);
    if (rest.empty()) fail("--exclude", cat("layer ", layer), "excluding every routed expert leaves none");
    out.kept[layer] = rest;
  }
  return out;
}

torch::Tensor routed_mass_scores(const LayerSpec& s, const torch::Tensor& score) {
  auto v = score.to(torch::kCPU, torch::kFloat64).narrow(0, 0, s.num_routed()).clone();
  for (int64_t a : s.always_active) v[a] = 0;
  return v;
}

torch::Tensor normalised(const torch::Tensor& score) {
  auto s = score.to(torch::kFloat64);
  double total = s.sum().item<double>();
  return total > 0 ? s / total : s;
}

const std::vector<std::unique_ptr<SelectionMethod>>& selection_methods() {
  static const std::vector<std::unique_ptr<SelectionMethod>> all = [] {
    std::vector<std::unique_ptr<SelectionMethod>> v;
    v.push_back(make_router_prob());
    v.push_back(make_layerwise_greedy());
    v.push_back(make_easy_ep());
    v.push_back(make_reap());
    v.push_back(make_frequency());
    v.push_back(make_random());
    v.push_back(make_explicit());
    return v;
  }();
  return all;
}

const SelectionMethod& find_selection_method(const std::string& name) {
  std::string names;
  for (const auto& m : selection_methods()) {
    if (m->name() == name) return *m;
    names += (names.empty() ? "" : ", ") + m->name();
  }
  fail("--method", name, "unknown selection method (", names, "; --method help describes them)");
}

}  // namespace emo
