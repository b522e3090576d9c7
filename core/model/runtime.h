// Process-wide compute settings for LibTorch: threads, and the check that matrix
// multiplication runs on an optimised BLAS.
#pragma once

namespace emo {

// 0 = all cores. Sets LibTorch's intra-op threads (and inter-op to 1: emo parallelises
// inside operators, not across them).
void configure_threads(int threads);

// CUDA training: deterministic kernels (index_add_ and scatter otherwise add with atomics,
// in whatever order threads finish; cuBLAS picks workspace-dependent algorithms), so that a
// resumed run ends on the same bits as an uninterrupted one, as on the CPU. Call before any
// CUDA work (it sets CUBLAS_WORKSPACE_CONFIG unless the environment already does).
void use_deterministic_cuda();

// Times a 512x512 float32 matmul once per process. Debian's reference BLAS is ~25x
// slower than OpenBLAS; if the machine fell back to it, warn (once) with the fix.
// Returns the measured GFLOP/s.
double check_blas_speed_once();

}  // namespace emo
