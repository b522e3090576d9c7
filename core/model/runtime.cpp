#include "core/model/runtime.h"

#include <dlfcn.h>

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <mutex>
#include <thread>

#include "core/util/log.h"

namespace emo {

void configure_threads(int threads) {
  int n = threads > 0 ? threads : int(std::max(1u, std::thread::hardware_concurrency()));
  at::set_num_threads(n);
  // OpenBLAS (Debian's LibTorch calls it for GEMMs) keeps its own thread count, read from
  // OPENBLAS_NUM_THREADS / OMP_NUM_THREADS when it loads, and its sums depend on it: the
  // same run gave other bits under torchrun (which sets OMP_NUM_THREADS=1) than by hand.
  // Setting it here makes --threads the one thing that decides.
  using SetThreads = void (*)(int);
  if (auto set_openblas = reinterpret_cast<SetThreads>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads")))
    set_openblas(n);
  static std::once_flag interop;
  std::call_once(interop, [] {
    try {
      at::set_num_interop_threads(1);
    } catch (const std::exception&) {
      // Already started by an earlier parallel region: harmless.
    }
  });
}

void use_deterministic_cuda() {
  // cuBLAS reads this when it creates its handle, i.e. at the first GEMM: before any CUDA work.
  setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8", /*overwrite=*/0);
  at::globalContext().setDeterministicAlgorithms(true, /*warn_only=*/true);
}

double check_blas_speed_once() {
  static double gflops = [] {
    // One thread and the fastest of several runs: on a busy machine a multi-threaded
    // BLAS waits for its slowest thread and one preempted run is slow, which made this
    // warn about OpenBLAS itself. The reference BLAS is slow on every run.
    torch::NoGradGuard no_grad;
    int threads = at::get_num_threads();
    at::set_num_threads(1);
    auto a = torch::randn({512, 512});
    auto b = torch::randn({512, 512});
    auto c = torch::mm(a, b);  // warm-up: BLAS initialisation
    double best = 1e30;
    for (int i = 0; i < 6; ++i) {
      auto start = std::chrono::steady_clock::now();
      c = torch::mm(a, b);
      best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    }
    at::set_num_threads(threads);
    double g = 2.0 * 512 * 512 * 512 / best / 1e9;
    // OpenBLAS does 50-200 GFLOP/s per core here; the reference BLAS does 1-3.
    if (g < 10.0)
      log_warn("matrix multiplication runs at ", int(g), " GFLOP/s: this looks like the reference BLAS. Install "
               "libopenblas0-pthread (apt-get install libopenblas0-pthread) for ~25x faster training and inference.");
    return g;
  }();
  return gflops;
}

}  // namespace emo
