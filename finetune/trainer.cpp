#include "finetune/trainer.h"

#include <cmath>

#include "core/model/cpu_allocator.h"
#include "core/util/error.h"
#include "core/util/log.h"
#include "core/util/progress.h"
#include "finetune/losses.h"
#include "finetune/train_run.h"
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
  if (o.schedule == Schedule::Wsd) p.decay = int64_t(std::ceil(o.decay_ratio * double(p.total)));
  return p;
}

namespace {

// The loop: set-up, the steps (with progress and periodic checkpoints), the end.
class Loop {
 public:
  Loop(TrainInputs& in, const TrainOptions& o) : run(in, o) {}

  TrainResult go() {
    setup();
    resume_if_asked(run);
    TrainResult result;
    result.start_step = run.start_step;
    Json last = run.last_metrics;
    std::unique_ptr<Progress> bar;
    if (run.rank0()) bar = std::make_unique<Progress>(run.in.command, uint64_t(run.plan.total), "steps");
    if (bar) bar->update(uint64_t(run.start_step));
    auto run_start = Clock::now();
    for (int64_t s = run.start_step; s < run.plan.total; ++s) {
      last = train_step(run, s);
      if (run.metrics.is_open()) run.metrics.write(last);
      if (run.o.on_step) run.o.on_step(last);
      if (bar)
        bar->update(uint64_t(s + 1), "loss " + fmt(last["loss"].get<double>()) + "  lr " + fmt(last["lr"].get<double>(), 3) +
                                         "  " + human_count(last["tokens_per_second"].get<double>()) + " tok/s");
      const int64_t done = s + 1;
      if (run.o.save_every > 0 && done % run.o.save_every == 0 && done < run.plan.total) save_checkpoint(run, done, last);
    }
    if (bar) bar->finish();
    run.elapsed += seconds_since(run_start);
    // The end: a checkpoint with the training state, then the model itself in OUT.
    fs::path final_ck = checkpoint_dir(run.o.out, run.plan.total);
    std::error_code ec;
    if (run.start_step < run.plan.total || !fs::exists(final_ck / kTrainerStateFile, ec)) save_checkpoint(run, run.plan.total, last);
    result.last_checkpoint = final_ck;
    result.steps = run.plan.total;
    result.final_loss = last.contains("loss") ? last["loss"].get<double>() : 0.0;
    result.tokens = run.tokens_seen;
    result.seconds = run.elapsed;
    result.summary = run_summary(run, last);
    if (run.rank0()) result.output_hash = write_final_model(run, result.summary);
    return result;
  }

 private:
  void setup() {
    if (run.in.comm) run.rank = run.in.comm->rank(), run.world = run.in.comm->world();
    run.freeze = plan_freeze(run.model.weights(), run.config, *run.o.mode, run.o.decay_all, run.o.train_experts ? &*run.o.train_experts : nullptr);
    const bool zero = run.o.zero1 && run.world > 1;
    run.layout = std::make_unique<FlatLayout>(run.freeze.slices, zero ? run.world : 1);
    if (zero) run.zero = std::make_unique<ZeroSync>(*run.in.comm, run.freeze.slices, run.device);
    else if (run.world > 1) run.grad_sync = std::make_unique<GradSync>(*run.in.comm, run.freeze.slices, run.o.bucket_bytes, run.o.overlap);
    run.opt = AdamW(zero ? run.layout->shard : run.layout->total, run.o.adam, run.device);
    run.plan = plan_steps(run.in.data->size(), run.o);
    run.order = std::make_unique<BatchOrder>(run.in.data->size(), run.o.batch_size, run.o.drop_last, run.o.shuffle, run.o.seed);
    run.sched.kind = run.o.schedule;
    run.sched.peak = run.o.lr;
    run.sched.warmup = run.plan.warmup;
    run.sched.total = run.plan.total;
    run.sched.decay = run.plan.decay;
    run.sched.final_ratio = run.o.final_lr_ratio;
    run.lb_layers = lb_layers(run.config);
    run.form = lb_form_for(run.config);
    if (run.o.lb_scope != "global" && run.o.lb_scope != "micro") fail("--lb-scope", run.o.lb_scope, "expected global or micro");
    if (run.o.lb_probs != "pooled" && run.o.lb_probs != "unpooled") fail("--lb-probs", run.o.lb_probs, "expected pooled or unpooled");
    if (run.world > 1 && !run.in.comm->all_equal(run.in.settings.dump() + run.in.parent_hash + run.in.data_hash))
      fail("distributed", "settings", "the ranks were started with different settings, models or data");
    if (run.rank0()) {
      std::error_code ec;
      fs::create_directories(run.o.out, ec);
      if (ec) fail(run.o.out.string(), "", "cannot create: ", ec.message());
      remove_stale_temporaries(run.o.out / ".final");
      log_info("training ", human_count(double(run.freeze.trainable)), " of ", human_count(double(run.freeze.total)),
               " parameters (--train ", run.o.mode->name, "), ", run.plan.total, " steps of ", run.o.batch_size,
               " sequences (", run.plan.per_epoch, " per epoch), ", run.world, run.world > 1 ? " processes" : " process",
               run.world > 1 ? (zero ? " with ZeRO-1" : " (data parallel)") : "");
    }
  }

  TrainRun run;
};

}  // namespace

TrainResult train(TrainInputs& inputs, const TrainOptions& options) {
  if (!inputs.model || !inputs.data || !inputs.checkpoint) fail("train", "", "model, data and checkpoint are required");
  // Every step frees and reallocates the same large activations: keep them mapped.
  CachingCpuAllocatorScope keep_blocks;
  Loop loop(inputs, options);
  return loop.go();
}

}  // namespace emo
