// A training run's state on disk: resuming from the latest checkpoint, writing one
// (master weights, optimizer moments, trainer_state.json), and the final model in OUT.
#include <unistd.h>

#include "core/checkpoint/summary.h"
#include "core/util/error.h"
#include "core/util/log.h"
#include "finetune/train_run.h"
#include "finetune/train_state.h"

namespace emo {

namespace {

// How long the other ranks wait for rank 0 to write a checkpoint (at least; longer when
// --dist-timeout is): a 14B model's master weights and moments are ~220 GB.
constexpr std::chrono::minutes kCheckpointWriteWait{60};

std::string join(const std::vector<std::string>& v, const std::string& sep) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) s += (i ? sep : "") + v[i];
  return s;
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

Json state_json(const TrainRun& run, int64_t done, const Json& last, const std::string& model_hash) {
  Json slices = Json::array();
  for (const auto& s : run.freeze.slices) slices.push_back({{"name", s.name}, {"rows", {s.row_begin, s.row_end}}});
  const int64_t epoch = done / run.plan.per_epoch;
  return {{"emo_trainer_state", 1},
          {"step", done},
          {"total_steps", run.plan.total},
          {"steps_per_epoch", run.plan.per_epoch},
          {"data_position",
           {{"epoch", epoch},
            {"step_in_epoch", done - epoch * run.plan.per_epoch},
            {"order", "seeded permutation per epoch (splitmix64 Fisher-Yates of seed and epoch)"}}},
          {"tokens_seen", run.tokens_seen},
          {"elapsed_seconds", run.elapsed},
          {"schedule",
           {{"kind", schedule_name(run.sched.kind)},
            {"peak_lr", run.sched.peak},
            {"warmup_steps", run.sched.warmup},
            {"total_steps", run.sched.total},
            {"decay_steps", run.sched.decay},
            {"final_lr_ratio", run.sched.final_ratio},
            {"next_lr", done < run.plan.total ? run.sched.at(done) : 0.0}}},
          {"optimizer",
           {{"kind", "adamw"},
            {"steps", run.opt.steps()},
            {"betas", {run.o.adam.beta1, run.o.adam.beta2}},
            {"eps", run.o.adam.eps},
            {"weight_decay", run.o.adam.weight_decay},
            {"file", kOptimizerFile}}},
          {"rng", {{"seed", run.o.seed}, {"data_order_epoch", epoch}, {"note", "training draws no other random numbers"}}},
          {"parent_hash", run.in.parent_hash},
          {"data_hash", run.in.data_hash},
          {"model_hash", model_hash},
          {"settings", run.in.settings},
          {"slices", slices},
          {"world_size", run.world},
          {"zero1", bool(run.zero)},
          {"last_metrics", last}};
}

std::string save_model(TrainRun& run, const fs::path& dir, DType dtype) {
  return save_weights(run.model.weights(), run.config, dir, write_options_like(*run.in.checkpoint),
                      [dtype](const CanonicalTensor&) { return dtype; });
}

// Rank 0: the checkpoint of step `done` (master weights, optimizer state, trainer state).
void write_checkpoint(TrainRun& run, int64_t done, const Json& last, const torch::Tensor& m, const torch::Tensor& v) {
  fs::path target = checkpoint_dir(run.o.out, done);
  std::error_code ec;
  fs::create_directories(target.parent_path(), ec);
  AtomicDir dir(target, /*overwrite=*/true);
  std::string hash = save_model(run, dir.path(), DType::F32);
  copy_model_files(*run.in.checkpoint, dir.path());
  write_optimizer_state(dir / kOptimizerFile, run.freeze.slices, run.layout->offsets, m, v, run.opt.steps());
  write_file_atomic(dir / kTrainerStateFile, state_json(run, done, last, hash).dump(2) + "\n");
  Provenance p = run.in.provenance;
  p.output_hash = hash;
  p.finished = now_iso8601();
  p.extra["checkpoint_step"] = done;
  p.extra["total_steps"] = run.plan.total;
  p.write(dir.path());
  write_file_atomic(dir / kModelCardFile,
                    model_card(run.in.title + " (step " + std::to_string(done) + " of " + std::to_string(run.plan.total) + ")",
                               run.config, p,
                               "A training checkpoint written by `emo " + run.in.command + "` (float32 master weights plus the "
                               "optimizer state in optimizer.safetensors and trainer_state.json)."));
  dir.commit();
  log_debug("checkpoint ", target.string());
  if (run.o.keep_last > 0) {
    auto all = list_checkpoints(run.o.out);
    while (int(all.size()) > run.o.keep_last) {
      remove_output_dir(all.begin()->second);
      all.erase(all.begin());
    }
  }
}

}  // namespace

