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

}  // namespace emo
