#include "core/model/model.h"

#include <limits>

#include "core/model/compat.h"
#include "core/util/error.h"

namespace emo {

void RouterTrace::reset(size_t layers) {
  for (auto* v : {&logits, &ids, &weights, &expert_norms, &moe_in, &moe_out, &unpooled_logits}) {
    v->clear();
    v->resize(layers);
  }
}

Model::Model(ModelConfig config, ModelWeights weights)
    : config_(std::move(config)), weights_(std::move(weights)), layers_(config_.layers()), rope_(config_) {}

Model Model::load(const Checkpoint& ck, const LoadOptions& options) {
  return Model(ck.config(), load_weights(ck, options));
}

void Model::check_input(const torch::Tensor& ids, int64_t past_length) const {
  if (ids.dim() != 2) fail("input", "input_ids", "expected [batch, length], got ", ids.dim(), " dimensions");
  if (ids.numel() == 0) fail("input", "input_ids", "empty input");
  int64_t lo = ids.min().item<int64_t>(), hi = ids.max().item<int64_t>();
  if (lo < 0 || hi >= config_.vocab_size)
    fail("input", "input_ids", "token id ", lo < 0 ? lo : hi, " out of range for vocab_size ", config_.vocab_size);
  int64_t total = past_length + ids.size(1);
  if (total > config_.max_position_embeddings)
    fail("input", "input_ids", "sequence of ", total, " tokens is longer than the model's context (max_position_embeddings ",
         config_.max_position_embeddings, ")");
}

torch::Tensor Model::norm(const torch::Tensor& x, const torch::Tensor& weight) const {
  auto h = x.to(torch::kFloat32);
  h = h * torch::rsqrt(h.pow(2).mean(-1, true) + config_.rms_norm_eps);
  // EMO: (weight * x_f32).to(dtype). transformers' families: weight * x_f32.to(dtype).
  // Equal in float32.
  if (config_.family->norm == NormOrder::WeightInFloat32) return (weight * h).to(x.scalar_type());
  return weight * h.to(x.scalar_type());
}

namespace {

torch::Tensor linear(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b) {
  return b.defined() ? torch::linear(x, w, b) : torch::linear(x, w);
}

// A SwiGLU MLP: down(silu(gate(x)) * up(x)); biases where given (dense layers, Qwen2-MoE's
// shared expert).
torch::Tensor swiglu(const torch::Tensor& x, const torch::Tensor& gate, const torch::Tensor& up, const torch::Tensor& down,
                     const torch::Tensor& gate_bias = {}, const torch::Tensor& up_bias = {},
                     const torch::Tensor& down_bias = {}) {
  return linear(torch::silu(linear(x, gate, gate_bias)) * linear(x, up, up_bias), down, down_bias);
}

torch::Tensor repeat_kv(const torch::Tensor& x, int64_t n_rep) {
  if (n_rep == 1) return x;
  auto s = x.sizes();  // [B, kv, T, hd]
  return x.unsqueeze(2).expand({s[0], s[1], n_rep, s[2], s[3]}).reshape({s[0], s[1] * n_rep, s[2], s[3]});
}

// Positions inside packed documents: 0 at each document's first token.
torch::Tensor document_positions(const torch::Tensor& doc) {
  const int64_t T = doc.size(1);
  auto idx = torch::arange(T, doc.options().dtype(torch::kInt64)).unsqueeze(0).expand_as(doc);
  auto starts = torch::ones_like(doc, torch::kBool);
  if (T > 1) starts.narrow(1, 1, T - 1).copy_(doc.narrow(1, 1, T - 1) != doc.narrow(1, 0, T - 1));
  auto start_idx = std::get<0>(torch::cummax(idx * starts.to(torch::kInt64), 1));
  return idx - start_idx;
}

// The most negative finite value of a floating dtype (torch.finfo(dtype).min): float32's
// lowest rounds to -inf in bf16, and a row of -inf scores softmaxes to NaN.
double lowest_finite(torch::ScalarType t) {
  switch (t) {
    case torch::kBFloat16: return double(std::numeric_limits<c10::BFloat16>::lowest());
    case torch::kHalf: return double(std::numeric_limits<c10::Half>::lowest());
    case torch::kFloat64: return std::numeric_limits<double>::lowest();
    default: return double(std::numeric_limits<float>::lowest());
  }
}

}  // namespace

torch::Tensor Model::attention(size_t l, const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin,
                               const torch::Tensor& mask, KVCache* cache) {
  const LayerWeights& L = weights_.layers[l];
  const int64_t B = x.size(0), T = x.size(1);
  const int64_t nh = config_.num_attention_heads, nkv = config_.num_key_value_heads, hd = config_.resolved_head_dim();
  const Family& f = *config_.family;
  auto q = linear(x, L.q, L.q_bias), k = linear(x, L.k, L.k_bias), v = linear(x, L.v, L.v_bias);
  if (f.qk_norm == QKNorm::OverWidth) {
    // OLMoE: q/k norms over the full projected width, before the head split.
    q = norm(q, L.q_norm);
    k = norm(k, L.k_norm);
  }
  if (config_.clip_qkv) {  // OLMoE: then q, k and v clamped, still before RoPE
    double c = *config_.clip_qkv;
    q = q.clamp(-c, c), k = k.clamp(-c, c), v = v.clamp(-c, c);
  }
  q = q.view({B, T, nh, hd});
  k = k.view({B, T, nkv, hd});
  if (f.qk_norm == QKNorm::PerHead) {
    // Qwen3-MoE: q/k norms over head_dim, each head on its own, before RoPE.
    q = norm(q, L.q_norm);
    k = norm(k, L.k_norm);
  }
  q = q.transpose(1, 2);
  k = k.transpose(1, 2);
  v = v.view({B, T, nkv, hd}).transpose(1, 2);
  // EMO rotates in float32 (cos/sin stay float32) and casts back; transformers' families
  // cast cos/sin to the activation dtype first. Identical in float32.
  auto c = cos.unsqueeze(1), s = sin.unsqueeze(1);
  if (f.rope_dtype == RopeDtype::Activation) c = c.to(q.scalar_type()), s = s.to(q.scalar_type());
  auto q_dtype = q.scalar_type();
  q = (q * c + rotate_half(q) * s).to(q_dtype);
  k = (k * c + rotate_half(k) * s).to(q_dtype);
  if (cache) {
    if (cache->k[l].defined()) {
      k = torch::cat({cache->k[l], k}, 2);
      v = torch::cat({cache->v[l], v}, 2);
    }
    cache->k[l] = k;
    cache->v[l] = v;
  }
  k = repeat_kv(k, nh / nkv);
  v = repeat_kv(v, nh / nkv);
  // Under CUDA autocast q is bf16 and the mask float32: bring the mask to q's dtype here,
  // finite, rather than let autocast round its lowest value to -inf.
  torch::Tensor m = mask;
  if (m.defined() && m.scalar_type() != q.scalar_type())
    m = m.to(q.scalar_type()).clamp_min(lowest_finite(q.scalar_type()));
  auto out = compat::attention(q, k, v, m, std::pow(double(hd), -0.5)).transpose(1, 2).contiguous().reshape({B, T, nh * hd});
  return linear(out, L.o, L.o_bias);
}

torch::Tensor Model::feed_forward(size_t l, const torch::Tensor& x, const ForwardOptions& options) {
  const LayerWeights& L = weights_.layers[l];
  const LayerSpec& spec = layers_[l];
  if (spec.dense()) return swiglu(x, L.dense_gate, L.dense_up, L.dense_down, L.dense_gate_bias, L.dense_up_bias, L.dense_down_bias);
  const int64_t B = x.size(0), T = x.size(1), H = x.size(2);
  auto flat = x.reshape({B * T, H});
  auto logits = torch::linear(flat, L.router);
  torch::Tensor pooled;
  RouteOptions ro;
  if (options.routing) {
    if (l < options.routing->allowed.size()) ro.allowed = options.routing->allowed[l];
    if (options.routing->pool) {
      torch::Tensor pool_mask;
      {
        // The pool is a choice (top experts of a document), not a differentiable function.
        torch::NoGradGuard no_grad;
        pool_mask = options.routing->pool(int(l), logits.detach(), options.document_ids);
      }
      if (options.trace && options.trace->keep_unpooled_logits) options.trace->unpooled_logits[l] = logits;
      if (pool_mask.defined() && options.routing->unpooled_gate) {
        // The pool restricts the choice; the weights stay the unpooled softmax's.
        ro.pool_mask = pool_mask;
        pooled = logits + pool_mask.to(logits.scalar_type());
      } else if (pool_mask.defined()) {
        // Masked logits from here on: routing, the trace and so the router losses (the
        // reference computes load balancing and z-loss on the pooled logits).
        logits = logits + pool_mask.to(logits.scalar_type());
      }
    }
  }
  Routing r = route(logits, spec, config_, x.scalar_type(), ro);
  if (!pooled.defined()) pooled = logits;  // what the router losses see: the pooled logits either way
  RouterTrace* trace = options.trace;
  DispatchTrace dt;
  auto y = dispatch_experts(flat, r, L.gate_up, L.down, options.dispatch,
                            trace && trace->keep_expert_norms ? &dt : nullptr);
  // Qwen2-MoE: routed output + sigmoid(shared_expert_gate(x)) * shared_expert(x).
  if (spec.gated_shared_mlp)
    y = y + torch::sigmoid(torch::linear(flat, L.shared_expert_gate)) * swiglu(flat, L.shared_gate, L.shared_up, L.shared_down);
  if (trace) {
    if (trace->keep_logits) trace->logits[l] = pooled;
    if (trace->keep_routing) trace->ids[l] = r.ids, trace->weights[l] = r.weights;
    if (trace->keep_expert_norms) trace->expert_norms[l] = dt.expert_out_norm;
    if (trace->keep_moe_io) trace->moe_in[l] = flat, trace->moe_out[l] = y;
  }
  return y.view({B, T, H});
}

torch::Tensor Model::layer_forward(size_t l, torch::Tensor h, const torch::Tensor& cos, const torch::Tensor& sin,
                                   const torch::Tensor& mask, const ForwardOptions& options) {
  const LayerWeights& L = weights_.layers[l];
  // Every family is pre-norm: EMO names the norms pre_attention / pre_feedforward, the
  // transformers families input_layernorm / post_attention_layernorm.
  h = h + attention(l, norm(h, L.attn_norm), cos, sin, mask, options.cache);
  return h + feed_forward(l, norm(h, L.mlp_norm), options);
}

namespace {

// Activation checkpointing. The function runs once without a graph in forward and again,
// with one, in backward. Its inputs are the activations (the first n_act) and the
// parameters it reads; their gradients come back through this node like any other op's,
// so gradient hooks and accumulation see nothing different.
struct Recompute : torch::CustomClassHolder {
  std::function<std::vector<torch::Tensor>(const std::vector<torch::Tensor>& activations, bool first)> fn;
  size_t n_act = 0;
  std::vector<torch::Tensor> params;  // the parameters the function reads that need gradients
  torch::DeviceType device = torch::kCPU;
  compat::AutocastState autocast;  // as in forward: backward may run outside the autocast scope
};

struct CheckpointFunction : public torch::autograd::Function<CheckpointFunction> {
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx,
                                                c10::intrusive_ptr<torch::CustomClassHolder> holder,
                                                at::TensorList inputs) {
    auto* rc = static_cast<Recompute*>(holder.get());
    std::vector<torch::Tensor> act(inputs.begin(), inputs.begin() + int64_t(rc->n_act));
    ctx->save_for_backward(act);
    ctx->saved_data["recompute"] = c10::IValue::make_capsule(holder);
    ctx->saved_data["inputs"] = int64_t(inputs.size());
    ctx->set_materialize_grads(false);
    return rc->fn(act, true);
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto holder = ctx->saved_data["recompute"].toCapsule();
    auto* rc = static_cast<Recompute*>(holder.get());
    auto saved = ctx->get_saved_variables();
    const size_t n_inputs = size_t(ctx->saved_data["inputs"].toInt());
    std::vector<torch::Tensor> act;
    for (const auto& a : saved) act.push_back(a.detach().requires_grad_(a.requires_grad()));
    torch::autograd::variable_list outs;
    {
      torch::AutoGradMode grad_on(true);
      compat::AutocastGuard autocast(rc->device, rc->autocast);
      outs = rc->fn(act, false);
    }
    torch::autograd::variable_list out_t, out_g, wrt;
    for (size_t i = 0; i < outs.size() && i < grads.size(); ++i)
      if (grads[i].defined() && outs[i].requires_grad()) out_t.push_back(outs[i]), out_g.push_back(grads[i]);
    std::vector<size_t> act_index;
    for (size_t i = 0; i < act.size(); ++i)
      if (act[i].requires_grad()) act_index.push_back(wrt.size()), wrt.push_back(act[i]);
      else act_index.push_back(SIZE_MAX);
    for (const auto& p : rc->params) wrt.push_back(p);
    torch::autograd::variable_list g;
    if (!out_t.empty() && !wrt.empty())
      g = torch::autograd::grad(out_t, wrt, out_g, /*retain_graph=*/false, /*create_graph=*/false, /*allow_unused=*/true);
    torch::autograd::variable_list result(1 + n_inputs);  // [0]: the holder (not a tensor)
    for (size_t i = 0; i < act.size(); ++i)
      if (act_index[i] != SIZE_MAX && !g.empty()) result[1 + i] = g[act_index[i]];
    const size_t first_param = wrt.size() - rc->params.size();
    for (size_t j = 0; j < rc->params.size() && !g.empty(); ++j) result[1 + act.size() + j] = g[first_param + j];
    return result;
  }
};

}  // namespace

