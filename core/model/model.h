// The MoE causal LM forward in LibTorch, for every family of family.h: one visible path
// from token ids to logits. Every command that needs numbers (route, eval, generate,
// finetune, pretrain) runs this; the families differ only where model.cpp reads a trait
// of config().family (norm order, q/k norm, RoPE dtype, shared experts, sliding window).
#pragma once

#include <torch/torch.h>

#include <functional>
#include <optional>
#include <vector>

#include "core/checkpoint/checkpoint.h"
#include "core/model/moe.h"
#include "core/model/rope.h"
#include "core/model/weights.h"

namespace emo {

struct Batch {
  torch::Tensor input_ids{};       // [B, T] int64
  torch::Tensor attention_mask{};  // optional [B, T]: 1 token, 0 left padding (positions as HF generate() makes them)
  torch::Tensor position_ids{};    // optional [B, T]
  // Optional [B, T]: packed training sequences. Attention stays inside a document and
  // positions restart at each document's first token.
  torch::Tensor document_ids{};
};

// Which experts routing may use.
struct RoutingControl {
  // Per layer, bool [E_layer]; an undefined tensor (or a missing layer) allows all.
  std::vector<torch::Tensor> allowed;
  // EMO pretraining: per MoE layer, given the router logits [N, E] (N = B*T, row-major)
  // and the batch's document ids [B, T] (zeros when the batch is not packed), an
  // additive mask [N, E] (0 / -inf) restricting each token to its document's pool, or an
  // undefined tensor when nothing is restricted (then routing is exactly the unpooled one).
  // The masked logits are what the trace records, so the router losses see the pools.
  std::function<torch::Tensor(int layer, const torch::Tensor& router_logits, const torch::Tensor& document_ids)> pool;
  // false (allenai/EMO): the chosen experts' weights are the pooled softmax's, so they sum
  // higher inside a small pool than inference (no pool) will give them. true: the pool only
  // restricts the choice and the weights are the unpooled softmax's, as at inference.
  bool unpooled_gate = false;
};

// What a forward pass can report per layer (indexed by layer; undefined for dense ones).
struct RouterTrace {
  bool keep_logits = true;     // router logits [N, E] (with autograd when training)
  bool keep_routing = false;   // chosen ids and weights [N, k]
  bool keep_expert_norms = false;  // ||expert output|| per (token, slot) [N, k]
  bool keep_moe_io = false;    // MoE input (after the norm) and output [N, H]
  bool keep_unpooled_logits = false;  // with a pool hook: the logits before its mask [N, E]
  std::vector<torch::Tensor> logits, ids, weights, expert_norms, moe_in, moe_out, unpooled_logits;
  void reset(size_t layers);
};

// Keys and values of past positions, per layer [B, kv_heads, T_past, head_dim].
struct KVCache {
  std::vector<torch::Tensor> k, v;
  torch::Tensor attention_mask;  // [B, T_past] of all positions so far (left padding included)
  torch::Tensor next_position;   // [B] int64: position id of the next token
  int64_t length() const { return k.empty() || !k[0].defined() ? 0 : k[0].size(2); }
};

struct ForwardOptions {
  const RoutingControl* routing = nullptr;
  RouterTrace* trace = nullptr;
  KVCache* cache = nullptr;      // read and extended when given
  bool last_logits_only = false; // logits for the last position of each row only
  Dispatch dispatch = Dispatch::Auto;
  // Stop after this layer (routing statistics of early layers need no more); the
  // result is then that layer's output, without the final norm. -1: all layers.
  int last_layer = -1;
  // Training: activation (gradient) checkpointing per layer. Each layer keeps only its
  // input and runs again during backward (only when grad mode is on and no cache).
  bool checkpoint_layers = false;
  // Set by the model from Batch::document_ids for the routing hooks; callers leave it.
  torch::Tensor document_ids{};
};

class Model {
 public:
  Model(ModelConfig config, ModelWeights weights);
  static Model load(const Checkpoint& ck, const LoadOptions& options = {});

  // Logits [B, T, V] (or [B, 1, V] with last_logits_only), in the parameter dtype.
  torch::Tensor forward(const Batch& batch, const ForwardOptions& options = {});
  // The final hidden states [B, T, H] (after the final norm).
  torch::Tensor hidden_states(const Batch& batch, const ForwardOptions& options = {});

  const ModelConfig& config() const { return config_; }
  ModelWeights& weights() { return weights_; }
  const ModelWeights& weights() const { return weights_; }
  const std::vector<LayerSpec>& layers() const { return layers_; }
  torch::Device device() const { return weights_.embed.device(); }
  torch::ScalarType dtype() const { return weights_.embed.scalar_type(); }

  // Checks token ids against the vocabulary and the sequence against the context.
  void check_input(const torch::Tensor& input_ids, int64_t past_length = 0) const;

 private:
  torch::Tensor run_layers(torch::Tensor h, const Batch& batch, const ForwardOptions& options);
  torch::Tensor checkpointed_layer(size_t l, const torch::Tensor& h, const torch::Tensor& cos, const torch::Tensor& sin,
                                   const torch::Tensor& mask, const ForwardOptions& options);
  torch::Tensor layer_forward(size_t l, torch::Tensor h, const torch::Tensor& cos, const torch::Tensor& sin,
                              const torch::Tensor& mask, const ForwardOptions& options);
  torch::Tensor attention(size_t l, const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin,
                          const torch::Tensor& mask, KVCache* cache);
  torch::Tensor feed_forward(size_t l, const torch::Tensor& x, const ForwardOptions& options);
  torch::Tensor norm(const torch::Tensor& x, const torch::Tensor& weight) const;

  ModelConfig config_;
  ModelWeights weights_;
  std::vector<LayerSpec> layers_;
  Rope rope_;
};

}  // namespace emo
