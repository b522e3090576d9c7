// easy-ep: per expert, the sum over tokens routed to it of gate weight x ||expert
// output|| x (1 - cos(h, h + moe output)): experts whose outputs are large and turn the
// hidden state. allenai/EMO src/hf_training/easy_ep_prune.py (after EASY-EP).
#include "surgery/selection.h"

namespace emo {

namespace {
class EasyEp : public SelectionMethod {
 public:
  std::string name() const override { return "easy-ep"; }
  std::string description() const override { return "sum of gate x ||expert output|| x (1 - cos(h, h + moe)) (EASY-EP)"; }
  std::string reference() const override { return "allenai/EMO src/hf_training/easy_ep_prune.py"; }
  torch::Tensor layer_scores(const RouteStats& stats, int layer) const override {
    return stats.layers[size_t(layer)].easy_ep;
  }
  ExpertSelection select(const SelectionInput& in) const override {
    return keep_top_scored(in.config, in.budget, [&](int l) { return layer_scores(*in.stats, l); });
  }
};
}  // namespace

std::unique_ptr<SelectionMethod> make_easy_ep() { return std::make_unique<EasyEp>(); }

}  // namespace emo
