#include "finetune/dist.h"

#include <signal.h>

#include <algorithm>
#include <cstdlib>
#include <functional>
#include <future>
#include <memory>
#include <thread>

#include "core/util/error.h"
#include "core/util/log.h"

namespace emo {

namespace {

const char* env(const char* name) {
  const char* v = std::getenv(name);
  return v && *v ? v : nullptr;
}

int env_int(const char* name, int fallback) {
  const char* v = env(name);
  if (!v) return fallback;
  try {
    size_t used = 0;
    int x = std::stoi(v, &used);
    if (used != std::string(v).size()) throw std::invalid_argument(v);
    return x;
  } catch (const std::exception&) {
    fail("environment", name, "expected an integer, got '", v, "'");
  }
}

bool is_loopback(const std::string& host) {
  return host == "localhost" || host.rfind("127.", 0) == 0 || host == "::1";
}

std::string first_line(const std::string& text) { return text.substr(0, text.find('\n')); }

// torchrun's agent store, joined as a client. PyTorch 2.x's TCPStore server expects a
// handshake that LibTorch 1.13's client does not send: an emo built against 1.13 under a
// 2.x torchrun is dropped ("Connection reset by peer") or, worse, waits forever for a reply
// (1.13's client reads without a time limit). So a 1.13 build joins on a helper thread and
// gives up after a bound no working store needs (the agent's store is up before the
// workers start, and joining it is one round trip); the thread, if stuck, goes with the
// process. The remedy is PyTorch's own opt-out, under which rank 0 hosts a store of emo's
// version.
[[noreturn]] void agent_store_refused(const DistEnv& e, const std::string& why) {
  fail("environment", "TORCHELASTIC_USE_AGENT_STORE", "torchrun's store at ", e.master_addr, ":", e.master_port, " ",
       why, " (this emo is built against LibTorch ", compat::torch_version(),
       "; a torchrun of PyTorch 2.x speaks a newer store protocol). Launch with "
       "TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 torchrun --rdzv-backend c10d --rdzv-endpoint HOST:PORT ... so that "
       "rank 0 hosts emo's own store, or build emo against PyTorch 2.x (scripts/build --torch pypi)");
}

c10::intrusive_ptr<c10d::Store> join_agent_store(const DistEnv& e, std::chrono::milliseconds timeout) {
  auto join = [e, timeout] {
    return compat::tcp_store(e.master_addr, uint16_t(e.master_port), e.world, false, timeout, false);
  };
  if (compat::kTorchMajor >= 2) return join();
  auto joined = std::make_shared<std::promise<c10::intrusive_ptr<c10d::Store>>>();
  auto result = joined->get_future();
  std::thread([joined, join] {
    try {
      joined->set_value(join());
    } catch (...) {
      joined->set_exception(std::current_exception());
    }
  }).detach();
  const auto bound = std::min<std::chrono::milliseconds>(timeout, std::chrono::seconds(20));
  if (result.wait_for(bound) != std::future_status::ready) agent_store_refused(e, cat("did not answer within ", bound.count() / 1000, " s"));
  try {
    return result.get();
  } catch (const std::exception& error) {
    agent_store_refused(e, cat("refused this emo: ", first_line(error.what())));
  }
}

}  // namespace

DistEnv DistEnv::from_environment() {
  DistEnv e;
  if (env("RANK") || env("WORLD_SIZE")) {
    e.rank = env_int("RANK", 0);
    e.world = env_int("WORLD_SIZE", 1);
    e.local_rank = env_int("LOCAL_RANK", 0);
    e.launcher = env("TORCHELASTIC_RUN_ID") ? "torchrun" : "env";
  } else if (env("SLURM_PROCID") && env_int("SLURM_NTASKS", 1) > 1) {
    e.rank = env_int("SLURM_PROCID", 0);
    e.world = env_int("SLURM_NTASKS", 1);
    e.local_rank = env_int("SLURM_LOCALID", 0);
    e.launcher = "slurm";
  }
  if (e.world < 1 || e.rank < 0 || e.rank >= e.world)
    fail("environment", "RANK", "rank ", e.rank, " is outside WORLD_SIZE ", e.world);
  if (e.world > 1) {
    const char* addr = env("MASTER_ADDR");
    if (!addr)
      fail("environment", "MASTER_ADDR", "not set: launch with torchrun, or export MASTER_ADDR (the first node's "
                                         "address) and MASTER_PORT in the job script (see docs/finetune.md)");
    e.master_addr = addr;
    e.master_port = env_int("MASTER_PORT", 29500);
    const char* agent = env("TORCHELASTIC_USE_AGENT_STORE");
    e.agent_store = agent && std::string(agent) == "True";
    e.restart_count = env_int("TORCHELASTIC_RESTART_COUNT", 0);
  }
  return e;
}

std::unique_ptr<Comm> Comm::create(const DistEnv& e, const std::string& backend, torch::Device device,
                                   std::chrono::milliseconds timeout) {
  // A peer that dies closes its sockets, and a write to one raises SIGPIPE, whose default
  // action kills this process at once: exit 141, nothing on stderr, before the census can
  // name the dead rank (seen once under load in the kill -9 test). Python, where c10d usually
  // runs, ignores SIGPIPE from startup; a process with a group does the same, so the write
  // fails with EPIPE and the collective's error path reports it.
  signal(SIGPIPE, SIG_IGN);
  auto c = std::unique_ptr<Comm>(new Comm());
  c->rank_ = e.rank;
  c->world_ = e.world;
  c->backend_ = backend == "auto" ? (device.is_cuda() ? "nccl" : "gloo") : backend;
  if (c->backend_ != "gloo" && c->backend_ != "nccl") fail("--dist-backend", backend, "expected auto, gloo or nccl");
  if (c->backend_ == "nccl" && !device.is_cuda()) fail("--dist-backend", "nccl", "NCCL needs --device cuda");
  if (e.master_port <= 0 || e.master_port > 65535) fail("environment", "MASTER_PORT", "out of range: ", e.master_port);
  c10::intrusive_ptr<c10d::Store> store;
  if (e.agent_store) {
    // torchrun's agent hosts the TCPStore: connect as a client, under the prefix of
    // torch.distributed's env:// rendezvous (rendezvous.py _create_c10d_store).
    store = compat::prefix_store("/worker/attempt_" + std::to_string(e.restart_count), join_agent_store(e, timeout));
  } else {
    store = compat::tcp_store(e.master_addr, uint16_t(e.master_port), e.world, e.rank == 0, timeout, true);
  }
  c->store_ = store;
  c->agent_store_ = e.agent_store;
  c->timeout_ = timeout;
  auto group_store = compat::prefix_store("emo/" + c->backend_ + "/", store);
  if (c->backend_ == "gloo") {
    std::string iface = env("GLOO_SOCKET_IFNAME") ? env("GLOO_SOCKET_IFNAME") : "";
    std::string host = iface.empty() && is_loopback(e.master_addr) ? "127.0.0.1" : "";
    c->pg_ = compat::new_gloo(group_store, e.rank, e.world, iface, host, timeout);
  } else {
    c->pg_ = compat::new_nccl(group_store, e.rank, e.world, timeout);
  }
  log_debug("rank ", e.rank, "/", e.world, ": ", c->backend_, " process group up (", e.launcher, ")");
  return c;
}

void Comm::allreduce_sum(torch::Tensor t) { wait(allreduce_sum_async(t), "all-reduce"); }

c10::intrusive_ptr<c10d::Work> Comm::allreduce_sum_async(torch::Tensor t) {
  std::vector<at::Tensor> v{t};
  c10d::AllreduceOptions o;
  o.reduceOp = c10d::ReduceOp::SUM;
  return pg_->allreduce(v, o);
}

void Comm::broadcast(torch::Tensor t, int root) {
  std::vector<at::Tensor> v{t};
  c10d::BroadcastOptions o;
  o.rootRank = root;
  wait(pg_->broadcast(v, o), "broadcast");
}

void Comm::reduce_sum(torch::Tensor t, int root) {
  std::vector<at::Tensor> v{t};
  c10d::ReduceOptions o;
  o.rootRank = root;
  o.reduceOp = c10d::ReduceOp::SUM;
  wait(pg_->reduce(v, o), "reduce");
}

void Comm::allgather(torch::Tensor out, torch::Tensor in) {
  const int64_t n = in.numel();
  std::vector<std::vector<at::Tensor>> outputs(1);
  for (int r = 0; r < world_; ++r) outputs[0].push_back(out.narrow(0, int64_t(r) * n, n));
  std::vector<at::Tensor> inputs{in};
  wait(pg_->allgather(outputs, inputs), "all-gather");
}

void Comm::barrier(std::chrono::milliseconds timeout) {
  c10d::BarrierOptions o;
  if (timeout.count() > 0) o.timeout = timeout;
  wait(pg_->barrier(o), "barrier");
}

void Comm::wait(const c10::intrusive_ptr<c10d::Work>& work, const char* what) {
  try {
    work->wait();
  } catch (const c10::Error& error) {
    lost_peer(what, error.what_without_backtrace());
  } catch (const std::exception& error) {
    lost_peer(what, error.what());
  }
}

// A collective failed: a rank died (its sockets closed), hung past the timeout, or the
// network broke. Every survivor reports to the store and waits a few seconds for the
// others; whoever does not report is named. The store is torchrun's agent's, or rank 0's
// own, in which case a store that is gone too means rank 0 is.
void Comm::lost_peer(const char* what, const std::string& cause) {
  std::string who;
  try {
    const std::string prefix = "emo/census/";
    store_->set(prefix + std::to_string(rank_), std::vector<uint8_t>{1});
    std::vector<int> silent;
    const auto deadline = std::chrono::steady_clock::now() + kCensusWait;
    for (int r = 0; r < world_; ++r) {
      if (r == rank_) continue;
      while (!store_->check({prefix + std::to_string(r)}) && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      if (!store_->check({prefix + std::to_string(r)})) silent.push_back(r);
    }
    if (silent.empty()) {
      who = "every other rank is still up (a network fault?)";
    } else {
      who = std::string(silent.size() == 1 ? "rank " : "ranks ");
      for (size_t i = 0; i < silent.size(); ++i) who += (i ? ", " : "") + std::to_string(silent[i]);
      who += " did not answer within " + std::to_string(kCensusWait.count()) + " s (died or hung)";
    }
  } catch (const std::exception&) {
    who = agent_store_ ? "torchrun's store is gone too (the launcher died?)" : "rank 0, which hosts the store, is gone";
  }
  fail("distributed", "rank " + std::to_string(rank_),
       cat("the ", what, " failed (", first_line(cause), "): ", who,
           ". Every rank stops; relaunch with --resume to continue from the last checkpoint"));
}

bool Comm::all_equal(const std::string& text) {
  int64_t h = int64_t(std::hash<std::string>{}(text) & 0x3fffffffffffffULL);
  auto mine = torch::tensor({h}, torch::kInt64);
  auto root = mine.clone();
  broadcast(root, 0);
  auto differs = torch::tensor({int64_t(root.item<int64_t>() != h)}, torch::kInt64);
  allreduce_sum(differs);
  return differs.item<int64_t>() == 0;
}

// ---- GradSync ------------------------------------------------------------------------

GradSync::GradSync(Comm& comm, const std::vector<TrainSlice>& slices, size_t bucket_bytes, bool overlap)
    : comm_(comm), slices_(slices), overlap_(overlap) {
  const int64_t cap = std::max<int64_t>(1, int64_t(bucket_bytes / sizeof(float)));
  where_.resize(slices_.size());
  copied_.assign(slices_.size(), false);
  // Backward produces gradients roughly in reverse order: fill buckets from the end.
  Bucket cur;
  int64_t used = 0;
  for (size_t k = slices_.size(); k-- > 0;) {
    const int64_t n = slices_[k].numel();
    if (!cur.items.empty() && used + n > cap) {
      buckets_.push_back(std::move(cur));
      cur = Bucket();
      used = 0;
    }
    where_[k] = {buckets_.size(), cur.items.size()};
    cur.items.push_back({k, used, n});
    used += n;
  }
  if (!cur.items.empty()) buckets_.push_back(std::move(cur));
  for (auto& b : buckets_) {
    int64_t total = 0;
    for (const auto& it : b.items) total += it.numel;
    b.flat = torch::zeros({total}, slices_[b.items[0].slice].param->options().dtype(torch::kFloat32));
  }
  if (overlap_) {
    for (size_t k = 0; k < slices_.size(); ++k)
      hooks_.push_back(slices_[k].param->register_hook([this, k](const torch::Tensor& g) { on_grad(k, g); }));
  }
}

GradSync::~GradSync() {
  for (size_t k = 0; k < hooks_.size(); ++k) slices_[k].param->remove_hook(hooks_[k]);
}

void GradSync::arm() { armed_ = overlap_; }

void GradSync::on_grad(size_t k, const torch::Tensor& incoming) {
  if (!armed_) return;
  std::lock_guard<std::mutex> lock(mutex_);
  if (copied_[k]) return;
  torch::NoGradGuard no_grad;
  const TrainSlice& s = slices_[k];
  // What AccumulateGrad is about to store: the earlier micro-batches' sum plus this one.
  const torch::Tensor& prev = s.param->grad();
  torch::Tensor full = prev.defined() ? prev + incoming : incoming;
  torch::Tensor rows = s.whole() ? full : full.narrow(0, s.row_begin, s.row_end - s.row_begin);
  auto [b, i] = where_[k];
  Bucket& bucket = buckets_[b];
  const Item& item = bucket.items[i];
  bucket.flat.narrow(0, item.offset, item.numel).copy_(rows.reshape({-1}));
  copied_[k] = true;
  ++bucket.filled;
  launch_ready();
}

void GradSync::launch_ready() {
  while (next_launch_ < buckets_.size() && buckets_[next_launch_].filled == buckets_[next_launch_].items.size()) {
    Bucket& b = buckets_[next_launch_++];
    b.work = comm_.allreduce_sum_async(b.flat);
    b.launched = true;
  }
}

void GradSync::finish() {
  torch::NoGradGuard no_grad;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto& b : buckets_) {
      if (b.launched) continue;
      for (const auto& item : b.items) {
        if (copied_[item.slice]) continue;
        torch::Tensor g = slices_[item.slice].grad();
        auto dst = b.flat.narrow(0, item.offset, item.numel);
        if (g.defined()) dst.copy_(g.reshape({-1}));
        else dst.zero_();
        copied_[item.slice] = true;
        ++b.filled;
      }
    }
    launch_ready();
  }
  for (auto& b : buckets_) {
    comm_.wait(b.work, "gradient all-reduce");
    for (const auto& item : b.items) {
      const TrainSlice& s = slices_[item.slice];
      if (!s.param->grad().defined()) s.param->mutable_grad() = torch::zeros_like(*s.param);
      s.grad().copy_(b.flat.narrow(0, item.offset, item.numel).view(s.grad().sizes()));
    }
    b.work.reset();
    b.filled = 0;
    b.launched = false;
  }
  std::fill(copied_.begin(), copied_.end(), false);
  next_launch_ = 0;
  armed_ = false;
}

