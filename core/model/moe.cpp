#include "core/model/moe.h"

#include <limits>

#include "core/model/compat.h"
#include "core/util/error.h"

namespace emo {

namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// Applies the allow-list to logits over `cols` columns starting at `first`.
torch::Tensor restrict(torch::Tensor logits, const RouteOptions& o, int64_t first, int64_t cols) {
  if (o.allowed.defined()) {
    auto allowed = o.allowed.narrow(0, first, cols).to(logits.device());
    logits = logits.masked_fill(allowed.logical_not().unsqueeze(0), kNegInf);
  }
  return logits;
}

// What top-k chooses from: `probs` (the restricted softmax), or, under a pool mask, the
// softmax of the pooled logits (so the choice stays inside the pool while the weights are
// gathered from `probs`).
torch::Tensor choice_probs(const torch::Tensor& restricted_logits, const torch::Tensor& probs, const RouteOptions& o,
                           int64_t first, int64_t cols) {
  if (!o.pool_mask.defined()) return probs;
  auto pooled = restricted_logits + o.pool_mask.narrow(1, first, cols).to(restricted_logits.dtype());
  return torch::softmax(pooled, 1, torch::kFloat32);
}

// How many of `cols` columns (from `first`) are allowed: top-k never picks past them, so
// a restricted full model chooses exactly what the extracted module (with its smaller
// top_k) chooses.
int64_t allowed_count(const RouteOptions& o, int64_t first, int64_t cols) {
  if (!o.allowed.defined()) return cols;
  return o.allowed.narrow(0, first, cols).sum().item<int64_t>();
}

std::pair<torch::Tensor, torch::Tensor> topk_of(const torch::Tensor& probs, int64_t k) {
  auto r = torch::topk(probs, k, -1);
  return {std::get<0>(r), std::get<1>(r)};
}

}  // namespace

Routing route(const torch::Tensor& router_logits, const LayerSpec& layer, const ModelConfig& config,
              torch::ScalarType hidden_dtype, const RouteOptions& options) {
  const int64_t E = layer.num_experts, top_k = config.num_experts_per_tok;
  const int64_t N = router_logits.size(0);
  Routing r;
  if (!layer.always_active.empty()) {
    const int64_t n_aa = int64_t(layer.always_active.size());
    auto aa = torch::tensor(layer.always_active, torch::kInt64).to(router_logits.device());
    RouteOptions opts = options;
    if (opts.allowed.defined()) {  // always-active experts are never restricted away
      opts.allowed = opts.allowed.clone();
      opts.allowed.index_fill_(0, aa.cpu(), true);
    }
    if (opts.pool_mask.defined()) fail("route", "pool_mask", "layers with always-active experts have no document pool");
    auto logits = opts.allowed.defined() ? restrict(router_logits, opts, 0, E) : router_logits;
    auto scores = torch::softmax(logits, 1, torch::kFloat32);
    auto masked = scores.clone();
    masked.index_fill_(1, aa, kNegInf);
    int64_t routed_k = std::min(top_k - n_aa, allowed_count(opts, 0, E) - n_aa);
    torch::Tensor routed_ids;
    if (routed_k == 1) routed_ids = std::get<1>(masked.max(-1, true));
    else routed_ids = topk_of(masked, routed_k).second;
    auto routed_w = scores.gather(-1, routed_ids);
    auto aa_ids = aa.unsqueeze(0).expand({N, n_aa});
    auto aa_w = scores.gather(-1, aa_ids);
    r.ids = torch::cat({aa_ids, routed_ids}, 1);
    r.weights = torch::cat({aa_w, routed_w}, 1);
  } else if (layer.num_shared_experts > 0) {
    const int64_t S = layer.num_shared_experts, R = E - S;
    auto standard = restrict(router_logits.narrow(1, 0, R), options, 0, R);
    auto shared = router_logits.narrow(1, R, S);
    auto p_standard = torch::softmax(standard, 1, torch::kFloat32);
    auto p_shared = torch::softmax(shared, 1, torch::kFloat32);
    int64_t routed_k = std::min(top_k - S, allowed_count(options, 0, R));
    auto id_std = topk_of(choice_probs(standard, p_standard, options, 0, R), routed_k).second;
    auto w_std = p_standard.gather(-1, id_std);
    auto [w_sh, id_sh] = topk_of(p_shared, S);
    r.weights = torch::cat({w_std, w_sh}, 1);
    r.ids = torch::cat({id_std, id_sh + R}, 1);
  } else {
    auto logits = restrict(router_logits, options, 0, E);
    auto probs = torch::softmax(logits, 1, torch::kFloat32);
    r.ids = topk_of(choice_probs(logits, probs, options, 0, E), std::min(top_k, allowed_count(options, 0, E))).second;
    r.weights = probs.gather(-1, r.ids);
  }
  if (config.norm_topk_prob) r.weights = r.weights / r.weights.sum(-1, true);
  r.weights = r.weights.to(hidden_dtype);
  return r;
}

