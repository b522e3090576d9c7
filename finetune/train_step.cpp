// One optimizer step of a training run: the global batch split over the ranks and into
// micro-batches, forward and backward with the router terms, gradients synchronised,
// clipped by their global norm, and AdamW with the scheduled learning rate.
#include <cmath>
#include <optional>

#include "core/model/compat.h"
#include "core/util/error.h"
#include "finetune/train_run.h"
#include "finetune/train_state.h"

namespace emo {

namespace {

class StepRunner {
 public:
  explicit StepRunner(TrainRun& r) : run(r) {}

  Json run_step(int64_t s) {
    auto t0 = Clock::now();
    if (run.o.on_step_begin) run.o.on_step_begin(s);
    const std::vector<size_t> global = run.order->indices(s);
    int64_t n_target = 0, n_router = 0, tokens = 0;
    for (size_t i : global) {
      n_target += run.in.data->target_tokens(i);
      n_router += run.form == LbForm::Emo ? run.in.data->label_tokens(i) : run.in.data->length(i);
      tokens += run.in.data->length(i);
    }
    const std::vector<size_t> mine = rank_share(global, run.rank, run.world);
    const int64_t max_share = (int64_t(global.size()) + run.world - 1) / run.world;
    const int64_t micro = run.o.micro_batch > 0 ? std::min(run.o.micro_batch, max_share) : max_share;
    const int64_t n_micro = (max_share + micro - 1) / micro;  // the same on every rank
    std::vector<std::vector<size_t>> parts(static_cast<size_t>(n_micro));
    for (size_t k = 0; k < mine.size(); ++k) parts[k / size_t(micro)].push_back(mine[k]);
    auto batch_of = [&](const std::vector<size_t>& idx) {
      std::vector<Sequence> seqs;
      for (size_t i : idx) seqs.push_back(run.in.data->get(i));
      return collate(seqs, run.in.pad_id, run.form == LbForm::Emo, run.device);
    };

    const bool use_lb = run.o.lb_weight > 0 && !run.lb_layers.empty();
    const bool need_z = run.o.z_weight > 0 && !run.lb_layers.empty();
    const bool global_lb = use_lb && run.o.lb_scope == "global";
    // Means over the MoE layers, or sums (router_losses_summed_over_layers): z is divided
    // by L, the LB weights scaled by L (lb_weights divides by the layer count).
    const double L = run.o.router_losses_summed_over_layers ? 1.0 : double(std::max<size_t>(1, run.lb_layers.size()));
    const double lb_layer_scale = run.o.router_losses_summed_over_layers ? double(run.lb_layers.size()) : 1.0;
    auto scale_layers = [&](std::vector<torch::Tensor> w) {
      if (lb_layer_scale != 1.0)
        for (auto& t : w) t = t * lb_layer_scale;
      return w;
    };
    std::vector<torch::Tensor> counts_global, counts_local = zero_counts();
    bool counts_are_global = false;
    if (global_lb && n_micro > 1) {
      std::vector<torch::Tensor> c = zero_counts();
      for (const auto& p : parts)
        if (!p.empty()) add_into(c, count_only(batch_of(p)));
      counts_global = all_sum(c);
    }

    for (const auto& sl : run.freeze.slices) sl.param->mutable_grad() = torch::Tensor();
    double ce_sum = 0, lb_sum = 0, z_sum = 0;
    for (int64_t a = 0; a < n_micro; ++a) {
      const auto& p = parts[size_t(a)];
      if (a == n_micro - 1 && run.grad_sync) run.grad_sync->arm();
      std::optional<Forward> f;
      MicroBatch mb;
      if (!p.empty()) {
        mb = batch_of(p);
        f = forward(mb, need_z);
        add_into(counts_local, f->stats.counts);
      }
      std::vector<torch::Tensor> w;
      if (global_lb) {
        if (n_micro == 1) {  // one micro-batch per rank: its counts, summed over the ranks
          counts_global = all_sum(f ? f->stats.counts : zero_counts());
          counts_are_global = true;
        }
        w = scale_layers(lb_weights(run.form, run.lb_layers, counts_global, double(n_router) * double(n_router)));
      } else if (use_lb && f) {  // EMO's per-micro-batch form, normalised by the global tokens
        w = scale_layers(lb_weights(run.form, run.lb_layers, f->stats.counts, double(f->stats.tokens) * double(n_router)));
      }
      if (!f) continue;
      torch::Tensor loss = f->ce_sum / double(std::max<int64_t>(1, n_target));
      torch::Tensor lb_part, z_part;
      if (use_lb) {
        lb_part = lb_contribution(w, f->stats);
        loss = loss + run.o.lb_weight * lb_part;
      }
      if (need_z) {
        z_part = f->stats.z_sum;
        loss = loss + z_part * (run.o.z_weight / (double(std::max<int64_t>(1, n_router)) * L));
      }
      loss.backward();
      ce_sum += f->ce_sum.item<double>();
      if (lb_part.defined()) lb_sum += lb_part.item<double>();
      if (z_part.defined()) z_sum += z_part.item<double>();
    }

    // Gradients and the step's numbers, over all ranks.
    if (run.grad_sync) run.grad_sync->finish();
    if (run.zero) run.zero->reduce_scatter_grads();
    std::vector<torch::Tensor> counts = counts_are_global ? counts_global : counts_local;
    {
      auto scalars = torch::tensor({ce_sum, lb_sum, z_sum}, torch::kFloat64);
      if (run.in.comm) {
        auto flat = counts_are_global ? scalars : torch::cat({scalars, flatten_counts(run.lb_layers, counts_local)});
        run.in.comm->allreduce_sum(flat);
        scalars = flat.narrow(0, 0, 3);
        if (!counts_are_global) counts = unflatten_counts(run.lb_layers, flat.narrow(0, 3, flat.numel() - 3));
      }
      ce_sum = scalars[0].item<double>(), lb_sum = scalars[1].item<double>(), z_sum = scalars[2].item<double>();
    }
    const double ce = ce_sum / double(std::max<int64_t>(1, n_target));
    const double lb = lb_sum, z = z_sum / (double(std::max<int64_t>(1, n_router)) * L);
    const double loss = ce + (use_lb ? run.o.lb_weight * lb : 0.0) + (need_z ? run.o.z_weight * z : 0.0);
    if (!std::isfinite(loss)) stop_non_finite(s, "loss", loss);

    // Global gradient norm, clipping, update.
    const double norm = gradient_norm();
    if (!std::isfinite(norm)) stop_non_finite(s, "gradient norm", norm);
    clip_gradients(norm);
    const double lr = run.sched.at(s);
    update(lr);
    for (const auto& sl : run.freeze.slices) sl.param->mutable_grad() = torch::Tensor();

    run.tokens_seen += uint64_t(tokens);
    const double secs = seconds_since(t0);
    Json rec = {{"step", s + 1},
                {"epoch", double(s + 1) / double(run.plan.per_epoch)},
                {"loss", loss},
                {"ce_loss", ce},
                {"lb_loss", lb},
                {"z_loss", z},
                {"lr", lr},
                {"grad_norm", norm},
                {"sequences", global.size()},
                {"tokens", tokens},
                {"target_tokens", n_target},
                {"tokens_per_second", secs > 0 ? double(tokens) / secs : 0.0},
                {"seconds", secs}};
    if (!run.lb_layers.empty()) {
      Json ent = Json::array();
      for (double e : load_entropy(counts)) ent.push_back(e);
      rec["expert_load_entropy"] = ent;
    }
    return rec;
  }

