// The corpus pass (one forward per batch, usage sums and the fingerprint reservoir fed
// from the same routing) and the single-prompt analysis.
#include "analyze/analyze.h"

#include <algorithm>
#include <map>
#include <numeric>
#include <random>
#include <unordered_map>

#include "core/model/cpu_allocator.h"
#include "core/util/error.h"

namespace emo {

namespace {

// The routing of one padded batch, on the CPU: rows are (b, t) flattened, b * T + t.
struct BatchRouting {
  std::vector<size_t> docs;  // document of each batch row b
  int64_t T = 0;
  torch::Tensor ids;    // [B, T] int64
  torch::Tensor valid;  // [B * T] bool: real tokens (padding excluded)
  std::vector<torch::Tensor> probs;   // per model layer: [B*T, E] float32 (undefined for dense layers)
  std::vector<torch::Tensor> chosen;  // per model layer: [B*T, k] int64
};

std::vector<int> moe_layers(const Model& model) {
  std::vector<int> out;
  for (size_t l = 0; l < model.layers().size(); ++l)
    if (!model.layers()[l].dense()) out.push_back(int(l));
  return out;
}

RouteOptions route_options(const RoutingControl* routing, int layer) {
  RouteOptions ro;
  if (routing && size_t(layer) < routing->allowed.size()) ro.allowed = routing->allowed[size_t(layer)];
  return ro;
}

// Forward passes over `docs` (longest first, so batches pad little), `fn` per batch.
void for_each_batch(Model& model, const std::vector<std::vector<int64_t>>& docs, int64_t batch,
                    const RoutingControl* routing, const std::function<void(const BatchRouting&)>& fn) {
  torch::InferenceMode guard;
  CachingCpuAllocatorScope keep_blocks;  // every batch's activations are the same large blocks
  if (batch < 1) fail("--batch", cat(batch), "must be at least 1");
  std::vector<size_t> order(docs.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return docs[a].size() > docs[b].size(); });
  const int64_t pad = model.config().pad_token_id.value_or(0);
  const auto& specs = model.layers();
  for (size_t first = 0; first < order.size(); first += size_t(batch)) {
    size_t end = std::min(order.size(), first + size_t(batch));
    BatchRouting b;
    b.docs.assign(order.begin() + long(first), order.begin() + long(end));
    int64_t B = int64_t(b.docs.size());
    b.T = int64_t(docs[b.docs[0]].size());
    // Right padding: under the causal mask real tokens never see it.
    b.ids = torch::full({B, b.T}, pad, torch::kInt64);
    auto valid = torch::zeros({B, b.T}, torch::kBool);
    for (int64_t r = 0; r < B; ++r) {
      const auto& seq = docs[b.docs[size_t(r)]];
      b.ids[r].narrow(0, 0, int64_t(seq.size())).copy_(torch::tensor(seq, torch::kInt64));
      valid[r].narrow(0, 0, int64_t(seq.size())).fill_(true);
    }
    b.valid = valid.reshape({-1});
    RouterTrace trace;
    trace.keep_routing = true;
    ForwardOptions fo;
    fo.trace = &trace;
    fo.routing = routing;
    model.hidden_states({b.ids.to(model.device())}, fo);
    b.probs.resize(specs.size());
    b.chosen.resize(specs.size());
    for (int l : moe_layers(model)) {
      b.probs[size_t(l)] =
          routing_probabilities(trace.logits[size_t(l)], specs[size_t(l)], route_options(routing, l)).to(torch::kCPU);
      b.chosen[size_t(l)] = trace.ids[size_t(l)].to(torch::kCPU);
    }
    fn(b);
  }
}

// Per group and MoE layer: summed probabilities and top-k counts over all experts.
class UsageAccumulator {
 public:
  UsageAccumulator(const Model& model, size_t groups) : layers_(moe_layers(model)), groups_(int64_t(groups)) {
    for (int l : layers_) {
      const LayerSpec& s = model.layers()[size_t(l)];
      experts_.push_back(s.num_experts);
      routed_.push_back(s.num_routed());
      prob_sum_.push_back(torch::zeros({groups_, s.num_experts}, torch::kFloat64));
      selected_.push_back(torch::zeros({groups_ * s.num_experts}, torch::kInt64));
    }
    tokens_ = torch::zeros({groups_}, torch::kInt64);
  }

