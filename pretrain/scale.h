// The settings of emo pretrain that depend on the model's scale, as named sets: allenai/EMO's
// (the defaults) and what measured best for small models (issue 23). A flag given explicitly
// (--lb-weight, --pool-min) wins over its scale.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace emo {

struct PretrainScale {
  const char* name;
  const char* description;
  const char* reference;
  double lb_weight;      // the load-balancing weight (per MoE layer, summed)
  int64_t pool_divisor;  // EMO's smallest document pool: max(routed top-k, ceil(R / pool_divisor))
};

const std::vector<PretrainScale>& pretrain_scales();  // paper (the default), small
const PretrainScale& find_scale(const std::string& name, const std::string& flag = "--scale");

}  // namespace emo
