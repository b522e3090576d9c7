#include "core/model/cpu_allocator.h"

#include <c10/core/CPUAllocator.h>
#include <c10/core/impl/alloc_cpu.h>
#include <c10/util/Exception.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdlib>
#include <list>
#include <map>
#include <mutex>
#include <string>
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
    std::vector<Block> drop;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      auto it = live_.find(ptr);
      if (it == live_.end()) {  // a small block, from c10's allocator
        lock.unlock();
        c10::free_cpu(ptr);
        return;
      }
      const Block b{ptr, it->second};
      live_.erase(it);
      stats_.live_bytes -= b.size;
      if (depth_ == 0) drop.push_back(b);
      else keep_idle(b, drop);
    }
    unmap(drop);
  }

  // Called by the scopes: caching is on while at least one is alive.
  void enter() {
    std::lock_guard<std::mutex> lock(mutex_);
    ++depth_;
  }
  void leave() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (--depth_ > 0) return;
    }
    unmap_idle();
  }

  CpuCacheStats stats() {
    std::lock_guard<std::mutex> lock(mutex_);
    return stats_;
  }

 private:
  struct Block {
    void* ptr;
    size_t size;
  };
  using Lru = std::list<Block>;  // idle blocks, least recently freed first

  void* take(size_t bytes) {
    const size_t size = cpu_cache_size_class(bytes);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (void* p = reuse(size)) return p;
    }
    void* p = map(size);
    if (!p) {  // out of memory or address space: give back what is idle, then retry once
      unmap_idle();
      p = map(size);
    }
    TORCH_CHECK(p, "emo's CPU allocator: not enough memory for a block of ", bytes, " bytes");
    std::lock_guard<std::mutex> lock(mutex_);
    ++stats_.misses;
    note_live({p, size});
    return p;
  }

  // The smallest idle block that holds `size` and is at most twice it: sizes that vary
  // from step to step (sequence lengths, tokens per expert) still find a block.
  void* reuse(size_t size) {
    auto it = by_size_.lower_bound(size);
    if (it == by_size_.end() || it->first > 2 * size) return nullptr;
    const Block b = *it->second;
    lru_.erase(it->second);
    by_size_.erase(it);
    stats_.idle_bytes -= b.size;
    ++stats_.hits;
    note_live(b);
    return b.ptr;
  }

  // Keeps a freed block; past the idle bound the least recently freed blocks go.
  void keep_idle(const Block& b, std::vector<Block>& drop) {
    if (b.size > idle_limit_) {
      drop.push_back(b);
      return;
    }
    by_size_.emplace(b.size, lru_.insert(lru_.end(), b));
    stats_.idle_bytes += b.size;
    while (stats_.idle_bytes > idle_limit_) {
      const Block old = lru_.front();
      auto range = by_size_.equal_range(old.size);
      for (auto it = range.first; it != range.second; ++it)
        if (it->second == lru_.begin()) {
          by_size_.erase(it);
          break;
        }
      lru_.pop_front();
      stats_.idle_bytes -= old.size;
      drop.push_back(old);
    }
  }

  static void* map(size_t size) {
    void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return nullptr;
    madvise(p, size, MADV_HUGEPAGE);  // fewer faults on first touch where THP is on madvise
    return p;
  }

  static void unmap(const std::vector<Block>& blocks) {
    for (const Block& b : blocks) munmap(b.ptr, b.size);
  }

  void note_live(const Block& b) {
    live_.emplace(b.ptr, b.size);
    stats_.live_bytes += b.size;
  }

  // Every idle block goes back to the system (unmapped outside the lock).
  void unmap_idle() {
    std::vector<Block> all;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      all.assign(lru_.begin(), lru_.end());
      lru_.clear();
      by_size_.clear();
      stats_.idle_bytes = 0;
    }
    unmap(all);
  }

  std::mutex mutex_;
  std::unordered_map<void*, size_t> live_;  // cached-size blocks handed out, by address
  Lru lru_;
  std::multimap<size_t, Lru::iterator> by_size_;
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

bool caching_turned_off() {
  const char* v = std::getenv("EMO_NO_CPU_MEMORY_CACHING");
  return v && *v && std::string(v) != "0";
}

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

CachingCpuAllocatorScope::CachingCpuAllocatorScope() {
  if (caching_turned_off()) return;
  installed_.emplace(&cache());
  cache().enter();
}

CachingCpuAllocatorScope::~CachingCpuAllocatorScope() {
  if (installed_) cache().leave();
}

CpuCacheStats cpu_cache_stats() { return cache().stats(); }

}  // namespace emo
