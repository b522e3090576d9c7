#include "finetune/trainer.h"

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <optional>

#include "core/checkpoint/summary.h"
#include "core/model/compat.h"
#include "core/model/cpu_allocator.h"
#include "core/util/error.h"
#include "core/util/log.h"
#include "core/util/progress.h"
#include "finetune/losses.h"
#include "finetune/train_state.h"

namespace emo {

StepPlan plan_steps(size_t n, const TrainOptions& o) {
  BatchOrder order(n, o.batch_size, o.drop_last, o.shuffle, o.seed);
  StepPlan p;
  p.per_epoch = order.steps_per_epoch();
  if (o.max_steps > 0) p.total = o.max_steps;
  else {
    if (!(o.epochs > 0)) fail("--epochs", std::to_string(o.epochs), "must be positive (or give --max-steps)");
    p.total = int64_t(std::ceil(o.epochs * double(p.per_epoch) - 1e-9));
  }
  if (p.total <= 0) fail("--epochs", std::to_string(o.epochs), "gives no training step");
  p.warmup = o.warmup_steps >= 0 ? o.warmup_steps : int64_t(std::ceil(o.warmup_ratio * double(p.total)));
  return p;
}

namespace {

// A pruned checkpoint disappears at once: renamed to STEP.old-<pid> (a temporary's name,
// which nothing reads as a checkpoint) before its files go, so a kill during the removal
// leaves no directory that looks like a whole checkpoint and is not.
using Clock = std::chrono::steady_clock;

// How long the other ranks wait for rank 0 to write a checkpoint (at least; longer when
// --dist-timeout is): a 14B model's master weights and moments are ~220 GB.
constexpr std::chrono::minutes kCheckpointWriteWait{60};

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

std::string join(const std::vector<std::string>& v, const std::string& sep) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) s += (i ? sep : "") + v[i];
  return s;
}

std::string fmt(double x, int prec = 4) {
  if (std::isnan(x)) return "nan";
  if (std::isinf(x)) return x > 0 ? "inf" : "-inf";
  char b[48];
  std::snprintf(b, sizeof b, "%.*g", prec, x);
  return b;
}

// The input's carried files (tokenizer, generation config, licences), without the
// training artifacts a finetuned input has beside its weights.
void copy_model_files(const Checkpoint& from, const fs::path& dir) {
  for (const auto& f : from.extra_files()) {
    std::string name = f.filename().string();
    if (name == kMetricsFile || name == kTrainerStateFile || name == "train_summary.json") continue;
    copy_file_synced(f, dir / name);
  }
}

class Run {
 public:
  Run(TrainInputs& in, const TrainOptions& o)
      : in_(in), o_(o), model_(*in.model), config_(in.model->config()), device_(in.model->device()) {}

  TrainResult go() {
    setup();
    resume_if_asked();
    TrainResult result;
    result.start_step = start_step_;
    Json last = last_metrics_;
    std::unique_ptr<Progress> bar;
    if (rank0()) bar = std::make_unique<Progress>(in_.command, uint64_t(plan_.total), "steps");
    if (bar) bar->update(uint64_t(start_step_));
    auto run_start = Clock::now();
    for (int64_t s = start_step_; s < plan_.total; ++s) {
      last = step(s);
      if (metrics_.is_open()) metrics_.write(last);
      if (o_.on_step) o_.on_step(last);
      if (bar)
        bar->update(uint64_t(s + 1), "loss " + fmt(last["loss"].get<double>()) + "  lr " + fmt(last["lr"].get<double>(), 3) +
                                         "  " + human_count(last["tokens_per_second"].get<double>()) + " tok/s");
      const int64_t done = s + 1;
      if (o_.save_every > 0 && done % o_.save_every == 0 && done < plan_.total) save(done, last);
    }
    if (bar) bar->finish();
    elapsed_ += seconds_since(run_start);
    // The end: a checkpoint with the training state, then the model itself in OUT.
    fs::path final_ck = checkpoint_dir(o_.out, plan_.total);
    std::error_code ec;
    if (start_step_ < plan_.total || !fs::exists(final_ck / kTrainerStateFile, ec)) save(plan_.total, last);
    result.last_checkpoint = final_ck;
    result.steps = plan_.total;
    result.final_loss = last.contains("loss") ? last["loss"].get<double>() : 0.0;
    result.tokens = tokens_seen_;
    result.seconds = elapsed_;
    result.summary = summary(last);
    if (rank0()) result.output_hash = write_final(result.summary);
    return result;
  }

