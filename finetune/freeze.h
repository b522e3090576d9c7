// What trains: EMO's freeze modes, named by what trains, each a set of the model's parts
// (core/checkpoint/parts.h); train_modes() lists them with their descriptions.
//
// A layer's experts are one stacked tensor (gate_up [E, 2I, H], down [E, H, I]) whose last
// num_shared_experts rows are the shared experts; "routed" trains rows [0, E - S) only.
// The optimizer sees *slices* (a tensor and a row range) and never touches anything
// outside them, so frozen bytes stay byte-identical and get no optimizer state.
#pragma once

#include <string>
#include <vector>

#include "core/checkpoint/experts.h"
#include "core/checkpoint/parts.h"
#include "core/model/weights.h"

namespace emo {

struct TrainMode {
  const char* name;
  const char* description;
  PartSet parts;  // what trains
};
const std::vector<TrainMode>& train_modes();
const TrainMode& find_train_mode(const std::string& name);  // emo::Error naming --train, listing the modes

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
FreezePlan plan_freeze(ModelWeights& weights, const ModelConfig& config, const TrainMode& mode, bool decay_all,
                       const ExpertSelection* only_experts = nullptr);

}  // namespace emo
