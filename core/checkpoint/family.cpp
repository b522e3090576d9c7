#include "core/checkpoint/family.h"

#include "core/util/error.h"

namespace emo {

namespace {

// transformers' per-expert names (v4, and v5's save_pretrained default) and v5's fused
// stacks, shared by every family that copies Llama's decoder layer.
ArchNames llama_style_names() {
  ArchNames n;
  n.embed = "model.embed_tokens.weight";
  n.lm_head = "lm_head.weight";
  n.final_norm = "model.norm.weight";
  n.attn_norm = "model.layers.{L}.input_layernorm.weight";
  n.mlp_norm = "model.layers.{L}.post_attention_layernorm.weight";
  n.attn_proj = "model.layers.{L}.self_attn.{P}_proj.{W}";
  n.router = "model.layers.{L}.mlp.gate.weight";
  n.expert = "model.layers.{L}.mlp.experts.{E}.{P}.weight";
  n.fused_gate_up = "model.layers.{L}.mlp.experts.gate_up_proj";
  n.fused_down = "model.layers.{L}.mlp.experts.down_proj";
  for (int p = 0; p < 3; ++p) n.expert_proj[p] = n.dense_proj[p] = std::string(p == 0 ? "gate" : p == 1 ? "up" : "down") + "_proj";
  return n;
}

Family emo_row() {
  Family f;
  f.model_type = "emo";
  f.reference = "allenai/EMO src/hf_trust_remote_code/emo/modeling_emo.py (fb07783)";
  f.names = llama_style_names();
  f.names.attn_norm = "model.layers.{L}.pre_attention_layernorm.weight";
  f.names.mlp_norm = "model.layers.{L}.pre_feedforward_layernorm.weight";
  f.names.dense = "model.layers.{L}.mlp.{P}.{W}";
  f.keys = {"num_experts", "", "intermediate_size", "dense_intermediate_size", "", "attention_bias",
            {"head_dim", "num_shared_experts", "num_experts_per_layer", "num_shared_experts_per_layer",
             "always_active_experts", "always_active_experts_per_layer", "dense_mlp_bias"}};
  f.defaults = {1e-6, 500000.0, 0.01, 4096, 100277, std::nullopt, 100257, false};
  f.norm = NormOrder::WeightInFloat32;
  f.rope_dtype = RopeDtype::Float32;
  f.shared = SharedExperts::RouterColumns;
  f.dense = DenseLayers::PerLayerCounts;
  f.per_layer_expert_counts = true;
  f.always_active = true;
  f.load_balancing = LoadBalancing::EmoPerLayer;
  return f;
}

Family olmoe_row() {
  Family f;
  f.model_type = "olmoe";
  f.hf_class = "OlmoeForCausalLM";
  f.reference = "transformers models/olmoe (4.57.1 modular_olmoe.py; 5.17.0)";
  f.names = llama_style_names();
  f.names.q_norm = "model.layers.{L}.self_attn.q_norm.weight";
  f.names.k_norm = "model.layers.{L}.self_attn.k_norm.weight";
  f.keys = {"num_experts", "num_local_experts", "intermediate_size", "", "", "attention_bias", {"clip_qkv"}};
  f.defaults = {1e-5, 10000.0, 0.01, 4096, 1, std::nullopt, 50279, false};
  f.qk_norm = QKNorm::OverWidth;
  f.reads_head_dim = false;  // OlmoeAttention: hidden_size // num_heads, always (q_norm is [hidden])
  f.clip_qkv = true;
  return f;
}

// What Qwen3-MoE and Qwen2-MoE share: Llama's names with dense layers by mlp_only_layers and
// decoder_sparse_step, moe_intermediate_size for the experts, QwenConfig's defaults.
Family qwen_row(const std::string& model_type, const std::string& hf_class) {
  Family f;
  f.model_type = model_type;
  f.hf_class = hf_class;
  f.reference = "transformers 5.17.0 models/" + model_type + "/modeling_" + model_type + ".py";
  f.names = llama_style_names();
  f.names.dense = "model.layers.{L}.mlp.{P}.{W}";
  f.keys = {"num_experts", "", "moe_intermediate_size", "intermediate_size", "", "attention_bias",
            {"head_dim", "decoder_sparse_step", "mlp_only_layers", "use_sliding_window", "sliding_window",
             "max_window_layers"}};
  f.defaults = {1e-6, 10000.0, 0.001, 32768, std::nullopt, std::nullopt, std::nullopt, false};
  f.dense = DenseLayers::SparseStep;
  return f;
}

Family qwen3_moe_row() {
  Family f = qwen_row("qwen3_moe", "Qwen3MoeForCausalLM");
  f.names.q_norm = "model.layers.{L}.self_attn.q_norm.weight";
  f.names.k_norm = "model.layers.{L}.self_attn.k_norm.weight";
  f.keys.experts_alias = "num_local_experts";  // Qwen3MoeConfig.attribute_map; v5 writes this spelling
  f.qk_norm = QKNorm::PerHead;
  f.sliding = SlidingWindow::Switched;
  return f;
}

Family qwen2_moe_row() {
  Family f = qwen_row("qwen2_moe", "Qwen2MoeForCausalLM");
  f.names.shared_expert = "model.layers.{L}.mlp.shared_expert.{P}.weight";
  f.names.shared_expert_gate = "model.layers.{L}.mlp.shared_expert_gate.weight";
  f.keys.shared_width = "shared_expert_intermediate_size";
  f.keys.attention_bias = "qkv_bias";
  f.keys.own.push_back("layer_types");
  f.defaults.attention_bias = true;
  f.bias_scope = BiasScope::QKV;  // q/k/v biased by qkv_bias, o_proj never
  f.shared = SharedExperts::GatedMlp;
  f.sliding = SlidingWindow::Refused;
  return f;
}

Family mixtral_row() {
  Family f;
  f.model_type = "mixtral";
  f.hf_class = "MixtralForCausalLM";
  f.reference = "transformers 5.17.0 models/mixtral/modeling_mixtral.py and conversion_mapping.py";
  f.names = llama_style_names();
  // Per-expert checkpoints (Mistral's, and v5's save_original_format) keep the old block
  // name and w1/w3/w2; v5's fused layout renames the block to mlp.
  f.names.router = "model.layers.{L}.block_sparse_moe.gate.weight";
  f.names.fused_router = "model.layers.{L}.mlp.gate.weight";
  f.names.expert = "model.layers.{L}.block_sparse_moe.experts.{E}.{P}.weight";
  f.names.expert_proj[0] = "w1", f.names.expert_proj[1] = "w3", f.names.expert_proj[2] = "w2";
  f.keys = {"num_local_experts", "num_experts", "intermediate_size", "", "", "", {"head_dim", "sliding_window",
            "router_jitter_noise"}};
  f.defaults = {1e-5, 1000000.0, 0.001, 131072, std::nullopt, 1, 2, false};
  f.norm_topk_key = false;
  f.always_norm_topk = true;  // MixtralTopKRouter divides by the top-k sum, unconditionally
  f.sliding = SlidingWindow::Key;
  return f;
}

}  // namespace

const std::vector<Family>& families() {
  static const std::vector<Family> all = {emo_row(), olmoe_row(), qwen3_moe_row(), qwen2_moe_row(), mixtral_row()};
  return all;
}

const Family* find_family(const std::string& model_type) {
  for (const auto& f : families())
    if (f.model_type == model_type) return &f;
  return nullptr;
}

std::string family_list() {
  std::string out;
  for (const auto& f : families()) out += (out.empty() ? "" : ", ") + f.model_type;
  return out;
}

namespace {

std::string code(const std::string& s) { return s.empty() ? "—" : "`" + s + "`"; }

std::string traits_row(const Family& f) {
  const char* norm = f.norm == NormOrder::WeightInFloat32 ? "(w·x₃₂)→dtype" : "w·(x₃₂→dtype)";
  const char* qk = f.qk_norm == QKNorm::OverWidth ? "over the width" : f.qk_norm == QKNorm::PerHead ? "per head" : "—";
  const char* router = f.always_norm_topk ? "softmax, top-k, renormalised" : "softmax, top-k, `norm_topk_prob`";
  const char* shared = f.shared == SharedExperts::RouterColumns ? "last router columns"
                       : f.shared == SharedExperts::GatedMlp    ? "MLP × sigmoid(gate)"
                                                                 : "—";
  const char* dense = f.dense == DenseLayers::PerLayerCounts ? "`num_experts_per_layer` 0"
                      : f.dense == DenseLayers::SparseStep   ? "`mlp_only_layers`, `decoder_sparse_step`"
                                                             : "—";
  const char* window = f.sliding == SlidingWindow::Key        ? "`sliding_window`"
                       : f.sliding == SlidingWindow::Switched ? "`sliding_window` if `use_sliding_window`"
                       : f.sliding == SlidingWindow::Refused  ? "refused"
                                                              : "—";
  std::string bias = f.keys.attention_bias.empty() ? "—"
                     : code(f.keys.attention_bias) + (f.bias_scope == BiasScope::QKV ? " (q, k, v)" : " (q, k, v, o)");
  return cat("| `", f.model_type, "` | ", code(f.hf_class), " | ", code(f.keys.experts),
             f.keys.experts_alias.empty() ? "" : " or " + code(f.keys.experts_alias), " | ", code(f.keys.expert_width),
             " | ", dense, " | ", shared, " | ", qk, " | ", bias, " | ", norm, " | ", router, " | ",
             f.per_layer_expert_counts ? "per layer" : "one for all layers", " | ", window, " |\n");
}

}  // namespace

std::string family_tables_markdown() {
  std::string out =
      "| model_type | transformers class | expert count | expert width | dense layers | shared experts | q/k norm | "
      "attention bias | RMSNorm | router | module budgets | sliding window |\n"
      "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n";
  for (const Family& f : families()) out += traits_row(f);
  out += "\n| model_type | router | experts (per-expert layout) | expert projections | dense / shared MLP |\n"
         "| --- | --- | --- | --- | --- |\n";
  for (const Family& f : families()) {
    const ArchNames& n = f.names;
    std::string router = code(n.router) + (n.fused_router.empty() ? "" : "; fused layout: " + code(n.fused_router));
    std::string mlp = code(n.dense) + (n.shared_expert.empty() ? "" : "; " + code(n.shared_expert) + ", " +
                                                                          code(n.shared_expert_gate));
    out += cat("| `", f.model_type, "` | ", router, " | ", code(n.expert), " | ", n.expert_proj[0], ", ",
               n.expert_proj[1], ", ", n.expert_proj[2], " | ", mlp, " |\n");
  }
  return out;
}

const Family& family_named(const std::string& model_type) {
  if (const Family* f = find_family(model_type)) return *f;
  fail("model_type", model_type, "is not supported (supported: ", family_list(), ")");
}

}  // namespace emo
