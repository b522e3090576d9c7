// Model families as data (as llama.cpp's llama-arch.cpp tables and mergekit's
// _data/architectures/*.json): one row per family says how its checkpoints are named, which
// config keys it reads with which defaults, and how its forward pass differs. Code branches
// on these traits, never on a family's name, so a new MoE family with standard attention is
// one row in family.cpp plus its tests.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace emo {

// Tensor-name templates: {L} layer, {E} expert, {P} projection (the family's name for it),
// {W} weight|bias. An empty template: the family has no such tensor.
struct ArchNames {
  std::string embed, lm_head, final_norm;
  std::string attn_norm, mlp_norm;        // {L}
  std::string attn_proj;                  // {L}, {P} in q,k,v,o; {W}
  std::string q_norm, k_norm;             // {L}
  std::string router;                     // {L}, per-expert layout
  std::string fused_router;               // {L}, fused layout (Mixtral renames the block); empty = router
  std::string expert;                     // {L}, {E}, {P} in expert_proj
  std::string fused_gate_up, fused_down;  // {L}
  std::string dense;                      // {L}, {P} in dense_proj, {W}
  std::string shared_expert;              // {L}, {P} in dense_proj (Qwen2-MoE's gated shared MLP)
  std::string shared_expert_gate;         // {L}
  std::string expert_proj[3];             // gate, up, down as the expert template names them
  std::string dense_proj[3];              // gate, up, down for dense and shared MLPs
};

// Where each config value lives; transformers' attribute_map aliases included.
struct FamilyKeys {
  std::string experts;            // routed experts per MoE layer
  std::string experts_alias;      // the other spelling transformers accepts (attribute_map), or ""
  std::string expert_width;       // an expert's FFN width
  std::string dense_width;        // a dense layer's FFN width, or "" (no dense layers)
  std::string shared_width;       // the gated shared expert's FFN width, or ""
  std::string attention_bias;     // the bias switch ("attention_bias", "qkv_bias") or "" (never)
  std::vector<std::string> own;   // every other key only this family reads (for --set and the hash)
};

struct FamilyDefaults {
  double rms_norm_eps = 1e-6, rope_theta = 10000.0, router_aux_loss_coef = 0.001;
  int64_t max_position_embeddings = 4096;
  std::optional<int64_t> pad, bos, eos;
  bool attention_bias = false;  // value of keys.attention_bias when absent
};

enum class NormOrder {
  WeightInFloat32,  // (weight * x_f32).to(dtype): allenai/EMO's EmoRMSNorm
  CastThenWeight,   // weight * x_f32.to(dtype): transformers' LlamaRMSNorm and its copies
};
enum class QKNorm {
  None,
  OverWidth,  // OLMoE: over the whole projected width, before the head split
  PerHead,    // Qwen3: over head_dim, after the head split
};
enum class BiasScope { QKVO, QKV };  // which attention projections the bias switch gives a bias
enum class RopeDtype { Float32, Activation };  // EMO rotates in float32; HF casts cos/sin first
enum class SharedExperts {
  None,
  RouterColumns,  // EMO: the last router columns, routed with their own softmax
  GatedMlp,       // Qwen2-MoE: a separate MLP, scaled by sigmoid(shared_expert_gate(x))
};
enum class DenseLayers {
  None,
  PerLayerCounts,  // EMO: num_experts_per_layer[l] == 0
  SparseStep,      // Qwen: l in mlp_only_layers, or (l + 1) % decoder_sparse_step != 0
};
enum class SlidingWindow {
  None,     // no such key
  Key,      // Mixtral: "sliding_window" (null = off) on every layer
  Switched, // Qwen3-MoE: "sliding_window" on every layer when "use_sliding_window"
  Refused,  // Qwen2-MoE: a per-layer pattern emo does not implement; use_sliding_window must be false
};
enum class LoadBalancing {
  EmoPerLayer,          // allenai/EMO load_balancing_loss_func_olmoe
  MixtralConcatenated,  // transformers' load_balancing_loss_func (OLMoE, Qwen, Mixtral)
};

struct Family {
  std::string model_type;  // config.json "model_type"
  std::string hf_class;    // the transformers class that loads it ("" when it needs remote code)
  std::string reference;   // the code each trait was read from
  ArchNames names;
  FamilyKeys keys;
  FamilyDefaults defaults;
  NormOrder norm = NormOrder::CastThenWeight;
  QKNorm qk_norm = QKNorm::None;
  BiasScope bias_scope = BiasScope::QKVO;
  RopeDtype rope_dtype = RopeDtype::Activation;
  bool reads_head_dim = true;     // head_dim from the config when present (else hidden / heads)
  bool clip_qkv = false;          // OLMoE's clamp of q, k, v
  bool norm_topk_key = true;      // reads norm_topk_prob; false: always_norm_topk decides
  bool always_norm_topk = false;  // Mixtral renormalises the top-k weights, always
  SharedExperts shared = SharedExperts::None;
  DenseLayers dense = DenseLayers::None;
  bool per_layer_expert_counts = false;  // the config can give layers different expert counts
  bool always_active = false;            // EMO's always_active_experts
  SlidingWindow sliding = SlidingWindow::None;
  LoadBalancing load_balancing = LoadBalancing::MixtralConcatenated;
};

const std::vector<Family>& families();
// The row for config.json's model_type, or nullptr.
const Family* find_family(const std::string& model_type);
// The row for model_type; emo::Error listing the known ones otherwise.
const Family& family_named(const std::string& model_type);
std::string family_list();  // "emo, olmoe, ..." for messages
// The rows as Markdown tables (traits, then tensor names): docs/families.md holds this text,
// and a test keeps the two equal.
std::string family_tables_markdown();

}  // namespace emo
