// emo merge: write retrained modules back into the full model.
//
// A module knows where its experts came from (config.json "emo_module": the parent's
// content hash and, per layer, the parent's router index of each module expert; or the
// same relative to the root full model). Merge refuses a module whose parent (or root)
// is not this base, maps each module expert back to its base index, checks every shape
// before writing, and streams the base through the writer one tensor at a time, taking
// the carried tensors (or rows, for the router) from the modules.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "core/checkpoint/checkpoint.h"
#include "merge/modes.h"

namespace emo {

struct MergeCarry {
  bool routed = true;      // the module's routed experts (default)
  bool router_rows = false;  // the router rows of the carried experts
  bool shared = false;     // the shared experts: EMO's shared columns (with router_rows, their rows too),
                           // Qwen2-MoE's shared expert MLP and its gate
  bool non_moe = false;    // attention, norms, embeddings, lm_head
  Json to_json() const;
};

struct MergeOptions {
  std::string mode = "replace";
  double alpha = 0.5;
  MergeCarry carry;
  std::string overlap = "error";  // routed experts in several modules: error, average, first
  std::string non_moe_rule = "average";  // several modules carrying non-MoE tensors: average, error
  bool force = false;  // accept modules of another base (recorded)
};

struct ModuleSource {
  const Checkpoint* checkpoint;
  std::string hash;
  std::string relation;  // "parent" or "root": which of the module's maps applies
  std::map<int, std::vector<int64_t>> to_base;  // layer -> base expert index of each module expert
};

struct MergeReport {
  Json layers = Json::object();  // per layer: experts replaced, relative change
  double relative_change = 0;    // ||merged - base|| / ||base|| over the tensors merge touched
  uint64_t tensors_changed = 0;
  bool changed() const { return tensors_changed > 0; }
  std::string verified_base_hash;  // the base's content hash, computed while streaming
};

// Resolves how each module maps onto the base; refuses foreign modules unless force.
std::vector<ModuleSource> resolve_modules(const Checkpoint& base, const std::string& base_hash,
                                          const std::vector<const Checkpoint*>& modules,
                                          const std::vector<std::string>& module_hashes, const MergeOptions& options);

// Writes the merged model into `dir`. Returns the merged content hash; `report` says what
// changed. Throws before writing anything if shapes disagree or modules overlap.
std::string write_merge(const Checkpoint& base, const std::vector<ModuleSource>& modules, const MergeOptions& options,
                        const fs::path& dir, MergeReport& report, const std::function<void(uint64_t)>& progress = {});

}  // namespace emo