  void add(const BatchRouting& b, const std::vector<int>& doc_group) {
    std::vector<int64_t> row_group;
    for (size_t d : b.docs) row_group.push_back(doc_group[d]);
    auto rows = b.valid.nonzero().squeeze(1);
    auto g = torch::tensor(row_group, torch::kInt64).repeat_interleave(b.T).index_select(0, rows);
    tokens_ += torch::bincount(g, {}, groups_);
    for (size_t i = 0; i < layers_.size(); ++i) {
      size_t l = size_t(layers_[i]);
      prob_sum_[i].index_add_(0, g, b.probs[l].index_select(0, rows).to(torch::kFloat64));
      auto chosen = b.chosen[l].index_select(0, rows);
      auto flat = (g.unsqueeze(1) * experts_[i] + chosen).reshape({-1});
      selected_[i] += torch::bincount(flat, {}, groups_ * experts_[i]);
    }
  }

  UsageReport finish(const std::vector<std::string>& names, const std::vector<int64_t>& docs, double top_fraction) const {
    UsageReport r;
    r.layers = layers_;
    r.routed = routed_;
    r.groups = names;
    r.group_docs = docs;
    r.top_fraction = top_fraction;
    r.group_tokens.assign(tokens_.data_ptr<int64_t>(), tokens_.data_ptr<int64_t>() + groups_);
    r.usage.resize(size_t(groups_));
    for (int64_t g = 0; g < groups_; ++g)
      for (size_t i = 0; i < layers_.size(); ++i) r.usage[size_t(g)].push_back(group_layer(g, i, r.group_tokens[size_t(g)]));
    if (size_t(groups_) <= kMaxOverlapGroups)
      for (size_t i = 0; i < layers_.size(); ++i) r.overlap.push_back(layer_overlap(r, i));
    return r;
  }

 private:
  GroupLayerUsage group_layer(int64_t g, size_t i, int64_t tokens) const {
    double n = double(std::max<int64_t>(tokens, 1));
    auto probs = prob_sum_[i][g].contiguous();
    auto counts = selected_[i].narrow(0, g * experts_[i], experts_[i]).contiguous();
    const double* p = probs.data_ptr<double>();
    const int64_t* c = counts.data_ptr<int64_t>();
    GroupLayerUsage u;
    for (int64_t e = 0; e < experts_[i]; ++e) {
      if (e < routed_[i]) {
        u.mean_prob.push_back(p[e] / n);
        u.topk_freq.push_back(double(c[e]) / n);
      } else {
        u.shared_mean_prob.push_back(p[e] / n);
      }
    }
    u.entropy_bits = entropy_bits(u.mean_prob);
    u.experts_50 = experts_covering(u.mean_prob, 0.5);
    u.experts_90 = experts_covering(u.mean_prob, 0.9);
    return u;
  }

  static LayerOverlap layer_overlap(const UsageReport& r, size_t i) {
    LayerOverlap o;
    o.layer = r.layers[i];
    size_t G = r.groups.size();
    for (size_t g = 0; g < G; ++g) o.top_experts.push_back(top_experts(r.usage[g][i].mean_prob, r.top_fraction));
    o.jaccard.assign(G, std::vector<double>(G, 1.0));
    o.cosine.assign(G, std::vector<double>(G, 1.0));
    o.correlation.assign(G, std::vector<double>(G, 1.0));
    for (size_t a = 0; a < G; ++a)
      for (size_t b = 0; b < G; ++b) {
        o.jaccard[a][b] = jaccard(o.top_experts[a], o.top_experts[b]);
        o.cosine[a][b] = cosine(r.usage[a][i].mean_prob, r.usage[b][i].mean_prob);
        o.correlation[a][b] = correlation(r.usage[a][i].mean_prob, r.usage[b][i].mean_prob);
      }
    return o;
  }

