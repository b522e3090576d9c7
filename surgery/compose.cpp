#include "surgery/compose.h"

#include <algorithm>
#include <set>

#include "core/util/error.h"
#include "core/util/registry.h"

namespace emo {

const std::vector<ComposeRule>& compose_rules() {
  static const std::vector<ComposeRule> rules = {
      {"joint", "the experts with the largest weighted mean share over the tasks: maximises the weighted sum of the "
                "tasks' shares kept"},
      {"union", "each task's own best experts, the budget split by weight (D'Hondt; an expert two tasks want counts "
                "for both): every task keeps the head of its own module"},
  };
  return rules;
}

const ComposeRule& find_compose_rule(const std::string& name) {
  return find_entry(compose_rules(), name, "--compose", "rule");
}

namespace {

// A task's shares of layer `layer`'s routed score (always-active experts 0: kept anyway).
torch::Tensor task_share(const ModelConfig& c, const SelectionMethod& m, const TaskScores& t, int layer) {
  return normalised(routed_mass_scores(c.layers()[size_t(layer)], m.layer_scores(*t.stats, layer)));
}

ExpertSelection own_module(const ModelConfig& c, const Budget& b, const SelectionMethod& m, const TaskScores& t) {
  return keep_top_scored(c, b, [&](int l) { return m.layer_scores(*t.stats, l); });
}

// D'Hondt over the tasks' rankings: the next expert goes to the task with the largest
// weight / (length of its ranking's head already kept + 1).
void fill_union(std::set<int64_t>& kept, size_t want, const std::vector<std::vector<int64_t>>& rankings,
                const std::vector<double>& weights) {
  std::vector<size_t> head(rankings.size(), 0);
  while (kept.size() < want) {
    int best = -1;
    double best_q = -1;
    for (size_t i = 0; i < rankings.size(); ++i) {
      while (head[i] < rankings[i].size() && kept.count(rankings[i][head[i]])) ++head[i];
      if (head[i] == rankings[i].size()) continue;
      const double q = weights[i] / double(head[i] + 1);
      if (q > best_q) best = int(i), best_q = q;
    }
    if (best < 0) return;  // every ranking used up: the caller reports the shortfall
    kept.insert(rankings[size_t(best)][head[size_t(best)]]);
  }
}

double share_of(const torch::Tensor& share, const std::vector<int64_t>& ids) {
  double s = 0;
  for (int64_t e : ids) s += share[e].item<double>();
  return s;
}

}  // namespace

torch::Tensor joint_share(const ModelConfig& c, const SelectionMethod& m, const std::vector<TaskScores>& tasks, int layer) {
  torch::Tensor sum;
  double total = 0;
  for (const auto& t : tasks) {
    if (t.avoid) continue;
    auto s = t.weight * task_share(c, m, t, layer);
    sum = sum.defined() ? sum + s : s;
    total += t.weight;
  }
  return sum / total;
}

ExpertSelection compose_tasks(const ModelConfig& c, const Budget& b, const SelectionMethod& m,
                              const std::vector<TaskScores>& tasks, const std::string& rule) {
  find_compose_rule(rule);
  std::vector<ExpertSelection> avoided;
  for (const auto& t : tasks)
    if (t.avoid) avoided.push_back(own_module(c, b, m, t));
  ExpertSelection sel;
  auto specs = c.layers();
  for (int l = 0; l < int(specs.size()); ++l) {
    const LayerSpec& s = specs[size_t(l)];
    if (s.dense()) continue;
    std::set<int64_t> kept(s.always_active.begin(), s.always_active.end());
    std::set<int64_t> skip = kept;
    for (const auto& a : avoided)
      for (int64_t e : a.kept.at(l)) skip.insert(e);
    const size_t want = size_t(b.routed_keep(c, l));
    if (rule == "joint") {
      for (int64_t e : ranked_ids(joint_share(c, m, tasks, l), skip))
        if (kept.size() < want) kept.insert(e);
    } else {
      std::vector<std::vector<int64_t>> rankings;
      std::vector<double> weights;
      for (const auto& t : tasks)
        if (!t.avoid) rankings.push_back(ranked_ids(task_share(c, m, t, l), skip)), weights.push_back(t.weight);
      fill_union(kept, want, rankings, weights);
    }
    if (kept.size() < want)
      fail("--and-not", cat("layer ", l), "leaving out the avoided tasks' ", skip.size() - s.always_active.size(),
           " experts leaves ", kept.size(), " of the ", want, " the budget keeps; keep fewer");
    sel.kept[l] = std::vector<int64_t>(kept.begin(), kept.end());
  }
  return sel;
}

Json task_report(const ModelConfig& c, const Budget& b, const SelectionMethod& m, const std::vector<TaskScores>& tasks,
                 const ExpertSelection& sel) {
  Json out = Json::object();
  auto specs = c.layers();
  for (const auto& t : tasks) {
    ExpertSelection own = own_module(c, b, m, t);
    Json layers = Json::object();
    size_t common_all = 0, own_all = 0;
    double share_kept = 0, own_share = 0;
    int moe = 0;
    for (const auto& [l, ids] : sel.kept) {
      const auto& mine = own.kept.at(l);
      std::vector<int64_t> common;
      std::set_intersection(ids.begin(), ids.end(), mine.begin(), mine.end(), std::back_inserter(common));
      auto share = task_share(c, m, t, l);
      layers[std::to_string(l)] = {{"own_module_kept", double(common.size()) / double(mine.size())},
                                   {"share_kept", share_of(share, ids)}, {"own_share", share_of(share, mine)}};
      common_all += common.size(), own_all += mine.size();
      share_kept += share_of(share, ids), own_share += share_of(share, mine), ++moe;
    }
    out[t.name] = {{"weight", t.weight}, {"avoided", t.avoid},
                   {"own_module_kept", own_all ? double(common_all) / double(own_all) : 0.0},
                   {"share_kept", moe ? share_kept / moe : 0.0}, {"own_share", moe ? own_share / moe : 0.0},
                   {"layers", layers}};
  }
  return out;
}

}  // namespace emo
