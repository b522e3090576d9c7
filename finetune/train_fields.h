// The trainer's settings that emo finetune and emo pretrain both take, as field rows of
// TrainOptions (finetune/trainer.h): one flag name and help text for both commands; the
// defaults are each request's own TrainOptions.
#pragma once

#include <vector>

#include "core/util/fields.h"
#include "finetune/trainer.h"

namespace emo {

// batch-size, micro-batch-size, max-steps, epochs, lr, schedule, warmup-ratio, warmup-steps,
// final-lr-ratio, the AdamW settings (weight-decay, decay-all, beta1, beta2, adam-eps) and clip.
std::vector<Field<TrainOptions>> trainer_rows(const char* group);

}  // namespace emo