void resume_if_asked(TrainRun& run) {
  if (!run.o.resume) {
    if (run.rank0()) run.metrics.open((run.o.out / kMetricsFile).string());
    return;
  }
  auto ck = latest_checkpoint(run.o.out);
  if (!ck) {
    if (run.rank0()) {
      log_info("--resume: no checkpoint under ", checkpoints_root(run.o.out).string(), "; starting from step 0");
      truncate_metrics(run.o.out / kMetricsFile, 0);
      run.metrics.open((run.o.out / kMetricsFile).string());
    }
    return;
  }
  Json st = load_json_file((*ck / kTrainerStateFile).string());
  std::vector<std::string> diffs;
  if (st.value("parent_hash", "") != run.in.parent_hash)
    diffs.push_back("model: " + st.value("parent_hash", "?") + " (checkpoint) vs " + run.in.parent_hash + " (now)");
  if (st.value("data_hash", "") != run.in.data_hash)
    diffs.push_back("data: " + st.value("data_hash", "?") + " (checkpoint) vs " + run.in.data_hash + " (now)");
  for (const auto& d : settings_differences(st.value("settings", Json::object()), run.in.settings)) diffs.push_back(d);
  if (!diffs.empty())
    fail(ck->string(), "--resume",
         "refusing to resume: this checkpoint is of another model or other settings: ", join(diffs, "; "),
         ". Use the original settings, or start over with --force");
  // Weights: the float32 masters of that step.
  {
    torch::NoGradGuard no_grad;
    Checkpoint c = Checkpoint::open(*ck);
    LoadOptions lo;
    lo.device = run.device;
    lo.dtype = torch::kFloat32;
    ModelWeights w = load_weights(c, lo);
    auto dst = named_params(run.model.weights(), run.config), src = named_params(w, run.config);
    for (size_t i = 0; i < dst.size(); ++i)
      if (dst[i].tensor->defined()) dst[i].tensor->copy_(*src[i].tensor);
  }
  // Optimizer moments (written whole; a ZeRO rank keeps its shard).
  {
    auto o = torch::TensorOptions().dtype(torch::kFloat32).device(run.device);
    torch::Tensor m = torch::zeros({run.layout->padded}, o), v = torch::zeros({run.layout->padded}, o);
    read_optimizer_state(*ck / kOptimizerFile, run.freeze.slices, run.layout->offsets, m, v);
    if (run.zero) {
      run.opt.exp_avg().copy_(m.narrow(0, run.zero->shard_begin(), run.layout->shard));
      run.opt.exp_avg_sq().copy_(v.narrow(0, run.zero->shard_begin(), run.layout->shard));
      run.zero = std::make_unique<ZeroSync>(*run.in.comm, run.freeze.slices, run.device);  // flat copy of the loaded weights
    } else {
      run.opt.exp_avg().copy_(m.narrow(0, 0, run.layout->total));
      run.opt.exp_avg_sq().copy_(v.narrow(0, 0, run.layout->total));
    }
    run.opt.set_steps(st["optimizer"]["steps"].get<int64_t>());
  }
  run.start_step = st["step"].get<int64_t>();
  run.tokens_seen = st.value("tokens_seen", uint64_t(0));
  run.elapsed = st.value("elapsed_seconds", 0.0);
  run.last_metrics = st.value("last_metrics", Json::object());
  run.resumed_from = ck->string();
  if (run.rank0()) {
    truncate_metrics(run.o.out / kMetricsFile, run.start_step);
    run.metrics.open((run.o.out / kMetricsFile).string());
    log_info("resuming from ", ck->string(), " (step ", run.start_step, " of ", run.plan.total, ")");
  }
}

