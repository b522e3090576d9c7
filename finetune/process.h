// One training process as torchrun / srun started it: what `emo finetune` and `emo pretrain`
// set up before the trainer runs (threads, rank, device, precision, process group, the
// output directory), and the request rows both commands share for it.
#pragma once

#include <memory>
#include <string>

#include "core/model/loaded.h"
#include "core/util/fields.h"
#include "core/util/fs.h"
#include "finetune/dist.h"

namespace emo {

// How long a collective waits for the other ranks by default: a dead rank is named within
// minutes, not half an hour.
inline constexpr int kDefaultDistTimeoutS = 300;

struct ProcessSettings {
  std::string command;  // "emo finetune": names the conflict of --resume and --force
  std::string device = "auto", precision = "auto", dist_backend = "auto";
  fs::path out;
  int dist_timeout_s = kDefaultDistTimeoutS;
  bool resume = false, force = false;
  int threads = 0;  // 0: all cores, shared among one node's processes
};

struct TrainingProcess {
  DistEnv env;
  LoadOptions load;            // the device (this process's GPU under torchrun)
  bool autocast = false;       // bf16 autocast over float32 master weights
  std::unique_ptr<Comm> comm;  // null when there is one process
  fs::path out;                // absolute; removed first with force, kept with resume
};

// Threads, logging (quiet off rank 0), device, precision, the process group, and the output
// directory: a new run, a resumed one, or (force) a fresh start. emo::Error on a conflict.
TrainingProcess start_training_process(const ProcessSettings& settings);

// The rows of the settings above that finetune and pretrain share, under their headings.
FieldSpec precision_field(const std::string& group);
FieldSpec dist_backend_field(const std::string& group);
FieldSpec dist_timeout_field(const std::string& group);
FieldSpec resume_field(const std::string& group);
FieldSpec force_field(const std::string& group);

}  // namespace emo
