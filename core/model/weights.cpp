#include "core/model/weights.h"

#include "core/checkpoint/init.h"
#include "core/model/tensor_bridge.h"
#include "core/util/error.h"

namespace emo {

namespace {

// Where canonical tensor `t` lives in the structs (experts: handled by the stacks).
torch::Tensor* slot_of(ModelWeights& w, const CanonicalTensor& t) {
  if (t.role == Role::Embedding) return &w.embed;
  if (t.role == Role::FinalNorm) return &w.final_norm;
  if (t.role == Role::LmHead) return &w.lm_head;
  LayerWeights& L = w.layers[size_t(t.layer)];
  auto ends_with = [&](const char* s) {
    std::string suffix = s;
    return t.name.size() >= suffix.size() && t.name.compare(t.name.size() - suffix.size(), suffix.size(), suffix) == 0;
  };
  switch (t.role) {
    case Role::AttnNorm: return &L.attn_norm;
    case Role::MlpNorm: return &L.mlp_norm;
    case Role::QKNorm: return ends_with("q_norm.weight") ? &L.q_norm : &L.k_norm;
    case Role::Router: return &L.router;
    case Role::Attention:
      if (ends_with("q_proj.weight")) return &L.q;
      if (ends_with("k_proj.weight")) return &L.k;
      if (ends_with("v_proj.weight")) return &L.v;
      if (ends_with("o_proj.weight")) return &L.o;
      if (ends_with("q_proj.bias")) return &L.q_bias;
      if (ends_with("k_proj.bias")) return &L.k_bias;
      if (ends_with("v_proj.bias")) return &L.v_bias;
      if (ends_with("o_proj.bias")) return &L.o_bias;
      break;
    case Role::SharedExpert:
      if (t.proj == Proj::Gate) return &L.shared_gate;
      if (t.proj == Proj::Up) return &L.shared_up;
      if (t.proj == Proj::Down) return &L.shared_down;
      break;
    case Role::SharedExpertGate: return &L.shared_expert_gate;
    case Role::DenseMlp:
      if (t.proj == Proj::Gate) return t.is_bias ? &L.dense_gate_bias : &L.dense_gate;
      if (t.proj == Proj::Up) return t.is_bias ? &L.dense_up_bias : &L.dense_up;
      if (t.proj == Proj::Down) return t.is_bias ? &L.dense_down_bias : &L.dense_down;
      break;
    default:
      break;
  }
  fail("", t.name, "no place for this tensor in the model");
}

// Allocates the expert stacks of every MoE layer.
void allocate_stacks(ModelWeights& w, const ModelConfig& c, const LoadOptions& o) {
  auto opts = torch::TensorOptions().dtype(o.dtype).device(o.device);
  auto specs = c.layers();
  for (size_t l = 0; l < specs.size(); ++l) {
    if (specs[l].dense()) continue;
    int64_t E = specs[l].num_experts, I = c.intermediate_size, H = c.hidden_size;
    w.layers[l].gate_up = torch::empty({E, 2 * I, H}, opts);
    w.layers[l].down = torch::empty({E, H, I}, opts);
  }
}

using Fill = std::function<torch::Tensor(const CanonicalTensor&)>;

ModelWeights build(const ModelConfig& c, const LoadOptions& o, const Fill& fill) {
  torch::NoGradGuard no_grad;
  ModelWeights w;
  w.layers.resize(size_t(c.num_hidden_layers));
  allocate_stacks(w, c, o);
  for (const auto& t : canonical_tensors(c)) {
    torch::Tensor value = fill(t);
    if (t.role == Role::Expert) canonical_view(w, c, t).copy_(value);
    else *slot_of(w, t) = value;
  }
  return w;
}

}  // namespace

torch::Tensor canonical_view(const ModelWeights& w, const ModelConfig& c, const CanonicalTensor& t) {
  if (t.role != Role::Expert) return *slot_of(const_cast<ModelWeights&>(w), t);
  const LayerWeights& L = w.layers[size_t(t.layer)];
  const int64_t I = c.intermediate_size;
  if (t.proj == Proj::Down) return L.down[t.expert];
  return L.gate_up[t.expert].narrow(0, t.proj == Proj::Gate ? 0 : I, I);
}

ModelWeights load_weights(const Checkpoint& ck, const LoadOptions& o) {
  return build(ck.config(), o, [&](const CanonicalTensor& t) { return load_tensor(ck.view(t), o.dtype, o.device); });
}

ModelWeights init_weights(const ModelConfig& c, uint64_t seed, const LoadOptions& o) {
  InitOptions io;
  io.seed = seed;
  return build(c, o, [&](const CanonicalTensor& t) {
    auto values = torch::empty(std::vector<int64_t>(t.shape.begin(), t.shape.end()), torch::kFloat32);
    init_tensor_chunk(t, c, io, 0, values.data_ptr<float>(), size_t(values.numel()));
    return values.to(o.device, o.dtype);
  });
}

std::vector<NamedParam> named_params(ModelWeights& w, const ModelConfig& c) {
  std::vector<NamedParam> out;
  for (const auto& t : canonical_tensors(c)) {
    if (t.role == Role::Expert) continue;
    out.push_back({t.name, t.role, t.layer, slot_of(w, t)});
  }
  for (size_t l = 0; l < w.layers.size(); ++l) {
    if (!w.layers[l].gate_up.defined()) continue;
    std::string prefix = "model.layers." + std::to_string(l) + ".mlp.experts.";
    out.push_back({prefix + "gate_up", Role::Expert, int(l), &w.layers[l].gate_up});
    out.push_back({prefix + "down", Role::Expert, int(l), &w.layers[l].down});
  }
  return out;
}

std::string save_weights(const ModelWeights& w, const ModelConfig& c, const fs::path& dir, const WriteOptions& options,
                         const std::function<DType(const CanonicalTensor&)>& dtype_of) {
  std::vector<OutputTensor> tensors;
  for (const auto& t : canonical_tensors(c)) tensors.push_back({t, dtype_of(t)});
  return write_model(dir, c, tensors, options, [&](const OutputTensor& t, const ByteSink& sink) {
    torch::Tensor bytes = to_storage(canonical_view(w, c, t.tensor), t.dtype);
    sink(bytes.data_ptr(), size_t(bytes.numel()) * dtype_size(t.dtype));
  });
}

}  // namespace emo
