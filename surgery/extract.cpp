#include "surgery/extract.h"

#include <algorithm>
#include <set>

#include "core/checkpoint/content_hash.h"
#include "core/checkpoint/provenance.h"
#include "core/util/error.h"
#include "surgery/selection.h"

namespace emo {

ExtractPlan plan_extract(const Checkpoint& parent, const ExpertSelection& selection, const std::string& parent_hash) {
  const ModelConfig& pc = parent.config();
  selection.validate(pc, "--experts");
  auto specs = pc.layers();
  ExtractPlan plan;
  // Per MoE layer: the kept routed experts in original order, then the shared experts.
  std::vector<int64_t> kept_count(specs.size(), 0);
  std::map<int, std::vector<int64_t>> order;
  for (int l = 0; l < int(specs.size()); ++l) {
    const LayerSpec& s = specs[size_t(l)];
    if (s.dense()) continue;
    std::vector<int64_t> ids = selection.routed_kept(pc, l);
    for (int64_t a : s.always_active)  // always-active experts serve every token: always kept
      if (!std::binary_search(ids.begin(), ids.end(), a)) ids.insert(std::upper_bound(ids.begin(), ids.end(), a), a);
    for (int64_t e = s.num_routed(); e < s.num_experts; ++e) ids.push_back(e);
    kept_count[size_t(l)] = int64_t(ids.size());
    order[l] = ids;
  }
  int64_t smallest = INT64_MAX, largest = 0;
  for (size_t l = 0; l < specs.size(); ++l)
    if (!specs[l].dense()) smallest = std::min(smallest, kept_count[l]), largest = std::max(largest, kept_count[l]);
  if (smallest != largest && smallest < pc.num_experts_per_tok)
    fail("selection", "", "layers keep between ", smallest, " and ", largest, " experts; with different budgets every layer "
         "must keep at least top_k = ", pc.num_experts_per_tok, " (the module has one num_experts_per_tok)");
  Budget::check_expressible(pc, smallest, largest, "selection");

  // The module's config: the parent's with the expert counts, top-k and metadata changed.
  Json j = pc.to_json();
  plan.module_top_k = std::min(pc.num_experts_per_tok, smallest);
  j["num_experts_per_tok"] = plan.module_top_k;
  bool per_layer = pc.num_experts_per_layer.has_value() || smallest != largest;
  if (per_layer) {
    std::vector<int64_t> counts;
    for (size_t l = 0; l < specs.size(); ++l) counts.push_back(specs[l].dense() ? 0 : kept_count[l]);
    j["num_experts_per_layer"] = counts;
  }
  j[pc.experts_key()] = largest;
  // Always-active ids in the module's numbering.
  if (pc.always_active_experts || pc.always_active_experts_per_layer) {
    Json per = Json::array();
    for (int l = 0; l < int(specs.size()); ++l) {
      Json ids = Json::array();
      for (int64_t a : specs[size_t(l)].always_active)
        ids.push_back(std::find(order[l].begin(), order[l].end(), a) - order[l].begin());
      per.push_back(ids);
    }
    j.erase("always_active_experts");
    j["always_active_experts_per_layer"] = per;
  }
  // As EMO's prune script: the module trains with its load-balancing loss on.
  j["output_router_logits"] = true;
  // Lineage: where each expert came from, relative to the parent and to the root.
  ModuleInfo info;
  info.parent_hash = parent_hash;
  info.experts = order;
  auto parent_info = ModuleInfo::of(pc);
  info.root_hash = parent_info ? parent_info->root_hash : parent_hash;
  for (const auto& [l, ids] : order) {
    std::vector<int64_t> root;
    for (int64_t e : ids) root.push_back(parent_info ? parent_info->root_experts.at(l).at(size_t(e)) : e);
    info.root_experts[l] = root;
  }
  j[kModuleKey] = info.to_json();
  plan.config = ModelConfig::from_json(j, pc.source + " (module)");
  plan.config.source = pc.source;
  plan.info = info;

  for (const auto& t : canonical_tensors(plan.config)) {
    std::string src = t.name;
    if (t.role == Role::Expert) src = expert_tensor_name(*pc.family, t.layer, int(order[t.layer][size_t(t.expert)]), t.proj);
    if (t.role == Role::Router) plan.router_rows[t.name] = order[t.layer];
    const CanonicalTensor& parent_t = parent.tensor(src);
    plan.source[t.name] = src;
    plan.tensors.push_back({t, parent.view(parent_t).dtype});
  }
  return plan;
}

Json ExtractPlan::summary() const {
  Json kept = Json::object();
  for (const auto& [l, ids] : info.experts) kept[std::to_string(l)] = ids;
  return {{"kept_experts", kept}, {"module_top_k", module_top_k}, {"num_experts", config.num_experts},
          {"num_experts_per_layer", config.num_experts_per_layer ? Json(*config.num_experts_per_layer) : Json()}};
}

ModuleBytes module_bytes(const Checkpoint& parent) {
  const ModelConfig& c = parent.config();
  auto specs = c.layers();
  ModuleBytes m;
  m.per_expert.assign(specs.size(), 0);
  // Per layer and routed expert, its tensors' bytes; the largest expert is what one more
  // costs (a layer's experts share one shape, so they are all the same).
  std::vector<std::map<int, uint64_t>> expert(specs.size());
  std::vector<uint64_t> router_row(specs.size(), 0);
  for (const auto& t : canonical_tensors(c)) {
    const TensorView v = parent.view(parent.tensor(t.name));
    const uint64_t bytes = v.nbytes + t.name.size() + kHeaderBytesPerTensor;
    if (t.role == Role::Expert && t.expert < specs[size_t(t.layer)].num_routed()) {
      expert[size_t(t.layer)][t.expert] += bytes;
    } else if (t.role == Role::Router) {
      // One row per expert (the shared columns last): the routed rows go with their experts.
      const uint64_t row = v.nbytes / uint64_t(v.shape.at(0));
      router_row[size_t(t.layer)] += row;
      m.fixed += bytes - row * uint64_t(specs[size_t(t.layer)].num_routed());
    } else {
      m.fixed += bytes;
    }
  }
  for (size_t l = 0; l < specs.size(); ++l) {
    uint64_t largest = 0;
    for (const auto& [e, b] : expert[l]) largest = std::max(largest, b);
    m.per_expert[l] = specs[l].dense() ? 0 : largest + router_row[l];
  }
  return m;
}

uint64_t weight_file_bytes(const fs::path& dir) {
  uint64_t n = 0;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_regular_file() && e.path().extension() == ".safetensors") n += e.file_size();
  return n;
}

std::string write_extract(const Checkpoint& parent, const ExtractPlan& plan, const fs::path& dir,
                          const std::function<void(uint64_t)>& progress) {
  uint64_t done = 0;
  std::string hash = write_model(dir, plan.config, plan.tensors, write_options_like(parent),
                                 [&](const OutputTensor& t, const ByteSink& sink) {
    TensorView v = parent.view(plan.source.at(t.tensor.name));
    auto rows = plan.router_rows.find(t.tensor.name);
    if (rows == plan.router_rows.end()) {
      stream_view(v, t.dtype, sink);
    } else {
      for (int64_t r : rows->second) stream_view(v.slice0(r), t.dtype, sink);  // one router row per expert
    }
    done += v.nbytes;
    if (progress) progress(done);
  });
  copy_extra_files(parent, dir);
  return hash;
}

}  // namespace emo
