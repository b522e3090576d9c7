#include "eval/prefix_cache.h"

#include <algorithm>

#include "core/util/error.h"

namespace emo {

size_t common_prefix_length(const std::vector<const std::vector<int64_t>*>& seqs) {
  if (seqs.empty()) return 0;
  size_t n = seqs[0]->size();
  for (size_t i = 1; i < seqs.size(); ++i) {
    const auto& a = *seqs[0];
    const auto& b = *seqs[i];
    size_t k = 0, m = std::min(n, b.size());
    while (k < m && a[k] == b[k]) ++k;
    n = k;
  }
  return n;
}

PrefixCache::PrefixCache(Model& model, const RoutingControl* routing) : model_(&model), routing_(routing) {}

void PrefixCache::extend_one(const std::vector<int64_t>& ids) {
  if (rows_ > 1) fail("prefix cache", "rows", "extend_one on a cache of ", rows_, " rows");
  if (rows_ == 0) rows_ = 1;
  extend({ids}, 0);
}

torch::Tensor PrefixCache::extend(const std::vector<std::vector<int64_t>>& rows, int64_t pad_id) {
  if (rows_ == 0 && length() == 0) rows_ = int64_t(rows.size());
  if (int64_t(rows.size()) != rows_) fail("prefix cache", "rows", "got ", rows.size(), " rows for a cache of ", rows_);
  size_t T = 0;
  for (const auto& r : rows) T = std::max(T, r.size());
  if (T == 0) return {};
  auto ids = torch::full({rows_, int64_t(T)}, pad_id, torch::kInt64);
  auto mask = torch::zeros({rows_, int64_t(T)}, torch::kInt64);
  auto ia = ids.accessor<int64_t, 2>();
  auto ma = mask.accessor<int64_t, 2>();
  for (size_t b = 0; b < rows.size(); ++b)
    for (size_t t = 0; t < rows[b].size(); ++t) ia[int64_t(b)][int64_t(t)] = rows[b][t], ma[int64_t(b)][int64_t(t)] = 1;
  if (length() > 0 && !cache_.attention_mask.defined())
    cache_.attention_mask =
        torch::ones({rows_, length()}, torch::TensorOptions().dtype(torch::kInt64).device(model_->device()));
  ForwardOptions fo;
  fo.routing = routing_;
  fo.cache = &cache_;
  Batch batch;
  batch.input_ids = ids;
  batch.attention_mask = mask;
  return model_->hidden_states(batch, fo);
}

torch::Tensor PrefixCache::step(const std::vector<int64_t>& tokens, const std::vector<bool>& active) {
  if (int64_t(tokens.size()) != rows_)
    fail("prefix cache", "rows", "got ", tokens.size(), " tokens for ", rows_, " rows");
  auto ids = torch::tensor(tokens, torch::kInt64).unsqueeze(1);
  auto mask = torch::ones({rows_, 1}, torch::kInt64);
  for (size_t b = 0; b < active.size(); ++b)
    if (!active[b]) mask[int64_t(b)][0] = 0;
  ForwardOptions fo;
  fo.routing = routing_;
  fo.cache = &cache_;
  fo.last_logits_only = true;
  Batch batch;
  batch.input_ids = ids;
  batch.attention_mask = mask;
  return model_->forward(batch, fo);
}

PrefixCache PrefixCache::expand(int64_t rows) const {
  if (rows_ > 1) fail("prefix cache", "rows", "expand from ", rows_, " rows");
  PrefixCache out(*model_, routing_);
  out.rows_ = rows;
  if (length() == 0) return out;
  out.cache_.k.resize(cache_.k.size());
  out.cache_.v.resize(cache_.v.size());
  for (size_t l = 0; l < cache_.k.size(); ++l) {
    if (!cache_.k[l].defined()) continue;
    out.cache_.k[l] = cache_.k[l].expand({rows, -1, -1, -1});
    out.cache_.v[l] = cache_.v[l].expand({rows, -1, -1, -1});
  }
  if (cache_.attention_mask.defined())
    out.cache_.attention_mask = cache_.attention_mask.expand({rows, -1}).contiguous();
  return out;
}

PrefixCache PrefixCache::select(const std::vector<int64_t>& index) const {
  PrefixCache out(*model_, routing_);
  out.rows_ = int64_t(index.size());
  if (length() == 0) return out;
  // Every row once, in order: share the tensors (the model never writes into a cache
  // tensor; it concatenates into new ones).
  bool identity = int64_t(index.size()) == rows_;
  for (size_t i = 0; identity && i < index.size(); ++i) identity = index[i] == int64_t(i);
  if (identity) {
    out.cache_ = cache_;
    return out;
  }
  auto idx = torch::tensor(index, torch::kInt64).to(model_->device());
  out.cache_.k.resize(cache_.k.size());
  out.cache_.v.resize(cache_.v.size());
  for (size_t l = 0; l < cache_.k.size(); ++l) {
    if (!cache_.k[l].defined()) continue;
    out.cache_.k[l] = cache_.k[l].index_select(0, idx);
    out.cache_.v[l] = cache_.v[l].index_select(0, idx);
  }
  if (cache_.attention_mask.defined()) out.cache_.attention_mask = cache_.attention_mask.index_select(0, idx);
  return out;
}

}  // namespace emo