// ---- ZeRO-1 --------------------------------------------------------------------------

FlatLayout::FlatLayout(const std::vector<TrainSlice>& slices, int world) {
  for (const auto& s : slices) offsets.push_back(total), total += s.numel();
  shard = (total + world - 1) / world;
  padded = shard * world;
}

std::vector<AdamSegment> slice_segments(const std::vector<TrainSlice>& slices, const FlatLayout& layout) {
  std::vector<AdamSegment> out;
  for (size_t i = 0; i < slices.size(); ++i) {
    const TrainSlice& s = slices[i];
    torch::Tensor g = s.grad();
    out.push_back({s.value().view({-1}), g.defined() ? g.reshape({-1}) : g, layout.offsets[i], s.decay});
  }
  return out;
}

ZeroSync::ZeroSync(Comm& comm, const std::vector<TrainSlice>& slices, torch::Device device)
    : comm_(comm), slices_(slices), layout_(slices, comm.world()) {
  torch::NoGradGuard no_grad;
  auto o = torch::TensorOptions().dtype(torch::kFloat32).device(device);
  flat_param_ = torch::zeros({layout_.padded}, o);
  flat_grad_ = torch::zeros({layout_.padded}, o);
  for (size_t i = 0; i < slices_.size(); ++i)
    flat_param_.narrow(0, layout_.offsets[i], slices_[i].numel()).copy_(slices_[i].value().reshape({-1}));
}