  std::vector<int> layers_;
  int64_t groups_;
  std::vector<int64_t> experts_, routed_;
  std::vector<torch::Tensor> prob_sum_, selected_;
  torch::Tensor tokens_;
};

// At most `cap` token fingerprints, a uniform sample of all tokens seen (reservoir
// sampling, Algorithm R): the same seed and documents give the same tokens for any model
// with the same tokenizer, so two models are compared on the same sample.
class FingerprintSampler {
 public:
  FingerprintSampler(const Model& model, const ClusterOptions& o, int64_t total_tokens) : o_(o), rng_(o.seed) {
    for (int l : moe_layers(model))
      if (o.fingerprint_layer < 0 || o.fingerprint_layer == l) layers_.push_back(l), routed_.push_back(model.layers()[size_t(l)].num_routed());
    if (layers_.empty()) fail("--fingerprint-layer", cat(o.fingerprint_layer), "not an MoE layer of the model");
    if (o.cap < 1) fail("--cap", cat(o.cap), "must be at least 1");
    int64_t dim = std::accumulate(routed_.begin(), routed_.end(), int64_t(0));
    buffer_ = torch::zeros({std::min(o.cap, total_tokens), dim}, torch::kFloat32);
  }

  void add(const BatchRouting& b) {
    std::map<int64_t, int64_t> slot_row;  // later tokens replace earlier ones in the same slot
    auto valid = b.valid.contiguous();
    const bool* v = valid.data_ptr<bool>();
    for (int64_t r = 0; r < valid.numel(); ++r) {
      if (!v[r]) continue;
      int64_t slot = seen_ < buffer_.size(0) ? seen_ : int64_t(rng_() % uint64_t(seen_ + 1));
      ++seen_;
      if (slot < buffer_.size(0)) slot_row[slot] = r;
    }
    if (slot_row.empty()) return;
    std::vector<int64_t> slots, rows;
    for (auto [slot, row] : slot_row) slots.push_back(slot), rows.push_back(row);
    auto row_index = torch::tensor(rows, torch::kInt64);
    std::vector<torch::Tensor> parts;
    for (size_t i = 0; i < layers_.size(); ++i)
      parts.push_back(b.probs[size_t(layers_[i])].index_select(0, row_index).narrow(1, 0, routed_[i]));
    buffer_.index_copy_(0, torch::tensor(slots, torch::kInt64), torch::cat(parts, 1).to(torch::kFloat32));
    tokens_.resize(size_t(buffer_.size(0)));
    docs_.resize(size_t(buffer_.size(0)));
    auto ids = b.ids.reshape({-1}).contiguous();
    const int64_t* id = ids.data_ptr<int64_t>();
    for (size_t i = 0; i < slots.size(); ++i) {
      tokens_[size_t(slots[i])] = id[rows[i]];
      docs_[size_t(slots[i])] = b.docs[size_t(rows[i] / b.T)];
    }
  }

  ClusterReport finish(const AnalyzeCorpus& corpus, const std::function<std::string(int64_t)>& token_text) const {
    ClusterReport r;
    r.options = o_;
    r.domains = corpus.domain_names;
    r.seen = seen_;
    r.sampled = std::min(seen_, buffer_.size(0));
    KMeansResult km = kmeans(buffer_.narrow(0, 0, r.sampled), o_.k, o_.seed, o_.max_iterations);
    r.iterations = km.iterations;
    r.inertia = km.inertia;
    auto assign = km.assignment.contiguous();
    const int64_t* a = assign.data_ptr<int64_t>();
    size_t K = size_t(o_.k), D = corpus.domain_names.size();
    std::vector<std::vector<int64_t>> by_domain(K, std::vector<int64_t>(D, 0));
    std::vector<std::unordered_map<int64_t, int64_t>> token_counts(K);
    std::unordered_map<size_t, std::map<int64_t, int64_t>> doc_clusters;
    for (int64_t i = 0; i < r.sampled; ++i) {
      size_t c = size_t(a[i]);
      ++by_domain[c][size_t(corpus.domain[docs_[size_t(i)]])];
      ++token_counts[c][tokens_[size_t(i)]];
      ++doc_clusters[docs_[size_t(i)]][a[i]];
    }
    int64_t majority = 0;
    for (size_t c = 0; c < K; ++c) {
      ClusterSummary s;
      s.domain_counts = by_domain[c];
      s.size = std::accumulate(s.domain_counts.begin(), s.domain_counts.end(), int64_t(0));
      int64_t top = s.size ? *std::max_element(s.domain_counts.begin(), s.domain_counts.end()) : 0;
      s.purity = s.size ? double(top) / double(s.size) : 0;
      majority += top;
      s.top_tokens = most_frequent(token_counts[c], token_text);
      r.clusters.push_back(std::move(s));
    }
    r.domain_purity = r.sampled ? double(majority) / double(r.sampled) : 0;
    r.nmi = normalized_mutual_information(by_domain);
    document_coherence(doc_clusters, r);
    return r;
  }

