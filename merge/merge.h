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
#include "core/checkpoint/parts.h"
#include "core/util/fields.h"
#include "merge/modes.h"

namespace emo {

struct MergeOptions {
  std::string mode = "replace";
  double alpha = 0.5;
  // What the modules bring back (core/checkpoint/parts.h): their routed experts unless
  // asked otherwise. Router rows are those of the carried experts; shared experts are
  // EMO's shared columns (with the router, their rows too) or Qwen2-MoE's shared MLP and gate.
  PartSet carry{Part::RoutedExperts};
  Overlap overlap = Overlap::Error;         // an expert or router row carried by several modules
  Overlap non_moe_rule = Overlap::Average;  // a non-MoE tensor carried by several modules
  bool force = false;  // accept modules of another base (recorded)
  // The rule for a piece of `part` carried by several modules.
  Overlap rule_for(Part part) const { return PartSet::non_moe().has(part) ? non_moe_rule : overlap; }
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

// emo merge as one call (mergekit's run_merge(config, out_path, options)): opens the base
// and the modules, checks everything before writing, and writes OUT atomically: the merged
// weights in the base's layout, sharding and dtype, its tokenizer files, provenance.yaml
// (base and module hashes, settings, per-layer changes) and README.md. Throws emo::Error
// (no partial output) when the modules do not belong to the base, overlap without a rule,
// or the base's weights no longer match its provenance (unless options.force).
struct MergeRequest {
  fs::path base, out;
  std::vector<fs::path> modules;
  MergeOptions options;
  bool overwrite = false;                 // replace OUT if it exists
  std::vector<std::string> command_line;  // recorded in provenance ({"emo", "merge", ...})
  bool strict = false;                    // the caller fails when the merge changed nothing (after writing OUT)
};
// The request's fields: `emo merge`'s flags and a recipe merge step's settings.
const RequestSpec<MergeRequest>& merge_request_spec();

struct MergeResult {
  fs::path out;
  std::string content_hash, base_hash;
  MergeReport report;
  Json to_json() const;
};

MergeResult run_merge(const MergeRequest& request,
                      const std::function<void(uint64_t done, uint64_t total)>& progress = {});

}  // namespace emo
