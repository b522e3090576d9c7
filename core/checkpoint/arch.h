// The canonical tensor list of a model: for each family (family.h) and config, every
// tensor's name, shape and the role it plays. Everything above this file (checkpoint
// reading, hashing, surgery, merge, freeze modes) works on this list; the families differ
// only in their rows.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/checkpoint/config.h"
#include "core/checkpoint/family.h"
#include "core/io/dtype.h"
#include "core/io/safetensors.h"

namespace emo {

enum class Role {
  Embedding,   // model.embed_tokens.weight
  LmHead,      // lm_head.weight (absent when tied)
  FinalNorm,   // model.norm.weight
  AttnNorm,    // norm before attention
  MlpNorm,     // norm before the feed-forward block
  Attention,   // q/k/v/o projections and their biases
  QKNorm,      // q_norm / k_norm (OLMoE over the width, Qwen3 per head)
  Router,      // mlp.gate.weight: one row per expert
  Expert,      // mlp.experts.{E}.{gate,up,down}_proj.weight (routed, or EMO's shared columns)
  DenseMlp,    // a dense layer's mlp.{gate,up,down}_proj
  SharedExpert,      // Qwen2-MoE's mlp.shared_expert.{gate,up,down}_proj.weight
  SharedExpertGate,  // Qwen2-MoE's mlp.shared_expert_gate.weight [1, H]
};
// The feed-forward tensors a module chooses among or always keeps (what --train non_moe
// leaves alone and what merge carries as experts, router rows or shared experts).
bool is_moe_role(Role r);
// A shared expert kept as its own MLP (Qwen2-MoE's shared_expert and shared_expert_gate;
// EMO's shared experts are rows of the expert stacks instead): what --train routed_shared
// adds and merge --shared carries, whole.
bool is_shared_mlp_role(Role r);
const char* role_name(Role r);

enum class Proj : uint8_t { Gate, Up, Down, None };
const char* proj_name(Proj p);

// One tensor of the model in canonical (per-expert) naming.
struct CanonicalTensor {
  std::string name;
  Role role;
  Shape shape;
  int layer = -1;   // -1 for embedding, final norm, lm_head
  int expert = -1;  // for Role::Expert: index in this layer's router numbering
  Proj proj = Proj::None;
  bool is_bias = false;
};

// How a checkpoint stores its experts: one tensor per expert and projection (transformers
// v4, allenai/EMO), or one tensor per projection for all experts (transformers v5:
// mlp.experts.gate_up_proj [E, 2I, H] with gate rows first, mlp.experts.down_proj [E, H, I]).
enum class ExpertLayout { PerExpert, Fused };
const char* layout_name(ExpertLayout l);

// The canonical tensors a config implies, in natural order (embedding, then each layer:
// attention norm, attention, feed-forward norm, router, experts in router order, then
// the final norm and lm_head).
std::vector<CanonicalTensor> canonical_tensors(const ModelConfig& config);

// Names of the fused tensors for a layer.
std::string fused_gate_up_name(const Family& f, int layer);
std::string fused_down_name(const Family& f, int layer);
std::string expert_tensor_name(const Family& f, int layer, int expert, Proj p);
std::string router_name(const Family& f, int layer);  // canonical (per-expert layout) name
// The name a checkpoint of `layout` stores canonical tensor `t` under (experts excepted:
// fused layouts store them as stacks). Mixtral's fused layout renames its router.
std::string stored_name(const Family& f, const CanonicalTensor& t, ExpertLayout layout);

// A layer template ({L}) for one layer.
std::string expand_layer(const std::string& tmpl, int layer);

// Tensors some exporters save that carry no weights (rotary caches); ignored on read.
bool is_ignorable_tensor(const std::string& name);

}  // namespace emo
