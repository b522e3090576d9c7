// The settings of emo pretrain that depend on the model's scale, as named sets: allenai/EMO's
// (the defaults) and what measured best for small models (issue 23). A flag given explicitly
// (--lb-weight, --pool-min, --lr, --schedule, --final-lr-ratio, --decay-ratio) wins over its scale.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "finetune/trainer.h"

namespace emo {

struct PretrainScale {
  const char* name;
  const char* description;
  const char* reference;
  double lb_weight;      // the load-balancing weight (per MoE layer, summed)
  int64_t pool_divisor;  // EMO's smallest document pool: max(routed top-k, ceil(R / pool_divisor))
  double lr;             // the peak learning rate
  Schedule schedule;     // after the warm-up
  double final_lr_ratio, decay_ratio;  // the end's rate over the peak; wsd: the fall's share of the steps
};

const std::vector<PretrainScale>& pretrain_scales();  // paper (the default), small
const PretrainScale& find_scale(const std::string& name, const std::string& flag = "--scale");
// Sets the scale's training settings on `t` (pools are read from the scale when resolved).
void apply_scale(const PretrainScale& scale, TrainOptions& t);

}  // namespace emo
