// How many examples are enough: `emo select --stability` routes the first 1, 2, 4, 8, ...
// examples, chooses the module at each size (same method and budget), and compares each
// selection with the previous size's by Jaccard similarity |A and B| / |A or B| of the kept
// routed experts, per layer and pooled over layers. It stops once the pooled similarity has
// reached the threshold at `patience` successive sizes (a module that no longer changes; 1
// by default, more where an agreement between two small sizes may be chance), or when the
// examples run out.
#pragma once

#include <limits>
#include <map>
#include <vector>

#include "surgery/module.h"

namespace emo {

struct StabilityPoint {
  int64_t examples = 0, tokens = 0;
  ModuleChoice choice;
  // Against the previous size; absent (NaN, empty) at the first.
  double jaccard = std::numeric_limits<double>::quiet_NaN();
  std::map<int, double> jaccard_per_layer;
};

struct StabilityCurve {
  double threshold = 0.9;
  int patience = 1;
  bool reached = false;  // stopped because the pooled similarity reached the threshold
  std::vector<StabilityPoint> points;
  Json to_json() const;  // without the selections: sizes, tokens and similarities
};

// Pooled over layers: sum of intersections / sum of unions (1 when both keep nothing).
double jaccard(const ExpertSelection& a, const ExpertSelection& b, std::map<int, double>* per_layer = nullptr);

// Each size's statistics add the newly routed examples to the previous size's (each example
// routed once). `on_size` reports each size as it is done.
StabilityCurve stability_curve(Model& model, const TokenizedExamples& examples, const ModuleRequest& request,
                               const SelectionSources& base, double threshold, int patience, const CollectOptions& collect,
                               const std::function<void(const StabilityPoint&)>& on_size = {});

}  // namespace emo
