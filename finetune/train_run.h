// One run of train() (finetune/trainer.h), as its three parts share it: the loop
// (trainer.cpp: set-up, steps, the end), one optimizer step (train_step.cpp) and the
// state on disk (train_checkpoint.cpp: resume, checkpoints, the final model).
#pragma once

#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "core/util/progress.h"
#include "finetune/data.h"
#include "finetune/dist.h"
#include "finetune/losses.h"
#include "finetune/optim.h"
#include "finetune/trainer.h"

namespace emo {

struct TrainRun {
  TrainRun(TrainInputs& inputs, const TrainOptions& options)
      : in(inputs), o(options), model(*inputs.model), config(inputs.model->config()), device(inputs.model->device()) {}

  TrainInputs& in;
  const TrainOptions& o;
  Model& model;
  const ModelConfig& config;
  torch::Device device;
  int rank = 0, world = 1;
  // built by the set-up
  FreezePlan freeze;
  std::unique_ptr<FlatLayout> layout;
  std::unique_ptr<ZeroSync> zero;       // ZeRO-1
  std::unique_ptr<GradSync> grad_sync;  // plain data parallelism
  AdamW opt;
  StepPlan plan;
  std::unique_ptr<BatchOrder> order;
  LrSchedule sched;
  std::vector<LbLayer> lb_layers;
  LbForm form = LbForm::Emo;
  MetricsLog metrics;
  // where the run stands (a resume restores it)
  int64_t start_step = 0;
  uint64_t tokens_seen = 0;
  double elapsed = 0;
  Json last_metrics = Json::object();
  std::string resumed_from;

  bool rank0() const { return rank == 0; }
};

// The step's metrics record (metrics.jsonl); emo::Error when the loss or the gradient norm
// is not finite, naming the last good checkpoint.
Json train_step(TrainRun& run, int64_t step);

// Continues from OUT's latest checkpoint when options.resume asks (refusing one of other
// settings), and opens metrics.jsonl.
void resume_if_asked(TrainRun& run);
// The checkpoint of step `done` (a collective under ZeRO-1; rank 0 writes).
void save_checkpoint(TrainRun& run, int64_t done, const Json& last);
// train_summary.json's body.
Json run_summary(const TrainRun& run, const Json& last);
// Rank 0: the trained model in OUT itself, config.json last. Returns its content hash.
std::string write_final_model(TrainRun& run, const Json& summary);

using Clock = std::chrono::steady_clock;
inline double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// A number for logs and messages: 4 significant digits, nan and inf spelled out.
inline std::string fmt(double x, int prec = 4) {
  if (std::isnan(x)) return "nan";
  if (std::isinf(x)) return x > 0 ? "inf" : "-inf";
  char b[48];
  std::snprintf(b, sizeof b, "%.*g", prec, x);
  return b;
}

}  // namespace emo
