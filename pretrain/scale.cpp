#include "pretrain/scale.h"

#include "core/util/registry.h"

namespace emo {

const std::vector<PretrainScale>& pretrain_scales() {
  static const std::vector<PretrainScale> scales = {
      {"paper", "allenai/EMO's settings for EMO-1b14b: load balancing 0.1, document pools from [max(k, R/16), R]",
       "arXiv 2605.06663; allenai/EMO", 0.1, 16},
      // Measured at 8.6M parameters (64 experts, top-4 with one shared) on 12.3M tokens: the
      // paper's settings leave EMO 10% behind a standard MoE per token, these 1.5-3.4% (two
      // seeds), with modules that keep their lead.
      {"small", "models of about 10M parameters on about 10M tokens: load balancing 0.01, pools from [max(k, R/8), R]",
       "docs/results/emo-tiny64.md", 0.01, 8},
  };
  return scales;
}

const PretrainScale& find_scale(const std::string& name, const std::string& flag) {
  return find_entry(pretrain_scales(), name, flag, "scale");
}

}  // namespace emo
