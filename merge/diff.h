// emo diff: two checkpoints tensor by tensor, in canonical per-expert form (so the layout
// and sharding do not matter): identical bytes, or the largest absolute difference and
// the relative change of the norm; tensors missing on either side; and per part of the
// model (core/checkpoint/parts.h) how many tensors changed.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "core/checkpoint/checkpoint.h"
#include "core/checkpoint/parts.h"

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
  struct PartCounts {
    size_t tensors = 0, changed = 0;  // changed: different, of another shape or dtype, or on one side only
  };
  std::map<Part, PartCounts> parts;  // the parts present in either checkpoint
  PartSet changed_parts() const;
  bool all_identical() const { return different == 0 && only_a == 0 && only_b == 0 && incompatible == 0; }
  Json to_json(bool list_identical) const;
};

DiffReport diff_checkpoints(const Checkpoint& a, const Checkpoint& b);

}  // namespace emo
