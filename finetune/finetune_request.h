// emo finetune as one call: a model or an extracted module trained on task examples (SFT)
// or on a text corpus (causal LM), on one process or data-parallel under torchrun / srun.
// run_finetune reads the data, loads the model, records provenance and runs the trainer
// (finetune/trainer.h), which writes OUT. Its flags and recipe step are the spec's rows.
#pragma once

#include <cmath>
#include <string>
#include <vector>

#include "core/text/gsm8k.h"
#include "core/util/fields.h"
#include "core/util/fs.h"
#include "finetune/process.h"
#include "finetune/trainer.h"

namespace emo {

struct FinetuneRequest {
  std::string model;
  // Several --data train on their examples together (finetune/data.h concat_data); each
  // source has a format: one --format per --data, one for all, or none (auto: detected).
  std::vector<std::string> data, format;
  std::vector<double> data_weight;  // one per --data: its examples per epoch, as a multiple of its size
  fs::path out;
  // data
  int64_t shots = gsm8k_paper_shots();  // gsm8k: in-context examples
  std::string split;             // gsm8k: only the items of this corpus split ("": all)
  std::string prompt_template, completion_template;
  int64_t max_length = 0, seq_len = 0;  // 0: min(4096 | 1024, the context)
  std::string text_field = "text", domain;
  size_t limit = 0;
  bool skip_bad = false, no_cache = false;
  std::string cache_dir, tokenizer;
  // training
  std::string train = "all", train_experts;
  TrainOptions trainer;  // batch, steps, learning rate, schedule, AdamW, clip (finetune/train_fields.h); its defaults
  int64_t ce_chunk = 256;
  double lb_weight = NAN;  // NaN: the config's router_aux_loss_coef
  double z_weight = 0.0;
  std::string lb_scope = "global";
  uint64_t seed = 0;
  bool no_shuffle = false, drop_last = false, checkpoint_activations = false;
  // checkpoints
  int64_t save_every = 0;
  int keep_last = 0;
  std::string dtype;  // of the final model ("": the input's)
  // distributed
  bool zero1 = false, no_overlap = false;
  size_t bucket_mb = 25;
  std::string experts;
  // device, precision, process group, resume / force, threads (the caller's)
  ProcessSettings process;
  // the caller's
  fs::path data_root;  // the shipped corpus (split)
  std::vector<std::string> command_line;
};

using FinetuneResult = RankResult<TrainResult>;

FinetuneResult run_finetune(const FinetuneRequest& request);
const RequestSpec<FinetuneRequest>& finetune_request_spec();

}  // namespace emo
