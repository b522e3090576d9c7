// The trainer: one loop for finetuning (emo finetune) and pretraining (emo pretrain adds
// EMO's document-pool router through TrainOptions::routing and on_step_begin).
//
// A step: the global batch (batch_size sequences of the seeded order) is split over the
// ranks and into micro-batches; each micro-batch runs forward (optionally recomputing
// layers in backward), the fused head + CE on the target rows, the router terms, and
// backward; the loss is normalised by the *global* token counts, so gradients only need
// summing across micro-batches and ranks. Then the gradients are all-reduced (bucketed,
// overlapped with the last backward) or reduce-scattered (ZeRO-1), clipped by their
// global norm, and AdamW updates the trainable slices with the scheduled learning rate.
//
// Outputs under OUT: metrics.jsonl (one record per step, always), checkpoints/step-N/
// (every save_every steps and at the end, with the training state), and at the end the
// finetuned model itself in OUT (config.json last, so OUT is a checkpoint only when
// complete), with provenance.yaml and README.md. Only rank 0 writes.
#pragma once

#include <optional>

#include <torch/torch.h>

#include <functional>
#include <string>

#include "core/checkpoint/checkpoint.h"
#include "core/checkpoint/provenance.h"
#include "core/model/model.h"
#include "finetune/data.h"
#include "finetune/dist.h"
#include "finetune/freeze.h"
#include "finetune/optim.h"

namespace emo {

struct TrainOptions {
  // what and how much
  const TrainMode* mode = &train_modes().front();  // "all"
  std::optional<ExpertSelection> train_experts;  // ESFT: only these routed experts train
  int64_t batch_size = 32;   // global: sequences per optimizer step (over all ranks)
  int64_t micro_batch = 0;   // sequences per forward on one rank (0: the rank's whole share)
  int64_t max_steps = 0;     // > 0: this many steps (wins over epochs)
  double epochs = 1.0;
  bool shuffle = true, drop_last = false;
  uint64_t seed = 0;
  // optimiser and schedule (transformers' Trainer defaults where EMO kept them)
  double lr = 5e-5;
  Schedule schedule = Schedule::Linear;
  double warmup_ratio = 0.1;
  int64_t warmup_steps = -1;  // >= 0 wins over warmup_ratio
  double decay_ratio = 0.2;   // --schedule wsd: the fall's share of the steps
  double final_lr_ratio = 0.0;
  AdamWOptions adam;
  double clip = 1.0;  // max global gradient norm (0: off)
  bool decay_all = false;
  // MoE terms
  double lb_weight = 0.01;
  double z_weight = 0.0;
  std::string lb_scope = "global";  // "global": counts over the whole batch; "micro": per micro-batch
  // With EMO's document pools (routing.pool): the balancing probabilities P from the pooled
  // logits ("pooled", as allenai/EMO's router) or from the logits before the pool mask.
  std::string lb_probs = "pooled";
  // false: LB and z are means over the MoE layers (EMO's HF loss); true: sums (OLMo-core
  // attaches each MoE block's terms to the loss, which pretraining follows).
  bool router_losses_summed_over_layers = false;
  // memory and precision
  bool checkpoint_layers = false;
  bool autocast_bf16 = false;  // CUDA: bf16 autocast over float32 master weights
  int64_t ce_chunk = 256;
  // distributed
  bool zero1 = false;
  size_t bucket_bytes = 25u << 20;
  bool overlap = true;
  // outputs
  fs::path out;
  int64_t save_every = 0;  // 0: only at the end
  int keep_last = 0;       // 0: keep every checkpoint
  bool resume = false;
  DType output_dtype = DType::F32;
  // pretraining's pool router, an allow-list (a module inside a full model), ...
  const RoutingControl* routing = nullptr;
  // Called after each step with its metrics record (tests, pretrain's callbacks).
  std::function<void(const Json&)> on_step;
  // Called before each step's first forward with the 0-based step (pretraining's pool
  // draws are keyed by it, so a resumed run draws what the uninterrupted one drew).
  std::function<void(int64_t step)> on_step_begin;
};

struct TrainInputs {
  const Checkpoint* checkpoint = nullptr;  // the model trained (its files are carried along)
  std::string parent_hash;                 // its content hash
  Model* model = nullptr;                  // float32 weights on the training device
  const TrainData* data = nullptr;
  std::string data_hash;
  int64_t pad_id = 0;
  Comm* comm = nullptr;  // null: one process
  // The settings that shape the trajectory: a resume must match them (checked).
  Json settings = Json::object();
  Provenance provenance{"finetune"};  // inputs and settings filled in; the trainer adds the rest
  std::string title = "emo finetune";
  std::string command = "finetune";  // the progress label and what the model cards name
};

struct TrainResult {
  int64_t steps = 0, start_step = 0;
  double final_loss = 0;
  uint64_t tokens = 0;
  double seconds = 0;
  std::string output_hash;
  fs::path last_checkpoint;
  Json summary;
};

TrainResult train(TrainInputs& inputs, const TrainOptions& options);

// Resolved step counts: (total steps, warm-up steps, steps per epoch).
struct StepPlan {
  int64_t total = 0, warmup = 0, per_epoch = 0;
  int64_t decay = 0;  // --schedule wsd: steps of the final fall
};
StepPlan plan_steps(size_t dataset_size, const TrainOptions& options);

}  // namespace emo
