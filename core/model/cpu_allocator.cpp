#include "core/model/cpu_allocator.h"

#include <c10/core/CPUAllocator.h>
#include <c10/core/impl/alloc_cpu.h>
#include <c10/util/Exception.h>
#include <sys/mman.h>
#include <unistd.h>

#include <mutex>
#include <unordered_map>
#include <vector>

#include "core/model/compat.h"

namespace emo {

namespace {

constexpr size_t kMinCachedBytes = size_t(1) << 20;

size_t physical_memory_bytes() {
  long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
  return pages > 0 && page > 0 ? size_t(pages) * size_t(page) : size_t(8) << 30;
}

void release_block(void* ptr);

class CachingCpuAllocator final : public compat::Allocator {
 public:
  c10::DataPtr allocate_block(size_t bytes) override {
    void* p = bytes < kMinCachedBytes ? c10::alloc_cpu(bytes) : take(bytes);
    return {p, p, &release_block, c10::Device(c10::DeviceType::CPU)};
  }
  c10::DeleterFnPtr raw_deleter() const override { return &release_block; }

  void release(void* ptr) {
    if (!ptr) return;
    std::unique_lock<std::mutex> lock(mutex_);
    auto it = live_.find(ptr);
    if (it == live_.end()) {  // a small block, from c10's allocator
      lock.unlock();
      c10::free_cpu(ptr);
      return;
    }
    const size_t size = it->second;
    live_.erase(it);
    stats_.live_bytes -= size;
    if (depth_ > 0 && stats_.idle_bytes + size <= idle_limit_) {
      idle_[size].push_back(ptr);
      stats_.idle_bytes += size;
      return;
    }
    lock.unlock();
    munmap(ptr, size);
  }

  // Called by the scopes: caching is on while at least one is alive.
  void enter() {
    std::lock_guard<std::mutex> lock(mutex_);
    ++depth_;
  }
  void leave() {
    std::vector<std::pair<void*, size_t>> drop;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (--depth_ > 0) return;
      drop = take_all_idle();
    }
    for (auto& [p, size] : drop) munmap(p, size);
  }

  CpuCacheStats stats() {
    std::lock_guard<std::mutex> lock(mutex_);
    return stats_;
  }

 private:
  void* take(size_t bytes) {
    const size_t size = cpu_cache_size_class(bytes);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = idle_.find(size);
      if (it != idle_.end() && !it->second.empty()) {
        void* p = it->second.back();
        it->second.pop_back();
        stats_.idle_bytes -= size;
        ++stats_.hits;
        note_live(p, size);
        return p;
      }
    }
    void* p = map(size);
    if (!p) {  // out of address space or memory: give back what is idle, then retry once
      std::vector<std::pair<void*, size_t>> drop;
      {
        std::lock_guard<std::mutex> lock(mutex_);
        drop = take_all_idle();
      }
      for (auto& [q, s] : drop) munmap(q, s);
      p = map(size);
    }
    TORCH_CHECK(p, "emo's CPU allocator: not enough memory for a block of ", bytes, " bytes");
    std::lock_guard<std::mutex> lock(mutex_);
    ++stats_.misses;
    note_live(p, size);
    return p;
  }

  static void* map(size_t size) {
    void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return nullptr;
    madvise(p, size, MADV_HUGEPAGE);  // fewer faults on first touch where THP is on madvise
    return p;
  }

  void note_live(void* p, size_t size) {
    live_.emplace(p, size);
    stats_.live_bytes += size;
  }

  std::vector<std::pair<void*, size_t>> take_all_idle() {
    std::vector<std::pair<void*, size_t>> all;
    for (auto& [size, blocks] : idle_)
      for (void* p : blocks) all.emplace_back(p, size);
    idle_.clear();
    stats_.idle_bytes = 0;
    return all;
  }

  std::mutex mutex_;
  std::unordered_map<void*, size_t> live_;
  std::unordered_map<size_t, std::vector<void*>> idle_;
  CpuCacheStats stats_;
  int depth_ = 0;
  const size_t idle_limit_ = physical_memory_bytes() / 4;
};

// One per process and never destroyed: tensors it allocated may be freed at any time,
// even during static destruction.
CachingCpuAllocator& cache() {
  static auto* instance = new CachingCpuAllocator();
  return *instance;
}

void release_block(void* ptr) { cache().release(ptr); }

int bit_width(size_t v) { return v ? 64 - __builtin_clzll(v) : 0; }

}  // namespace

size_t cpu_cache_size_class(size_t bytes) {
  const size_t unit = size_t(1) << (bit_width(bytes) - 4);  // bytes / unit lies in [8, 16)
  const size_t page = size_t(sysconf(_SC_PAGESIZE));
  const size_t rounded = (bytes + unit - 1) / unit * unit;
  return (rounded + page - 1) / page * page;
}

ScopedCpuAllocator::ScopedCpuAllocator(c10::Allocator* allocator) : previous_(c10::GetCPUAllocator()) {
  c10::SetCPUAllocator(allocator, /*priority=*/0);
}

ScopedCpuAllocator::~ScopedCpuAllocator() { c10::SetCPUAllocator(previous_, /*priority=*/0); }

CachingCpuAllocatorScope::CachingCpuAllocatorScope() : installed_(&cache()) { cache().enter(); }

CachingCpuAllocatorScope::~CachingCpuAllocatorScope() { cache().leave(); }

CpuCacheStats cpu_cache_stats() { return cache().stats(); }

}  // namespace emo
