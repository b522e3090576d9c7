// emo pretrain as one call: the flags' and a recipe step's settings, resolved into
// PretrainOptions (pretrain/pretrain.h) on a training process (finetune/process.h).
#pragma once

#include <string>
#include <vector>

#include "core/util/fields.h"
#include "core/util/fs.h"
#include "finetune/process.h"
#include "pretrain/pretrain.h"

namespace emo {

struct PretrainRequest {
  // the model: one of config, preset, model
  std::string config, preset, model;
  std::vector<std::string> sets;  // KEY=VALUE config overrides
  uint64_t init_seed = 0;
  std::string data;
  fs::path out;
  // router
  std::string router = "emo";
  int64_t pool_min = 0, pool_max = 0;  // 0: default_pool_range
  double pool_free = 0;                 // documents routed with no pool (allenai/EMO: none)
  std::string gate_probs = "pooled";    // the chosen experts' weights: pooled (allenai/EMO) or unpooled
  // data
  int64_t seq_len = 0;
  std::string text_field = "text", domain, cache_dir, tokenizer;
  size_t limit = 0;
  bool skip_bad = false, no_cache = false;
  // training: EMO's pretraining defaults; what the flags below do not set stays so, except
  // what the scale (pretrain/scale.h) sets and no flag gave
  std::string scale = "paper";
  TrainOptions train = PretrainOptions::default_train_options();
  std::string lb_scope = "global";
  uint64_t seed = 0;
  bool checkpoint_activations = false;
  int64_t ce_chunk = 256;
  // checkpoints
  int64_t save_every = 0;
  int keep_last = 0;
  // distributed
  bool zero1 = false;
  size_t bucket_mb = 25;
  // device, precision, process group, resume / force, threads (the caller's)
  ProcessSettings process;
  // the caller's
  fs::path data_root;  // the shipped tokenizers
  std::vector<std::string> command_line;
};

using PretrainRun = RankResult<PretrainResult>;

PretrainRun run_pretrain(const PretrainRequest& request);
const RequestSpec<PretrainRequest>& pretrain_request_spec();

}  // namespace emo