 private:
  bool rank0() const { return rank_ == 0; }

  void setup() {
    if (in_.comm) rank_ = in_.comm->rank(), world_ = in_.comm->world();
    freeze_ = plan_freeze(model_.weights(), config_, *o_.mode, o_.decay_all, o_.train_experts ? &*o_.train_experts : nullptr);
    const bool zero = o_.zero1 && world_ > 1;
    layout_ = std::make_unique<FlatLayout>(freeze_.slices, zero ? world_ : 1);
    if (zero) zero_ = std::make_unique<ZeroSync>(*in_.comm, freeze_.slices, device_);
    else if (world_ > 1) grad_sync_ = std::make_unique<GradSync>(*in_.comm, freeze_.slices, o_.bucket_bytes, o_.overlap);
    opt_ = AdamW(zero ? layout_->shard : layout_->total, o_.adam, device_);
    plan_ = plan_steps(in_.data->size(), o_);
    order_ = std::make_unique<BatchOrder>(in_.data->size(), o_.batch_size, o_.drop_last, o_.shuffle, o_.seed);
    sched_.kind = o_.schedule;
    sched_.peak = o_.lr;
    sched_.warmup = plan_.warmup;
    sched_.total = plan_.total;
    sched_.final_ratio = o_.final_lr_ratio;
    lb_layers_ = lb_layers(config_);
    form_ = lb_form_for(config_);
    if (o_.lb_scope != "global" && o_.lb_scope != "micro") fail("--lb-scope", o_.lb_scope, "expected global or micro");
    if (o_.lb_probs != "pooled" && o_.lb_probs != "unpooled") fail("--lb-probs", o_.lb_probs, "expected pooled or unpooled");
    if (world_ > 1 && !in_.comm->all_equal(in_.settings.dump() + in_.parent_hash + in_.data_hash))
      fail("distributed", "settings", "the ranks were started with different settings, models or data");
    if (rank0()) {
      std::error_code ec;
      fs::create_directories(o_.out, ec);
      if (ec) fail(o_.out.string(), "", "cannot create: ", ec.message());
      remove_stale_temporaries(o_.out / ".final");
      log_info("training ", human_count(double(freeze_.trainable)), " of ", human_count(double(freeze_.total)),
               " parameters (--train ", o_.mode->name, "), ", plan_.total, " steps of ", o_.batch_size,
               " sequences (", plan_.per_epoch, " per epoch), ", world_, world_ > 1 ? " processes" : " process",
               world_ > 1 ? (zero ? " with ZeRO-1" : " (data parallel)") : "");
    }
  }

