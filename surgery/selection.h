// Expert selection: which routed experts of each layer a module keeps. One small
// interface; each method is one file, registered by name with a one-line description
// and the paper or repository it follows (`emo select --method help` lists them).
//
// Budgets count experts as EMO's pruning does: keep K includes the shared experts
// (keep 16 with one shared = 15 routed + the shared one), shared experts are always
// kept, and the module's num_experts_per_tok becomes min(top_k, K). Per-layer budgets
// are allowed when every layer keeps at least top_k (top_k is one config value).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/checkpoint/experts.h"
#include "surgery/route_stats.h"

namespace emo {

struct Budget {
  std::vector<int64_t> keep;  // per layer: experts kept incl. shared (0 for dense layers)

  static Budget uniform(const ModelConfig& c, int64_t keep);
  static Budget fraction(const ModelConfig& c, double fraction);  // K_l = round(f * E_l), at least shared + 1
  static Budget per_layer(const ModelConfig& c, const std::vector<int64_t>& keep);
  // ESFT's rule (--keep-mass P): per MoE layer, the fewest routed experts whose share of the
  // layer's score (always-active experts left out: kept anyway) reaches P, never fewer than
  // top_k, so the module routes as many experts per token as the model. A family whose
  // config holds one expert count gets the largest layer's count everywhere (`padded` set),
  // which keeps at least P in every layer.
  static Budget mass(const ModelConfig& c, double p, const std::function<torch::Tensor(int layer)>& routed_score,
                     bool* padded = nullptr);
  // Every MoE layer keeps at least one routed expert and at most all; a budget below
  // top_k must be the same in every layer. emo::Error naming the layer otherwise.
  void validate(const ModelConfig& c) const;
  int64_t module_top_k(const ModelConfig& c) const;  // min(top_k, smallest K)
  // Layers keeping between `smallest` and `largest` experts: emo::Error under `flag` when the
  // family's config has one expert count for all layers (every family but EMO).
  static void check_expressible(const ModelConfig& c, int64_t smallest, int64_t largest, const std::string& flag);
  int64_t routed_keep(const ModelConfig& c, int layer) const;
  Json to_json() const;
};

struct SelectionInput {
  const ModelConfig& config;
  const Budget& budget;
  const RouteStats* stats = nullptr;   // statistics on the task examples
  uint64_t seed = 0;
  // Statistics of layer `layer` with the layers before it restricted to `kept` (the
  // layer-wise method's forward passes).
  std::function<RouteStats(int layer, const ExpertSelection& kept)> restricted_stats;
  const ExpertSelection* listed = nullptr;  // explicit method: the --experts file
};

class SelectionMethod {
 public:
  virtual ~SelectionMethod() = default;
  virtual std::string name() const = 0;
  virtual std::string description() const = 0;
  virtual std::string reference() const = 0;
  virtual bool needs_stats() const { return true; }
  virtual bool needs_forward() const { return false; }  // runs its own forward passes
  // Layer `layer`'s expert scores from the statistics alone (any scale; higher is kept
  // first), where the method ranks by such a score: what --keep-mass sums. Undefined else.
  virtual torch::Tensor layer_scores(const RouteStats&, int /*layer*/) const { return {}; }
  virtual ExpertSelection select(const SelectionInput& in) const = 0;
};

const std::vector<std::unique_ptr<SelectionMethod>>& selection_methods();
const SelectionMethod& find_selection_method(const std::string& name);  // emo::Error listing the methods

// Keeps, in every MoE layer, the routed experts with the highest score (ties: lower id).
ExpertSelection keep_top_scored(const ModelConfig& c, const Budget& b,
                                const std::function<torch::Tensor(int layer)>& routed_score);
// The complement within the routed experts: everything except what `sel` keeps (--exclude).
ExpertSelection complement(const ExpertSelection& sel, const ModelConfig& c);
// Layer `s`'s routed experts' scores as float64 with the always-active ones set to 0: what
// --keep-mass sums (those experts are kept anyway) and reports the share of.
torch::Tensor routed_mass_scores(const LayerSpec& s, const torch::Tensor& score);
// Per-layer scores normalised across the layer's experts (sum 1), for reports.
torch::Tensor normalised(const torch::Tensor& score);

// Method constructors (one file each).
std::unique_ptr<SelectionMethod> make_router_prob();
std::unique_ptr<SelectionMethod> make_layerwise_greedy();
std::unique_ptr<SelectionMethod> make_easy_ep();
std::unique_ptr<SelectionMethod> make_reap();
std::unique_ptr<SelectionMethod> make_frequency();
std::unique_ptr<SelectionMethod> make_random();
std::unique_ptr<SelectionMethod> make_explicit();

}  // namespace emo
