// Pretraining (`emo pretrain`): a causal LM on a packed corpus, on the finetune trainer
// (checkpoints, --resume, data parallelism, metrics, progress), with EMO's document-pool
// router (core/model/pool_router.h) or the standard per-token router.
//
// The model starts from a config (YAML or config.json keys, with --set overrides), a
// preset, or an existing checkpoint. A new model is initialised (emo init's deterministic
// initialiser, --init-seed) into OUT/init, which is the run's parent: its content hash is
// what a resume checks. Defaults follow EMO's pretraining config (allenai/EMO
// scripts/models/emo_1b14b_130b.sh, olmoe-1B-7B_fsl.py): AdamW lr 4e-3, betas (0.9, 0.95),
// weight decay 0.1, clip 1.0, cosine schedule with warm-up, load balancing 0.1 and router
// z-loss 0.001, each summed over the MoE layers as OLMo-core adds every block's terms,
// the load-balancing counts over the global batch.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "finetune/data.h"
#include "finetune/dist.h"
#include "finetune/trainer.h"
#include "core/model/pool_router.h"

namespace emo {

enum class RouterKind { Emo, Standard };
RouterKind parse_router_kind(const std::string& name);  // "emo" or "standard"
const char* router_kind_name(RouterKind kind);

struct PretrainOptions {
  // Where the model comes from: exactly one of these.
  std::string config_file;  // YAML or JSON with config.json's keys
  std::string preset;       // emo init's presets
  std::string model;        // an existing checkpoint (continued pretraining)
  std::vector<std::pair<std::string, std::string>> sets;  // config overrides (new models only)
  uint64_t init_seed = 0;
  fs::path tokenizer_dir;   // new models: the folder holding tokenizer.json
  fs::path tokenizer;       // tokenizer.json to read (default: the model's)

  std::string data;  // {text} JSONL(.gz)
  CorpusOptions corpus;

  RouterKind router = RouterKind::Emo;
  PoolRange pool;  // {0, 0}: default_pool_range of the model with pool_divisor; pool.free as given
  int64_t pool_divisor = 16;  // the smallest default pool: max(routed top-k, ceil(R / pool_divisor))

  // The trainer's settings. pretrain() fills routing and on_step_begin and sums the router
  // losses over the layers; the defaults here are EMO's pretraining values.
  TrainOptions train = default_train_options();
  torch::Device device = torch::kCPU;  // float32 master weights there (bf16 autocast: train.autocast_bf16)
  Comm* comm = nullptr;

  std::vector<std::string> argv;  // for provenance
  Json extra_settings = Json::object();  // recorded in provenance (threads, device, ...)

  static TrainOptions default_train_options();
};

struct PretrainResult {
  TrainResult train;
  fs::path init;          // OUT/init for a new model, else the input checkpoint
  std::string parent_hash;
  PoolRange pool;         // the range used (EMO router)
  Json data_stats;
};

// Runs the whole thing; only rank 0 writes. emo::Error on bad input.
PretrainResult pretrain(const PretrainOptions& options);

// The model config a new run would initialise (config file or preset, then --set).
ModelConfig pretrain_config(const PretrainOptions& options);

}  // namespace emo
