// Merge modes: how a module's tensor and the base's tensor become the merged tensor.
// Each is small and named, with the reference it follows; values are blended in float32
// and rounded once to the storage dtype.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace emo {

struct MergeMode {
  std::string name, description, reference;
  // out[i] = blend(base[i], module[i]); `alpha` is the module's weight where it applies.
  void (*blend)(const float* base, const float* module, float* out, size_t n, double alpha);
  bool uses_alpha;
};

const std::vector<MergeMode>& merge_modes();
const MergeMode& find_merge_mode(const std::string& name);  // emo::Error listing the modes

// What happens when several modules carry the same piece (an expert, a router row, a
// non-MoE tensor).
enum class Overlap { Error, Average, First };
struct OverlapRule {
  Overlap rule;
  const char* name;
  const char* description;
};
const std::vector<OverlapRule>& overlap_rules();  // in enum order
const OverlapRule& find_overlap_rule(const std::string& name, const std::string& flag);  // emo::Error naming flag
const char* overlap_name(Overlap o);

}  // namespace emo