 private:
  // One micro-batch forward: the CE sum over its target rows and its router statistics.
  struct Forward {
    torch::Tensor ce_sum;
    RouterStats stats;
  };

  // The model's options for a training forward that keeps the router logits in `trace`.
  ForwardOptions forward_options(RouterTrace& trace) const {
    trace.keep_logits = true;
    trace.keep_unpooled_logits = run.o.lb_probs == "unpooled";
    ForwardOptions fo;
    fo.routing = run.o.routing;
    fo.trace = &trace;
    return fo;
  }

  // bf16 autocast for the guard's lifetime when training on GPU in bf16.
  void enter_autocast(std::optional<compat::AutocastGuard>& guard) const {
    if (run.o.autocast_bf16) guard.emplace(run.device.type(), compat::AutocastState{true, torch::kBFloat16});
  }

  Forward forward(const MicroBatch& mb, bool need_z) {
    std::optional<compat::AutocastGuard> autocast;
    enter_autocast(autocast);
    RouterTrace trace;
    ForwardOptions fo = forward_options(trace);
    fo.checkpoint_layers = run.o.checkpoint_layers;
    auto h = run.model.hidden_states(Batch{mb.input_ids, {}, {}, mb.document_ids}, fo);
    auto rows = h.reshape({-1, h.size(-1)}).index_select(0, mb.ce_rows);
    const ModelWeights& w = run.model.weights();
    const torch::Tensor& head = w.lm_head.defined() ? w.lm_head : w.embed;
    Forward f;
    f.ce_sum = fused_linear_cross_entropy_sum(rows, head, mb.ce_targets, run.o.ce_chunk);
    f.stats = router_stats(run.lb_layers, trace.logits, mb.lb_mask, need_z,
                           trace.keep_unpooled_logits ? &trace.unpooled_logits : nullptr);
    return f;
  }

