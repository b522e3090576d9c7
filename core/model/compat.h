// Every difference between the LibTorch versions emo builds against, in one place:
// Debian's libtorch-dev 1.13 (CPU) and a 2.x CUDA LibTorch from an installed PyTorch.
//
//  - c10d: ProcessGroupGloo / ProcessGroupNCCL derive from c10d::ProcessGroup in 1.13 and
//    from c10d::Backend in 2.x (whose ProcessGroup is a dispatcher over backends). Both
//    bases have the same collective methods, so the rest of emo calls them through
//    compat::Backend. The stores (TCPStore, PrefixStore) are created here too.
//  - autocast: 1.13 has per-device functions (set_enabled, set_autocast_gpu_dtype); 2.4+
//    takes the device type as an argument (set_autocast_enabled(device, ...)).
//  - NCCL exists only in CUDA builds (USE_C10D_NCCL); Gloo needs USE_C10D_GLOO.
//  - c10::Allocator: allocate() is const up to 2.2 and not from 2.3, which also makes
//    copy_data() pure virtual; compat::Allocator hides both.
//  - at::_grouped_mm (one call for a GEMM per group of rows) exists from 2.9: CUDA kernels
//    for bf16 on Hopper and later, a composite loop elsewhere; compat::grouped_mm.
//  - at::scaled_dot_product_attention with a `scale` exists from 2.1; compat::attention.
//
// Nothing else in emo tests TORCH_VERSION_*.
#pragma once

#include <torch/torch.h>
#include <torch/version.h>

#include <chrono>
#include <cstring>
#include <memory>
#include <string>

#include <torch/csrc/distributed/c10d/Store.hpp>

#if TORCH_VERSION_MAJOR >= 2
#include <torch/csrc/distributed/c10d/Backend.hpp>
#else
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#endif

namespace emo::compat {

// ---- versions -------------------------------------------------------------------------

constexpr int kTorchMajor = TORCH_VERSION_MAJOR;
constexpr int kTorchMinor = TORCH_VERSION_MINOR;
std::string torch_version();  // "1.13.1"

// ---- autocast ---------------------------------------------------------------------------

struct AutocastState {
  bool enabled = false;
  torch::ScalarType dtype = torch::kBFloat16;
};
AutocastState autocast_state(torch::DeviceType device);
void set_autocast(torch::DeviceType device, const AutocastState& state);

// Enables (or restores) autocast for a scope; clears the cast cache on exit, as
// torch.autocast's __exit__ does.
class AutocastGuard {
 public:
  AutocastGuard(torch::DeviceType device, const AutocastState& state);
  ~AutocastGuard();
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  torch::DeviceType device_;
  AutocastState saved_;
};

// ---- grouped matrix multiply -------------------------------------------------------------

#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 9)
constexpr bool kHaveGroupedMM = true;
#else
constexpr bool kHaveGroupedMM = false;
#endif

// at::_grouped_mm: groups are given by `offs` (int32, the cumulative end of each group).
//  a [M, K] (rows grouped) x b [G, K, N]   -> [M, N]       (each group of rows by its matrix)
//  a [K, M] x b [M, N] (M grouped)         -> [G, K, N]    (one product per group of M)
// Throws emo::Error where the LibTorch has none (kHaveGroupedMM false).
torch::Tensor grouped_mm(const torch::Tensor& a, const torch::Tensor& b, const torch::Tensor& offs);

// ---- attention ---------------------------------------------------------------------------

// softmax(q k^T * scale + mask) v, softmax in float32: q [B, h, T, d], k and v [B, h, Tk, d],
// mask additive [B or 1, 1, T, Tk] in q's dtype (finite: a row with no visible key comes
// out uniform, not NaN) -> [B, h, T, d].
// 2.1+: at::scaled_dot_product_attention, one fused kernel (flash attention on the CPU) that
// neither writes the [B, h, T, Tk] scores nor keeps them for backward (bench_train's OLMoE
// shape: 1,025 -> 1,115 tokens/s; transformers' default uses it too). 1.13: the eager
// composite. The two agree to ~1e-6 in float32.
torch::Tensor attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                        const torch::Tensor& mask, double scale);

// ---- allocator -------------------------------------------------------------------------

// Derive from this and implement allocate_block(); it overrides what each version asks.
class Allocator : public c10::Allocator {
 public:
  virtual c10::DataPtr allocate_block(size_t bytes) = 0;
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 3)
  c10::DataPtr allocate(size_t bytes) override { return allocate_block(bytes); }
  void copy_data(void* dest, const void* src, std::size_t count) const override {
    if (count) std::memcpy(dest, src, count);
  }
#else
  c10::DataPtr allocate(size_t bytes) const override { return const_cast<Allocator*>(this)->allocate_block(bytes); }
#endif
};

// ---- c10d -------------------------------------------------------------------------------

#if TORCH_VERSION_MAJOR >= 2
using Backend = c10d::Backend;
#else
using Backend = c10d::ProcessGroup;
#endif

// A TCPStore: the server when `is_server`, else a client of host:port.
c10::intrusive_ptr<c10d::Store> tcp_store(const std::string& host, uint16_t port, int world_size, bool is_server,
                                          std::chrono::milliseconds timeout, bool multi_tenant);
c10::intrusive_ptr<c10d::Store> prefix_store(const std::string& prefix, const c10::intrusive_ptr<c10d::Store>& store);

bool gloo_available();
bool nccl_available();

// Gloo over TCP. `interface` (GLOO_SOCKET_IFNAME) wins over `hostname`; both empty: the
// address this machine's hostname resolves to (loopback as a fallback).
c10::intrusive_ptr<Backend> new_gloo(const c10::intrusive_ptr<c10d::Store>& store, int rank, int world_size,
                                     const std::string& interface, const std::string& hostname,
                                     std::chrono::milliseconds timeout);
// NCCL (CUDA builds only; emo::Error otherwise).
c10::intrusive_ptr<Backend> new_nccl(const c10::intrusive_ptr<c10d::Store>& store, int rank, int world_size,
                                     std::chrono::milliseconds timeout);

}  // namespace emo::compat
