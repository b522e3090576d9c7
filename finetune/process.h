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
  std::string device = "auto", precision = "auto", dist_backend = "auto";
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
// directory `out`: a new run, a resumed one, or (force) a fresh start. emo::Error on a
// conflict, naming `command` ("emo finetune").
TrainingProcess start_training_process(const ProcessSettings& settings, const std::string& command, const fs::path& out);

// The rows of the settings above that finetune and pretrain share, each under its --help
// heading; a request holds them as its `process` part (append_fields).
Field<ProcessSettings> precision_row(const std::string& group);
Field<ProcessSettings> dist_backend_row(const std::string& group);
Field<ProcessSettings> dist_timeout_row(const std::string& group);
Field<ProcessSettings> resume_row(const std::string& group);  // the caller's (a recipe never resumes)
Field<ProcessSettings> force_row(const std::string& group);   // the caller's
Field<ProcessSettings> device_row();

// What a training run returns to the process that started it: only rank 0 prints.
template <class T>
struct RankResult {
  T result;
  fs::path out;
  bool rank0 = true;
};

}  // namespace emo