torch::Tensor routing_probabilities(const torch::Tensor& router_logits, const LayerSpec& layer,
                                    const RouteOptions& options) {
  const int64_t E = layer.num_experts;
  if (layer.always_active.empty() && layer.num_shared_experts > 0) {
    const int64_t S = layer.num_shared_experts, R = E - S;
    auto routed = torch::softmax(restrict(router_logits.narrow(1, 0, R), options, 0, R), 1, torch::kFloat32);
    auto shared = torch::softmax(router_logits.narrow(1, R, S), 1, torch::kFloat32);
    return torch::cat({routed, shared}, 1);
  }
  RouteOptions opts = options;
  if (opts.allowed.defined() && !layer.always_active.empty()) {
    opts.allowed = opts.allowed.clone();
    for (int64_t a : layer.always_active) opts.allowed[a] = true;
  }
  return torch::softmax(restrict(router_logits, opts, 0, E), 1, torch::kFloat32);
}

torch::Tensor expert_mlp(const torch::Tensor& x, const torch::Tensor& gate_up, const torch::Tensor& down) {
  const int64_t I = down.size(1);
  auto h = torch::mm(x, gate_up.t());  // [n, 2I]: gate then up
  auto a = torch::silu(h.narrow(1, 0, I)) * h.narrow(1, I, I);
  return torch::mm(a, down.t());
}

namespace {

// The expert GEMMs of one layer over rows sorted by expert (`sizes` rows each, in expert
// order), done either expert by expert with mm_out into the final buffers (any LibTorch,
// any device) or as one grouped GEMM per product (at::_grouped_mm: LibTorch 2.9+, meant
// for bf16 on Hopper GPUs). Both give the same sums; the grouped one launches one kernel
// where the loop launches one per expert.
class ExpertGemms {
 public:
  ExpertGemms(std::vector<int64_t> sizes, bool grouped, const torch::Device& device) : sizes_(std::move(sizes)) {
    if (!grouped) return;
    std::vector<int32_t> ends(sizes_.size());
    int64_t end = 0;
    for (size_t e = 0; e < sizes_.size(); ++e) ends[e] = int32_t(end += sizes_[e]);
    offs_ = torch::tensor(ends, torch::kInt32).to(device);
  }

  // [M, N]: each expert's rows of a [M, K] times its matrix, b[e] [K, N], or b[e]^T when
  // b is stored [E, N, K] (`transposed`).
  torch::Tensor rows(const torch::Tensor& a, const torch::Tensor& b, bool transposed) const {
    const torch::Tensor per = transposed ? b.transpose(1, 2) : b;
    if (offs_.defined()) return compat::grouped_mm(a, per, offs_);
    auto out = torch::empty({a.size(0), per.size(2)}, a.options());
    for_each_expert([&](int64_t e, int64_t off, int64_t c) {
      auto slice = out.narrow(0, off, c);
      at::mm_out(slice, a.narrow(0, off, c), per[e]);
    });
    return out;
  }

  // [E, P, Q]: per expert, its rows of a [M, P] transposed times its rows of b [M, Q] (a
  // weight gradient); zero for an expert no row chose.
  torch::Tensor per_expert(const torch::Tensor& a, const torch::Tensor& b) const {
    torch::Tensor out;
    if (offs_.defined()) {
      out = compat::grouped_mm(a.t(), b, offs_);
    } else {
      out = torch::empty({int64_t(sizes_.size()), a.size(1), b.size(1)}, a.options());
      for_each_expert([&](int64_t e, int64_t off, int64_t c) {
        auto slice = out[e];
        at::mm_out(slice, a.narrow(0, off, c).t(), b.narrow(0, off, c));
      });
    }
    for (size_t e = 0; e < sizes_.size(); ++e)
      if (sizes_[e] == 0) out[int64_t(e)].zero_();
    return out;
  }

