// A KV cache over a batch of rows that grows by right-padded token rows, branches from one
// row to many, and picks rows: what lets a prefix shared by many requests (few-shot
// exemplars, a question with several answer choices) run once.
//
// Padding may sit in the middle of a row (a short level-1 row followed by level-2 tokens):
// padded keys are masked out and position ids count only real tokens (the model derives
// them from the cumulative key mask), so every row computes what it would alone.
#pragma once

#include <torch/torch.h>

#include <vector>

#include "core/model/model.h"

namespace emo {

class PrefixCache {
 public:
  PrefixCache(Model& model, const RoutingControl* routing);

  // Appends `ids` to a cache of at most one row (an empty cache becomes one row).
  void extend_one(const std::vector<int64_t>& ids);
  // Appends one right-padded row per cache row (rows.size() must equal rows(), or the
  // cache must be empty). Returns the final hidden states [B, T, H] (T = longest row;
  // undefined when every row is empty, and then nothing changes).
  torch::Tensor extend(const std::vector<std::vector<int64_t>>& rows, int64_t pad_id);
  // Decoding: one token per row; `active` false masks the row's new key out.
  torch::Tensor step(const std::vector<int64_t>& tokens, const std::vector<bool>& active);

  // The same prefix for `rows` rows (from a cache of one row, or an empty one).
  PrefixCache expand(int64_t rows) const;
  // Row `index[i]` of this cache as row i of the result.
  PrefixCache select(const std::vector<int64_t>& index) const;

  int64_t rows() const { return rows_; }
  int64_t length() const { return cache_.length(); }  // physical length, padding included

 private:
  Model* model_;
  const RoutingControl* routing_;
  KVCache cache_;
  int64_t rows_ = 0;
};

// Length of the longest common prefix of the sequences (0 for none).
size_t common_prefix_length(const std::vector<const std::vector<int64_t>*>& seqs);

}  // namespace emo