torch::Tensor Model::checkpointed_layer(size_t l, const torch::Tensor& h, const torch::Tensor& cos,
                                        const torch::Tensor& sin, const torch::Tensor& mask,
                                        const ForwardOptions& options) {
  auto rc = c10::make_intrusive<Recompute>();
  const bool want_logits = !layers_[l].dense() && options.trace && options.trace->keep_logits;
  rc->n_act = 1;
  rc->device = h.device().type();
  rc->autocast = compat::autocast_state(rc->device);
  const LayerWeights& L = weights_.layers[l];
  for (const torch::Tensor* t : {&L.attn_norm, &L.mlp_norm, &L.q, &L.k, &L.v, &L.o, &L.q_bias, &L.k_bias, &L.v_bias,
                                 &L.o_bias, &L.q_norm, &L.k_norm, &L.router, &L.gate_up, &L.down, &L.dense_gate,
                                 &L.dense_up, &L.dense_down, &L.dense_gate_bias, &L.dense_up_bias, &L.dense_down_bias,
                                 &L.shared_gate, &L.shared_up, &L.shared_down, &L.shared_expert_gate})
    if (t->defined() && t->requires_grad()) rc->params.push_back(*t);
  ForwardOptions o = options;
  o.checkpoint_layers = false;
  rc->fn = [this, l, cos, sin, mask, o, want_logits](const std::vector<torch::Tensor>& act, bool first) {
    ForwardOptions local = o;
    RouterTrace recompute_trace;  // the caller's trace is filled once, by the first run
    if (!first || !local.trace) {
      recompute_trace.keep_logits = want_logits;
      recompute_trace.reset(layers_.size());
      local.trace = &recompute_trace;
    }
    auto out = layer_forward(l, act[0], cos, sin, mask, local);
    if (!want_logits) return std::vector<torch::Tensor>{out};
    return std::vector<torch::Tensor>{out, local.trace->logits[l]};
  };
  std::vector<torch::Tensor> inputs{h};
  inputs.insert(inputs.end(), rc->params.begin(), rc->params.end());
  auto outs = CheckpointFunction::apply(c10::intrusive_ptr<torch::CustomClassHolder>(rc), at::TensorList(inputs));
  if (want_logits) options.trace->logits[l] = outs[1];
  return outs[0];
}