 private:
  // Calls f(e, first_row, rows) for each expert with rows, in expert order.
  template <class F>
  void for_each_expert(F&& f) const {
    int64_t off = 0;
    for (size_t e = 0; e < sizes_.size(); ++e) {
      if (sizes_[e] == 0) continue;
      f(int64_t(e), off, sizes_[e]);
      off += sizes_[e];
    }
  }

  std::vector<int64_t> sizes_;
  torch::Tensor offs_;  // int32 cumulative ends, on the device; defined = grouped
};

// The experts of one layer on their sorted rows: per expert e, rows [off_e, off_e + c_e)
// of x go through down(w * silu(gate(x)) * up(x)), w [M] being each row's routing
// weight. The weight scales the [M, I] activation before the down GEMM
// rather than its [M, H] output after it: the same product, without a full-width pass
// and the [M, H] output kept for its gradient. A hand-written backward computes the
// stacked weight gradients straight into their final buffers; autograd through
// per-expert slices would allocate and add a full-size gradient per expert.
struct GroupedExperts : public torch::autograd::Function<GroupedExperts> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x,
                               const torch::Tensor& gate_up, const torch::Tensor& down, const torch::Tensor& w,
                               const std::vector<int64_t>& sizes, bool grouped) {
    const int64_t I = down.size(2);
    const ExpertGemms gemms(sizes, grouped, x.device());
    auto h = gemms.rows(x, gate_up, /*transposed=*/true);  // [M, 2I]: gate then up
    auto a = torch::empty({x.size(0), I}, x.options());
    at::silu_out(a, h.narrow(1, 0, I)).mul_(h.narrow(1, I, I));
    const bool save = x.requires_grad() || gate_up.requires_grad() || down.requires_grad() || w.requires_grad();
    // Backward needs the unweighted activation; inference weights it in place.
    auto aw = save ? a * w.unsqueeze(1) : a.mul_(w.unsqueeze(1));
    auto y = gemms.rows(aw, down, /*transposed=*/true);  // [M, H]
    if (save) {
      ctx->save_for_backward({x, gate_up, down, w, h, a});
      ctx->saved_data["sizes"] = c10::IValue(sizes);
      ctx->saved_data["grouped"] = grouped;
    }
    return y;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const auto& x = saved[0];
    const auto& gate_up = saved[1];
    const auto& down = saved[2];
    const auto& w = saved[3];
    const auto& h = saved[4];
    const auto& a = saved[5];
    const ExpertGemms gemms(ctx->saved_data["sizes"].toIntVector(), ctx->saved_data["grouped"].toBool(), x.device());
    auto dy = grads[0].contiguous();
    const int64_t M = x.size(0), I = down.size(2);
    const bool want_x = ctx->needs_input_grad(0), want_gu = ctx->needs_input_grad(1),
               want_down = ctx->needs_input_grad(2), want_w = ctx->needs_input_grad(3);
    // d(w a) = dy @ down_e, expert by expert; dw = rowsum(a * d(w a)); da = w * d(w a).
    auto da = gemms.rows(dy, down, /*transposed=*/false);
    torch::Tensor dw;
    if (want_w) dw = (a * da).sum(1);
    da.mul_(w.unsqueeze(1));
    // d gate = da * u * silu'(g), d up = da * silu(g): four passes of ATen's fused kernels
    // straight into dh's halves, where the expression form took eleven and five buffers.
    auto g = h.narrow(1, 0, I), u = h.narrow(1, I, I);
    auto dh = torch::empty({M, 2 * I}, dy.options());
    auto dgate = dh.narrow(1, 0, I), dup = dh.narrow(1, I, I);
    at::mul_out(dup, da, u);  // dup holds da * u for a moment
    at::silu_backward_out(dgate, dup, g);
    at::silu_out(dup, g).mul_(da);
    torch::Tensor dx, dgu, ddown;
    if (want_down) ddown = gemms.per_expert(dy, a * w.unsqueeze(1));  // w a recomputed: cheaper than kept
    if (want_gu) dgu = gemms.per_expert(dh, x);
    if (want_x) dx = gemms.rows(dh, gate_up, /*transposed=*/false);
    return {dx, dgu, ddown, dw, torch::Tensor(), torch::Tensor()};
  }
};

