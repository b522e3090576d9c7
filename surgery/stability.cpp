#include "surgery/stability.h"

#include <algorithm>
#include <cmath>

#include "core/util/error.h"

namespace emo {

namespace {

// Sums `more` into `into`: statistics are sums over tokens, so routing examples in two
// parts and adding gives what routing them together gives.
void add_stats(RouteStats& into, const RouteStats& more) {
  if (into.layers.empty()) {
    into = more;
    return;
  }
  into.tokens += more.tokens;
  into.examples += more.examples;
  for (size_t l = 0; l < into.layers.size(); ++l) {
    LayerStats& a = into.layers[l];
    const LayerStats& b = more.layers[l];
    if (!a.moe) continue;
    a.prob_sum = a.prob_sum + b.prob_sum;
    a.select_count = a.select_count + b.select_count;
    a.gate_sum = a.gate_sum + b.gate_sum;
    a.easy_ep = a.easy_ep + b.easy_ep;
    a.reap_sum = a.reap_sum + b.reap_sum;
  }
}

TokenizedExamples slice(const TokenizedExamples& ex, size_t begin, size_t end) {
  TokenizedExamples out;
  out.ids.assign(ex.ids.begin() + long(begin), ex.ids.begin() + long(end));
  for (const auto& ids : out.ids) out.tokens += int64_t(ids.size());
  return out;
}

}  // namespace

double jaccard(const ExpertSelection& a, const ExpertSelection& b, std::map<int, double>* per_layer) {
  size_t common_all = 0, union_all = 0;
  for (const auto& [l, ids] : a.kept) {
    const auto& other = b.kept.at(l);
    std::vector<int64_t> common, both;
    std::set_intersection(ids.begin(), ids.end(), other.begin(), other.end(), std::back_inserter(common));
    std::set_union(ids.begin(), ids.end(), other.begin(), other.end(), std::back_inserter(both));
    if (per_layer) (*per_layer)[l] = both.empty() ? 1.0 : double(common.size()) / double(both.size());
    common_all += common.size(), union_all += both.size();
  }
  return union_all ? double(common_all) / double(union_all) : 1.0;
}

StabilityCurve stability_curve(Model& model, const TokenizedExamples& examples, const ModuleRequest& request,
                               const SelectionSources& base, double threshold, int patience, const CollectOptions& collect,
                               const std::function<void(const StabilityPoint&)>& on_size) {
  if (!(threshold > 0 && threshold <= 1)) fail("--stability", std::to_string(threshold), "the threshold must be in (0, 1]");
  if (patience < 1) fail("--stability", "--patience", "must be at least 1, got ", patience);
  if (examples.ids.empty()) fail("--stability", "--data", "no examples to route");
  StabilityCurve curve;
  curve.threshold = threshold;
  curve.patience = patience;
  int agreed = 0;
  RouteStats stats;
  size_t routed = 0;
  for (size_t n = 1; n <= examples.ids.size(); n *= 2) {
    add_stats(stats, collect_route_stats(model, slice(examples, routed, n), collect));
    TokenizedExamples first_n = slice(examples, 0, n);
    routed = n;
    SelectionSources src = base;
    src.stats = &stats;
    src.model = &model;
    src.examples = &first_n;
    StabilityPoint p;
    p.examples = int64_t(n);
    p.tokens = stats.tokens;
    p.choice = choose_module(model.config(), request, src);
    if (!curve.points.empty()) p.jaccard = jaccard(curve.points.back().choice.selection, p.choice.selection, &p.jaccard_per_layer);
    curve.points.push_back(p);
    if (on_size) on_size(curve.points.back());
    agreed = p.jaccard >= threshold ? agreed + 1 : 0;
    if (agreed >= patience) {
      curve.reached = true;
      break;
    }
  }
  return curve;
}

Json StabilityCurve::to_json() const {
  Json pts = Json::array();
  for (const auto& p : points) {
    Json per = Json::object();
    for (const auto& [l, j] : p.jaccard_per_layer) per[std::to_string(l)] = j;
    pts.push_back({{"examples", p.examples}, {"tokens", p.tokens},
                   {"jaccard", std::isnan(p.jaccard) ? Json(nullptr) : Json(p.jaccard)}, {"jaccard_per_layer", per}});
  }
  return {{"threshold", threshold}, {"patience", patience}, {"reached", reached},
          {"examples_used", points.empty() ? 0 : points.back().examples}, {"points", pts}};
}

}  // namespace emo
