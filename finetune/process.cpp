#include "finetune/process.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <thread>

#include "core/model/runtime.h"
#include "core/util/error.h"
#include "core/util/log.h"
#include "core/util/progress.h"

namespace emo {

namespace {

// Threads: all cores by default, shared among the processes of one node.
void configure_process_threads(int threads, const DistEnv& env) {
  if (threads > 0 || env.world == 1) return configure_threads(threads);
  const char* local_env = std::getenv("LOCAL_WORLD_SIZE");
  int local = std::max(1, std::atoi(local_env ? local_env : "1"));
  configure_threads(std::max(1, int(std::thread::hardware_concurrency()) / local));
}

// OUT: kept for a resume, removed (by rank 0) with force, refused otherwise.
fs::path prepare_output(const ProcessSettings& s, const std::string& command, const fs::path& dir, const DistEnv& env) {
  fs::path out = fs::absolute(dir);
  if (s.resume && s.force) fail(command, "--resume", "--resume and --force exclude each other");
  std::error_code ec;
  if (fs::exists(out, ec) && !s.resume) {
    if (!s.force) fail(out.string(), "", "exists; pass --resume to continue the run in it, or --force to start over");
    if (env.rank == 0) remove_output_dir(out);
  }
  return out;
}

}  // namespace

TrainingProcess start_training_process(const ProcessSettings& s, const std::string& command, const fs::path& out) {
  TrainingProcess p;
  p.env = DistEnv::from_environment();
  configure_process_threads(s.threads, p.env);
  if (p.env.rank != 0) {
    set_log_level(LogLevel::Warn);
    Progress::set_enabled(false);
  }
  // Float32 master weights everywhere; bf16 autocast on GPU.
  p.load = load_options_for(s.device);
  if (p.load.device.is_cuda()) {
    p.load.device = torch::Device(torch::kCUDA, int8_t(p.env.local_rank));
    use_deterministic_cuda();
  }
  p.autocast = s.precision == "bf16" || (s.precision == "auto" && p.load.device.is_cuda());
  if (p.autocast && !p.load.device.is_cuda()) fail("--precision", "bf16", "bf16 autocast needs a GPU (--device cuda)");
  if (p.env.distributed())
    p.comm = Comm::create(p.env, s.dist_backend, p.load.device,
                          std::chrono::milliseconds(int64_t(s.dist_timeout_s) * 1000));
  p.out = prepare_output(s, command, out, p.env);
  if (p.comm) p.comm->barrier();
  return p;
}

Field<ProcessSettings> precision_row(const std::string& group) {
  return member_field(field("precision", FieldSpec::Kind::String, "auto (fp32 on CPU, bf16 autocast on GPU), fp32, bf16")
                          .one_of({"auto", "fp32", "bf16"})
                          .in(group),
                      &ProcessSettings::precision);
}

Field<ProcessSettings> dist_backend_row(const std::string& group) {
  return member_field(field("dist-backend", FieldSpec::Kind::String, "auto (nccl on GPU, gloo on CPU), gloo, nccl")
                          .one_of({"auto", "gloo", "nccl"})
                          .in(group),
                      &ProcessSettings::dist_backend);
}

Field<ProcessSettings> dist_timeout_row(const std::string& group) {
  return member_field(field("dist-timeout", FieldSpec::Kind::Int,
                            "Seconds a collective waits for the other ranks; then the run stops, naming those that "
                            "did not answer (a checkpoint write gets at least an hour)")
                          .in(group),
                      &ProcessSettings::dist_timeout_s);
}

Field<ProcessSettings> resume_row(const std::string& group) {
  return member_field(field("resume", FieldSpec::Kind::Bool, "Continue the run in --out from its latest complete checkpoint")
                          .in(group)
                          .caller_owned(),
                      &ProcessSettings::resume);
}

Field<ProcessSettings> force_row(const std::string& group) {
  return member_field(field("force", FieldSpec::Kind::Bool, "Delete --out and start over").in(group).caller_owned(),
                      &ProcessSettings::force);
}

Field<ProcessSettings> device_row() { return member_field(device_field(), &ProcessSettings::device); }

}  // namespace emo
