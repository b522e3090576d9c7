// The model config (config.json) as the reference implementations read it: allenai/EMO's
// EmoConfig and transformers' OlmoeConfig, Qwen3MoeConfig, Qwen2MoeConfig, MixtralConfig.
// Which key holds which value, and the defaults, come from the family's row (family.h);
// every key is typed here once. Every other key (architectures, auto_map, torch_dtype, ...)
// is kept and written back unchanged.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/checkpoint/family.h"
#include "core/io/json.h"

namespace emo {

// What one decoder layer's feed-forward part is, resolved from the per-layer lists.
struct LayerSpec {
  int64_t num_experts = 0;         // router width; 0 = dense MLP layer
  int64_t num_shared_experts = 0;  // the last columns of the router (EMO's legacy shared path)
  std::vector<int64_t> always_active;  // EMO's always_active_experts for this layer
  bool gated_shared_mlp = false;   // Qwen2-MoE: a shared expert MLP outside the router, behind a gate
  bool dense() const { return num_experts == 0; }
  int64_t num_routed() const { return num_experts - num_shared_experts; }
};

struct ModelConfig {
  const Family* family = &families().front();
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;  // an expert's FFN width (family.keys.expert_width)
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;
  std::optional<int64_t> head_dim;  // read when the family reads it (OLMoE always uses hidden/heads)
  std::string hidden_act = "silu";
  int64_t max_position_embeddings = 4096;
  double rms_norm_eps = 1e-6;
  double rope_theta = 500000.0;
  Json rope_scaling;  // null or {"rope_type"/"type": ..., "factor": ...}
  // transformers v5 writes one "rope_parameters" object (rope_type, rope_theta and the
  // scaling keys) where v4 wrote rope_theta + rope_scaling; read into the two fields above,
  // and written back in the style the config came in.
  bool rope_parameters_style = false;
  bool attention_bias = false;
  double attention_dropout = 0.0;
  int64_t num_experts_per_tok = 0;
  int64_t num_experts = 0;
  bool norm_topk_prob = false;
  double router_aux_loss_coef = 0.01;
  bool tie_word_embeddings = false;
  std::optional<int64_t> pad_token_id, bos_token_id;
  std::vector<int64_t> eos_token_ids;  // HF allows an int or a list
  // EMO only
  int64_t num_shared_experts = 0;
  std::optional<std::vector<int64_t>> num_experts_per_layer;
  std::optional<std::vector<int64_t>> num_shared_experts_per_layer;
  std::optional<std::vector<int64_t>> always_active_experts;
  std::optional<std::vector<std::vector<int64_t>>> always_active_experts_per_layer;
  bool dense_mlp_bias = false;
  // A dense layer's FFN width (EMO dense_intermediate_size, Qwen intermediate_size).
  std::optional<int64_t> dense_intermediate_size;
  // OLMoE only
  std::optional<double> clip_qkv;
  // Qwen only: which layers are dense, and Qwen2-MoE's gated shared expert.
  int64_t decoder_sparse_step = 1;
  std::vector<int64_t> mlp_only_layers;
  std::optional<int64_t> shared_expert_intermediate_size;
  // Sliding-window attention on every layer (Mixtral, Qwen3-MoE with use_sliding_window).
  std::optional<int64_t> sliding_window;
  bool use_sliding_window = false;

  const std::string& model_type() const { return family->model_type; }
  // The key this config states its expert count under (the family's, or the alias
  // transformers wrote: Qwen3-MoE's num_local_experts).
  const std::string& experts_key() const;
  // The window attention uses, or none.
  std::optional<int64_t> attention_window() const;

  // Parses and validates; `file` names the source in errors. Unknown keys are kept.
  static ModelConfig from_json(const Json& j, const std::string& file);
  static ModelConfig load(const std::string& path);
  // The config as JSON: the original object with the typed values written back (keys the
  // original lacked are added only when they differ from the default).
  Json to_json() const;

  int64_t resolved_head_dim() const;
  std::vector<LayerSpec> layers() const;
  // Checks that the model can run (the reference would otherwise fail or silently
  // differ): divisibility, top-k against expert counts, list lengths, ids in range.
  void validate(const std::string& file) const;

  // Keys and values that change the computation, with defaults filled in: what the
  // content hash covers. Stable across key order and omitted defaults.
  Json model_defining() const;

  // Applies "key=value" overrides (--set) together, then validates once; a value is
  // parsed as JSON when it parses, else taken as a string. Unknown keys are an error.
  void apply_overrides(const std::vector<std::pair<std::string, std::string>>& overrides);
  void set_override(const std::string& key, const std::string& value) { apply_overrides({{key, value}}); }

  Json raw;  // the object as read
  std::string source;  // file it came from, for messages
};

}  // namespace emo