 private:
  std::vector<TokenCount> most_frequent(const std::unordered_map<int64_t, int64_t>& counts,
                                        const std::function<std::string(int64_t)>& token_text) const {
    std::vector<TokenCount> all;
    for (auto [id, n] : counts) all.push_back({id, n, ""});
    std::sort(all.begin(), all.end(), [](const TokenCount& x, const TokenCount& y) {
      return x.count != y.count ? x.count > y.count : x.id < y.id;
    });
    if (all.size() > size_t(o_.top_tokens)) all.resize(size_t(o_.top_tokens));
    if (token_text)
      for (auto& t : all) t.text = token_text(t.id);
    return all;
  }

  void document_coherence(const std::unordered_map<size_t, std::map<int64_t, int64_t>>& doc_clusters,
                          ClusterReport& r) const {
    double clusters = 0, dominant = 0;
    for (const auto& [doc, counts] : doc_clusters) {
      int64_t n = 0, top = 0;
      for (auto [c, k] : counts) n += k, top = std::max(top, k);
      if (n < o_.min_doc_tokens) continue;
      ++r.docs_counted;
      clusters += double(counts.size());
      dominant += double(top) / double(n);
    }
    if (r.docs_counted) {
      r.mean_clusters_per_doc = clusters / double(r.docs_counted);
      r.mean_dominant_share = dominant / double(r.docs_counted);
    }
  }

  ClusterOptions o_;
  std::mt19937_64 rng_;
  std::vector<int> layers_;
  std::vector<int64_t> routed_;
  torch::Tensor buffer_;
  std::vector<int64_t> tokens_;
  std::vector<size_t> docs_;
  int64_t seen_ = 0;
};

std::vector<int64_t> documents_per_group(const AnalyzeCorpus& c) {
  std::vector<int64_t> n(c.group_names.size(), 0);
  for (int g : c.group) ++n[size_t(g)];
  return n;
}

}  // namespace

CorpusAnalysis analyze_corpus(Model& model, const AnalyzeCorpus& corpus, const AnalyzeOptions& o) {
  if (moe_layers(model).empty()) fail("--model", "", "the model has no MoE layer to analyze");
  if (!(o.top_fraction > 0 && o.top_fraction <= 1)) fail("--top-fraction", cat(o.top_fraction), "must be in (0, 1]");
  UsageAccumulator usage(model, corpus.group_names.size());
  std::optional<FingerprintSampler> sampler;
  if (o.clusters.k > 0) sampler.emplace(model, o.clusters, corpus.tokens);
  int64_t done = 0;
  for_each_batch(model, corpus.ids, o.batch, o.routing, [&](const BatchRouting& b) {
    usage.add(b, corpus.group);
    if (sampler) sampler->add(b);
    done += b.valid.sum().item<int64_t>();
    if (o.progress) o.progress(done, corpus.tokens);
  });
  CorpusAnalysis a;
  a.tokens = corpus.tokens;
  a.documents = int64_t(corpus.ids.size());
  a.usage = usage.finish(corpus.group_names, documents_per_group(corpus), o.top_fraction);
  if (sampler) a.clusters = sampler->finish(corpus, o.token_text);
  return a;
}

Json CorpusAnalysis::to_json() const {
  Json j = {{"tokens", tokens}, {"documents", documents}, {"usage", usage.to_json()}};
  j["clusters"] = clusters ? clusters->to_json() : Json(nullptr);
  return j;
}

// ---- a single prompt ---------------------------------------------------------------

