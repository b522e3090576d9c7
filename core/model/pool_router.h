// EMO's document-pool router (allenai/EMO, OLMo-core
// twolevel_batchlb_reducedp_sharedexp_randpool_router.py), as a routing hook of the model.
//
// Per MoE layer and per document piece of a packed batch row (a run of one document id):
//  1. the router's softmax over the routed experts (shared columns dropped), summed over
//     the piece's tokens, ranks the experts; the piece's pool is its top `pool` experts;
//  2. every other routed expert's logit becomes -inf for every token of the piece;
//  3. routing then runs as usual on the masked logits: softmax over the routed experts,
//     top (k - shared), shared experts always on with weight 1. With `unpooled_gate`
//     (--gate-probs unpooled, an ablation) the mask decides only the choice and the chosen
//     experts weigh what the unmasked softmax gives them, as at inference.
// The pool size is drawn per (document, layer) uniformly from [pool_min, pool_max] (the
// reference draws per document in every router; 8..128 of 127 routed experts in EMO's
// 1B-14B run). A fraction `free` of documents (none in allenai/EMO) may be drawn to route with
// no pool in every layer, as inference routes every token (an ablation: it made a small model
// worse per token, not better; docs/results/emo-tiny64.md). Our draw is a hash of (seed, step,
// global document id, layer), so resumed and multi-process runs draw exactly what one
// uninterrupted process draws. The choice is made without gradient (only its indices
// matter, as in the reference). Pools are a training-time device only: nothing but
// `emo pretrain` installs this hook, so evaluation (unless asked: `emo eval ppl --pool`,
// allenai/EMO's eval_document_expert_pool), routing statistics and generation route every
// token on its own.
#pragma once

#include <torch/torch.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <limits>
#include <string>

#include "core/checkpoint/config.h"
#include "core/model/model.h"

namespace emo {

struct PoolRange {
  int64_t min = 0, max = 0;  // routed experts per document pool, inclusive
  double free = 0;           // the fraction of documents routed with no pool (training only)
  bool unpooled_gate = false;  // weights from the softmax before the pool mask (RoutingControl)
};

// What draw_pool_size returns for a document routed with no pool.
constexpr int64_t kNoPool = std::numeric_limits<int64_t>::max();

// The default range for a model, scaled from EMO's 8..128 of 127 routed experts: from
// max(routed top-k, ceil(R / divisor)) to all R routed experts (divisor 16: allenai/EMO's;
// pretrain's scales, pretrain/scale.h, may ask for another).
PoolRange default_pool_range(const ModelConfig& config, int64_t divisor = 16);

// emo::Error unless every MoE layer has shared experts last (EMO) or none, and the range
// lies within [routed top-k, R] of every layer (a pool smaller than the routed top-k would
// make top-k pick experts of weight zero). `flag` names the smallest pool in the message.
void validate_pool_range(const ModelConfig& config, const PoolRange& range, const std::string& flag = "--pool-min");

// The pool size of one (document, layer) at a step: kNoPool for a document drawn free (with
// probability range.free, the same draw in every layer), else uniform in [range.min, range.max].
int64_t draw_pool_size(uint64_t seed, int64_t step, int64_t document, int layer, const PoolRange& range);

// The additive mask [N, R] (0 in the pool, -inf elsewhere) for routed logits [N, R]
// (N = B*T, row-major) of a batch with document ids [B, T] (undefined: each row one
// document). pool_of(document) gives a piece's pool size; a size >= R leaves the piece
// unmasked. Returns an undefined tensor when no piece is masked.
torch::Tensor document_pool_mask(const torch::Tensor& routed_logits, const torch::Tensor& document_ids, int64_t rows,
                                 const std::function<int64_t(int64_t document)>& pool_of);

// The hook: pools for the current step (set_step) of a training run, or of a fixed size
// (range.min == range.max) for evaluation.
class DocumentPoolRouter {
 public:
  // `flag`: what the messages of validate_pool_range name (--pool-min; evaluation's --pool).
  DocumentPoolRouter(const ModelConfig& config, PoolRange range, uint64_t seed, const std::string& flag = "--pool-min");
  void set_step(int64_t step) { step_ = step; }
  const RoutingControl& control() const { return control_; }
  const PoolRange& range() const { return range_; }

 private:
  torch::Tensor mask(int layer, const torch::Tensor& logits, const torch::Tensor& document_ids) const;

  std::vector<LayerSpec> layers_;
  PoolRange range_;
  uint64_t seed_;
  std::atomic<int64_t> step_{0};
  RoutingControl control_;
};

}  // namespace emo