torch::Tensor Model::run_layers(torch::Tensor h, const Batch& batch, const ForwardOptions& options) {
  const int64_t B = batch.input_ids.size(0), T = batch.input_ids.size(1);
  KVCache* cache = options.cache;
  const int64_t past = cache ? cache->length() : 0;
  const int64_t Tk = past + T;
  auto device = h.device();
  auto long_opts = torch::TensorOptions().dtype(torch::kInt64).device(device);

  // Key padding over all keys (past and present), and position ids as HF generate().
  torch::Tensor key_mask;
  if (batch.attention_mask.defined() || (cache && cache->attention_mask.defined())) {
    auto now = batch.attention_mask.defined() ? batch.attention_mask.to(device, torch::kInt64)
                                              : torch::ones({B, T}, long_opts);
    key_mask = cache && cache->attention_mask.defined() ? torch::cat({cache->attention_mask, now}, 1) : now;
    if (cache) cache->attention_mask = key_mask;
  }
  torch::Tensor positions = batch.position_ids;
  if (!positions.defined()) {
    if (batch.document_ids.defined()) positions = document_positions(batch.document_ids.to(device));
    else if (key_mask.defined())
      positions = (key_mask.cumsum(-1) - 1).masked_fill(key_mask == 0, 1).narrow(1, past, T);
    else positions = torch::arange(past, Tk, long_opts).unsqueeze(0).expand({B, T});
  }
  positions = positions.to(device);

  // Additive mask [B or 1, 1, T, Tk]: causal, minus padded keys, minus other documents.
  // Masked scores get the dtype's lowest finite value (not -inf), as HF does, so a row with
  // no visible key (a padding query) is uniform instead of NaN.
  auto q_pos = torch::arange(past, Tk, long_opts).view({T, 1});
  auto k_pos = torch::arange(0, Tk, long_opts).view({1, Tk});
  auto allowed = (k_pos <= q_pos).view({1, 1, T, Tk});
  if (auto window = config_.attention_window())  // transformers' sliding_window_overlay: kv > q - window
    allowed = allowed.logical_and((k_pos > q_pos - *window).view({1, 1, T, Tk}));
  if (key_mask.defined()) allowed = allowed.logical_and((key_mask != 0).view({B, 1, 1, Tk}));
  if (batch.document_ids.defined()) {
    if (past > 0) fail("input", "document_ids", "packed documents cannot be used with a KV cache");
    auto d = batch.document_ids.to(device);
    allowed = allowed.logical_and((d.unsqueeze(2) == d.unsqueeze(1)).unsqueeze(1));
  }
  auto mask = torch::zeros(allowed.sizes(), h.options()).masked_fill(allowed.logical_not(), lowest_finite(h.scalar_type()));

  auto [cos, sin] = rope_.cos_sin(positions);
  if (options.trace) options.trace->reset(layers_.size());
  if (cache && cache->k.empty()) cache->k.resize(layers_.size()), cache->v.resize(layers_.size());
  size_t end = options.last_layer >= 0 ? std::min(layers_.size(), size_t(options.last_layer) + 1) : layers_.size();
  const bool recompute = options.checkpoint_layers && !cache && torch::GradMode::is_enabled();
  ForwardOptions layer_options = options;
  if (options.routing && options.routing->pool)  // an unpacked row is one document
    layer_options.document_ids = batch.document_ids.defined() ? batch.document_ids.to(device, torch::kInt64)
                                                              : torch::zeros({B, T}, long_opts);
  for (size_t l = 0; l < end; ++l)
    h = recompute ? checkpointed_layer(l, h, cos, sin, mask, layer_options)
                  : layer_forward(l, h, cos, sin, mask, layer_options);
  if (end < layers_.size()) return h;
  return norm(h, weights_.final_norm);
}

torch::Tensor Model::hidden_states(const Batch& batch, const ForwardOptions& options) {
  check_input(batch.input_ids, options.cache ? options.cache->length() : 0);
  auto ids = batch.input_ids.to(device());
  // padding_idx as nn.Embedding(padding_idx=pad_token_id): the pad row gets no gradient.
  auto h = torch::embedding(weights_.embed, ids, config_.pad_token_id.value_or(-1));
  return run_layers(h, batch, options);
}

torch::Tensor Model::forward(const Batch& batch, const ForwardOptions& options) {
  auto h = hidden_states(batch, options);
  if (options.last_logits_only) h = h.narrow(1, h.size(1) - 1, 1);
  const torch::Tensor& head = weights_.lm_head.defined() ? weights_.lm_head : weights_.embed;
  return torch::linear(h, head);
}

}  // namespace emo
