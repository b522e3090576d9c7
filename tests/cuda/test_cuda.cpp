// The GPU checks scripts/gpu-check runs (built with -DEMO_CUDA_TESTS=ON on a machine with a
// GPU; not part of the CPU suites, where they could only be skipped). Each fails, rather
// than passes, when no GPU is there.
#include <catch2/catch.hpp>

#include "cli_util.h"
#include "core/io/sha256.h"
#include "core/model/compat.h"
#include "core/model/model_fixtures.h"
#include "finetune/dist.h"
#include "finetune/ft_util.h"

using namespace emo;
using namespace emo::test;

namespace {

void require_gpu() { REQUIRE(torch::cuda::is_available()); }

torch::Tensor random_ids(int64_t B, int64_t T, int64_t V, uint64_t seed) {
  auto gen = at::detail::createCPUGenerator(seed);
  return at::randint(2, V, {B, T}, gen, torch::kInt64);
}

double max_rel(const torch::Tensor& a, const torch::Tensor& b) {
  return max_abs_diff(a, b) / std::max(1e-6, b.abs().max().item<double>());
}

}  // namespace

TEST_CASE("GPU logits equal CPU logits: fp32 within 1e-4, bf16 within bf16's precision", "[cuda]") {
  require_gpu();
  torch::NoGradGuard ng;
  for (const char* patch : {"{}", R"({"num_shared_experts":0,"norm_topk_prob":true})"}) {
    INFO(patch);
    ModelConfig c = tiny_config(patch);
    ModelWeights w = random_weights(c, 5);
    TempDir tmp;
    save_checkpoint(c, w, tmp / "m");
    Checkpoint ck = Checkpoint::open(tmp / "m");
    auto ids = random_ids(2, 16, c.vocab_size, 3);
    Model cpu = Model::load(ck);
    auto reference = cpu.forward({ids});
    LoadOptions gpu_fp32;
    gpu_fp32.device = torch::Device(torch::kCUDA);
    Model gpu = Model::load(ck, gpu_fp32);
    CHECK(max_abs_diff(gpu.forward({ids.cuda()}).cpu(), reference) <= 1e-4);
    LoadOptions gpu_bf16 = gpu_fp32;
    gpu_bf16.dtype = torch::kBFloat16;
    Model half = Model::load(ck, gpu_bf16);
    for (Dispatch mode : {Dispatch::Sorted, Dispatch::Grouped, Dispatch::MaskLoop}) {
      if (mode == Dispatch::Grouped && !compat::kHaveGroupedMM) continue;
      INFO((mode == Dispatch::Grouped ? "grouped" : mode == Dispatch::Sorted ? "sorted" : "mask loop"));
      ForwardOptions o;
      o.dispatch = mode;
      CHECK(max_rel(half.forward({ids.cuda()}, o).cpu().to(torch::kFloat32), reference) <= 0.05);
    }
  }
}

TEST_CASE("bf16 grouped dispatch equals the mask loop on the GPU, forward and backward", "[cuda]") {
  require_gpu();
  REQUIRE(compat::kHaveGroupedMM);
  ModelConfig c = tiny_config(R"({"hidden_size":64,"intermediate_size":32})");  // bf16 GEMMs want 16-byte rows
  auto make = [&] {
    LoadOptions o;
    o.device = torch::Device(torch::kCUDA);
    o.dtype = torch::kBFloat16;
    ModelWeights w = init_weights(c, 7, o);
    for (auto& p : named_params(w, c)) p.tensor->requires_grad_(true);
    return Model(c, w);
  };
  Model grouped = make(), loop = make();
  auto ids = random_ids(2, 32, c.vocab_size, 4).cuda();
  ForwardOptions og, ol;
  og.dispatch = Dispatch::Grouped;
  ol.dispatch = Dispatch::MaskLoop;
  auto a = grouped.forward({ids}, og), b = loop.forward({ids}, ol);
  CHECK(max_rel(a.to(torch::kFloat32), b.to(torch::kFloat32)) <= 0.02);
  a.to(torch::kFloat32).pow(2).mean().backward();
  b.to(torch::kFloat32).pow(2).mean().backward();
  auto pa = named_params(grouped.weights(), c), pb = named_params(loop.weights(), c);
  for (size_t i = 0; i < pa.size(); ++i) {
    INFO(pa[i].name);
    REQUIRE(pa[i].tensor->grad().defined());
    CHECK(max_rel(pa[i].tensor->grad().to(torch::kFloat32), pb[i].tensor->grad().to(torch::kFloat32)) <= 0.05);
  }
}

TEST_CASE("a bf16 finetune on the GPU learns, and --resume there ends on the uninterrupted bits", "[cuda]") {
  require_gpu();
  TempDir dir;
  const std::string common = reversal_finetune(dir.path(), 3, 256, 11) +
                             " --device cuda --precision bf16 --lr 3e-3 --batch-size 32 --save-every 20 -q";
  RunResult whole = run_emo(common + " --max-steps 60 --out " + q(dir / "whole"));
  INFO(whole.err);
  REQUIRE(whole.code == 0);
  auto metrics = read_jsonl(dir / "whole" / "metrics.jsonl");
  REQUIRE(metrics.size() == 60);
  double first = metrics.front()["loss"].get<double>(), last = 0;
  for (size_t i = 55; i < 60; ++i) last += metrics[i]["loss"].get<double>() / 5;
  INFO("loss " << first << " -> " << last);
  CHECK(last < 0.5 * first);
  // A run that stopped after step 40's checkpoint (that checkpoint alone in its directory),
  // resumed to 60: the same bits.
  fs::create_directories(dir / "resumed" / "checkpoints");
  fs::copy(dir / "whole" / "checkpoints" / "step-000040", dir / "resumed" / "checkpoints" / "step-000040",
           fs::copy_options::recursive);
  RunResult rest = run_emo(common + " --max-steps 60 --resume --out " + q(dir / "resumed"));
  INFO(rest.err);
  REQUIRE(rest.code == 0);
  CHECK(hash_file((dir / "resumed" / "model.safetensors").string()) ==
        hash_file((dir / "whole" / "model.safetensors").string()));
}

TEST_CASE("a one-process NCCL group: all-reduce, broadcast, barrier", "[cuda][nccl]") {
  require_gpu();
  REQUIRE(compat::nccl_available());
  DistEnv e;
  e.rank = 0, e.world = 1;
  e.master_addr = "127.0.0.1";
  e.master_port = free_port();
  auto comm = Comm::create(e, "nccl", torch::Device(torch::kCUDA), std::chrono::seconds(60));
  auto t = torch::arange(8, torch::TensorOptions().dtype(torch::kFloat32).device(torch::kCUDA));
  comm->allreduce_sum(t);
  CHECK(torch::equal(t.cpu(), torch::arange(8, torch::kFloat32)));
  comm->broadcast(t, 0);
  comm->barrier();
  CHECK(comm->backend() == "nccl");
}
