// emo extract: a standalone checkpoint of a module. Surgery never builds a Model: it
// computes a plan (for each output tensor, which parent tensor and which rows) from the
// config and the selection, then streams it through the writer one tensor at a time.
//
// The module keeps, per MoE layer, the selected routed experts renumbered 0..k-1 in
// their original order and the shared experts last; the router keeps the same rows;
// every non-MoE tensor is copied. Its config says so (num_experts or
// num_experts_per_layer, num_experts_per_tok = min(top_k, kept)), and records where
// every expert came from under "emo_module" so that merge can put it back.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/checkpoint/checkpoint.h"
#include "core/checkpoint/experts.h"
#include "core/checkpoint/module_info.h"
#include "surgery/selection.h"

namespace emo {

struct ExtractPlan {
  ModelConfig config;                      // the module's
  ModuleInfo info;
  std::vector<OutputTensor> tensors;       // module tensors with their dtypes
  std::map<std::string, std::string> source;          // module tensor -> parent tensor (same rows)
  std::map<std::string, std::vector<int64_t>> router_rows;  // module router -> parent rows
  int64_t module_top_k = 0;
  Json summary() const;                    // kept experts per layer, top-k, sizes
};

// The plan for keeping `selection` (routed experts; shared experts implied).
ExtractPlan plan_extract(const Checkpoint& parent, const ExpertSelection& selection, const std::string& parent_hash);

// What a module of `parent` writes, as a function of its budget (--max-bytes): every tensor
// in the parent's dtype, each safetensors header entry bounded by kHeaderBytesPerTensor
// beyond its name (the file's length prefix, metadata and padding included).
inline constexpr uint64_t kHeaderBytesPerTensor = 256;
ModuleBytes module_bytes(const Checkpoint& parent);

// The bytes of the weight files (*.safetensors) in `dir`: what --max-bytes bounds.
uint64_t weight_file_bytes(const fs::path& dir);

// Writes config, weights (layout and sharding like the parent) and the parent's other
// files into `dir`; returns the module's content hash.
std::string write_extract(const Checkpoint& parent, const ExtractPlan& plan, const fs::path& dir,
                          const std::function<void(uint64_t)>& progress = {});

}  // namespace emo