void ZeroSync::reduce_scatter_grads() {
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < slices_.size(); ++i) {
    auto dst = flat_grad_.narrow(0, layout_.offsets[i], slices_[i].numel());
    torch::Tensor g = slices_[i].grad();
    if (g.defined()) dst.copy_(g.reshape({-1}));
    else dst.zero_();
  }
  // Gloo (LibTorch 1.13) has no reduce_scatter: one reduce per shard, to its owner.
  std::vector<c10::intrusive_ptr<c10d::Work>> works;
  for (int r = 0; r < comm_.world(); ++r) comm_.reduce_sum(flat_grad_.narrow(0, int64_t(r) * layout_.shard, layout_.shard), r);
}

std::vector<AdamSegment> ZeroSync::segments() const {
  std::vector<AdamSegment> out;
  const int64_t a = int64_t(comm_.rank()) * layout_.shard, b = a + layout_.shard;
  for (size_t i = 0; i < slices_.size(); ++i) {
    int64_t lo = std::max(a, layout_.offsets[i]), hi = std::min(b, layout_.offsets[i] + slices_[i].numel());
    if (lo >= hi) continue;
    out.push_back({flat_param_.narrow(0, lo, hi - lo), flat_grad_.narrow(0, lo, hi - lo), lo - a, slices_[i].decay});
  }
  return out;
}

void ZeroSync::allgather_params() {
  torch::NoGradGuard no_grad;
  auto mine = flat_param_.narrow(0, int64_t(comm_.rank()) * layout_.shard, layout_.shard).clone();
  comm_.allgather(flat_param_, mine);
  for (size_t i = 0; i < slices_.size(); ++i)
    slices_[i].value().copy_(flat_param_.narrow(0, layout_.offsets[i], slices_[i].numel()).view(slices_[i].value().sizes()));
}

torch::Tensor ZeroSync::gather_state(const torch::Tensor& shard_state) {
  auto out = torch::zeros({layout_.padded}, shard_state.options());
  comm_.allgather(out, shard_state.contiguous());
  return out;
}

}  // namespace emo
