// Token clusters: seeded k-means over router-probability fingerprints, the mutual
// information of clusters and domains, and the JSON of a cluster report.
#include <cmath>
#include <random>

#include "analyze/analyze.h"
#include "core/util/error.h"

namespace emo {

namespace {

// Squared distances [N, k] from every row of x to every center.
torch::Tensor squared_distances(const torch::Tensor& x, const torch::Tensor& centers) {
  auto d = x.pow(2).sum(1, true) - 2 * x.matmul(centers.t()) + centers.pow(2).sum(1).unsqueeze(0);
  return d.clamp_min(0);
}

// k-means++: each next center drawn with probability proportional to the squared
// distance to the nearest chosen one (a point equal to a chosen center is never drawn
// again unless every point is).
torch::Tensor seed_centers(const torch::Tensor& x, int k, std::mt19937_64& rng) {
  int64_t n = x.size(0);
  std::vector<int64_t> chosen{int64_t(rng() % uint64_t(n))};
  // Direct differences: a duplicate of a chosen point has distance exactly 0.
  auto distance_to = [&](int64_t i) { return (x - x[i]).pow(2).sum(1).to(torch::kFloat64); };
  auto nearest = distance_to(chosen[0]);
  std::uniform_real_distribution<double> uniform(0.0, 1.0);
  while (int(chosen.size()) < k) {
    auto mass = nearest.contiguous();
    const double* m = mass.data_ptr<double>();
    double totalmass = 0;
    for (int64_t i = 0; i < n; ++i) totalmass += m[i];
    int64_t next = n - 1;
    if (totalmass <= 0) {
      next = int64_t(rng() % uint64_t(n));  // fewer distinct points than k: a duplicate center
    } else {
      double r = uniform(rng) * totalmass, run = 0;
      for (int64_t i = 0; i < n; ++i) {
        run += m[i];
        if (m[i] <= 0) continue;
        next = i;  // rounding past the end: the last point with mass
        if (run >= r) break;
      }
    }
    chosen.push_back(next);
    nearest = torch::minimum(nearest, distance_to(next));
  }
  return x.index_select(0, torch::tensor(chosen, torch::kInt64)).clone();
}

double entropy_nats(const std::vector<double>& counts, double n) {
  double h = 0;
  for (double c : counts)
    if (c > 0) h -= c / n * std::log(c / n);
  return h;
}

}  // namespace

KMeansResult kmeans(const torch::Tensor& x_in, int k, uint64_t seed, int max_iterations) {
  torch::NoGradGuard no_grad;
  if (k < 1) fail("--k", cat(k), "must be at least 1");
  if (x_in.size(0) < k) fail("--k", cat(k), "more clusters than sampled tokens (", x_in.size(0), ")");
  auto x = x_in.to(torch::kFloat32).contiguous();
  std::mt19937_64 rng(seed);
  KMeansResult r;
  r.centers = seed_centers(x, k, rng);
  r.assignment = torch::full({x.size(0)}, -1, torch::kInt64);
  for (r.iterations = 0; r.iterations < max_iterations;) {
    auto next = squared_distances(x, r.centers).argmin(1);
    ++r.iterations;
    bool stable = next.equal(r.assignment);
    r.assignment = next;
    if (stable) break;
    auto sums = torch::zeros_like(r.centers).index_add_(0, next, x);
    auto counts = torch::bincount(next, {}, k).to(torch::kFloat32);
    auto nonempty = counts > 0;
    // An empty cluster keeps its center (it may win points back next iteration).
    auto means = sums / counts.clamp_min(1).unsqueeze(1);
    r.centers = torch::where(nonempty.unsqueeze(1), means, r.centers);
  }
  auto d = squared_distances(x, r.centers);
  r.inertia = d.gather(1, r.assignment.unsqueeze(1)).sum().item<double>();
  return r;
}

double normalized_mutual_information(const std::vector<std::vector<int64_t>>& counts) {
  double n = 0;
  std::vector<double> rows(counts.size(), 0), cols;
  for (size_t i = 0; i < counts.size(); ++i) {
    if (cols.size() < counts[i].size()) cols.resize(counts[i].size(), 0);
    for (size_t j = 0; j < counts[i].size(); ++j) rows[i] += double(counts[i][j]), cols[j] += double(counts[i][j]);
  }
  for (double r : rows) n += r;
  if (n <= 0) return 0;
  double mi = 0;
  for (size_t i = 0; i < counts.size(); ++i)
    for (size_t j = 0; j < counts[i].size(); ++j) {
      double c = double(counts[i][j]);
      if (c > 0) mi += c / n * std::log(c * n / (rows[i] * cols[j]));
    }
  double h = entropy_nats(rows, n) + entropy_nats(cols, n);
  // Both labelings constant: they agree perfectly (sklearn's convention).
  return h <= 0 ? 1.0 : 2 * mi / h;
}

Json ClusterReport::to_json() const {
  Json cl = Json::array();
  for (size_t c = 0; c < clusters.size(); ++c) {
    const auto& s = clusters[c];
    Json tokens = Json::array();
    for (const auto& t : s.top_tokens) tokens.push_back({{"id", t.id}, {"text", t.text}, {"count", t.count}});
    Json dom = Json::object();
    for (size_t d = 0; d < domains.size(); ++d) dom[domains[d]] = s.domain_counts[d];
    cl.push_back({{"cluster", c}, {"size", s.size}, {"purity", s.purity}, {"domains", dom}, {"top_tokens", tokens}});
  }
  return {{"k", options.k},
          {"fingerprint", options.fingerprint_layer < 0 ? Json("all MoE layers") : Json(options.fingerprint_layer)},
          {"cap", options.cap},
          {"seed", options.seed},
          {"tokens_seen", seen},
          {"tokens_sampled", sampled},
          {"iterations", iterations},
          {"inertia", inertia},
          {"domain_purity", domain_purity},
          {"nmi_cluster_domain", nmi},
          {"document_coherence",
           {{"documents", docs_counted},
            {"min_sampled_tokens", options.min_doc_tokens},
            {"mean_clusters_per_document", mean_clusters_per_doc},
            {"mean_dominant_cluster_share", mean_dominant_share}}},
          {"clusters", cl}};
}

}  // namespace emo
