// What trains: EMO's freeze modes, named by what trains, resolved by tensor Role.
//
//   all                   every parameter
//   routed                only the routed expert MLPs (the shared experts, router,
//                         attention, norms, embeddings, head stay frozen)
//   routed_shared         routed + shared expert MLPs (Qwen2-MoE: its shared expert and the
//                         shared_expert_gate)
//   routed_shared_router  routed + shared expert MLPs + the router
//   non_moe               attention, norms, embeddings and head (and dense MLP layers):
//                         everything but the MoE blocks
//
// A layer's experts are one stacked tensor (gate_up [E, 2I, H], down [E, H, I]) whose last
// num_shared_experts rows are the shared experts; "routed" trains rows [0, E - S) only.
// The optimizer sees *slices* (a tensor and a row range) and never touches anything
// outside them, so frozen bytes stay byte-identical and get no optimizer state.
#pragma once

#include <string>
#include <vector>

#include "core/checkpoint/experts.h"
#include "core/model/weights.h"

namespace emo {

enum class TrainMode { All, Routed, RoutedShared, RoutedSharedRouter, NonMoe };
TrainMode parse_train_mode(const std::string& name);  // emo::Error listing the modes
const char* train_mode_name(TrainMode m);
const std::vector<std::string>& train_mode_names();

// A trainable part of one parameter: rows [row_begin, row_end) along dim 0.
struct TrainSlice {
  std::string name;  // NamedParam name (stacked experts: "...mlp.experts.gate_up")
  Role role;
  int layer = -1;
  torch::Tensor* param = nullptr;
  int64_t row_begin = 0, row_end = 0;
  bool decay = true;  // AdamW weight decay applies
  bool whole() const { return row_begin == 0 && row_end == param->size(0); }
  int64_t numel() const;
  torch::Tensor value() const;  // a view of the trainable rows
  torch::Tensor grad() const;   // the same rows of param->grad() (undefined if none)
};

struct FreezePlan {
  std::vector<TrainSlice> slices;
  int64_t trainable = 0, total = 0;  // elements
  Json summary() const;
};

// Decides what trains. Sets requires_grad on every parameter (true when any of its rows
// trains). Weight decay: none on norms, embeddings and biases unless decay_all.
// `only_experts` (ESFT, expert-specialised fine-tuning: Wang et al. 2024): of the routed
// experts the mode trains, only these, one slice per run of consecutive ids, inside the
// full model; a layer it does not list trains all of them.
FreezePlan plan_freeze(ModelWeights& weights, const ModelConfig& config, TrainMode mode, bool decay_all,
                       const ExpertSelection* only_experts = nullptr);

}  // namespace emo
