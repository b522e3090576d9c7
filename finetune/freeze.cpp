#include "finetune/freeze.h"

#include <algorithm>

#include "core/util/error.h"
#include "core/util/registry.h"

namespace emo {

const std::vector<TrainMode>& train_modes() {
  static const std::vector<TrainMode> modes{
      {"all", "every parameter", PartSet::every()},
      {"routed", "only the routed experts (shared experts, router, attention, norms, embeddings, head frozen)",
       {Part::RoutedExperts}},
      {"routed_shared", "routed + shared experts (Qwen2-MoE: its shared expert and shared_expert_gate)",
       {Part::RoutedExperts, Part::SharedExperts}},
      {"routed_shared_router", "routed + shared experts + the router",
       {Part::RoutedExperts, Part::SharedExperts, Part::Router}},
      {"non_moe", "attention, norms, embeddings, head and dense MLPs: everything but the MoE blocks",
       PartSet::non_moe()},
  };
  return modes;
}

const TrainMode& find_train_mode(const std::string& name) { return find_entry(train_modes(), name, "--train", "mode"); }

int64_t TrainSlice::numel() const { return param->numel() / param->size(0) * (row_end - row_begin); }

torch::Tensor TrainSlice::value() const { return whole() ? *param : param->narrow(0, row_begin, row_end - row_begin); }

torch::Tensor TrainSlice::grad() const {
  const torch::Tensor& g = param->grad();
  if (!g.defined()) return g;
  return whole() ? g : g.narrow(0, row_begin, row_end - row_begin);
}

Json FreezePlan::summary() const {
  Json j = {{"trainable_elements", trainable}, {"total_elements", total}, {"tensors", Json::array()}};
  for (const auto& s : slices) {
    Json t = {{"name", s.name}, {"role", role_name(s.role)}, {"decay", s.decay}};
    if (!s.whole()) t["rows"] = {s.row_begin, s.row_end};
    j["tensors"].push_back(t);
  }
  return j;
}

namespace {

// [begin, end) row ranges of consecutive ids, ids sorted.
std::vector<std::pair<int64_t, int64_t>> id_runs(std::vector<int64_t> ids) {
  std::sort(ids.begin(), ids.end());
  std::vector<std::pair<int64_t, int64_t>> runs;
  for (int64_t id : ids) {
    if (!runs.empty() && runs.back().second == id) ++runs.back().second;
    else runs.push_back({id, id + 1});
  }
  return runs;
}

// The row ranges of one parameter that belong to the parts that train, adjacent ones joined
// (routed then shared expert rows make one range).
std::vector<std::pair<int64_t, int64_t>> training_rows(const NamedParam& p, const LayerSpec& spec, PartSet parts) {
  std::vector<std::pair<int64_t, int64_t>> rows;
  for (const PartRows& r : part_rows(p.role, p.tensor->size(0), spec)) {
    if (!parts.has(r.part)) continue;
    if (!rows.empty() && rows.back().second == r.begin) rows.back().second = r.end;
    else rows.push_back({r.begin, r.end});
  }
  return rows;
}

// ESFT: of a layer's stacked experts, only the listed routed ones (one range per run of
// consecutive ids) and, when the mode trains them, the shared rows.
std::vector<std::pair<int64_t, int64_t>> esft_rows(const ModelConfig& config, int layer, const LayerSpec& spec,
                                                   PartSet parts, const ExpertSelection& only) {
  std::vector<std::pair<int64_t, int64_t>> rows = id_runs(only.routed_kept(config, layer));
  if (parts.has(Part::SharedExperts) && spec.num_shared_experts > 0) rows.push_back({spec.num_routed(), spec.num_experts});
  return rows;
}

}  // namespace

FreezePlan plan_freeze(ModelWeights& w, const ModelConfig& config, const TrainMode& mode, bool decay_all,
                       const ExpertSelection* only_experts) {
  if (only_experts && !mode.parts.has(Part::RoutedExperts))
    fail("--train", mode.name, "trains no routed expert: --train-experts needs a mode that does");
  FreezePlan plan;
  const auto specs = config.layers();
  for (const NamedParam& p : named_params(w, config)) {
    torch::Tensor& t = *p.tensor;
    if (!t.defined()) continue;
    plan.total += t.numel();
    const LayerSpec spec = p.layer >= 0 ? specs[size_t(p.layer)] : LayerSpec{};
    std::vector<std::pair<int64_t, int64_t>> whole = training_rows(p, spec, mode.parts), rows = whole;
    if (only_experts && p.role == Role::Expert && only_experts->restricts(p.layer))
      rows = esft_rows(config, p.layer, spec, mode.parts, *only_experts);
    t.set_requires_grad(!rows.empty());
    if (rows.empty()) continue;
    bool is_bias = p.name.size() >= 5 && p.name.compare(p.name.size() - 5, 5, ".bias") == 0;
    bool decay = decay_all || !(p.is_norm() || p.role == Role::Embedding || is_bias);
    for (const auto& [b, e] : rows) {
      // Slice names key the optimizer state in checkpoints: one per run of rows, the plain
      // name when the rows are all the mode trains of this tensor.
      std::string name = rows == whole && rows.size() == 1 ? p.name : cat(p.name, "[", b, ":", e, "]");
      TrainSlice s{name, p.role, p.layer, p.tensor, b, e, decay};
      plan.trainable += s.numel();
      plan.slices.push_back(s);
    }
  }
  if (plan.slices.empty())
    fail("--train", mode.name, "nothing to train in this model (no tensor of the parts this mode trains: ",
         mode.parts.str(), ")");
  return plan;
}

}  // namespace emo