  void resume_if_asked() {
    if (!o_.resume) {
      if (rank0()) metrics_.open((o_.out / kMetricsFile).string());
      return;
    }
    auto ck = latest_checkpoint(o_.out);
    if (!ck) {
      if (rank0()) {
        log_info("--resume: no checkpoint under ", checkpoints_root(o_.out).string(), "; starting from step 0");
        truncate_metrics(o_.out / kMetricsFile, 0);
        metrics_.open((o_.out / kMetricsFile).string());
      }
      return;
    }
    Json st = load_json_file((*ck / kTrainerStateFile).string());
    std::vector<std::string> diffs;
    if (st.value("parent_hash", "") != in_.parent_hash)
      diffs.push_back("model: " + st.value("parent_hash", "?") + " (checkpoint) vs " + in_.parent_hash + " (now)");
    if (st.value("data_hash", "") != in_.data_hash)
      diffs.push_back("data: " + st.value("data_hash", "?") + " (checkpoint) vs " + in_.data_hash + " (now)");
    for (const auto& d : settings_differences(st.value("settings", Json::object()), in_.settings)) diffs.push_back(d);
    if (!diffs.empty())
      fail(ck->string(), "--resume",
           "refusing to resume: this checkpoint is of another model or other settings: ", join(diffs, "; "),
           ". Use the original settings, or start over with --force");
    // Weights: the float32 masters of that step.
    {
      torch::NoGradGuard no_grad;
      Checkpoint c = Checkpoint::open(*ck);
      LoadOptions lo;
      lo.device = device_;
      lo.dtype = torch::kFloat32;
      ModelWeights w = load_weights(c, lo);
      auto dst = named_params(model_.weights(), config_), src = named_params(w, config_);
      for (size_t i = 0; i < dst.size(); ++i)
        if (dst[i].tensor->defined()) dst[i].tensor->copy_(*src[i].tensor);
    }
    // Optimizer moments (written whole; a ZeRO rank keeps its shard).
    {
      auto o = torch::TensorOptions().dtype(torch::kFloat32).device(device_);
      torch::Tensor m = torch::zeros({layout_->padded}, o), v = torch::zeros({layout_->padded}, o);
      read_optimizer_state(*ck / kOptimizerFile, freeze_.slices, layout_->offsets, m, v);
      if (zero_) {
        opt_.exp_avg().copy_(m.narrow(0, zero_->shard_begin(), layout_->shard));
        opt_.exp_avg_sq().copy_(v.narrow(0, zero_->shard_begin(), layout_->shard));
        zero_ = std::make_unique<ZeroSync>(*in_.comm, freeze_.slices, device_);  // flat copy of the loaded weights
      } else {
        opt_.exp_avg().copy_(m.narrow(0, 0, layout_->total));
        opt_.exp_avg_sq().copy_(v.narrow(0, 0, layout_->total));
      }
      opt_.set_steps(st["optimizer"]["steps"].get<int64_t>());
    }
    start_step_ = st["step"].get<int64_t>();
    tokens_seen_ = st.value("tokens_seen", uint64_t(0));
    elapsed_ = st.value("elapsed_seconds", 0.0);
    last_metrics_ = st.value("last_metrics", Json::object());
    resumed_from_ = ck->string();
    if (rank0()) {
      truncate_metrics(o_.out / kMetricsFile, start_step_);
      metrics_.open((o_.out / kMetricsFile).string());
      log_info("resuming from ", ck->string(), " (step ", start_step_, " of ", plan_.total, ")");
    }
  }

  // One micro-batch forward: the CE sum over its target rows and its router statistics.
  struct Forward {
    torch::Tensor ce_sum;
    RouterStats stats;
  };

  // The model's options for a training forward that keeps the router logits in `trace`.
  ForwardOptions forward_options(RouterTrace& trace) const {
    trace.keep_logits = true;
    trace.keep_unpooled_logits = o_.lb_probs == "unpooled";
    ForwardOptions fo;
    fo.routing = o_.routing;
    fo.trace = &trace;
    return fo;
  }

  // bf16 autocast for the guard's lifetime when training on GPU in bf16.
  void enter_autocast(std::optional<compat::AutocastGuard>& guard) const {
    if (o_.autocast_bf16) guard.emplace(device_.type(), compat::AutocastState{true, torch::kBFloat16});
  }

