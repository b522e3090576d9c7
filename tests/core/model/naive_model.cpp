#include "core/model/naive_model.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/model/rope.h"

namespace emo::test {

namespace {

using torch::Tensor;

Tensor rms(const ModelConfig& c, const Tensor& x, const Tensor& w) {
  double ms = x.pow(2).mean().item<double>();
  return w * (x / std::sqrt(ms + c.rms_norm_eps));
}

Tensor lin(const Tensor& W, const Tensor& x, const Tensor& b = {}) {
  Tensor y = torch::mv(W, x);
  return b.defined() ? y + b : y;
}

Tensor swiglu(const Tensor& gate, const Tensor& up, const Tensor& down, const Tensor& x) {
  Tensor g = torch::mv(gate, x), u = torch::mv(up, x);
  return torch::mv(down, g / (1 + torch::exp(-g)) * u);
}

// Rotate each head of v [n*hd] by position p: pair (i, i + hd/2) turns by p * inv_freq[i].
Tensor rope(const Tensor& v, int64_t heads, int64_t hd, int64_t p, const Tensor& inv_freq, double scale) {
  Tensor out = v.clone();
  auto a = v.accessor<float, 1>();
  auto o = out.accessor<float, 1>();
  auto f = inv_freq.accessor<float, 1>();
  for (int64_t h = 0; h < heads; ++h)
    for (int64_t i = 0; i < hd / 2; ++i) {
      float angle = float(p) * f[i];
      double c = std::cos(angle) * scale, s = std::sin(angle) * scale;
      double x1 = a[h * hd + i], x2 = a[h * hd + i + hd / 2];
      o[h * hd + i] = float(x1 * c - x2 * s);
      o[h * hd + i + hd / 2] = float(x2 * c + x1 * s);
    }
  return out;
}

std::vector<int64_t> top(const std::vector<double>& p, int64_t k, const std::vector<bool>& usable) {
  std::vector<int64_t> idx;
  for (int64_t i = 0; i < int64_t(p.size()); ++i)
    if (usable[size_t(i)]) idx.push_back(i);
  std::stable_sort(idx.begin(), idx.end(), [&](int64_t a, int64_t b) { return p[size_t(a)] > p[size_t(b)]; });
  idx.resize(size_t(std::min<int64_t>(k, int64_t(idx.size()))));
  return idx;
}

std::vector<double> softmax(const std::vector<double>& x, const std::vector<bool>& usable) {
  double m = -INFINITY;
  for (size_t i = 0; i < x.size(); ++i)
    if (usable[i]) m = std::max(m, x[i]);
  std::vector<double> p(x.size(), 0.0);
  double z = 0;
  for (size_t i = 0; i < x.size(); ++i)
    if (usable[i]) z += p[i] = std::exp(x[i] - m);
  for (auto& v : p) v /= z;
  return p;
}

// The experts and weights a token uses in one layer: EmoSparseMoeBlock / OlmoeSparseMoeBlock.
std::vector<std::pair<int64_t, double>> choose(const ModelConfig& c, const LayerSpec& s, const std::vector<double>& logits,
                                               std::vector<bool> allowed) {
  const int64_t E = s.num_experts, k = c.num_experts_per_tok;
  std::vector<std::pair<int64_t, double>> out;
  if (allowed.empty()) allowed.assign(size_t(E), true);
  if (!s.always_active.empty()) {
    for (int64_t a : s.always_active) allowed[size_t(a)] = true;
    auto p = softmax(logits, allowed);
    std::vector<bool> selectable = allowed;
    for (int64_t a : s.always_active) selectable[size_t(a)] = false;
    for (int64_t a : s.always_active) out.push_back({a, p[size_t(a)]});
    for (int64_t e : top(p, k - int64_t(s.always_active.size()), selectable)) out.push_back({e, p[size_t(e)]});
    return out;
  }
  if (s.num_shared_experts > 0) {
    const int64_t S = s.num_shared_experts, R = E - S;
    std::vector<double> lr(logits.begin(), logits.begin() + R), ls(logits.begin() + R, logits.end());
    std::vector<bool> ar(allowed.begin(), allowed.begin() + R), as(size_t(S), true);
    auto pr = softmax(lr, ar), ps = softmax(ls, as);
    for (int64_t e : top(pr, k - S, ar)) out.push_back({e, pr[size_t(e)]});
    for (int64_t e : top(ps, S, as)) out.push_back({R + e, ps[size_t(e)]});
    return out;
  }
  auto p = softmax(logits, allowed);
  for (int64_t e : top(p, k, allowed)) out.push_back({e, p[size_t(e)]});
  if (c.norm_topk_prob) {
    double z = 0;
    for (auto& [e, w] : out) z += w;
    for (auto& [e, w] : out) w /= z;
  }
  return out;
}

}  // namespace

Tensor naive_logits(const ModelConfig& c, const ModelWeights& w, const Tensor& ids,
                    const std::vector<std::vector<bool>>& allowed) {
  torch::NoGradGuard ng;
  const int64_t B = ids.size(0), T = ids.size(1), H = c.hidden_size, I = c.intermediate_size;
  const int64_t nh = c.num_attention_heads, nkv = c.num_key_value_heads, hd = c.resolved_head_dim();
  Rope rope_info(c);
  Tensor inv_freq = rope_info.inv_freq();
  double scale = rope_info.attention_scaling();
  auto specs = c.layers();
  Tensor logits = torch::zeros({B, T, c.vocab_size});
  for (int64_t b = 0; b < B; ++b) {
    std::vector<Tensor> h(static_cast<size_t>(T));
    for (int64_t t = 0; t < T; ++t) h[size_t(t)] = w.embed[ids[b][t].item<int64_t>()].clone();
    for (size_t l = 0; l < specs.size(); ++l) {
      const LayerWeights& L = w.layers[l];
      std::vector<Tensor> q(static_cast<size_t>(T)), k(static_cast<size_t>(T)), v(static_cast<size_t>(T));
      for (int64_t t = 0; t < T; ++t) {
        Tensor x = rms(c, h[size_t(t)], L.attn_norm);
        Tensor qq = lin(L.q, x, L.q_bias), kk = lin(L.k, x, L.k_bias), vv = lin(L.v, x, L.v_bias);
        if (c.family->qk_norm == QKNorm::OverWidth) {
          qq = rms(c, qq, L.q_norm);
          kk = rms(c, kk, L.k_norm);
          if (c.clip_qkv) {
            double cl = *c.clip_qkv;
            qq = qq.clamp(-cl, cl), kk = kk.clamp(-cl, cl), vv = vv.clamp(-cl, cl);
          }
        }
        q[size_t(t)] = rope(qq, nh, hd, t, inv_freq, scale);
        k[size_t(t)] = rope(kk, nkv, hd, t, inv_freq, scale);
        v[size_t(t)] = vv;
      }
      for (int64_t t = 0; t < T; ++t) {
        Tensor attn = torch::zeros({nh * hd});
        for (int64_t head = 0; head < nh; ++head) {
          int64_t kvh = head / (nh / nkv);
          std::vector<double> scores;
          for (int64_t j = 0; j <= t; ++j)
            scores.push_back(torch::dot(q[size_t(t)].narrow(0, head * hd, hd), k[size_t(j)].narrow(0, kvh * hd, hd)).item<double>() /
                             std::sqrt(double(hd)));
          auto p = softmax(scores, std::vector<bool>(scores.size(), true));
          for (int64_t j = 0; j <= t; ++j) attn.narrow(0, head * hd, hd) += p[size_t(j)] * v[size_t(j)].narrow(0, kvh * hd, hd);
        }
        h[size_t(t)] = h[size_t(t)] + lin(L.o, attn, L.o_bias);
      }
      for (int64_t t = 0; t < T; ++t) {
        Tensor x = rms(c, h[size_t(t)], L.mlp_norm);
        if (specs[l].dense()) {
          Tensor g = lin(L.dense_gate, x, L.dense_gate_bias), u = lin(L.dense_up, x, L.dense_up_bias);
          h[size_t(t)] = h[size_t(t)] + lin(L.dense_down, g / (1 + torch::exp(-g)) * u, L.dense_down_bias);
          continue;
        }
        Tensor r = torch::mv(L.router, x);
        std::vector<double> rl(size_t(r.size(0)));
        for (size_t e = 0; e < rl.size(); ++e) rl[e] = r[int64_t(e)].item<double>();
        std::vector<bool> allow = l < allowed.size() ? allowed[l] : std::vector<bool>{};
        Tensor y = torch::zeros({H});
        for (auto [e, weight] : choose(c, specs[l], rl, allow)) {
          Tensor gate = L.gate_up[e].narrow(0, 0, I), up = L.gate_up[e].narrow(0, I, I);
          y += float(weight) * swiglu(gate, up, L.down[e], x);
        }
        h[size_t(t)] = h[size_t(t)] + y;
      }
    }
    const Tensor& head = w.lm_head.defined() ? w.lm_head : w.embed;
    for (int64_t t = 0; t < T; ++t) logits[b][t] = torch::mv(head, rms(c, h[size_t(t)], w.final_norm));
  }
  return logits;
}

}  // namespace emo::test
