// Usage metrics: concentration of one distribution over experts, overlap of two, and
// the JSON of a usage report.
#include <algorithm>
#include <cmath>
#include <numeric>

#include "analyze/analyze.h"
#include "core/util/error.h"

namespace emo {

namespace {

double total(const std::vector<double>& p) { return std::accumulate(p.begin(), p.end(), 0.0); }

// Mean of the off-diagonal entries (each unordered pair once).
double mean_off_diagonal(const std::vector<std::vector<double>>& m) {
  double sum = 0;
  int64_t n = 0;
  for (size_t i = 0; i < m.size(); ++i)
    for (size_t j = i + 1; j < m.size(); ++j) sum += m[i][j], ++n;
  return n ? sum / double(n) : NAN;
}

Json number_or_null(double v) { return std::isfinite(v) ? Json(v) : Json(nullptr); }

}  // namespace

double entropy_bits(const std::vector<double>& p) {
  double t = total(p), h = 0;
  if (t <= 0) return 0;
  for (double v : p)
    if (v > 0) h -= v / t * std::log2(v / t);
  return h;
}

int experts_covering(const std::vector<double>& p, double fraction) {
  double t = total(p);
  if (t <= 0) return 0;
  std::vector<double> sorted = p;
  std::sort(sorted.rbegin(), sorted.rend());
  double sum = 0;
  // The tolerance keeps two experts at exactly 0.5 each from needing a third for 50%.
  for (size_t i = 0; i < sorted.size(); ++i) {
    sum += sorted[i];
    if (sum >= fraction * t * (1 - 1e-9)) return int(i + 1);
  }
  return int(sorted.size());
}

std::vector<int64_t> top_experts(const std::vector<double>& p, double fraction) {
  size_t n = std::min(p.size(), size_t(std::ceil(fraction * double(p.size()) - 1e-9)));
  std::vector<int64_t> order(p.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return p[size_t(a)] > p[size_t(b)]; });
  order.resize(n);
  std::sort(order.begin(), order.end());
  return order;
}

double jaccard(const std::vector<int64_t>& a, const std::vector<int64_t>& b) {
  std::vector<int64_t> both, either;
  std::set_intersection(a.begin(), a.end(), b.begin(), b.end(), std::back_inserter(both));
  std::set_union(a.begin(), a.end(), b.begin(), b.end(), std::back_inserter(either));
  return either.empty() ? 1.0 : double(both.size()) / double(either.size());
}

double cosine(const std::vector<double>& a, const std::vector<double>& b) {
  double ab = 0, aa = 0, bb = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) ab += a[i] * b[i], aa += a[i] * a[i], bb += b[i] * b[i];
  return aa > 0 && bb > 0 ? ab / std::sqrt(aa * bb) : 0.0;
}

double correlation(const std::vector<double>& a, const std::vector<double>& b) {
  auto centered = [](std::vector<double> v) {
    double mean = v.empty() ? 0 : total(v) / double(v.size());
    for (double& x : v) x -= mean;
    return v;
  };
  return cosine(centered(a), centered(b));
}

Json UsageReport::summary() const {
  Json groups_json = Json::object();
  double entropy = 0, n50 = 0, n90 = 0;
  int64_t counted = 0;
  for (size_t g = 0; g < groups.size(); ++g) {
    if (group_tokens[g] == 0) continue;
    double e = 0, a = 0, b = 0;
    for (const auto& u : usage[g]) e += u.entropy_bits, a += u.experts_50, b += u.experts_90;
    double L = double(std::max<size_t>(usage[g].size(), 1));
    groups_json[groups[g]] = {{"entropy_bits", e / L}, {"experts_50", a / L}, {"experts_90", b / L}};
    entropy += e / L, n50 += a / L, n90 += b / L, ++counted;
  }
  double c = double(std::max<int64_t>(counted, 1));
  Json s = {{"groups", groups_json},
            {"mean_entropy_bits", entropy / c},
            {"mean_experts_50", n50 / c},
            {"mean_experts_90", n90 / c}};
  if (!overlap.empty()) {
    double jac = 0, cos = 0, cor = 0;
    Json per_layer = Json::array();
    for (const auto& o : overlap) {
      double j = mean_off_diagonal(o.jaccard), k = mean_off_diagonal(o.cosine), r = mean_off_diagonal(o.correlation);
      per_layer.push_back({{"layer", o.layer},
                           {"mean_jaccard", number_or_null(j)},
                           {"mean_cosine", number_or_null(k)},
                           {"mean_correlation", number_or_null(r)}});
      jac += j, cos += k, cor += r;
    }
    s["mean_jaccard"] = number_or_null(jac / double(overlap.size()));
    s["mean_cosine"] = number_or_null(cos / double(overlap.size()));
    s["mean_correlation"] = number_or_null(cor / double(overlap.size()));
    s["overlap_per_layer"] = per_layer;
  }
  return s;
}

Json UsageReport::to_json() const {
  Json g = Json::array();
  for (size_t i = 0; i < groups.size(); ++i) {
    Json per_layer = Json::array();
    for (size_t l = 0; l < layers.size(); ++l) {
      const auto& u = usage[i][l];
      per_layer.push_back({{"layer", layers[l]},
                           {"mean_prob", u.mean_prob},
                           {"topk_freq", u.topk_freq},
                           {"shared_mean_prob", u.shared_mean_prob},
                           {"entropy_bits", u.entropy_bits},
                           {"experts_50", u.experts_50},
                           {"experts_90", u.experts_90}});
    }
    g.push_back({{"name", groups[i]}, {"tokens", group_tokens[i]}, {"documents", group_docs[i]}, {"layers", per_layer}});
  }
  Json o = Json::array();
  for (const auto& ov : overlap)
    o.push_back({{"layer", ov.layer}, {"top_experts", ov.top_experts}, {"jaccard", ov.jaccard}, {"cosine", ov.cosine},
              {"correlation", ov.correlation}});
  Json j = {{"layers", layers}, {"routed_experts", routed}, {"top_fraction", top_fraction}, {"groups", g},
            {"overlap", o}, {"summary", summary()}};
  if (overlap.empty() && groups.size() > kMaxOverlapGroups)
    j["overlap_skipped"] = cat(groups.size(), " groups (more than ", kMaxOverlapGroups, ")");
  return j;
}

}  // namespace emo
