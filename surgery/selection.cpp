#include "surgery/selection.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/util/error.h"
#include "core/util/log.h"

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

namespace {

// The experts a layer keeps beside its routed choice that Budget counts in `keep`: EMO's
// shared router columns (when the layer lists no always-active experts instead).
int64_t counted_shared(const LayerSpec& s) { return s.always_active.empty() ? s.num_shared_experts : 0; }

// Kept whatever the scores: the always-active experts and the counted shared ones.
int64_t fixed_experts(const LayerSpec& s) { return int64_t(s.always_active.size()) + counted_shared(s); }

// Layer `s`'s routed experts that a budget chooses among (always-active ones left out),
// their shares of the layer's routed score, largest first.
std::vector<double> sorted_shares(const LayerSpec& s, const torch::Tensor& score) {
  auto v = routed_mass_scores(s, score);
  std::vector<double> out;
  for (int64_t e = 0; e < s.num_routed(); ++e)
    if (std::find(s.always_active.begin(), s.always_active.end(), e) == s.always_active.end())
      out.push_back(v[e].item<double>());
  const double total = std::accumulate(out.begin(), out.end(), 0.0);
  for (double& x : out) x = total > 0 ? x / total : 0.0;
  std::sort(out.begin(), out.end(), std::greater<double>());
  return out;
}

// Adds routed experts to `b` one at a time across MoE layers, the largest share of its
// layer's routed score per unit of `cost` first, while `room` lasts. A layer whose next
// expert does not fit takes no more: its later experts have no larger share.
Budget add_by_share(const ModelConfig& c, Budget b, const LayerSpread& by, const std::vector<uint64_t>& cost,
                    uint64_t room) {
  struct Candidate {
    double value;
    int layer;
  };
  std::vector<Candidate> all;
  auto specs = c.layers();
  for (int l = 0; l < int(specs.size()); ++l) {
    const LayerSpec& s = specs[size_t(l)];
    if (s.dense()) continue;
    auto shares = sorted_shares(s, by.score(l));
    for (size_t r = size_t(b.keep[size_t(l)] - fixed_experts(s)); r < shares.size(); ++r)
      all.push_back({shares[r] / double(cost[size_t(l)]), l});
  }
  // Stable: equal values go to the lower layer first, and within a layer in rank order.
  std::stable_sort(all.begin(), all.end(), [](const Candidate& x, const Candidate& y) { return x.value > y.value; });
  std::vector<bool> full(specs.size(), false);
  for (const Candidate& x : all) {
    const size_t l = size_t(x.layer);
    if (full[l]) continue;
    if (cost[l] > room) {
      full[l] = true;
      continue;
    }
    room -= cost[l];
    ++b.keep[l];
  }
  return b;
}

int64_t total_kept(const Budget& b) { return std::accumulate(b.keep.begin(), b.keep.end(), int64_t(0)); }

}  // namespace

uint64_t ModuleBytes::of(const ModelConfig& c, const Budget& b) const {
  uint64_t n = fixed;
  auto specs = c.layers();
  for (int l = 0; l < int(specs.size()); ++l)
    if (!specs[size_t(l)].dense()) n += uint64_t(b.routed_keep(c, l)) * per_expert[size_t(l)];
  return n;
}

Budget Budget::smallest(const ModelConfig& c) {
  Budget b;
  for (const auto& s : c.layers())
    // top_k counts the shared columns and always-active experts it routes to: keeping top_k
    // experts keeps the module's num_experts_per_tok = min(top_k, K) at the model's.
    b.keep.push_back(s.dense() ? 0 : std::min(s.num_experts, c.num_experts_per_tok));
  return b;
}

