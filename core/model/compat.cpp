#include "core/model/compat.h"

#include <ATen/autocast_mode.h>

#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#ifdef USE_C10D_GLOO
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif
#ifdef USE_C10D_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include "core/util/error.h"

// 2.4 moved autocast to functions taking the device type (the old names were deprecated).
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
#define EMO_AUTOCAST_BY_DEVICE 1
#else
#define EMO_AUTOCAST_BY_DEVICE 0
#endif

namespace emo::compat {

std::string torch_version() {
  return cat(TORCH_VERSION_MAJOR, ".", TORCH_VERSION_MINOR, ".", TORCH_VERSION_PATCH);
}

AutocastState autocast_state(torch::DeviceType device) {
  AutocastState s;
#if EMO_AUTOCAST_BY_DEVICE
  s.enabled = at::autocast::is_autocast_enabled(device);
  s.dtype = at::autocast::get_autocast_dtype(device);
#else
  if (device == torch::kCUDA) {
    s.enabled = at::autocast::is_enabled();
    s.dtype = at::autocast::get_autocast_gpu_dtype();
  } else {
    s.enabled = at::autocast::is_cpu_enabled();
    s.dtype = at::autocast::get_autocast_cpu_dtype();
  }
#endif
  return s;
}

void set_autocast(torch::DeviceType device, const AutocastState& s) {
#if EMO_AUTOCAST_BY_DEVICE
  at::autocast::set_autocast_enabled(device, s.enabled);
  at::autocast::set_autocast_dtype(device, s.dtype);
#else
  if (device == torch::kCUDA) {
    at::autocast::set_enabled(s.enabled);
    at::autocast::set_autocast_gpu_dtype(s.dtype);
  } else {
    at::autocast::set_cpu_enabled(s.enabled);
    at::autocast::set_autocast_cpu_dtype(s.dtype);
  }
#endif
}

AutocastGuard::AutocastGuard(torch::DeviceType device, const AutocastState& state)
    : device_(device), saved_(autocast_state(device)) {
  set_autocast(device, state);
  if (state.enabled) at::autocast::increment_nesting();
}

AutocastGuard::~AutocastGuard() {
  if (autocast_state(device_).enabled && at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  set_autocast(device_, saved_);
}

torch::Tensor grouped_mm(const torch::Tensor& a, const torch::Tensor& b, const torch::Tensor& offs) {
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 9)
  return at::_grouped_mm(a, b, offs);
#else
  (void)a, (void)b, (void)offs;
  fail("dispatch", "grouped", "this LibTorch (", torch_version(), ") has no grouped matrix multiply (2.9 and later)");
#endif
}

torch::Tensor attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                        const torch::Tensor& mask, double scale) {
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 1)
  return at::scaled_dot_product_attention(q, k, v, mask, /*dropout_p=*/0.0, /*is_causal=*/false, scale);
#else
  auto scores = torch::matmul(q, k.transpose(2, 3)) * scale;
  if (mask.defined()) scores = scores + mask;
  auto probs = torch::softmax(scores, -1, torch::kFloat32).to(q.scalar_type());
  return torch::matmul(probs, v);
#endif
}

c10::intrusive_ptr<c10d::Store> tcp_store(const std::string& host, uint16_t port, int world_size, bool is_server,
                                          std::chrono::milliseconds timeout, bool multi_tenant) {
  c10d::TCPStoreOptions o;
  o.port = port;
  o.isServer = is_server;
  o.numWorkers = size_t(world_size);
  // Every process counts itself in, as torch.distributed's TCPStore(wait_for_workers=True)
  // does: the server returns once all world_size have (a client that did not count would leave
  // the server waiting out the whole timeout).
  o.waitWorkers = true;
  o.timeout = timeout;
  o.multiTenant = multi_tenant;
  return c10::make_intrusive<c10d::TCPStore>(host, o);
}

c10::intrusive_ptr<c10d::Store> prefix_store(const std::string& prefix, const c10::intrusive_ptr<c10d::Store>& store) {
  return c10::make_intrusive<c10d::PrefixStore>(prefix, store);
}

bool gloo_available() {
#ifdef USE_C10D_GLOO
  return true;
#else
  return false;
#endif
}

bool nccl_available() {
#ifdef USE_C10D_NCCL
  return true;
#else
  return false;
#endif
}

c10::intrusive_ptr<Backend> new_gloo(const c10::intrusive_ptr<c10d::Store>& store, int rank, int world_size,
                                     const std::string& interface, const std::string& hostname,
                                     std::chrono::milliseconds timeout) {
#ifdef USE_C10D_GLOO
  auto options = c10d::ProcessGroupGloo::Options::create(timeout);
  if (!interface.empty()) options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(interface));
  else if (!hostname.empty()) options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(hostname));
  else options->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
  options->threads = int(options->devices.size()) * 2;
  return c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, world_size, options);
#else
  fail("distributed", "gloo", "this LibTorch (", torch_version(), ") was built without Gloo (USE_C10D_GLOO)");
#endif
}

c10::intrusive_ptr<Backend> new_nccl(const c10::intrusive_ptr<c10d::Store>& store, int rank, int world_size,
                                     std::chrono::milliseconds timeout) {
#ifdef USE_C10D_NCCL
  auto options = c10d::ProcessGroupNCCL::Options::create();
  options->timeout = timeout;
  return c10::make_intrusive<c10d::ProcessGroupNCCL>(store, rank, world_size, options);
#else
  (void)store, (void)rank, (void)world_size, (void)timeout;
  fail("distributed", "nccl", "this LibTorch (", torch_version(), ") was built without NCCL: use --dist-backend gloo");
#endif
}

}  // namespace emo::compat
