// emo diff: two checkpoints tensor by tensor, in canonical per-expert form (so the layout
// and sharding do not matter): identical bytes, or the largest absolute difference and
// the relative change of the norm; tensors missing on either side.
#pragma once

#include <string>
#include <vector>

#include "core/checkpoint/checkpoint.h"

namespace emo {

struct TensorDiff {
  std::string name;
  std::string status;  // identical, different, only_in_a, only_in_b, shape, dtype
  double max_abs = 0;
  double relative_change = 0;  // ||b - a|| / ||a||
};

struct DiffReport {
  std::vector<TensorDiff> tensors;
  size_t identical = 0, different = 0, only_a = 0, only_b = 0, incompatible = 0;
  bool all_identical() const { return different == 0 && only_a == 0 && only_b == 0 && incompatible == 0; }
  Json to_json(bool list_identical) const;
};

DiffReport diff_checkpoints(const Checkpoint& a, const Checkpoint& b);

}  // namespace emo
