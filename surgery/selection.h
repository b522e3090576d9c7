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
#include <set>
#include <string>
#include <vector>

#include "core/checkpoint/experts.h"
#include "surgery/route_stats.h"

namespace emo {

struct Budget;

// What a module's weight files take, as a function of its budget: `fixed` bytes every
// module of the parent writes (attention, embeddings, norms, shared experts, the router's
// shared rows) plus `per_expert[l]` for each routed expert layer l keeps (its projections
// and its router row). Safetensors headers are counted with an upper bound per tensor, so
// a module planned within a byte budget is within it on disk.
struct ModuleBytes {
  uint64_t fixed = 0;
  std::vector<uint64_t> per_expert;  // per layer; 0 for dense layers
  uint64_t of(const ModelConfig& c, const Budget& b) const;
};

// How --per-layer auto and --max-bytes spread experts over layers: by each layer's scores
// (any scale: shares of the layer's routed total are compared), named for the report;
// an empty `score` spreads nothing (one count per layer).
struct LayerSpread {
  std::function<torch::Tensor(int layer)> score;
  std::string by;
};

struct Budget {
  std::vector<int64_t> keep;  // per layer: experts kept incl. shared (0 for dense layers)

  static Budget uniform(const ModelConfig& c, int64_t keep);
  static Budget fraction(const ModelConfig& c, double fraction);  // K_l = round(f * E_l), at least shared + 1
  static Budget per_layer(const ModelConfig& c, const std::vector<int64_t>& keep);
  // ESFT's rule (--keep-mass P): per MoE layer, the fewest routed experts whose share of the
  // layer's score (always-active experts left out: kept anyway) reaches P, never below
  // `smallest`, so the module routes as many experts per token as the model. A family whose
  // config holds one expert count gets the largest layer's count everywhere (`padded` set),
  // which keeps at least P in every layer.
  static Budget mass(const ModelConfig& c, double p, const std::function<torch::Tensor(int layer)>& routed_score,
                     bool* padded = nullptr);
  // Every MoE layer's least: K = top_k (fewer where the layer has fewer), so the module
  // routes as many experts per token as the model (top_k counts shared columns). What
  // --keep-mass, --per-layer auto and --max-bytes never go below.
  static Budget smallest(const ModelConfig& c);
  // --per-layer auto: the same total as `given`, spread over layers from `smallest` by the
  // scores: each added expert is the one with the largest share of its layer's routed score
  // among those not yet kept, which maximises the sum over layers of the share kept. Refused
  // for families with one expert count, and when `given` is below the smallest budget.
  static Budget spread(const ModelConfig& c, const Budget& given, const LayerSpread& by);
  // --max-bytes: the largest module whose weight files fit in `max_bytes`. Spread by the
  // scores (largest share per byte first) where the family holds per-layer counts and
  // there are scores; else the largest count kept in every layer. Refused, stating the
  // smallest module's size, when even that does not fit.
  static Budget bytes(const ModelConfig& c, uint64_t max_bytes, const ModuleBytes& size, const LayerSpread& by,
                      bool* spread_used = nullptr);
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
  // Whether a budget (--keep, --keep-fraction, ...) sizes the module; a method without one
  // (explicit) is refused a budget, and its module's budget is what it kept.
  virtual bool uses_budget() const { return true; }
  // Layer `layer`'s expert scores from the statistics alone (any scale; higher is kept
  // first), where the method ranks by such a score: what budgets spread by and tasks
  // compose. Undefined else.
  virtual torch::Tensor layer_scores(const RouteStats&, int /*layer*/) const { return {}; }
  // Whether those scores measure the layer's routing as a quantity that sums (ESFT's gate
  // score and token ratio): what --keep-mass may sum.
  virtual bool score_is_share() const { return false; }
  virtual ExpertSelection select(const SelectionInput& in) const = 0;
};

const std::vector<std::unique_ptr<SelectionMethod>>& selection_methods();
const SelectionMethod& find_selection_method(const std::string& name);  // emo::Error listing the methods

// Expert ids of a float64 score vector by descending score, ties to the lower id, leaving
// out `skip`: the one order every selection and composition ranks by.
std::vector<int64_t> ranked_ids(const torch::Tensor& score, const std::set<int64_t>& skip = {});
// Keeps, in every MoE layer, the routed experts with the highest score (ties: lower id).
ExpertSelection keep_top_scored(const ModelConfig& c, const Budget& b,
                                const std::function<torch::Tensor(int layer)>& routed_score);
// The complement within the routed experts: everything except what `sel` keeps (--exclude),
// in the layers `sel` restricts.
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
