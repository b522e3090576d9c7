// Which experts inputs use (EMO paper, section "experts group by domain"): per group
// (domain or document) and MoE layer the expert usage distribution, how concentrated it
// is, how much groups overlap, and clusters of tokens by their router probabilities
// (topic clusters for EMO, word-type clusters for a standard MoE).
//
// Everything is accumulated streaming, one batch at a time: per group and layer sums
// over experts (memory groups x layers x experts), plus at most `cap` token fingerprints
// kept by reservoir sampling. So the 14B shape runs in bounded memory.
//
// Probabilities are the model's own (routing_probabilities: routed and shared columns
// with their own softmaxes, as `emo route` and EMO's compute_router_activations.py).
// The usage distribution is over the routed experts only: shared experts are always
// used and say nothing about grouping; their mean probability is reported apart.
#pragma once

#include <torch/torch.h>

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "core/checkpoint/experts.h"
#include "core/io/json.h"
#include "core/model/model.h"

namespace emo {

// ---- input -------------------------------------------------------------------------

// Tokenized documents, each with its domain and the group it is counted in (its domain,
// or itself when grouping by document).
struct AnalyzeCorpus {
  std::vector<std::vector<int64_t>> ids;  // per document
  std::vector<std::string> doc_ids;       // per document (the id field, else "line N")
  std::vector<int> domain;                // per document: index into domain_names
  std::vector<int> group;                 // per document: index into group_names
  std::vector<std::string> domain_names;  // sorted
  std::vector<std::string> group_names;
  int64_t tokens = 0;
  size_t truncated = 0;  // documents cut to max_length
};

struct CorpusSource {
  std::string path;
  std::string text_field = "text";
  std::string domain_field = "domain";
  std::string group_by = "domain";  // "domain" or "document"
  size_t per_domain = 0;            // at most N documents of each domain (0 = all)
  size_t limit = 0;                 // at most N documents in all (0 = all)
};

using EncodeFn = std::function<std::vector<int32_t>(const std::string&)>;

// JSONL (plain or gzip) with a string text field and a string domain field on every
// line: emo::Error naming the file, line and field otherwise. Empty documents are skipped.
AnalyzeCorpus load_corpus(const CorpusSource& source, const EncodeFn& encode, int64_t max_length);

// ---- usage -------------------------------------------------------------------------

struct GroupLayerUsage {
  std::vector<double> mean_prob;         // [routed]: mean router probability
  std::vector<double> topk_freq;         // [routed]: fraction of tokens that chose the expert
  std::vector<double> shared_mean_prob;  // [shared]
  double entropy_bits = 0;               // of mean_prob normalised to sum 1
  int experts_50 = 0, experts_90 = 0;    // fewest experts holding 50% / 90% of the mass
};

struct LayerOverlap {
  int layer = 0;
  std::vector<std::vector<int64_t>> top_experts;  // per group: its top `top_fraction` experts
  std::vector<std::vector<double>> jaccard;       // [group][group] of top_experts
  std::vector<std::vector<double>> cosine;        // [group][group] of mean_prob vectors
  // [group][group] Pearson correlation of mean_prob vectors: the cosine after removing
  // each vector's mean, so a near-uniform part shared by all groups does not dominate.
  std::vector<std::vector<double>> correlation;
};

struct UsageReport {
  std::vector<int> layers;       // the MoE layers, in order
  std::vector<int64_t> routed;   // routed experts per entry of `layers`
  std::vector<std::string> groups;
  std::vector<int64_t> group_tokens, group_docs;
  std::vector<std::vector<GroupLayerUsage>> usage;  // [group][entry of layers]
  std::vector<LayerOverlap> overlap;  // empty when there are more than kMaxOverlapGroups groups
  double top_fraction = 0.25;
  Json to_json() const;
  // Means over layers (and over group pairs for the overlap): the headline numbers.
  Json summary() const;
};

// Overlap matrices grow with the square of the groups; per-document grouping of a large
// file reports usage only.
constexpr size_t kMaxOverlapGroups = 64;

// The metrics, exposed for tests. `p` need not sum to 1 (it is normalised).
double entropy_bits(const std::vector<double>& p);
int experts_covering(const std::vector<double>& p, double fraction);
// The ceil(fraction * size) experts with the largest p (ties: lower id), sorted by id.
std::vector<int64_t> top_experts(const std::vector<double>& p, double fraction);
double jaccard(const std::vector<int64_t>& a, const std::vector<int64_t>& b);  // sorted inputs
double cosine(const std::vector<double>& a, const std::vector<double>& b);
double correlation(const std::vector<double>& a, const std::vector<double>& b);  // 0 for a constant vector

// ---- clusters ----------------------------------------------------------------------

struct ClusterOptions {
  int k = 0;                  // 0: no clustering
  int fingerprint_layer = -1; // -1: all MoE layers concatenated
  int64_t cap = 20000;        // token fingerprints kept (reservoir sample)
  uint64_t seed = 0;          // reservoir and k-means++
  int max_iterations = 100;
  int top_tokens = 10;
  int min_doc_tokens = 4;     // documents with fewer sampled tokens are left out of coherence
};

struct KMeansResult {
  torch::Tensor assignment;  // [N] int64
  torch::Tensor centers;     // [k, D]
  int iterations = 0;
  double inertia = 0;        // sum of squared distances to the assigned centers
};
// k-means++ seeding then Lloyd iterations until no assignment changes. x [N, D] float.
KMeansResult kmeans(const torch::Tensor& x, int k, uint64_t seed, int max_iterations);

// Normalised mutual information (arithmetic mean normalisation) of a contingency table.
double normalized_mutual_information(const std::vector<std::vector<int64_t>>& counts);

struct TokenCount {
  int64_t id = 0, count = 0;
  std::string text;
};

struct ClusterSummary {
  int64_t size = 0;
  std::vector<TokenCount> top_tokens;
  std::vector<int64_t> domain_counts;  // [domain]
  double purity = 0;                   // share of the cluster's largest domain
};

struct ClusterReport {
  ClusterOptions options;
  std::vector<std::string> domains;
  int64_t seen = 0, sampled = 0;
  int iterations = 0;
  double inertia = 0;
  std::vector<ClusterSummary> clusters;
  double domain_purity = 0;  // token-weighted share of each cluster's largest domain
  double nmi = 0;            // between cluster and domain
  // Document coherence over documents with >= min_doc_tokens sampled tokens.
  int64_t docs_counted = 0;
  double mean_clusters_per_doc = 0;
  double mean_dominant_share = 0;  // share of a document's tokens in its most common cluster
  Json to_json() const;
};

// ---- corpus analysis ---------------------------------------------------------------

struct AnalyzeOptions {
  int64_t batch = 8;
  double top_fraction = 0.25;
  ClusterOptions clusters;
  const RoutingControl* routing = nullptr;
  std::function<std::string(int64_t)> token_text;  // for cluster top tokens; "" when absent
  std::function<void(int64_t tokens_done, int64_t tokens_total)> progress;
};

struct CorpusAnalysis {
  int64_t tokens = 0, documents = 0;
  UsageReport usage;
  std::optional<ClusterReport> clusters;
  Json to_json() const;
};

CorpusAnalysis analyze_corpus(Model& model, const AnalyzeCorpus& corpus, const AnalyzeOptions& options);

// ---- a single prompt ---------------------------------------------------------------

struct ModuleFile {
  std::string name, path;
  ExpertSelection experts;
};

struct PromptLayer {
  int layer = 0;
  int64_t routed = 0;
  std::vector<double> mean_prob, topk_freq;          // [routed]
  std::vector<int64_t> used;                          // routed experts chosen by some token, most often first
  std::vector<std::vector<int64_t>> token_experts;    // [token]: its chosen routed experts
};

struct ModuleCoverage {
  std::string name, path;
  std::vector<double> per_layer;             // share of the routed choices inside the module
  std::vector<std::vector<int64_t>> missing; // per layer: used experts the module lacks
  double mean = 0;
  bool covers_all = false;
};

struct PromptAnalysis {
  std::vector<int64_t> ids;
  std::vector<std::string> tokens;
  std::vector<PromptLayer> layers;
  std::vector<ModuleCoverage> modules;
  Json to_json() const;
};

PromptAnalysis analyze_prompt(Model& model, const std::vector<int64_t>& ids, const std::vector<ModuleFile>& modules,
                              const std::function<std::string(int64_t)>& token_text = {});

// ---- the HTML report ---------------------------------------------------------------

// Self-contained HTML (inline SVG and CSS, no script, no external resource). `header`
// is shown as the run's description (model, data, settings).
std::string render_corpus_report(const CorpusAnalysis& analysis, const Json& header);
std::string render_prompt_report(const PromptAnalysis& analysis, const Json& header);

}  // namespace emo
