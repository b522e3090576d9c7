// frequency: the experts most often among the tokens' top-k on the task examples.
#include "surgery/selection.h"

namespace emo {

namespace {
class Frequency : public SelectionMethod {
 public:
  std::string name() const override { return "frequency"; }
  std::string description() const override { return "most often in the tokens' top-k"; }
  std::string reference() const override { return "top-k selection counts (e.g. OLMoE's expert-usage analysis)"; }
  torch::Tensor layer_scores(const RouteStats& stats, int layer) const override {
    return stats.layers[size_t(layer)].select_count;
  }
  bool score_is_share() const override { return true; }
  ExpertSelection select(const SelectionInput& in) const override {
    return keep_top_scored(in.config, in.budget, [&](int l) { return layer_scores(*in.stats, l); });
  }
};
}  // namespace

std::unique_ptr<SelectionMethod> make_frequency() { return std::make_unique<Frequency>(); }

}  // namespace emo
