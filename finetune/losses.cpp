#include "finetune/losses.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/util/error.h"

namespace emo {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// CE of a linear head without the full logits: per chunk of rows, logits -> softmax ->
// loss, and (the loss being the last op) the gradients of the rows and of the head,
// which backward then scales by the upstream scalar.
struct LinearCrossEntropy : public torch::autograd::Function<LinearCrossEntropy> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& h, const torch::Tensor& w,
                               const torch::Tensor& targets, int64_t chunk) {
    const bool want_h = h.requires_grad(), want_w = w.requires_grad();
    const int64_t M = h.size(0), V = w.size(0);
    chunk = std::max<int64_t>(1, std::min(chunk, M));
    torch::Tensor dh, dw;
    if (want_h) dh = torch::empty_like(h);
    if (want_w) dw = torch::zeros(w.sizes(), w.options().dtype(torch::kFloat32));
    // Two [chunk, V] float32 buffers reused by every chunk: large allocations would
    // otherwise fault their pages in again each time.
    auto f32 = h.options().dtype(torch::kFloat32);
    auto logits_buf = torch::empty({chunk, V}, f32), logp_buf = torch::empty({chunk, V}, f32);
    const bool direct = h.scalar_type() == torch::kFloat32 && w.scalar_type() == torch::kFloat32;
    auto loss = torch::zeros({}, h.options().dtype(torch::kFloat64));
    for (int64_t r = 0; r < M; r += chunk) {
      const int64_t n = std::min(chunk, M - r);
      auto hc = h.narrow(0, r, n);
      auto t = targets.narrow(0, r, n).unsqueeze(1);
      auto logits = logits_buf.narrow(0, 0, n), logp = logp_buf.narrow(0, 0, n);
      if (direct) at::mm_out(logits, hc, w.t());
      else logits.copy_(torch::mm(hc, w.t()));  // bf16 under autocast, upcast for the softmax
      // One fused softmax pass; the loss is -log p[target], exact to an ulp, except where
      // p[target] underflows (a loss above ~87): those rows get logsumexp - logit.
      at::_softmax_out(logp, logits, 1, false);
      auto pt = logp.gather(1, t);
      auto tiny = pt < std::numeric_limits<float>::min();
      if (tiny.any().item<bool>()) {
        auto rows = tiny.squeeze(1).nonzero().squeeze(1);
        auto exact = logits.index_select(0, rows).logsumexp(1) - logits.index_select(0, rows).gather(1, t.index_select(0, rows)).squeeze(1);
        pt.index_fill_(0, rows, 1.0f);
        loss += exact.sum().to(torch::kFloat64);
      }
      loss -= pt.log().sum().to(torch::kFloat64);
      if (!want_h && !want_w) continue;
      auto g = logp;  // softmax
      g.scatter_add_(1, t, torch::full({n, 1}, -1.0f, f32));  // - one_hot(target)
      if (want_h) {
        auto rows = dh.narrow(0, r, n);
        if (direct) at::mm_out(rows, g, w);
        else rows.copy_(torch::mm(g.to(h.scalar_type()), w.to(h.scalar_type())));
      }
      if (want_w) {
        if (direct) dw.addmm_(g.t(), hc);
        else dw.add_(torch::mm(g.t().to(hc.scalar_type()), hc).to(torch::kFloat32));
      }
    }
    ctx->save_for_backward({dh, dw});
    ctx->saved_data["w_dtype"] = int64_t(w.scalar_type());
    return loss.to(torch::kFloat32);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    auto g = grads[0];
    torch::Tensor dh, dw;
    if (saved[0].defined()) dh = saved[0] * g.to(saved[0].scalar_type());
    if (saved[1].defined()) dw = (saved[1] * g).to(torch::ScalarType(ctx->saved_data["w_dtype"].toInt()));
    return {dh, dw, torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

torch::Tensor fused_linear_cross_entropy_sum(const torch::Tensor& hidden, const torch::Tensor& head,
                                             const torch::Tensor& targets, int64_t chunk) {
  if (hidden.size(0) == 0) return (hidden.sum() * 0).to(torch::kFloat32) + (head.sum() * 0).to(torch::kFloat32);
  return LinearCrossEntropy::apply(hidden, head, targets, chunk);
}

LbForm lb_form_for(const ModelConfig& config) {
  return config.family->load_balancing == LoadBalancing::EmoPerLayer ? LbForm::Emo : LbForm::Mixtral;
}

std::vector<LbLayer> lb_layers(const ModelConfig& config) {
  std::vector<LbLayer> out;
  const auto specs = config.layers();
  // EMO's loss drops its shared and always-active columns; the others see every column.
  const bool emo = config.family->load_balancing == LoadBalancing::EmoPerLayer;
  for (size_t l = 0; l < specs.size(); ++l) {
    const LayerSpec& s = specs[l];
    if (s.dense()) continue;
    LbLayer L;
    L.layer = int(l);
    L.softmax_cols = s.num_experts;
    L.experts = s.num_experts;
    L.top_k = config.num_experts_per_tok;
    if (emo && s.num_shared_experts > 0) {  // dropped before the softmax
      L.softmax_cols -= s.num_shared_experts;
      L.experts -= s.num_shared_experts;
      L.top_k -= s.num_shared_experts;
    }
    if (emo && !s.always_active.empty()) {  // dropped after it
      std::vector<int64_t> kept;
      for (int64_t e = 0; e < L.experts; ++e)
        if (std::find(s.always_active.begin(), s.always_active.end(), e) == s.always_active.end()) kept.push_back(e);
      L.kept = torch::tensor(kept, torch::kInt64);
      L.experts = int64_t(kept.size());
      L.top_k -= int64_t(s.always_active.size());
    }
    L.top_k = std::min(L.top_k, L.experts);
    if (L.top_k <= 0) continue;  // nothing is routed in this layer: no balance to keep
    out.push_back(L);
  }
  return out;
}

RouterStats router_stats(const std::vector<LbLayer>& layers, const std::vector<torch::Tensor>& logits,
                         const torch::Tensor& mask, bool need_z, const std::vector<torch::Tensor>* prob_logits) {
  RouterStats st;
  const bool all = mask.all().item<bool>();
  torch::Tensor idx;
  if (!all) idx = mask.nonzero().squeeze(1);
  st.tokens = all ? mask.numel() : idx.numel();
  for (const LbLayer& L : layers) {
    const torch::Tensor& full = logits[size_t(L.layer)];
    if (!full.defined()) fail("router", cat("layer ", L.layer), "no router logits were traced");
    auto rows = [&](const torch::Tensor& t) { return all ? t : t.index_select(0, idx); };
    // No float32 upcast: the reference's softmax runs in the logits' dtype.
    auto probs_of = [&](const torch::Tensor& t) {
      auto p = torch::softmax(t.narrow(1, 0, L.softmax_cols), 1);
      return L.kept.defined() ? p.index_select(1, L.kept.to(p.device())) : p;
    };
    auto x = rows(full);
    auto p = probs_of(x);
    auto ids = std::get<1>(p.detach().topk(L.top_k, 1));
    st.counts.push_back(torch::bincount(ids.reshape({-1}), {}, L.experts).to(torch::kFloat64));
    if (prob_logits && (*prob_logits)[size_t(L.layer)].defined()) p = probs_of(rows((*prob_logits)[size_t(L.layer)]));
    st.probs.push_back(p.sum(0, false, torch::kFloat32));
    if (need_z) {
      // Routed columns only: a shared expert's weight is always 1, its logit steers nothing
      // (OLMo-core's EMO router leaves it out of the z-loss too).
      auto lse = x.narrow(1, 0, L.softmax_cols).to(torch::kFloat32).logsumexp(1);
      auto z = (lse * lse).sum();
      st.z_sum = st.z_sum.defined() ? st.z_sum + z : z;
    }
  }
  if (need_z && !st.z_sum.defined()) st.z_sum = torch::zeros({}, torch::kFloat32);
  return st;
}

torch::Tensor flatten_counts(const std::vector<LbLayer>& layers, const std::vector<torch::Tensor>& counts) {
  if (counts.empty()) return torch::zeros({0}, torch::kFloat64);
  std::vector<torch::Tensor> parts;
  for (const auto& c : counts) parts.push_back(c.to(torch::kCPU, torch::kFloat64));
  return torch::cat(parts);
}

std::vector<torch::Tensor> unflatten_counts(const std::vector<LbLayer>& layers, const torch::Tensor& flat) {
  std::vector<torch::Tensor> out;
  int64_t off = 0;
  for (const auto& L : layers) out.push_back(flat.narrow(0, off, L.experts)), off += L.experts;
  return out;
}

std::vector<torch::Tensor> lb_weights(LbForm form, const std::vector<LbLayer>& layers,
                                      const std::vector<torch::Tensor>& counts, double token_product) {
  std::vector<torch::Tensor> w;
  if (layers.empty() || token_product <= 0) return w;
  const double L = double(layers.size());
  if (form == LbForm::Emo) {
    for (size_t i = 0; i < layers.size(); ++i)
      w.push_back((counts[i] * (double(layers[i].experts) / (token_product * double(layers[i].top_k) * L)))
                      .to(torch::kFloat32));
    return w;
  }
  torch::Tensor total = counts[0].clone();
  for (size_t i = 1; i < counts.size(); ++i) {
    if (counts[i].numel() != total.numel())
      fail("load balancing", "", "transformers' Mixtral loss needs the same number of experts in every layer");
    total += counts[i];
  }
  auto wl = (total * (double(layers[0].experts) / (token_product * L * L))).to(torch::kFloat32);
  for (size_t i = 0; i < layers.size(); ++i) w.push_back(wl);
  return w;
}

torch::Tensor lb_contribution(const std::vector<torch::Tensor>& weights, const RouterStats& stats) {
  torch::Tensor total;
  for (size_t i = 0; i < weights.size() && i < stats.probs.size(); ++i) {
    auto t = (weights[i].to(stats.probs[i].device()) * stats.probs[i]).sum();
    total = total.defined() ? total + t : t;
  }
  if (!total.defined()) total = torch::zeros({}, torch::kFloat32);
  return total;
}

std::vector<double> load_entropy(const std::vector<torch::Tensor>& counts) {
  std::vector<double> out;
  for (const auto& c : counts) {
    auto cc = c.to(torch::kCPU, torch::kFloat64);
    double total = cc.sum().item<double>();
    const int64_t E = cc.numel();
    if (total <= 0 || E < 2) {
      out.push_back(0.0);
      continue;
    }
    auto p = cc / total;
    double h = -(p * torch::where(p > 0, p.log(), torch::zeros_like(p))).sum().item<double>();
    out.push_back(h / std::log(double(E)));
  }
  return out;
}

}  // namespace emo
