// What `emo finetune` and `emo pretrain` share around the trainer: setting up the process
// (threads, rank, device, precision, process group, output directory) and printing the
// result.
#pragma once

#include <cstdlib>
#include <memory>
#include <string>
#include <thread>

#include "cli/common.h"
#include "core/util/error.h"
#include "core/model/runtime.h"
#include "core/util/log.h"
#include "core/util/progress.h"
#include "finetune/dist.h"
#include "finetune/trainer.h"

namespace emo::cli {

// One training process as torchrun / srun started it.
struct TrainingProcess {
  DistEnv env;
  LoadOptions load;              // the device (this process's GPU under torchrun)
  bool autocast = false;         // bf16 autocast over float32 master weights
  std::unique_ptr<Comm> comm;    // null when there is one process
  fs::path out;                  // absolute; removed first with --force, kept with --resume
};

// How long a collective waits for the other ranks by default: a dead rank is named within
// minutes, not half an hour.
inline constexpr int kDefaultDistTimeoutS = 300;

// --dist-timeout, as finetune and pretrain both take it.
inline void add_dist_timeout_flag(CLI::App* cmd, int& seconds, const std::string& group) {
  cmd->add_option("--dist-timeout", seconds,
                  "Seconds a collective waits for the other ranks; then the run stops, naming those that did "
                  "not answer (a checkpoint write gets at least an hour)")
      ->group(group);
}

struct TrainingFlags {
  std::string command, device, precision, dist_backend, out;
  int dist_timeout_s = kDefaultDistTimeoutS;
  bool resume = false, force = false;
};

inline TrainingProcess start_training_process(const TrainingFlags& f) {
  TrainingProcess p;
  p.env = DistEnv::from_environment();
  // Threads: all cores by default, shared among the processes of one node.
  if (globals().threads <= 0 && p.env.world > 1) {
    int local = std::max(1, std::atoi(std::getenv("LOCAL_WORLD_SIZE") ? std::getenv("LOCAL_WORLD_SIZE") : "1"));
    configure_threads(std::max(1, int(std::thread::hardware_concurrency()) / local));
  } else {
    configure_threads(globals().threads);
  }
  if (p.env.rank != 0) {
    set_log_level(LogLevel::Warn);
    Progress::set_enabled(false);
  }
  // Device and precision: float32 master weights everywhere; bf16 autocast on GPU.
  p.load = load_options_for(f.device);
  if (p.load.device.is_cuda()) {
    p.load.device = torch::Device(torch::kCUDA, int8_t(p.env.local_rank));
    use_deterministic_cuda();
  }
  p.autocast = f.precision == "bf16" || (f.precision == "auto" && p.load.device.is_cuda());
  if (p.autocast && !p.load.device.is_cuda()) fail("--precision", "bf16", "bf16 autocast needs a GPU (--device cuda)");
  if (p.env.distributed())
    p.comm = Comm::create(p.env, f.dist_backend, p.load.device, std::chrono::milliseconds(int64_t(f.dist_timeout_s) * 1000));
  // The output directory: a new run, a resumed one, or (--force) a fresh start.
  p.out = fs::absolute(f.out);
  std::error_code ec;
  if (f.resume && f.force) fail(f.command, "--resume", "--resume and --force exclude each other");
  if (fs::exists(p.out, ec) && !f.resume) {
    if (!f.force) fail(p.out.string(), "", "exists; pass --resume to continue the run in it, or --force to start over");
    if (p.env.rank == 0) remove_output_dir(p.out);
  }
  if (p.comm) p.comm->barrier();
  return p;
}

// `extra` adds keys to the JSON summary; `label` goes into the line after the path.
inline void print_train_result(const TrainResult& r, const fs::path& out, bool json, const Json& extra = Json::object(),
                               const std::string& label = "") {
  if (json) {
    Json j = r.summary;
    j["content_hash"] = r.output_hash;
    for (const auto& [k, v] : extra.items()) j[k] = v;
    print_json(j);
    return;
  }
  const Json& f = r.summary["final"];
  print_line(cat("wrote ", out.string(), " (", label, r.steps, " steps, final loss ",
                 f.contains("loss") ? f["loss"].get<double>() : 0.0, ", ",
                 human_count(r.summary["tokens_per_second"].get<double>()), " tokens/s, ", r.output_hash, ")"));
}

}  // namespace emo::cli