void save_checkpoint(TrainRun& run, int64_t done, const Json& last) {
  torch::Tensor m, v;  // full flat moments (a collective under ZeRO: every rank takes part)
  if (run.zero) m = run.zero->gather_state(run.opt.exp_avg()), v = run.zero->gather_state(run.opt.exp_avg_sq());
  else m = run.opt.exp_avg(), v = run.opt.exp_avg_sq();
  if (run.rank0()) write_checkpoint(run, done, last, m, v);
  // The other ranks wait for rank 0's write here, with time for a large model's files,
  // rather than in the next step's first collective under --dist-timeout.
  if (run.in.comm) run.in.comm->barrier(std::max<std::chrono::milliseconds>(run.in.comm->timeout(), kCheckpointWriteWait));
}

Json run_summary(const TrainRun& run, const Json& last) {
  return {{"out", run.o.out.string()},
          {"steps", run.plan.total},
          {"resumed_from", run.resumed_from.empty() ? Json() : Json(run.resumed_from)},
          {"final", last},
          {"tokens", run.tokens_seen},
          {"seconds", run.elapsed},
          {"tokens_per_second", run.elapsed > 0 ? double(run.tokens_seen) / run.elapsed : 0.0},
          {"trainable_parameters", run.freeze.trainable},
          {"world_size", run.world}};
}

// The finetuned model in OUT itself: written beside, then renamed in with config.json
// last, so that OUT only looks like a checkpoint once it is complete.
std::string write_final_model(TrainRun& run, const Json& summary) {
  remove_stale_temporaries(run.o.out / ".final");  // a killed run's half-written final model
  fs::path tmp = run.o.out / (".final.tmp-" + std::to_string(::getpid()));
  std::error_code ec;
  fs::remove_all(tmp, ec);
  fs::create_directories(tmp);
  std::string hash = save_model(run, tmp, run.o.output_dtype);
  copy_model_files(*run.in.checkpoint, tmp);
  Provenance p = run.in.provenance;
  p.output_hash = hash;
  p.finished = now_iso8601();
  const Json& last = summary["final"];
  for (const char* k : {"loss", "ce_loss", "lb_loss", "z_loss", "grad_norm"})
    if (last.contains(k)) p.metrics[std::string("final_") + k] = last[k].get<double>();
  p.metrics["steps"] = run.plan.total;
  p.metrics["tokens"] = run.tokens_seen;
  p.metrics["seconds"] = run.elapsed;
  p.metrics["tokens_per_second"] = summary["tokens_per_second"].get<double>();
  p.extra["trainable_parameters"] = run.freeze.trainable;
  p.extra["world_size"] = run.world;
  if (!run.resumed_from.empty()) p.extra["resumed_from"] = run.resumed_from;
  p.write(tmp);
  write_file_atomic(tmp / kModelCardFile,
                    model_card(run.in.title, run.config, p,
                               "A model trained by `emo " + run.in.command + "` (--train " + std::string(run.o.mode->name) +
                                   "). The training log is metrics.jsonl; checkpoints/ holds the training state."));
  write_file_atomic(tmp / "train_summary.json", summary.dump(2) + "\n");
  fs::remove(run.o.out / kConfigFile, ec);  // OUT stops looking complete while its files change
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(tmp)) files.push_back(e.path());
  for (const auto& f : files)
    if (f.filename() != kConfigFile) fs::rename(f, run.o.out / f.filename());
  fsync_dir(run.o.out);
  fs::rename(tmp / kConfigFile, run.o.out / kConfigFile);
  fsync_dir(run.o.out);
  fs::remove_all(tmp, ec);
  return hash;
}

}  // namespace emo
