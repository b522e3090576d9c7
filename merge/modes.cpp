#include "merge/modes.h"

#include <cstring>

#include "core/util/error.h"
#include "core/util/registry.h"

namespace emo {

namespace {

// replace: the module's values (allenai/EMO src/hf_training/merge_pruned_experts_back.py).
void replace(const float* base, const float* module, float* out, size_t n, double) {
  (void)base;
  std::memcpy(out, module, n * sizeof(float));
}

// average: linear interpolation (1 - alpha) * base + alpha * module (model soups /
// mergekit's "linear"), in float32.
void average(const float* base, const float* module, float* out, size_t n, double alpha) {
  const float a = float(alpha), b = float(1.0 - alpha);
  for (size_t i = 0; i < n; ++i) out[i] = b * base[i] + a * module[i];
}

}  // namespace

const std::vector<MergeMode>& merge_modes() {
  static const std::vector<MergeMode> all = {
      {"replace", "the module's tensors replace the base's", "allenai/EMO src/hf_training/merge_pruned_experts_back.py",
       replace, false},
      {"average", "(1 - alpha) * base + alpha * module, in float32", "linear merge (model soups; mergekit 'linear')",
       average, true},
  };
  return all;
}

const MergeMode& find_merge_mode(const std::string& name) { return find_entry(merge_modes(), name, "--mode", "merge mode"); }

const std::vector<OverlapRule>& overlap_rules() {
  static const std::vector<OverlapRule> all = {
      {Overlap::Error, "error", "refuse to merge (before writing anything)"},
      {Overlap::Average, "average", "the modules' values averaged, then merged as one"},
      {Overlap::First, "first", "the module listed first wins"},
  };
  return all;
}

const OverlapRule& find_overlap_rule(const std::string& name, const std::string& flag) {
  return find_entry(overlap_rules(), name, flag, "rule");
}

const char* overlap_name(Overlap o) { return overlap_rules()[size_t(o)].name; }

}  // namespace emo
