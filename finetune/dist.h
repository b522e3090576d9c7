// Distributed data parallel training through c10d, set up from torchrun's environment
// (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT) or Slurm's (SLURM_PROCID,
// SLURM_NTASKS, SLURM_LOCALID, with MASTER_ADDR/MASTER_PORT exported by the job script).
//
// Rendezvous: when torchrun's agent hosts the store (TORCHELASTIC_USE_AGENT_STORE=True)
// every rank connects to it as a client under the prefix PyTorch's env:// rendezvous uses,
// "/worker/attempt_<TORCHELASTIC_RESTART_COUNT>"; otherwise rank 0 hosts a TCPStore.
// Backends: Gloo on CPU, NCCL on GPU.
//
// Gradients: every rank's loss is already normalised by the *global* token counts, so
// gradients are summed (not averaged). GradSync does it in buckets; the copy of a
// parameter's gradient into its bucket happens in a tensor hook during the last backward
// of a step, and a bucket's all-reduce starts as soon as it is full (buckets always start
// in the same order on every rank, as the collectives require), overlapping the rest of
// backward. ZeroSync is ZeRO-1: each rank keeps the optimizer state of one contiguous
// shard of the flat parameter vector; gradients are reduce-scattered (Gloo in LibTorch
// 1.13 has no reduce_scatter, so it is one reduce per shard, rooted at its owner), the
// owner updates its shard, and the shards are all-gathered back.
#pragma once

#include <torch/torch.h>

#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "core/model/compat.h"
#include "finetune/freeze.h"
#include "finetune/optim.h"

namespace emo {

struct DistEnv {
  int rank = 0, world = 1, local_rank = 0;
  std::string master_addr;
  int master_port = 0;
  bool agent_store = false;  // torchrun's agent hosts the store
  int restart_count = 0;
  std::string launcher = "none";  // "torchrun", "slurm", "none"
  static DistEnv from_environment();
  bool distributed() const { return world > 1; }
};

class Comm {
 public:
  // backend: "auto" (nccl on cuda, else gloo), "gloo", "nccl".
  static std::unique_ptr<Comm> create(const DistEnv& env, const std::string& backend, torch::Device device,
                                      std::chrono::milliseconds timeout);
  int rank() const { return rank_; }
  std::chrono::milliseconds timeout() const { return timeout_; }
  int world() const { return world_; }
  const std::string& backend() const { return backend_; }

  void allreduce_sum(torch::Tensor t);  // in place, waits
  c10::intrusive_ptr<c10d::Work> allreduce_sum_async(torch::Tensor t);
  void broadcast(torch::Tensor t, int root);
  void reduce_sum(torch::Tensor t, int root);
  // out [world * n] gets every rank's `in` [n], in rank order.
  void allgather(torch::Tensor out, torch::Tensor in);
  // timeout 0: the group's (--dist-timeout); a longer one where ranks wait on rank 0's
  // file writes.
  void barrier(std::chrono::milliseconds timeout = std::chrono::milliseconds(0));
  // Waits for a collective. A failure becomes one emo::Error naming the ranks that did not
  // answer a census through the store within kCensusWait (the dead or hung ones).
  void wait(const c10::intrusive_ptr<c10d::Work>& work, const char* what);
  static constexpr std::chrono::seconds kCensusWait{5};
  // The same bytes on every rank? (a hash of `text` compared through an all-reduce)
  bool all_equal(const std::string& text);

 private:
  int rank_ = 0, world_ = 1;
  std::string backend_;
  [[noreturn]] void lost_peer(const char* what, const std::string& cause);

  bool agent_store_ = false;
  std::chrono::milliseconds timeout_{0};
  c10::intrusive_ptr<c10d::Store> store_;
  c10::intrusive_ptr<compat::Backend> pg_;
};

// Bucketed all-reduce of the trainable slices' gradients.
class GradSync {
 public:
  GradSync(Comm& comm, const std::vector<TrainSlice>& slices, size_t bucket_bytes, bool overlap);
  ~GradSync();  // removes the hooks
  GradSync(const GradSync&) = delete;
  GradSync& operator=(const GradSync&) = delete;
  // Before the last backward of a step: the hooks copy and launch from now on.
  void arm();
  // After backward: launches the buckets not yet started, waits, writes the sums back
  // into the gradients (which exist afterwards, zeros where a rank had none).
  void finish();

 private:
  struct Item {
    size_t slice;
    int64_t offset, numel;
  };
  struct Bucket {
    std::vector<Item> items;
    torch::Tensor flat;
    size_t filled = 0;
    bool launched = false;
    c10::intrusive_ptr<c10d::Work> work;
  };
  void on_grad(size_t slice, const torch::Tensor& incoming);
  void launch_ready();
  Comm& comm_;
  std::vector<TrainSlice> slices_;
  std::vector<Bucket> buckets_;
  std::vector<std::pair<size_t, size_t>> where_;  // slice -> (bucket, item)
  std::vector<bool> copied_;
  std::vector<unsigned> hooks_;
  size_t next_launch_ = 0;
  bool armed_ = false, overlap_;
  std::mutex mutex_;
};

// The flat layout of the trainable elements (slice i at offsets[i]), padded to a
// multiple of the world size, and one rank's shard of it.
struct FlatLayout {
  std::vector<int64_t> offsets;
  int64_t total = 0, padded = 0, shard = 0;
  FlatLayout(const std::vector<TrainSlice>& slices, int world);
};

// The optimizer segments of a rank: all slices (no sharding), or the pieces of the
// flat shard [rank * shard, (rank + 1) * shard) (ZeRO-1; values and grads live in flat
// buffers then).
std::vector<AdamSegment> slice_segments(const std::vector<TrainSlice>& slices, const FlatLayout& layout);

class ZeroSync {
 public:
  ZeroSync(Comm& comm, const std::vector<TrainSlice>& slices, torch::Device device);
  const FlatLayout& layout() const { return layout_; }
  int64_t shard_begin() const { return int64_t(comm_.rank()) * layout_.shard; }
  // After backward: the rank's shard of the summed gradient (in grad_shard()).
  void reduce_scatter_grads();
  torch::Tensor grad_shard() { return flat_grad_.narrow(0, shard_begin(), layout_.shard); }
  // Segments of the own shard over the flat parameter copy.
  std::vector<AdamSegment> segments() const;
  // After the optimizer step: every rank gets every shard back into the parameters.
  void allgather_params();
  // Optimizer state of the own shard -> full flat vector (on every rank).
  torch::Tensor gather_state(const torch::Tensor& shard_state);

 private:
  Comm& comm_;
  std::vector<TrainSlice> slices_;
  FlatLayout layout_;
  torch::Tensor flat_param_, flat_grad_;
};

}  // namespace emo
