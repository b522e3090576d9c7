// The training losses.
//
// Cross entropy: next-token CE on the rows whose target is not ignored, computed from
// the final hidden states by a fused head + CE in row chunks: the [rows, vocab] logits
// never exist whole, and the gradients of the hidden states and the head are formed in
// the same pass (the loss is the last op, so its upstream gradient is a scalar).
//
// Router terms over the *global* batch (every micro-batch of every rank):
//  - load balancing, as allenai/EMO's load_balancing_loss_func_olmoe (EMO models) or
//    transformers' Mixtral load_balancing_loss_func (OLMoE models): per layer, counts
//    c[e] of the top-k picks and summed probabilities P[e] over the masked tokens;
//      EMO:     LB = mean_l  sum_e c_l[e] P_l[e] E_l / (N^2 k_l)
//               (shared columns dropped before the softmax, always-active ones after)
//      Mixtral: LB = sum_e (sum_l c_l[e]) (sum_l P_l[e]) E / (L N)^2
//    With one micro-batch on one rank this is exactly the reference value. The counts
//    carry no gradient, so LB is linear in P: each micro-batch contributes
//    sum_e w[e] P_mb[e] with weights w from the global counts.
//  - router z-loss (ST-MoE): mean over masked tokens and MoE layers of logsumexp(logits)^2,
//    over the routed columns (EMO's shared columns are dropped, as OLMo-core's router does).
#pragma once

#include <torch/torch.h>

#include <vector>

#include "core/checkpoint/config.h"

namespace emo {

inline constexpr int64_t kIgnoreIndex = -100;

// Sum (not mean) of CE over rows: hidden [M, H], head [V, H], targets [M] int64 (all
// valid). Differentiable in hidden and head. `chunk` rows at a time.
torch::Tensor fused_linear_cross_entropy_sum(const torch::Tensor& hidden, const torch::Tensor& head,
                                             const torch::Tensor& targets, int64_t chunk = 256);

enum class LbForm { Emo, Mixtral };
LbForm lb_form_for(const ModelConfig& config);

// How one MoE layer's logits enter the load-balancing loss.
struct LbLayer {
  int layer = -1;          // decoder layer index
  int64_t softmax_cols = 0;  // softmax over the first columns (EMO drops the shared ones)
  torch::Tensor kept;      // int64 columns kept after the softmax (EMO always-active), undefined = all
  int64_t experts = 0;     // E in the formula (after both removals)
  int64_t top_k = 0;       // k in the formula
};
std::vector<LbLayer> lb_layers(const ModelConfig& config);

// One micro-batch's router statistics over the masked tokens.
struct RouterStats {
  std::vector<torch::Tensor> counts;  // per MoE layer [experts] float64, no gradient
  std::vector<torch::Tensor> probs;   // per MoE layer [experts] float32 sum over tokens, with gradient
  torch::Tensor z_sum;                // sum over layers and tokens of logsumexp^2 (with gradient)
  int64_t tokens = 0;                 // masked tokens
};
// logits: per decoder layer [N, E] (undefined for dense layers), the ones routing used;
// mask [N] bool. `prob_logits` (optional, same shape) gives the probabilities P instead:
// EMO's balancing on the logits before the document-pool mask (lb_probs unpooled), while
// the counts stay those of the routing that happened.
RouterStats router_stats(const std::vector<LbLayer>& layers, const std::vector<torch::Tensor>& logits,
                         const torch::Tensor& mask, bool need_z, const std::vector<torch::Tensor>* prob_logits = nullptr);

// The global counts flattened into one float64 vector (to all-reduce) and back.
torch::Tensor flatten_counts(const std::vector<LbLayer>& layers, const std::vector<torch::Tensor>& counts);
std::vector<torch::Tensor> unflatten_counts(const std::vector<LbLayer>& layers, const torch::Tensor& flat);

// Per layer weights w[e] = dLB/dP[e] for the counts and N^2 (`token_product`): the global
// counts and N*N for the global batch; a micro-batch's counts and N_mb*N for EMO's
// per-micro-batch form (lb_scope micro).
std::vector<torch::Tensor> lb_weights(LbForm form, const std::vector<LbLayer>& layers,
                                      const std::vector<torch::Tensor>& counts, double token_product);
// sum_l sum_e w_l[e] P_l[e]: this micro-batch's share of LB (with gradient).
torch::Tensor lb_contribution(const std::vector<torch::Tensor>& weights, const RouterStats& stats);

// Normalised entropy of the expert load per MoE layer, in [0, 1] (1 = balanced).
std::vector<double> load_entropy(const std::vector<torch::Tensor>& global_counts);

}  // namespace emo
