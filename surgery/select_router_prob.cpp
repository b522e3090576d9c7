// router-prob: the experts with the highest mean router probability on the task
// examples, per layer. EMO's default pruning (allenai/EMO src/hf_training/
// compute_router_activations.py + prune_hf_model.py).
#include "surgery/selection.h"

namespace emo {

namespace {
class RouterProb : public SelectionMethod {
 public:
  std::string name() const override { return "router-prob"; }
  std::string description() const override { return "highest mean router probability per layer (EMO's default)"; }
  std::string reference() const override { return "allenai/EMO src/hf_training/prune_hf_model.py"; }
  torch::Tensor layer_scores(const RouteStats& stats, int layer) const override { return stats.mean_prob(layer); }
  bool score_is_share() const override { return true; }
  ExpertSelection select(const SelectionInput& in) const override {
    return keep_top_scored(in.config, in.budget, [&](int l) { return layer_scores(*in.stats, l); });
  }
};
}  // namespace

std::unique_ptr<SelectionMethod> make_router_prob() { return std::make_unique<RouterProb>(); }

}  // namespace emo
