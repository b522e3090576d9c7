#include "surgery/route_stats.h"

#include "surgery/route_stats_file.h"

#include "core/io/safetensors.h"
#include "core/io/sha256.h"
#include "core/model/cpu_allocator.h"
#include "core/model/tensor_bridge.h"
#include "core/util/error.h"

namespace emo {

namespace {
torch::Tensor* stat(LayerStats& s, int i) {
  torch::Tensor* all[] = {&s.prob_sum, &s.select_count, &s.gate_sum, &s.easy_ep, &s.reap_sum};
  return all[i];
}
}  // namespace

torch::Tensor RouteStats::mean_prob(int layer) const {
  return layers[size_t(layer)].prob_sum / double(std::max<int64_t>(tokens, 1));
}

RouteStats collect_route_stats(Model& model, const TokenizedExamples& ex, const CollectOptions& o) {
  torch::InferenceMode guard;
  CachingCpuAllocatorScope keep_blocks;  // every batch's activations are the same large blocks
  const auto& specs = model.layers();
  RouteStats stats;
  stats.layers.resize(specs.size());
  int last = o.last_layer >= 0 ? o.last_layer : int(specs.size()) - 1;
  auto f64 = torch::TensorOptions().dtype(torch::kFloat64);
  for (int l = 0; l <= last; ++l) {
    if (specs[size_t(l)].dense()) continue;
    LayerStats& s = stats.layers[size_t(l)];
    s.moe = true;
    int64_t E = specs[size_t(l)].num_experts;
    s.prob_sum = torch::zeros({E}, f64), s.gate_sum = torch::zeros({E}, f64);
    s.easy_ep = torch::zeros({E}, f64), s.reap_sum = torch::zeros({E}, f64);
    s.select_count = torch::zeros({E}, torch::kInt64);
  }
  // Longest first so batches pad little; the sums do not depend on the order.
  std::vector<size_t> order(ex.ids.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return ex.ids[a].size() > ex.ids[b].size(); });
  const int64_t pad = model.config().pad_token_id.value_or(0);
  int64_t done = 0;
  for (size_t first = 0; first < order.size(); first += size_t(o.batch)) {
    size_t end = std::min(order.size(), first + size_t(o.batch));
    int64_t B = int64_t(end - first), T = int64_t(ex.ids[order[first]].size());
    // Right padding: under the causal mask real tokens never see it; it is excluded below.
    auto ids = torch::full({B, T}, pad, torch::kInt64);
    auto valid = torch::zeros({B, T}, torch::kBool);
    for (int64_t b = 0; b < B; ++b) {
      const auto& seq = ex.ids[order[first + size_t(b)]];
      ids[b].narrow(0, 0, int64_t(seq.size())).copy_(torch::tensor(seq, torch::kInt64));
      valid[b].narrow(0, 0, int64_t(seq.size())).fill_(true);
    }
    RouterTrace trace;
    trace.keep_routing = trace.keep_expert_norms = trace.keep_moe_io = true;
    ForwardOptions fo;
    fo.trace = &trace;
    fo.routing = o.routing;
    fo.last_layer = last;
    model.hidden_states({ids}, fo);
    auto valid_flat = valid.reshape({-1}).to(model.device());
    for (int l = 0; l <= last; ++l) {
      LayerStats& s = stats.layers[size_t(l)];
      if (!s.moe) continue;
      RouteOptions ro;
      if (o.routing && size_t(l) < o.routing->allowed.size()) ro.allowed = o.routing->allowed[size_t(l)];
      auto vf = valid_flat.to(torch::kFloat32).unsqueeze(1);
      auto probs = routing_probabilities(trace.logits[size_t(l)], specs[size_t(l)], ro);
      s.prob_sum += (probs * vf).sum(0).to(torch::kCPU, torch::kFloat64);
      auto sel = valid_flat.nonzero().squeeze(1);
      auto chosen = trace.ids[size_t(l)].index_select(0, sel);                          // [n, k]
      auto gate = trace.weights[size_t(l)].index_select(0, sel).to(torch::kFloat32);   // [n, k]
      auto norms = trace.expert_norms[size_t(l)].index_select(0, sel);                 // [n, k]
      auto h = trace.moe_in[size_t(l)].index_select(0, sel).to(torch::kFloat32);
      auto y = trace.moe_out[size_t(l)].index_select(0, sel).to(torch::kFloat32);
      // EASY-EP's token weight: how much the MoE output turns the hidden state.
      auto s_t = (1 - torch::cosine_similarity(h, h + y, 1)).clamp_min(0).unsqueeze(1);
      auto flat_ids = chosen.reshape({-1}).to(torch::kCPU);
      auto contrib = (gate * norms).to(torch::kCPU, torch::kFloat64);
      s.select_count.index_add_(0, flat_ids, torch::ones_like(flat_ids));
      s.gate_sum.index_add_(0, flat_ids, gate.reshape({-1}).to(torch::kCPU, torch::kFloat64));
      s.reap_sum.index_add_(0, flat_ids, contrib.reshape({-1}));
      s.easy_ep.index_add_(0, flat_ids, (contrib * s_t.to(torch::kCPU, torch::kFloat64)).reshape({-1}));
    }
    int64_t real = valid.sum().item<int64_t>();
    stats.tokens += real;
    done += real;
    if (o.progress) o.progress(done, ex.tokens);
  }
  stats.examples = int64_t(ex.ids.size());
  return stats;
}

void RouteStats::save(const std::string& path) const {
  NamedTensors tensors;
  Json moe_layers = Json::array();
  for (size_t l = 0; l < layers.size(); ++l) {
    if (!layers[l].moe) continue;
    moe_layers.push_back(l);
    for (int i = 0; i < kRouteStatCount; ++i)
      tensors.emplace_back(cat("layers.", l, ".", kRouteStatNames[size_t(i)]), *stat(const_cast<LayerStats&>(layers[l]), i));
  }
  Json header = route_stats_header(tokens, examples, layers.size(), moe_layers, model_hash, examples_hash, data_hash, settings);
  fs::path tmp = path + ".tmp";
  write_tensors(tmp, tensors, {{"format", "emo-route-stats"}, {kRouteStatsHeaderKey, header.dump()}});
  fs::rename(tmp, path);
}

RouteStats RouteStats::load(const std::string& path) {
  RouteStatsFile f = read_route_stats_file(path);
  RouteStats s;
  s.tokens = f.tokens;
  s.examples = f.examples;
  s.model_hash = f.model_hash;
  s.examples_hash = f.examples_hash;
  s.data_hash = f.data_hash;
  s.settings = f.settings;
  s.layers.resize(f.num_layers);
  for (const auto& [layer, views] : f.moe_layers) {
    LayerStats& ls = s.layers[layer];
    ls.moe = true;
    for (int i = 0; i < kRouteStatCount; ++i) *stat(ls, i) = tensor_from_view(views[size_t(i)]).clone();
  }
  s.file_hash = hash_file(path);
  return s;
}

}  // namespace emo