namespace {

PromptLayer prompt_layer(int layer, const LayerSpec& spec, const torch::Tensor& probs, const torch::Tensor& chosen) {
  PromptLayer p;
  p.layer = layer;
  p.routed = spec.num_routed();
  int64_t T = probs.size(0);
  auto mean = probs.narrow(1, 0, p.routed).to(torch::kFloat64).mean(0).contiguous();
  p.mean_prob.assign(mean.data_ptr<double>(), mean.data_ptr<double>() + p.routed);
  std::vector<int64_t> counts(size_t(p.routed), 0);
  auto ch = chosen.contiguous();
  const int64_t* c = ch.data_ptr<int64_t>();
  for (int64_t t = 0; t < T; ++t) {
    std::vector<int64_t> mine;
    for (int64_t s = 0; s < ch.size(1); ++s) {
      int64_t e = c[t * ch.size(1) + s];
      if (e >= p.routed) continue;  // shared experts: always used
      mine.push_back(e);
      ++counts[size_t(e)];
    }
    std::sort(mine.begin(), mine.end());
    p.token_experts.push_back(mine);
  }
  for (int64_t e = 0; e < p.routed; ++e) {
    p.topk_freq.push_back(double(counts[size_t(e)]) / double(std::max<int64_t>(T, 1)));
    if (counts[size_t(e)]) p.used.push_back(e);
  }
  std::stable_sort(p.used.begin(), p.used.end(), [&](int64_t a, int64_t b) { return counts[size_t(a)] > counts[size_t(b)]; });
  return p;
}

ModuleCoverage module_coverage(const ModuleFile& m, const ModelConfig& config, const std::vector<PromptLayer>& layers) {
  ModuleCoverage cov;
  cov.name = m.name;
  cov.path = m.path;
  cov.covers_all = true;
  for (const auto& p : layers) {
    std::vector<int64_t> kept = m.experts.routed_kept(config, p.layer);
    std::vector<bool> in(size_t(p.routed), false);
    for (int64_t e : kept)
      if (e >= 0 && e < p.routed) in[size_t(e)] = true;
    int64_t inside = 0, all = 0;
    for (const auto& tok : p.token_experts)
      for (int64_t e : tok) inside += in[size_t(e)], ++all;
    cov.per_layer.push_back(all ? double(inside) / double(all) : 1.0);
    std::vector<int64_t> missing;
    for (int64_t e : p.used)
      if (!in[size_t(e)]) missing.push_back(e);
    std::sort(missing.begin(), missing.end());
    cov.covers_all = cov.covers_all && missing.empty();
    cov.missing.push_back(missing);
  }
  cov.mean = cov.per_layer.empty() ? 0
                                   : std::accumulate(cov.per_layer.begin(), cov.per_layer.end(), 0.0) /
                                         double(cov.per_layer.size());
  return cov;
}

}  // namespace

PromptAnalysis analyze_prompt(Model& model, const std::vector<int64_t>& ids, const std::vector<ModuleFile>& modules,
                              const std::function<std::string(int64_t)>& token_text) {
  if (ids.empty()) fail("--text", "", "the text has no tokens");
  if (moe_layers(model).empty()) fail("--model", "", "the model has no MoE layer to analyze");
  for (const auto& m : modules) m.experts.validate(model.config(), m.path);
  PromptAnalysis a;
  a.ids = ids;
  for (int64_t id : ids) a.tokens.push_back(token_text ? token_text(id) : cat(id));
  for_each_batch(model, std::vector<std::vector<int64_t>>{ids}, 1, nullptr, [&](const BatchRouting& b) {
    for (int l : moe_layers(model))
      a.layers.push_back(prompt_layer(l, model.layers()[size_t(l)], b.probs[size_t(l)], b.chosen[size_t(l)]));
  });
  for (const auto& m : modules) a.modules.push_back(module_coverage(m, model.config(), a.layers));
  return a;
}

Json PromptAnalysis::to_json() const {
  Json ls = Json::array();
  for (const auto& p : layers)
    ls.push_back({{"layer", p.layer}, {"routed_experts", p.routed}, {"used", p.used}, {"mean_prob", p.mean_prob},
                  {"topk_freq", p.topk_freq}, {"token_experts", p.token_experts}});
  Json ms = Json::array();
  for (const auto& m : modules)
    ms.push_back({{"name", m.name}, {"path", m.path}, {"coverage_per_layer", m.per_layer}, {"mean_coverage", m.mean},
                  {"covers_all", m.covers_all}, {"missing", m.missing}});
  return {{"ids", ids}, {"tokens", tokens}, {"layers", ls}, {"modules", ms}};
}

}  // namespace emo
