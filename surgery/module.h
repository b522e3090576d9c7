// Choosing a module, end to end: examples -> routing statistics -> a selection method
// under a budget -> the kept experts. Shared by `emo route`, `emo select`, `emo extract`,
// the budget sweep and recipes, so all of them choose identically.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "core/checkpoint/checkpoint.h"
#include "core/model/model.h"
#include "surgery/compose.h"
#include "surgery/examples.h"
#include "surgery/route_stats.h"
#include "surgery/selection.h"

namespace emo {

// What resolving a budget may need beyond the config, each only for the options that use it.
struct BudgetInputs {
  std::function<torch::Tensor(int layer)> mass_scores;  // --keep-mass sums these (the method's own)
  LayerSpread spread;                                   // --per-layer auto and --max-bytes spread by these
  const ModuleBytes* bytes = nullptr;                   // --max-bytes: the parent's sizes
};

struct BudgetRequest {
  std::optional<int64_t> keep;
  std::optional<double> keep_fraction;
  std::vector<int64_t> keep_per_layer;
  std::optional<double> keep_mass;      // ESFT's rule over the method's scores (Budget::mass)
  std::optional<uint64_t> max_bytes;    // the largest module whose weight files fit (Budget::bytes)
  bool per_layer_auto = false;          // spread --keep's or --keep-fraction's total by the scores
  // Exactly one of keep, keep_fraction, keep_per_layer, keep_mass, max_bytes; validated.
  // `notes` (when given) gets what the report should say about how the budget was made.
  Budget resolve(const ModelConfig& c, const BudgetInputs& in = {}, Json* notes = nullptr) const;
  bool given() const;  // any of them set
  Json to_json() const;
};

// The ways a module's size is given, each one flag of budget_fields() (surgery/
// request_fields.cpp); a request gives exactly one. A new way is a row here, its field row
// and its member of BudgetRequest.
struct BudgetKind {
  const char* name;         // the flag without "--": "keep"
  const char* value;        // how messages name its value: "K" (its help is the field row's)
  bool (*given)(const BudgetRequest&);
  // The budget, and into `notes` what the report should say about how it was made.
  Budget (*resolve)(const BudgetRequest&, const ModelConfig&, const BudgetInputs&, Json& notes);
};
const std::vector<BudgetKind>& budget_kinds();

struct ModuleRequest {
  std::string method = "router-prob";
  BudgetRequest budget;
  bool exclude = false;  // keep everything except the selection
  uint64_t seed = 0;
  std::string compose = "joint";  // how several tasks make one module (compose_rules())
};

// What selection needs besides the request: statistics (from a file or collected), and
// for the layer-wise method a model with its tokenized examples.
struct SelectionSources {
  const RouteStats* stats = nullptr;
  Model* model = nullptr;
  const TokenizedExamples* examples = nullptr;
  const ExpertSelection* listed = nullptr;  // --experts for the explicit method
  const ModuleBytes* bytes = nullptr;       // --max-bytes: the parent's sizes (module_bytes)
  // Several tasks (--data NAME=FILE ..., --and-not NAME): composed by the request's rule
  // instead of `stats`; empty for one task.
  std::vector<TaskScores> tasks;
  int64_t batch = 8;
  std::function<void(const std::string& what)> on_step;  // progress notes
};

struct ModuleChoice {
  ExpertSelection selection;
  Budget budget;
  Json report;  // per layer: kept ids and their normalised scores
};

ModuleChoice choose_module(const ModelConfig& config, const ModuleRequest& request, const SelectionSources& sources);

// Statistics collected for `model` (hash given) on examples, with the settings recorded.
RouteStats route_examples(Model& model, const std::string& model_hash, const Examples& examples,
                          const TokenizedExamples& tokens, const CollectOptions& options, const Json& settings);

// The examples of a request, read and tokenized for `model` (cut to max_length or the
// model's context: `tokens.truncated` says how many were). emo::Error when there are none.
struct RoutedExamples {
  Examples examples;
  TokenizedExamples tokens;
};
RoutedExamples read_routed_examples(const ExampleRequest& request, const Model& model, const Tokenizer& tokenizer);
// Statistics of the examples, with the request's settings recorded (`restricted`: collected
// under a routing restriction).
RouteStats route_example_request(Model& model, const std::string& model_hash, const RoutedExamples& examples,
                                 const ExampleRequest& request, const CollectOptions& options);

// Refuses statistics made on another model (by its hash) or of another shape.
void check_stats_model(const RouteStats& stats, const std::string& model_hash, const ModelConfig& config,
                       const std::string& stats_path);

}  // namespace emo
