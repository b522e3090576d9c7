// The model's weights as LibTorch tensors: plain structs, one per layer, as llm.c keeps
// them. A MoE layer's experts are stacked so dispatch can address any expert's slice:
// gate_up [E, 2I, H] (gate rows first, as transformers v5 fuses them) and down [E, H, I].
// Canonical per-expert tensors are views into these stacks.
#pragma once

#include <torch/torch.h>

#include <functional>
#include <string>
#include <vector>

#include "core/checkpoint/checkpoint.h"

namespace emo {

struct LayerWeights {
  torch::Tensor attn_norm, mlp_norm;
  torch::Tensor q, k, v, o;                      // [out, in]
  torch::Tensor q_bias, k_bias, v_bias, o_bias;  // undefined without attention_bias
  torch::Tensor q_norm, k_norm;                  // OLMoE [width], Qwen3 [head_dim]
  // MoE layers
  torch::Tensor router;   // [E, H]
  torch::Tensor gate_up;  // [E, 2I, H]
  torch::Tensor down;     // [E, H, I]
  // Qwen2-MoE's shared expert MLP and its gate [1, H]
  torch::Tensor shared_gate, shared_up, shared_down, shared_expert_gate;
  // dense layers (EMO num_experts_per_layer[l] == 0, Qwen mlp_only_layers / decoder_sparse_step)
  torch::Tensor dense_gate, dense_up, dense_down;
  torch::Tensor dense_gate_bias, dense_up_bias, dense_down_bias;
};

struct ModelWeights {
  torch::Tensor embed;    // [V, H]
  torch::Tensor final_norm;
  torch::Tensor lm_head;  // [V, H]; undefined when tied to the embedding
  std::vector<LayerWeights> layers;
};

// A trainable tensor with the role it plays (freeze modes, weight decay, merge).
struct NamedParam {
  std::string name;  // canonical name, or "<layer prefix>.mlp.experts.gate_up" / ".down" for stacks
  Role role;
  int layer;
  torch::Tensor* tensor;
  bool is_norm() const { return role == Role::AttnNorm || role == Role::MlpNorm || role == Role::FinalNorm || role == Role::QKNorm; }
};

struct LoadOptions {
  torch::ScalarType dtype = torch::kFloat32;  // parameter dtype (fp32 on CPU)
  torch::Device device = torch::kCPU;
};

ModelWeights load_weights(const Checkpoint& ck, const LoadOptions& options);
// Random weights as `emo init` draws them (same seed, same values), for tests.
ModelWeights init_weights(const ModelConfig& config, uint64_t seed, const LoadOptions& options);

std::vector<NamedParam> named_params(ModelWeights& w, const ModelConfig& config);

// The tensor holding canonical tensor `t` (a view for experts).
torch::Tensor canonical_view(const ModelWeights& w, const ModelConfig& config, const CanonicalTensor& t);

// Writes the weights as a checkpoint (config.json + safetensors) into `dir`: each
// canonical tensor in `dtype_of(t)`. Returns the content hash.
std::string save_weights(const ModelWeights& w, const ModelConfig& config, const fs::path& dir,
                         const WriteOptions& options, const std::function<DType(const CanonicalTensor&)>& dtype_of);

}  // namespace emo
