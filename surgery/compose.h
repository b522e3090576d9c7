// One module for several tasks: `emo select --data math=gsm8k.jsonl --data code=code.jsonl
// --weight math=2 --compose joint`, and `--and-not NAME` to leave out what a task needs
// most. Tasks are compared through shares: each task's method scores divided by the
// layer's routed total, so a task with more examples or larger scores weighs no more than
// its --weight says.
#pragma once

#include <string>
#include <vector>

#include "surgery/selection.h"

namespace emo {

struct TaskScores {
  std::string name;
  double weight = 1;
  const RouteStats* stats = nullptr;
  bool avoid = false;  // --and-not: the module leaves out this task's own module
};

// The rules, named and described once (--help, docs/surgery.md).
struct ComposeRule {
  std::string name;
  std::string description;
};
const std::vector<ComposeRule>& compose_rules();
const ComposeRule& find_compose_rule(const std::string& name);  // emo::Error listing the rules

// Layer `layer`'s routed experts' weighted mean share over the tasks that are not avoided:
// the joint score, and what a composed module's budget spreads by.
torch::Tensor joint_share(const ModelConfig& c, const SelectionMethod& m, const std::vector<TaskScores>& tasks, int layer);

// The composed module: per MoE layer, the budget's routed experts chosen by `rule` among
// those no avoided task's own module (same method and budget) keeps. emo::Error when the
// avoided experts leave fewer than the budget.
ExpertSelection compose_tasks(const ModelConfig& c, const Budget& b, const SelectionMethod& m,
                              const std::vector<TaskScores>& tasks, const std::string& rule);

// Per task: how much of its own module (same method and budget) `sel` keeps, per layer and
// over all layers, and the share of its routed score kept by `sel` and by its own module.
Json task_report(const ModelConfig& c, const Budget& b, const SelectionMethod& m, const std::vector<TaskScores>& tasks,
                 const ExpertSelection& sel);

}  // namespace emo
