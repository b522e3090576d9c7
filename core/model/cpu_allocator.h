// A caching allocator for LibTorch's large CPU tensors, installed for a scope: training,
// and every evaluation loop (perplexity, log-likelihood, generation, routing statistics,
// analysis), whose batches free and reallocate the same large logits.
//
// Why: glibc serves every block over its largest mmap threshold (32 MB) with a fresh
// mmap and unmaps it on free, so each training step faults in, and the kernel zeroes,
// every page of every large activation and gradient again. On bench_train's MoE shape
// that was about 40% of a step spent in the kernel. As PyTorch's CUDA caching allocator
// does for GPU memory, blocks of 1 MiB and up (sizes rounded up by at most 1/8) are kept
// when freed and handed to a later request that fits: the smallest idle block at least
// its size and at most twice it, so sizes that vary from step to step are served too.
// In a training loop that is nearly every request from the second step on. Smaller
// blocks go to LibTorch's default allocator (glibc's heap already reuses them).
//
// Idle blocks are bounded (a quarter of physical memory); past that the least recently
// freed are unmapped. Leaving the scope restores the previous allocator and unmaps every
// idle block; tensors that outlive the scope are still freed correctly.
//
// EMO_NO_CPU_MEMORY_CACHING=1 in the environment turns it off (LibTorch's allocator
// throughout), as PYTORCH_NO_CUDA_MEMORY_CACHING=1 does for PyTorch's GPU cache.
#pragma once

#include <c10/core/Allocator.h>

#include <cstddef>
#include <optional>

namespace emo {

// Installs `allocator` as LibTorch's CPU allocator while it lives; restores the previous
// one on exit. (bench_train uses it to run its baseline on LibTorch's default allocator.)
class ScopedCpuAllocator {
 public:
  explicit ScopedCpuAllocator(c10::Allocator* allocator);
  ~ScopedCpuAllocator();
  ScopedCpuAllocator(const ScopedCpuAllocator&) = delete;
  ScopedCpuAllocator& operator=(const ScopedCpuAllocator&) = delete;

 private:
  c10::Allocator* previous_;
};

// The caching allocator for the scope's lifetime (unless EMO_NO_CPU_MEMORY_CACHING is set
// to anything but 0); idle blocks are unmapped on exit.
class CachingCpuAllocatorScope {
 public:
  CachingCpuAllocatorScope();
  ~CachingCpuAllocatorScope();
  CachingCpuAllocatorScope(const CachingCpuAllocatorScope&) = delete;
  CachingCpuAllocatorScope& operator=(const CachingCpuAllocatorScope&) = delete;

 private:
  std::optional<ScopedCpuAllocator> installed_;
};

struct CpuCacheStats {
  size_t live_bytes = 0;  // handed out and not yet freed (cached sizes only)
  size_t idle_bytes = 0;  // kept for reuse
  size_t hits = 0;        // requests served from idle blocks
  size_t misses = 0;      // requests that mapped new memory
};
CpuCacheStats cpu_cache_stats();

// The size class a request of `bytes` (>= 1 MiB) is served from: the smallest m * 2^k
// with m in [8, 16) that holds it, rounded up to whole pages.
size_t cpu_cache_size_class(size_t bytes);

}  // namespace emo
