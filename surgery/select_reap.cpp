// reap: router-weighted expert activation, the mean over the tokens routed to an expert
// of gate weight x ||expert output|| (REAP, CerebrasResearch/reap). Experts no example
// token chose score 0.
#include "surgery/selection.h"

namespace emo {

namespace {
class Reap : public SelectionMethod {
 public:
  std::string name() const override { return "reap"; }
  std::string description() const override { return "mean gate x ||expert output|| over the tokens routed to the expert (REAP)"; }
  std::string reference() const override { return "CerebrasResearch/reap"; }
  torch::Tensor layer_scores(const RouteStats& stats, int layer) const override {
    const LayerStats& s = stats.layers[size_t(layer)];
    return s.reap_sum / s.select_count.to(torch::kFloat64).clamp_min(1);
  }
  ExpertSelection select(const SelectionInput& in) const override {
    return keep_top_scored(in.config, in.budget, [&](int l) { return layer_scores(*in.stats, l); });
  }
};
}  // namespace

std::unique_ptr<SelectionMethod> make_reap() { return std::make_unique<Reap>(); }

}  // namespace emo
