// emo extract as one call: choose a module (listed experts, statistics from a file, or
// examples routed through the model) and write it as a standalone checkpoint. The entry
// point owns OUT (atomic), its provenance.yaml and README.md; emo extract's flags and a
// recipe extract step's settings are extract_request_spec()'s rows.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "core/io/json.h"
#include "core/util/fields.h"
#include "core/util/fs.h"
#include "surgery/module.h"

namespace emo {

struct ExtractRequest {
  fs::path model, out;
  ExampleRequest examples;  // routed when the method needs statistics (and no --stats) or a forward pass
  fs::path stats;           // statistics from `emo route` instead of examples
  fs::path experts;         // keep exactly these (method explicit)
  std::string method;       // "": router-prob, or explicit with --experts
  BudgetRequest budget;
  bool exclude = false;
  uint64_t seed = 0;
  fs::path tokenizer;  // "": the model's
  std::string device = "auto";
  bool overwrite = false;      // replace OUT if it exists
  bool verify_parent = false;  // recompute the parent's content hash instead of trusting its provenance
  std::vector<std::string> command_line;  // recorded in provenance
  std::string method_name() const;        // the method that runs
};

struct ExtractResult {
  fs::path out;
  std::string content_hash, parent_hash;
  Json module;  // ExtractPlan::summary()
  uint64_t weight_bytes = 0;
  Json to_json() const;
};

// progress(stage, done, total): "route" in tokens, then "extract" in bytes (total 0: unknown).
using StageProgress = std::function<void(const std::string& stage, uint64_t done, uint64_t total)>;
ExtractResult run_extract(const ExtractRequest& request, const StageProgress& progress = {});

const RequestSpec<ExtractRequest>& extract_request_spec();

}  // namespace emo
