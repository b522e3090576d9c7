#include "finetune/freeze.h"

#include <algorithm>

#include "core/util/error.h"

namespace emo {

const std::vector<std::string>& train_mode_names() {
  static const std::vector<std::string> names{"all", "routed", "routed_shared", "routed_shared_router", "non_moe"};
  return names;
}

TrainMode parse_train_mode(const std::string& name) {
  const auto& n = train_mode_names();
  for (size_t i = 0; i < n.size(); ++i)
    if (n[i] == name) return TrainMode(i);
  fail("--train", name, "unknown mode; expected one of all, routed, routed_shared, routed_shared_router, non_moe");
}

const char* train_mode_name(TrainMode m) { return train_mode_names()[size_t(m)].c_str(); }

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

}  // namespace

FreezePlan plan_freeze(ModelWeights& w, const ModelConfig& config, TrainMode mode, bool decay_all,
                       const ExpertSelection* only_experts) {
  if (only_experts && mode == TrainMode::NonMoe)
    fail("--train", train_mode_name(mode), "trains no expert: --train-experts needs a mode that trains routed experts");
  FreezePlan plan;
  const auto specs = config.layers();
  for (const NamedParam& p : named_params(w, config)) {
    torch::Tensor& t = *p.tensor;
    if (!t.defined()) continue;
    plan.total += t.numel();
    int64_t begin = 0, end = t.size(0);
    bool trains = false;
    const bool is_shared_mlp = is_shared_mlp_role(p.role);
    switch (mode) {
      case TrainMode::All: trains = true; break;
      case TrainMode::Routed:
        trains = p.role == Role::Expert;
        if (trains) end -= specs[size_t(p.layer)].num_shared_experts;  // EMO's shared experts are the last rows
        break;
      // Shared experts: EMO's router columns (in the expert stacks), or Qwen2-MoE's shared
      // MLP with its gate (the gate counts as shared, not as router).
      case TrainMode::RoutedShared: trains = p.role == Role::Expert || is_shared_mlp; break;
      case TrainMode::RoutedSharedRouter: trains = p.role == Role::Expert || is_shared_mlp || p.role == Role::Router; break;
      case TrainMode::NonMoe: trains = !is_moe_role(p.role); break;
    }
    if (trains && end <= begin) trains = false;
    t.set_requires_grad(trains);
    if (!trains) continue;
    bool is_bias = p.name.size() >= 5 && p.name.compare(p.name.size() - 5, 5, ".bias") == 0;
    bool decay = decay_all || !(p.is_norm() || p.role == Role::Embedding || is_bias);
    std::vector<std::pair<int64_t, int64_t>> rows{{begin, end}};
    if (only_experts && p.role == Role::Expert && only_experts->restricts(p.layer)) {
      rows = id_runs(only_experts->routed_kept(config, p.layer));
      // The shared rows (routed_shared and wider modes) still train: ESFT picks routed ones.
      const int64_t routed = specs[size_t(p.layer)].num_routed();
      if (end > routed) rows.push_back({routed, end});
    }
    for (const auto& [b, e] : rows) {
      // Slice names key the optimizer state in checkpoints: one per run of rows.
      std::string name = rows.size() == 1 && b == begin && e == end ? p.name : cat(p.name, "[", b, ":", e, "]");
      TrainSlice s{name, p.role, p.layer, p.tensor, b, e, decay};
      plan.trainable += s.numel();
      plan.slices.push_back(s);
    }
  }
  if (plan.slices.empty())
    fail("--train", train_mode_name(mode), "nothing to train in this model (no tensor of the roles this mode trains)");
  return plan;
}

}  // namespace emo