  // Router counts of micro-batches without keeping any graph (the global counts must be
  // known before the first backward when a step has several micro-batches).
  std::vector<torch::Tensor> count_only(const MicroBatch& mb) {
    torch::NoGradGuard no_grad;
    std::optional<compat::AutocastGuard> autocast;
    enter_autocast(autocast);
    RouterTrace trace;
    ForwardOptions fo = forward_options(trace);
    if (!run.lb_layers.empty()) fo.last_layer = run.lb_layers.back().layer;
    run.model.hidden_states(Batch{mb.input_ids, {}, {}, mb.document_ids}, fo);
    return router_stats(run.lb_layers, trace.logits, mb.lb_mask, false).counts;
  }

  std::vector<torch::Tensor> zero_counts() const {
    std::vector<torch::Tensor> c;
    for (const auto& L : run.lb_layers) c.push_back(torch::zeros({L.experts}, torch::kFloat64));
    return c;
  }

  static void add_into(std::vector<torch::Tensor>& acc, const std::vector<torch::Tensor>& c) {
    for (size_t i = 0; i < acc.size() && i < c.size(); ++i) acc[i] += c[i].to(torch::kCPU, torch::kFloat64);
  }

  std::vector<torch::Tensor> all_sum(const std::vector<torch::Tensor>& counts) {
    if (!run.in.comm) return counts;
    auto flat = flatten_counts(run.lb_layers, counts);
    run.in.comm->allreduce_sum(flat);
    return unflatten_counts(run.lb_layers, flat);
  }

  // The global norm of the trainable gradients (over the shards under ZeRO-1).
  double gradient_norm() {
    torch::Tensor sq;
    if (run.zero) {
      sq = run.zero->grad_shard().to(torch::kFloat64).pow(2).sum().reshape({1}).to(torch::kCPU);
      run.in.comm->allreduce_sum(sq);
    } else {
      std::vector<torch::Tensor> gs;
      for (const auto& sl : run.freeze.slices) gs.push_back(sl.grad());
      sq = sum_of_squares(gs).to(torch::kCPU);
    }
    return std::sqrt(sq.sum().item<double>());
  }

  // Scales the gradients so that their global norm is at most options.clip.
  void clip_gradients(double norm) {
    if (run.o.clip <= 0) return;
    const double coef = run.o.clip / (norm + 1e-6);
    if (coef >= 1.0) return;
    torch::NoGradGuard no_grad;
    if (run.zero) run.zero->grad_shard().mul_(coef);
    else
      for (const auto& sl : run.freeze.slices)
        if (sl.grad().defined()) sl.grad().mul_(coef);
  }

  // AdamW on the trainable slices (this rank's shard, then gathered, under ZeRO-1).
  void update(double lr) {
    if (run.zero) {
      run.opt.step(run.zero->segments(), lr);
      run.zero->allgather_params();
    } else {
      run.opt.step(slice_segments(run.freeze.slices, *run.layout), lr);
    }
  }

  [[noreturn]] void stop_non_finite(int64_t s, const std::string& what, double value) {
    auto last = latest_checkpoint(run.o.out);
    if (run.metrics.is_open()) run.metrics.write({{"step", s + 1}, {"error", what + " is " + fmt(value)}});
    fail(run.o.out.string(), cat("step ", s + 1), what, " is ", fmt(value), "; training stopped. ",
         last ? "The last good checkpoint is " + last->string() + " (continue from it with --resume, e.g. with a lower --lr)"
              : std::string("No checkpoint was written before it (--save-every N keeps some)"));
  }

  TrainRun& run;
};

}  // namespace

Json train_step(TrainRun& run, int64_t step) { return StepRunner(run).run_step(step); }

}  // namespace emo