Budget Budget::mass(const ModelConfig& c, double p, const std::function<torch::Tensor(int)>& routed_score, bool* padded) {
  if (!(p > 0 && p <= 1)) fail("--keep-mass", std::to_string(p), "must be in (0, 1]");
  Budget b = smallest(c);
  auto specs = c.layers();
  int64_t largest = 0;
  for (int l = 0; l < int(specs.size()); ++l) {
    const LayerSpec& s = specs[size_t(l)];
    if (s.dense()) continue;
    auto v = sorted_shares(s, routed_score(l));
    int64_t n = 0;
    // ESFT's loop (scripts/generate_expert_config.py): add experts while the sum is below p.
    // A layer with no score at all (no token reached it) keeps the least.
    if (!v.empty() && v[0] > 0)
      for (double sum = 0; n < int64_t(v.size()) && (n == 0 || sum < p); ++n) sum += v[size_t(n)];
    b.keep[size_t(l)] = std::min(s.num_experts, std::max(n + fixed_experts(s), b.keep[size_t(l)]));
    largest = std::max(largest, b.keep[size_t(l)]);
  }
  const bool pad = !c.family->per_layer_expert_counts;
  if (pad)
    for (size_t l = 0; l < specs.size(); ++l)
      if (!specs[l].dense()) b.keep[l] = std::min(specs[l].num_experts, largest);
  if (padded) *padded = pad;
  return b;
}

Budget Budget::spread(const ModelConfig& c, const Budget& given, const LayerSpread& by) {
  if (!c.family->per_layer_expert_counts)
    fail("--per-layer auto", "", c.model_type(), " configs have one ", c.family->keys.experts,
         " for all layers, so budgets cannot differ per layer (only EMO's can); refused rather than padded");
  if (!by.score)
    fail("--per-layer auto", "--method", "spreads experts by the routing statistics' scores: give --data or --stats "
                                         "with a method that reads them");
  const Budget least = smallest(c);
  const int64_t total = total_kept(given), least_total = total_kept(least);
  if (total < least_total)
    fail("--per-layer auto", "", "the budget keeps ", total, " experts in all, fewer than top_k per layer (",
         least_total, ")");
  return add_by_share(c, least, by, std::vector<uint64_t>(given.keep.size(), 1), uint64_t(total - least_total));
}

Budget Budget::bytes(const ModelConfig& c, uint64_t max_bytes, const ModuleBytes& size, const LayerSpread& by,
                     bool* spread_used) {
  Budget b = smallest(c);
  const uint64_t least = size.of(c, b);
  if (least > max_bytes)
    fail("--max-bytes", cat(max_bytes, " bytes"), "is below the smallest possible module, ", least, " bytes (",
         human_bytes(double(least)), "): top_k = ", c.num_experts_per_tok,
         " experts per layer (shared ones included, as top_k counts them) and every other tensor of the model");
  const bool spread = c.family->per_layer_expert_counts && by.score;
  if (spread_used) *spread_used = spread;
  if (spread) return add_by_share(c, b, by, size.per_expert, max_bytes - least);
  // One count in every layer: the largest that fits.
  auto specs = c.layers();
  for (;;) {
    Budget next = b;
    bool grew = false;
    for (size_t l = 0; l < specs.size(); ++l)
      if (!specs[l].dense() && next.keep[l] < specs[l].num_experts) ++next.keep[l], grew = true;
    if (!grew || size.of(c, next) > max_bytes) return b;
    b = next;
  }
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
  return keep[size_t(layer)] - counted_shared(c.layers()[size_t(layer)]);
}

Json Budget::to_json() const { return keep; }

std::vector<int64_t> ranked_ids(const torch::Tensor& score, const std::set<int64_t>& skip) {
  const double* v = score.data_ptr<double>();
  std::vector<int64_t> ids;
  for (int64_t e = 0; e < score.numel(); ++e)
    if (!skip.count(e)) ids.push_back(e);
  std::stable_sort(ids.begin(), ids.end(), [&](int64_t a, int64_t b) { return v[a] > v[b]; });
  return ids;
}

ExpertSelection keep_top_scored(const ModelConfig& c, const Budget& b, const std::function<torch::Tensor(int)>& routed_score) {
  ExpertSelection sel;
  auto specs = c.layers();
  for (int l = 0; l < int(specs.size()); ++l) {
    if (specs[size_t(l)].dense()) continue;
    const int64_t R = specs[size_t(l)].num_routed();
    auto score = routed_score(l).to(torch::kCPU, torch::kFloat64).narrow(0, 0, R).clone();
    // Always-active experts serve every token: a module keeps them whatever they score.
    for (int64_t a : specs[size_t(l)].always_active) score[a] = INFINITY;
    std::vector<int64_t> ids = ranked_ids(score);
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
