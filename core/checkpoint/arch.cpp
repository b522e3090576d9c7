#include "core/checkpoint/arch.h"

#include "core/util/error.h"

namespace emo {

const char* role_name(Role r) {
  switch (r) {
    case Role::Embedding: return "embedding";
    case Role::LmHead: return "lm_head";
    case Role::FinalNorm: return "final_norm";
    case Role::AttnNorm: return "attn_norm";
    case Role::MlpNorm: return "mlp_norm";
    case Role::Attention: return "attention";
    case Role::QKNorm: return "qk_norm";
    case Role::Router: return "router";
    case Role::Expert: return "expert";
    case Role::DenseMlp: return "dense_mlp";
    case Role::SharedExpert: return "shared_expert";
    case Role::SharedExpertGate: return "shared_expert_gate";
  }
  return "?";
}

const char* proj_name(Proj p) {
  switch (p) {
    case Proj::Gate: return "gate";
    case Proj::Up: return "up";
    case Proj::Down: return "down";
    case Proj::None: return "";
  }
  return "";
}

bool is_shared_mlp_role(Role r) { return r == Role::SharedExpert || r == Role::SharedExpertGate; }

bool is_moe_role(Role r) { return r == Role::Expert || r == Role::Router || is_shared_mlp_role(r); }

const char* layout_name(ExpertLayout l) { return l == ExpertLayout::PerExpert ? "per-expert" : "fused"; }

namespace {

std::string expand(std::string tmpl, int layer, int expert, const std::string& proj, const std::string& what) {
  auto replace = [&](const std::string& key, const std::string& value) {
    for (size_t pos; (pos = tmpl.find(key)) != std::string::npos;) tmpl.replace(pos, key.size(), value);
  };
  replace("{L}", std::to_string(layer));
  replace("{E}", std::to_string(expert));
  replace("{P}", proj);
  replace("{W}", what);
  return tmpl;
}

}  // namespace

std::string expand_layer(const std::string& tmpl, int layer) { return expand(tmpl, layer, 0, "", ""); }

std::string fused_gate_up_name(const Family& f, int layer) { return expand(f.names.fused_gate_up, layer, 0, "", ""); }
std::string fused_down_name(const Family& f, int layer) { return expand(f.names.fused_down, layer, 0, "", ""); }
std::string expert_tensor_name(const Family& f, int layer, int expert, Proj p) {
  return expand(f.names.expert, layer, expert, f.names.expert_proj[int(p)], "");
}
std::string router_name(const Family& f, int layer) { return expand(f.names.router, layer, 0, "", ""); }

std::string stored_name(const Family& f, const CanonicalTensor& t, ExpertLayout layout) {
  if (t.role == Role::Router && layout == ExpertLayout::Fused && !f.names.fused_router.empty())
    return expand(f.names.fused_router, t.layer, 0, "", "");
  return t.name;
}

bool is_ignorable_tensor(const std::string& name) {
  const std::string suffix = "rotary_emb.inv_freq";
  return name.size() >= suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::vector<CanonicalTensor> canonical_tensors(const ModelConfig& c) {
  const Family& f = *c.family;
  const ArchNames& n = f.names;
  const int64_t H = c.hidden_size, V = c.vocab_size, I = c.intermediate_size;
  const int64_t hd = c.resolved_head_dim();
  const int64_t q_out = c.num_attention_heads * hd, kv_out = c.num_key_value_heads * hd;
  std::vector<CanonicalTensor> out;
  auto add = [&](std::string name, Role role, Shape shape, int layer = -1, int expert = -1, Proj p = Proj::None,
                 bool bias = false) {
    out.push_back({std::move(name), role, std::move(shape), layer, expert, p, bias});
  };
  // A SwiGLU MLP of width D under `tmpl` (dense layers, Qwen2-MoE's shared expert).
  auto add_mlp = [&](const std::string& tmpl, Role role, int l, int64_t D, bool biases) {
    const std::pair<Proj, Shape> mlp[] = {{Proj::Gate, {D, H}}, {Proj::Up, {D, H}}, {Proj::Down, {H, D}}};
    for (const auto& [p, shape] : mlp) {
      add(expand(tmpl, l, 0, n.dense_proj[int(p)], "weight"), role, shape, l, -1, p);
      if (biases) add(expand(tmpl, l, 0, n.dense_proj[int(p)], "bias"), role, {shape[0]}, l, -1, p, true);
    }
  };
  add(n.embed, Role::Embedding, {V, H});
  auto specs = c.layers();
  for (int l = 0; l < int(specs.size()); ++l) {
    const LayerSpec& s = specs[size_t(l)];
    add(expand(n.attn_norm, l, 0, "", ""), Role::AttnNorm, {H}, l);
    const std::pair<const char*, Shape> projections[] = {
        {"q", {q_out, H}}, {"k", {kv_out, H}}, {"v", {kv_out, H}}, {"o", {H, q_out}}};
    for (const auto& [p, shape] : projections) {
      add(expand(n.attn_proj, l, 0, p, "weight"), Role::Attention, shape, l);
      const bool biased = c.attention_bias && (f.bias_scope == BiasScope::QKVO || std::string(p) != "o");
      if (biased) add(expand(n.attn_proj, l, 0, p, "bias"), Role::Attention, {shape[0]}, l, -1, Proj::None, true);
    }
    // OlmoeAttention: q_norm over hidden_size, k_norm over (hidden/heads) * kv_heads.
    // Qwen3MoeAttention: both over head_dim, applied per head.
    if (f.qk_norm == QKNorm::OverWidth) {
      add(expand(n.q_norm, l, 0, "", ""), Role::QKNorm, {H}, l);
      add(expand(n.k_norm, l, 0, "", ""), Role::QKNorm, {(H / c.num_attention_heads) * c.num_key_value_heads}, l);
    } else if (f.qk_norm == QKNorm::PerHead) {
      add(expand(n.q_norm, l, 0, "", ""), Role::QKNorm, {hd}, l);
      add(expand(n.k_norm, l, 0, "", ""), Role::QKNorm, {hd}, l);
    }
    add(expand(n.mlp_norm, l, 0, "", ""), Role::MlpNorm, {H}, l);
    if (s.dense()) {
      add_mlp(n.dense, Role::DenseMlp, l, *c.dense_intermediate_size, c.dense_mlp_bias);
      continue;
    }
    add(router_name(f, l), Role::Router, {s.num_experts, H}, l);
    for (int e = 0; e < int(s.num_experts); ++e) {
      add(expert_tensor_name(f, l, e, Proj::Gate), Role::Expert, {I, H}, l, e, Proj::Gate);
      add(expert_tensor_name(f, l, e, Proj::Up), Role::Expert, {I, H}, l, e, Proj::Up);
      add(expert_tensor_name(f, l, e, Proj::Down), Role::Expert, {H, I}, l, e, Proj::Down);
    }
    if (s.gated_shared_mlp) {
      add_mlp(n.shared_expert, Role::SharedExpert, l, *c.shared_expert_intermediate_size, false);
      add(expand(n.shared_expert_gate, l, 0, "", ""), Role::SharedExpertGate, {1, H}, l);
    }
  }
  add(n.final_norm, Role::FinalNorm, {H});
  if (!c.tie_word_embeddings) add(n.lm_head, Role::LmHead, {V, H});
  return out;
}

}  // namespace emo