  Forward forward(const MicroBatch& mb, bool need_z) {
    std::optional<compat::AutocastGuard> autocast;
    enter_autocast(autocast);
    RouterTrace trace;
    ForwardOptions fo = forward_options(trace);
    fo.checkpoint_layers = o_.checkpoint_layers;
    auto h = model_.hidden_states(Batch{mb.input_ids, {}, {}, mb.document_ids}, fo);
    auto rows = h.reshape({-1, h.size(-1)}).index_select(0, mb.ce_rows);
    const ModelWeights& w = model_.weights();
    const torch::Tensor& head = w.lm_head.defined() ? w.lm_head : w.embed;
    Forward f;
    f.ce_sum = fused_linear_cross_entropy_sum(rows, head, mb.ce_targets, o_.ce_chunk);
    f.stats = router_stats(lb_layers_, trace.logits, mb.lb_mask, need_z,
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
    if (!lb_layers_.empty()) fo.last_layer = lb_layers_.back().layer;
    model_.hidden_states(Batch{mb.input_ids, {}, {}, mb.document_ids}, fo);
    return router_stats(lb_layers_, trace.logits, mb.lb_mask, false).counts;
  }

  std::vector<torch::Tensor> zero_counts() const {
    std::vector<torch::Tensor> c;
    for (const auto& L : lb_layers_) c.push_back(torch::zeros({L.experts}, torch::kFloat64));
    return c;
  }

  static void add_into(std::vector<torch::Tensor>& acc, const std::vector<torch::Tensor>& c) {
    for (size_t i = 0; i < acc.size() && i < c.size(); ++i) acc[i] += c[i].to(torch::kCPU, torch::kFloat64);
  }

  std::vector<torch::Tensor> all_sum(const std::vector<torch::Tensor>& counts) {
    if (!in_.comm) return counts;
    auto flat = flatten_counts(lb_layers_, counts);
    in_.comm->allreduce_sum(flat);
    return unflatten_counts(lb_layers_, flat);
  }

  Json step(int64_t s) {
    auto t0 = Clock::now();
    if (o_.on_step_begin) o_.on_step_begin(s);
    const std::vector<size_t> global = order_->indices(s);
    int64_t n_target = 0, n_router = 0, tokens = 0;
    for (size_t i : global) {
      n_target += in_.data->target_tokens(i);
      n_router += form_ == LbForm::Emo ? in_.data->label_tokens(i) : in_.data->length(i);
      tokens += in_.data->length(i);
    }
    const std::vector<size_t> mine = rank_share(global, rank_, world_);
    const int64_t max_share = (int64_t(global.size()) + world_ - 1) / world_;
    const int64_t micro = o_.micro_batch > 0 ? std::min(o_.micro_batch, max_share) : max_share;
    const int64_t n_micro = (max_share + micro - 1) / micro;  // the same on every rank
    std::vector<std::vector<size_t>> parts(static_cast<size_t>(n_micro));
    for (size_t k = 0; k < mine.size(); ++k) parts[k / size_t(micro)].push_back(mine[k]);
    auto batch_of = [&](const std::vector<size_t>& idx) {
      std::vector<Sequence> seqs;
      for (size_t i : idx) seqs.push_back(in_.data->get(i));
      return collate(seqs, in_.pad_id, form_ == LbForm::Emo, device_);
    };

    const bool use_lb = o_.lb_weight > 0 && !lb_layers_.empty();
    const bool need_z = o_.z_weight > 0 && !lb_layers_.empty();
    const bool global_lb = use_lb && o_.lb_scope == "global";
    // Means over the MoE layers, or sums (router_losses_summed_over_layers): z is divided
    // by L, the LB weights scaled by L (lb_weights divides by the layer count).
    const double L = o_.router_losses_summed_over_layers ? 1.0 : double(std::max<size_t>(1, lb_layers_.size()));
    const double lb_layer_scale = o_.router_losses_summed_over_layers ? double(lb_layers_.size()) : 1.0;
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

    for (const auto& sl : freeze_.slices) sl.param->mutable_grad() = torch::Tensor();
    double ce_sum = 0, lb_sum = 0, z_sum = 0;
    for (int64_t a = 0; a < n_micro; ++a) {
      const auto& p = parts[size_t(a)];
      if (a == n_micro - 1 && grad_sync_) grad_sync_->arm();
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
        w = scale_layers(lb_weights(form_, lb_layers_, counts_global, double(n_router) * double(n_router)));
      } else if (use_lb && f) {  // EMO's per-micro-batch form, normalised by the global tokens
        w = scale_layers(lb_weights(form_, lb_layers_, f->stats.counts, double(f->stats.tokens) * double(n_router)));
      }
      if (!f) continue;
      torch::Tensor loss = f->ce_sum / double(std::max<int64_t>(1, n_target));
      torch::Tensor lb_part, z_part;
      if (use_lb) {
        lb_part = lb_contribution(w, f->stats);
        loss = loss + o_.lb_weight * lb_part;
      }
      if (need_z) {
        z_part = f->stats.z_sum;
        loss = loss + z_part * (o_.z_weight / (double(std::max<int64_t>(1, n_router)) * L));
      }
      loss.backward();
      ce_sum += f->ce_sum.item<double>();
      if (lb_part.defined()) lb_sum += lb_part.item<double>();
      if (z_part.defined()) z_sum += z_part.item<double>();
    }

    // Gradients and the step's numbers, over all ranks.
    if (grad_sync_) grad_sync_->finish();
    if (zero_) zero_->reduce_scatter_grads();
    std::vector<torch::Tensor> counts = counts_are_global ? counts_global : counts_local;
    {
      auto scalars = torch::tensor({ce_sum, lb_sum, z_sum}, torch::kFloat64);
      if (in_.comm) {
        auto flat = counts_are_global ? scalars : torch::cat({scalars, flatten_counts(lb_layers_, counts_local)});
        in_.comm->allreduce_sum(flat);
        scalars = flat.narrow(0, 0, 3);
        if (!counts_are_global) counts = unflatten_counts(lb_layers_, flat.narrow(0, 3, flat.numel() - 3));
      }
      ce_sum = scalars[0].item<double>(), lb_sum = scalars[1].item<double>(), z_sum = scalars[2].item<double>();
    }
    const double ce = ce_sum / double(std::max<int64_t>(1, n_target));
    const double lb = lb_sum, z = z_sum / (double(std::max<int64_t>(1, n_router)) * L);
    const double loss = ce + (use_lb ? o_.lb_weight * lb : 0.0) + (need_z ? o_.z_weight * z : 0.0);
    if (!std::isfinite(loss)) stop_non_finite(s, "loss", loss);

    // Global gradient norm, clipping, update.
    double norm = 0;
    {
      torch::Tensor sq;
      if (zero_) {
        sq = zero_->grad_shard().to(torch::kFloat64).pow(2).sum().reshape({1}).to(torch::kCPU);
        in_.comm->allreduce_sum(sq);
      } else {
        std::vector<torch::Tensor> gs;
        for (const auto& sl : freeze_.slices) gs.push_back(sl.grad());
        sq = sum_of_squares(gs).to(torch::kCPU);
      }
      norm = std::sqrt(sq.sum().item<double>());
    }
    if (!std::isfinite(norm)) stop_non_finite(s, "gradient norm", norm);
    if (o_.clip > 0) {
      double coef = o_.clip / (norm + 1e-6);
      if (coef < 1.0) {
        torch::NoGradGuard no_grad;
        if (zero_) zero_->grad_shard().mul_(coef);
        else
          for (const auto& sl : freeze_.slices)
            if (sl.grad().defined()) sl.grad().mul_(coef);
      }
    }
    const double lr = sched_.at(s);
    if (zero_) {
      opt_.step(zero_->segments(), lr);
      zero_->allgather_params();
    } else {
      opt_.step(slice_segments(freeze_.slices, *layout_), lr);
    }
    for (const auto& sl : freeze_.slices) sl.param->mutable_grad() = torch::Tensor();

    tokens_seen_ += uint64_t(tokens);
    const double secs = seconds_since(t0);
    Json rec = {{"step", s + 1},
                {"epoch", double(s + 1) / double(plan_.per_epoch)},
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
    if (!lb_layers_.empty()) {
      Json ent = Json::array();
      for (double e : load_entropy(counts)) ent.push_back(e);
      rec["expert_load_entropy"] = ent;
    }
    return rec;
  }

  [[noreturn]] void stop_non_finite(int64_t s, const std::string& what, double value) {
    auto last = latest_checkpoint(o_.out);
    if (metrics_.is_open()) metrics_.write({{"step", s + 1}, {"error", what + " is " + fmt(value)}});
    fail(o_.out.string(), cat("step ", s + 1), what, " is ", fmt(value), "; training stopped. ",
         last ? "The last good checkpoint is " + last->string() + " (continue from it with --resume, e.g. with a lower --lr)"
              : std::string("No checkpoint was written before it (--save-every N keeps some)"));
  }

  Json state_json(int64_t done, const Json& last, const std::string& model_hash) const {
    Json slices = Json::array();
    for (const auto& s : freeze_.slices) slices.push_back({{"name", s.name}, {"rows", {s.row_begin, s.row_end}}});
    const int64_t epoch = done / plan_.per_epoch;
    return {{"emo_trainer_state", 1},
            {"step", done},
            {"total_steps", plan_.total},
            {"steps_per_epoch", plan_.per_epoch},
            {"data_position",
             {{"epoch", epoch},
              {"step_in_epoch", done - epoch * plan_.per_epoch},
              {"order", "seeded permutation per epoch (splitmix64 Fisher-Yates of seed and epoch)"}}},
            {"tokens_seen", tokens_seen_},
            {"elapsed_seconds", elapsed_},
            {"schedule",
             {{"kind", schedule_name(sched_.kind)},
              {"peak_lr", sched_.peak},
              {"warmup_steps", sched_.warmup},
              {"total_steps", sched_.total},
              {"final_lr_ratio", sched_.final_ratio},
              {"next_lr", done < plan_.total ? sched_.at(done) : 0.0}}},
            {"optimizer",
             {{"kind", "adamw"},
              {"steps", opt_.steps()},
              {"betas", {o_.adam.beta1, o_.adam.beta2}},
              {"eps", o_.adam.eps},
              {"weight_decay", o_.adam.weight_decay},
              {"file", kOptimizerFile}}},
            {"rng", {{"seed", o_.seed}, {"data_order_epoch", epoch}, {"note", "training draws no other random numbers"}}},
            {"parent_hash", in_.parent_hash},
            {"data_hash", in_.data_hash},
            {"model_hash", model_hash},
            {"settings", in_.settings},
            {"slices", slices},
            {"world_size", world_},
            {"zero1", bool(zero_)},
            {"last_metrics", last}};
  }

  std::string save_model(const fs::path& dir, DType dtype) {
    return save_weights(model_.weights(), config_, dir, write_options_like(*in_.checkpoint),
                        [dtype](const CanonicalTensor&) { return dtype; });
  }

  void save(int64_t done, const Json& last) {
    torch::Tensor m, v;  // full flat moments (a collective under ZeRO: every rank takes part)
    if (zero_) m = zero_->gather_state(opt_.exp_avg()), v = zero_->gather_state(opt_.exp_avg_sq());
    else m = opt_.exp_avg(), v = opt_.exp_avg_sq();
    if (rank0()) write_checkpoint(done, last, m, v);
    // The other ranks wait for rank 0's write here, with time for a large model's files,
    // rather than in the next step's first collective under --dist-timeout.
    if (in_.comm) in_.comm->barrier(std::max<std::chrono::milliseconds>(in_.comm->timeout(), kCheckpointWriteWait));
  }

  // Rank 0: the checkpoint of step `done` (master weights, optimizer state, trainer state).
  void write_checkpoint(int64_t done, const Json& last, const torch::Tensor& m, const torch::Tensor& v) {
    fs::path target = checkpoint_dir(o_.out, done);
    std::error_code ec;
    fs::create_directories(target.parent_path(), ec);
    AtomicDir dir(target, /*overwrite=*/true);
    std::string hash = save_model(dir.path(), DType::F32);
    copy_model_files(*in_.checkpoint, dir.path());
    write_optimizer_state(dir / kOptimizerFile, freeze_.slices, layout_->offsets, m, v, opt_.steps());
    write_file_atomic(dir / kTrainerStateFile, state_json(done, last, hash).dump(2) + "\n");
    Provenance p = in_.provenance;
    p.output_hash = hash;
    p.finished = now_iso8601();
    p.extra["checkpoint_step"] = done;
    p.extra["total_steps"] = plan_.total;
    p.write(dir.path());
    write_file_atomic(dir / kModelCardFile,
                      model_card(in_.title + " (step " + std::to_string(done) + " of " + std::to_string(plan_.total) + ")",
                                 config_, p,
                                 "A training checkpoint written by `emo " + in_.command + "` (float32 master weights plus the "
                                 "optimizer state in optimizer.safetensors and trainer_state.json)."));
    dir.commit();
    log_debug("checkpoint ", target.string());
    if (o_.keep_last > 0) {
      auto all = list_checkpoints(o_.out);
      while (int(all.size()) > o_.keep_last) {
        remove_output_dir(all.begin()->second);
        all.erase(all.begin());
      }
    }
  }

  Json summary(const Json& last) const {
    return {{"out", o_.out.string()},
            {"steps", plan_.total},
            {"resumed_from", resumed_from_.empty() ? Json() : Json(resumed_from_)},
            {"final", last},
            {"tokens", tokens_seen_},
            {"seconds", elapsed_},
            {"tokens_per_second", elapsed_ > 0 ? double(tokens_seen_) / elapsed_ : 0.0},
            {"trainable_parameters", freeze_.trainable},
            {"world_size", world_}};
  }

  // The finetuned model in OUT itself: written beside, then renamed in with config.json
  // last, so that OUT only looks like a checkpoint once it is complete.
  std::string write_final(const Json& summary) {
    remove_stale_temporaries(o_.out / ".final");  // a killed run's half-written final model
    fs::path tmp = o_.out / (".final.tmp-" + std::to_string(::getpid()));
    std::error_code ec;
    fs::remove_all(tmp, ec);
    fs::create_directories(tmp);
    std::string hash = save_model(tmp, o_.output_dtype);
    copy_model_files(*in_.checkpoint, tmp);
    Provenance p = in_.provenance;
    p.output_hash = hash;
    p.finished = now_iso8601();
    const Json& last = summary["final"];
    for (const char* k : {"loss", "ce_loss", "lb_loss", "z_loss", "grad_norm"})
      if (last.contains(k)) p.metrics[std::string("final_") + k] = last[k].get<double>();
    p.metrics["steps"] = plan_.total;
    p.metrics["tokens"] = tokens_seen_;
    p.metrics["seconds"] = elapsed_;
    p.metrics["tokens_per_second"] = summary["tokens_per_second"].get<double>();
    p.extra["trainable_parameters"] = freeze_.trainable;
    p.extra["world_size"] = world_;
    if (!resumed_from_.empty()) p.extra["resumed_from"] = resumed_from_;
    p.write(tmp);
    write_file_atomic(tmp / kModelCardFile,
                      model_card(in_.title, config_, p,
                                 "A model trained by `emo " + in_.command + "` (--train " + std::string(o_.mode->name) +
                                     "). The training log is metrics.jsonl; checkpoints/ holds the training state."));
    write_file_atomic(tmp / "train_summary.json", summary.dump(2) + "\n");
    fs::remove(o_.out / kConfigFile, ec);  // OUT stops looking complete while its files change
    std::vector<fs::path> files;
    for (const auto& e : fs::directory_iterator(tmp)) files.push_back(e.path());
    for (const auto& f : files)
      if (f.filename() != kConfigFile) fs::rename(f, o_.out / f.filename());
    fsync_dir(o_.out);
    fs::rename(tmp / kConfigFile, o_.out / kConfigFile);
    fsync_dir(o_.out);
    fs::remove_all(tmp, ec);
    return hash;
  }

  TrainInputs& in_;
  const TrainOptions& o_;
  Model& model_;
  const ModelConfig& config_;
  torch::Device device_;
  int rank_ = 0, world_ = 1;
  FreezePlan freeze_;
  std::unique_ptr<FlatLayout> layout_;
  std::unique_ptr<ZeroSync> zero_;
  std::unique_ptr<GradSync> grad_sync_;
  AdamW opt_;
  StepPlan plan_;
  std::unique_ptr<BatchOrder> order_;
  LrSchedule sched_;
  std::vector<LbLayer> lb_layers_;
  LbForm form_ = LbForm::Emo;
  MetricsLog metrics_;
  int64_t start_step_ = 0;
  uint64_t tokens_seen_ = 0;
  double elapsed_ = 0;
  Json last_metrics_ = Json::object();
  std::string resumed_from_;
};

}  // namespace

TrainResult train(TrainInputs& inputs, const TrainOptions& options) {
  if (!inputs.model || !inputs.data || !inputs.checkpoint) fail("train", "", "model, data and checkpoint are required");
  // Every step frees and reallocates the same large activations: keep them mapped.
  CachingCpuAllocatorScope keep_blocks;
  Run run(inputs, options);
  return run.go();
}

}  // namespace emo
