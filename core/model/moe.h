// The MoE block: routing exactly as the references choose experts, and dispatch.
//
// Routing (allenai/EMO EmoSparseMoeBlock, transformers OlmoeSparseMoeBlock), per layer:
//  - always-active experts: softmax over all experts; those experts are masked out and
//    the top (k - n_always) of the rest chosen; weights are the unmasked probabilities;
//    order: always-active first, then routed.
//  - shared experts (EMO's legacy path): the last S router columns get their own softmax
//    and top-S; the other columns a softmax and top (k - S); order: routed, then shared.
//  - otherwise: softmax over all experts, top-k, optionally renormalised (norm_topk_prob).
// Softmax in float32; the weights are cast to the hidden dtype before they multiply.
//
// An allow-list restricts a layer to some routed experts (their logits stay, the others
// become -inf before the softmax), which computes exactly what the extracted module
// computes. A pool mask (EMO pretraining) does the same per token.
//
// Dispatch sorts the (token, slot) pairs by expert and runs each expert once on its
// contiguous slice (one GEMM per expert, or one grouped GEMM for all of them on LibTorch
// 2.9+ GPUs); the same code serves forward and backward. The mask loop (HF's
// per-expert boolean mask over all tokens) is kept as the baseline for bench/moe.
#pragma once

#include <torch/torch.h>

#include <vector>

#include "core/checkpoint/config.h"

namespace emo {

struct Routing {
  torch::Tensor ids;      // [N, k] int64, expert indices in router numbering
  torch::Tensor weights;  // [N, k] in the hidden dtype
};

struct RouteOptions {
  torch::Tensor allowed;  // bool [E] over the layer's experts; undefined = all
  // Additive [N, E] (0 / -inf): which experts each token may choose, not what they weigh.
  // The chosen experts' weights come from the softmax without it (the allow-list applies to
  // both). EMO's pretraining with --gate-probs unpooled; undefined = none.
  torch::Tensor pool_mask;
};

// router_logits [N, E] (hidden dtype); layer's spec; the model config (top_k, norm).
Routing route(const torch::Tensor& router_logits, const LayerSpec& layer, const ModelConfig& config,
              torch::ScalarType hidden_dtype, const RouteOptions& options = {});

// The router's probabilities [N, E] (float32) as the layer's routing computes them:
// the shared columns with their own softmax, the others (restricted by `options`) with
// theirs; always-active and plain layers with one softmax over all columns. What EMO's
// router statistics (compute_router_activations.py) average.
torch::Tensor routing_probabilities(const torch::Tensor& router_logits, const LayerSpec& layer,
                                    const RouteOptions& options = {});

// Auto: Grouped for bf16 on a GPU where the LibTorch has grouped GEMMs (2.9+), else
// Sorted. Sorted: one GEMM per expert on its contiguous rows. Grouped: the same products as
// one at::_grouped_mm each (LibTorch 2.9+). MaskLoop: transformers' per-expert mask loop,
// the baseline.
enum class Dispatch { Auto, Sorted, Grouped, MaskLoop };
Dispatch default_dispatch(const torch::Tensor& x);

struct DispatchTrace {
  torch::Tensor expert_out_norm;  // [N, k]: ||expert_e(x_t)|| before weighting (float32)
};

// x [N, H]; gate_up [E, 2I, H]; down [E, H, I]. Returns [N, H].
torch::Tensor dispatch_experts(const torch::Tensor& x, const Routing& routing, const torch::Tensor& gate_up,
                               const torch::Tensor& down, Dispatch mode = Dispatch::Auto,
                               DispatchTrace* trace = nullptr);

// One expert's SwiGLU MLP on rows x: down(silu(gate(x)) * up(x)).
torch::Tensor expert_mlp(const torch::Tensor& x, const torch::Tensor& gate_up, const torch::Tensor& down);

}  // namespace emo
