#include "pretrain/scale.h"

#include "core/util/registry.h"

namespace emo {

const std::vector<PretrainScale>& pretrain_scales() {
  static const std::vector<PretrainScale> scales = {
      // OLMo-core's CosWithWarmup ends at alpha_f = 0.1 of the peak.
      {"paper",
       "allenai/EMO's settings for EMO-1b14b: load balancing 0.1, document pools from [max(k, R/16), R], lr 4e-3 "
       "cosine to 0.1 of it",
       "arXiv 2605.06663; allenai/EMO", 0.1, 16, 4e-3, Schedule::Cosine, 0.1, 0.2},
      // Measured at 8.6M parameters (64 experts, top-4 with one shared) on 12.3M tokens: the
      // paper's settings leave EMO 10% behind a standard MoE per token; LB 0.01 and pools from
      // R/8 1.5-3.4% (two seeds); with allenai/EMO's own 64-expert schedule as well (WSD at
      // 2e-3, decaying to 0) 0.7-4.0% (three seeds, 1.9% on average; 0.5% scored in pools of
      // 32), with modules that keep their lead.
      {"small",
       "models of about 10M parameters on about 10M tokens: load balancing 0.01, pools from [max(k, R/8), R], lr "
       "2e-3 held, then falling to 0 over the last 20% of the steps (wsd)",
       "docs/results/emo-tiny64.md", 0.01, 8, 2e-3, Schedule::Wsd, 0.0, 0.2},
  };
  return scales;
}

const PretrainScale& find_scale(const std::string& name, const std::string& flag) {
  return find_entry(pretrain_scales(), name, flag, "scale");
}

void apply_scale(const PretrainScale& scale, TrainOptions& t) {
  t.lb_weight = scale.lb_weight;
  t.lr = scale.lr;
  t.schedule = scale.schedule;
  t.final_lr_ratio = scale.final_lr_ratio;
  t.decay_ratio = scale.decay_ratio;
}

}  // namespace emo