torch::Tensor dispatch_sorted(const torch::Tensor& x, const Routing& r, const torch::Tensor& gate_up,
                              const torch::Tensor& down, bool grouped, DispatchTrace* trace) {
  const int64_t N = x.size(0), k = r.ids.size(1), E = gate_up.size(0);
  auto flat_ids = r.ids.reshape({-1});
  // Stable: within an expert, pairs keep token order, so each output row receives its
  // experts' contributions in ascending expert order, as the reference's loop does.
  auto order = std::get<1>(flat_ids.sort(/*stable=*/true, 0, false));
  auto token_of = order.div(k, "floor");
  auto counts = torch::bincount(flat_ids, {}, E).to(torch::kCPU);
  std::vector<int64_t> sizes(counts.data_ptr<int64_t>(), counts.data_ptr<int64_t>() + E);
  auto x_sorted = x.index_select(0, token_of);
  auto w_sorted = r.weights.reshape({-1}).index_select(0, order);
  if (!trace) {
    auto y_sorted = GroupedExperts::apply(x_sorted, gate_up, down, w_sorted, sizes, grouped);
    return torch::zeros_like(x).index_add(0, token_of, y_sorted);
  }
  // The trace wants each expert's output before its weight (w = 1 is exact): weight it
  // afterwards.
  auto y_sorted = GroupedExperts::apply(x_sorted, gate_up, down, torch::ones_like(w_sorted), sizes, grouped);
  auto norms = torch::empty({N * k}, x.options().dtype(torch::kFloat32));
  norms.index_copy_(0, order, y_sorted.detach().to(torch::kFloat32).norm(2, 1));
  trace->expert_out_norm = norms.view({N, k});
  return torch::zeros_like(x).index_add(0, token_of, y_sorted * w_sorted.unsqueeze(1));
}

// transformers' MoE loop: a one-hot mask over all tokens per expert.
torch::Tensor dispatch_mask_loop(const torch::Tensor& x, const Routing& r, const torch::Tensor& gate_up,
                                 const torch::Tensor& down) {
  const int64_t E = gate_up.size(0);
  auto out = torch::zeros_like(x);
  auto mask = torch::one_hot(r.ids, E).permute({2, 1, 0});  // [E, k, N]
  // transformers keeps one nn.Linear per expert; unbind gives the same separate tensors
  // (and one gradient assembly) without the stacked layout's per-expert select cost.
  auto gate_ups = gate_up.unbind(0), downs = down.unbind(0);
  for (int64_t e = 0; e < E; ++e) {
    auto where = torch::where(mask[e]);
    auto idx = where[0], top_x = where[1];
    auto current = x.index_select(0, top_x);
    auto y = expert_mlp(current, gate_ups[size_t(e)], downs[size_t(e)]) * r.weights.index({top_x, idx}).unsqueeze(1);
    out.index_add_(0, top_x, y.to(x.dtype()));
  }
  return out;
}

}  // namespace

Dispatch default_dispatch(const torch::Tensor& x) {
  // The grouped kernels are bf16 on the GPU; elsewhere the loop of plain GEMMs is as fast
  // (the composite grouped_mm is that loop) and works on every version.
  if (compat::kHaveGroupedMM && x.is_cuda() && x.scalar_type() == torch::kBFloat16) return Dispatch::Grouped;
  return Dispatch::Sorted;
}

torch::Tensor dispatch_experts(const torch::Tensor& x, const Routing& routing, const torch::Tensor& gate_up,
                               const torch::Tensor& down, Dispatch mode, DispatchTrace* trace) {
  if (mode == Dispatch::Auto) mode = default_dispatch(x);
  if (mode == Dispatch::MaskLoop) return dispatch_mask_loop(x, routing, gate_up, down);
  // Grouped on a LibTorch without grouped GEMMs: compat::grouped_mm says so.
  return dispatch_sorted(x, routing, gate_up, down, mode == Dispatch::Grouped, trace);
}

}  // namespace emo
