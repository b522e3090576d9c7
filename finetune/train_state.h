// Training checkpoints: OUT/checkpoints/step-000100/ holds
//   the model as a normal HF checkpoint (float32: the master weights, so that a resumed
//     run continues from exactly these bits), loadable by every other command,
//   optimizer.safetensors   the AdamW moments as named tensors
//                           ("exp_avg.<name>", "exp_avg_sq.<name>", shaped like the
//                           trainable rows of <name>),
//   trainer_state.json      step, data position, schedule, seed, the hashes of the parent
//                           model and the data, and every setting that shapes the run,
//   provenance.yaml, README.md, the tokenizer files.
// A directory is written under a temporary name and renamed when complete, so the
// latest step-* directory is always a whole checkpoint (no torch::save, no pickle).
#pragma once

#include <torch/torch.h>

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/io/json.h"
#include "core/util/fs.h"
#include "finetune/freeze.h"

namespace emo {

inline constexpr const char* kTrainerStateFile = "trainer_state.json";
inline constexpr const char* kOptimizerFile = "optimizer.safetensors";
inline constexpr const char* kMetricsFile = "metrics.jsonl";

fs::path checkpoints_root(const fs::path& out);
fs::path checkpoint_dir(const fs::path& out, int64_t step);
// Complete checkpoints (those with a trainer_state.json), by step.
std::map<int64_t, fs::path> list_checkpoints(const fs::path& out);
std::optional<fs::path> latest_checkpoint(const fs::path& out);

// The optimizer moments of every slice, cut from the flat vectors (slice i at offsets[i]).
void write_optimizer_state(const fs::path& file, const std::vector<TrainSlice>& slices,
                           const std::vector<int64_t>& offsets, const torch::Tensor& exp_avg,
                           const torch::Tensor& exp_avg_sq, int64_t steps);
// Reads them back into flat vectors; emo::Error naming the tensor when one is missing
// or has another shape (a checkpoint of another model or --train mode).
void read_optimizer_state(const fs::path& file, const std::vector<TrainSlice>& slices,
                          const std::vector<int64_t>& offsets, torch::Tensor& exp_avg, torch::Tensor& exp_avg_sq);

// Keys whose values differ between the settings a checkpoint was made with and the
// current ones: "lr: 5e-05 (checkpoint) vs 0.0001 (now)"; empty when they agree.
std::vector<std::string> settings_differences(const Json& checkpoint, const Json& now);

// Drops metrics records after `step` (a resumed run rewrites them).
void truncate_metrics(const fs::path& file, int64_t step);

}  // namespace emo
