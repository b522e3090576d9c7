#include "core/model/cpu_allocator.h"

#include <c10/core/CPUAllocator.h>
#include <catch2/catch.hpp>
#include <torch/torch.h>

using namespace emo;

TEST_CASE("cpu cache size classes hold the request and waste at most 1/8 plus a page", "[allocator]") {
  const size_t page = 4096;
  for (size_t bytes : {size_t(1) << 20, (size_t(1) << 20) + 1, size_t(3000000), size_t(64) << 20,
                       (size_t(64) << 20) + 12345, size_t(5368709121)}) {
    const size_t c = cpu_cache_size_class(bytes);
    CHECK(c >= bytes);
    CHECK(c % page == 0);
    CHECK(c <= bytes + bytes / 8 + page);
  }
  CHECK(cpu_cache_size_class(size_t(1) << 20) == size_t(1) << 20);
  CHECK(cpu_cache_size_class((size_t(1) << 20) + 1) == 9 * (size_t(1) << 17));
}

TEST_CASE("the caching allocator reuses a freed large block and gives it back on scope exit", "[allocator]") {
  const CpuCacheStats before = cpu_cache_stats();
  torch::Tensor outlives;
  {
    CachingCpuAllocatorScope scope;
    void* first = nullptr;
    {
      auto a = torch::full({1 << 20}, 3.0f);  // 4 MiB
      first = a.data_ptr();
      CHECK(a.sum().item<double>() == 3.0 * (1 << 20));
    }
    CHECK(cpu_cache_stats().idle_bytes == before.idle_bytes + (size_t(4) << 20));
    auto b = torch::full({1 << 20}, 5.0f);  // the same size class: the same block, refilled
    CHECK(b.data_ptr() == first);
    CHECK(cpu_cache_stats().hits == before.hits + 1);
    CHECK((b == 5.0f).all().item<bool>());
    auto small = torch::ones({16});  // below 1 MiB: LibTorch's own allocator
    CHECK(small.sum().item<float>() == 16.0f);
    outlives = torch::arange(1 << 19, torch::kFloat64);  // 4 MiB, freed after the scope
  }
  const CpuCacheStats after = cpu_cache_stats();
  CHECK(after.idle_bytes == 0);
  CHECK(after.live_bytes == before.live_bytes + (size_t(4) << 20));
  CHECK(outlives[12345].item<double>() == 12345.0);
  outlives = torch::Tensor();
  CHECK(cpu_cache_stats().live_bytes == before.live_bytes);
  CHECK(cpu_cache_stats().idle_bytes == 0);  // no scope: a freed block is unmapped, not kept
}

TEST_CASE("outside a caching scope LibTorch's allocator is back", "[allocator]") {
  c10::Allocator* plain = c10::GetCPUAllocator();
  {
    CachingCpuAllocatorScope scope;
    CHECK(c10::GetCPUAllocator() != plain);
    {
      ScopedCpuAllocator back(plain);
      CHECK(c10::GetCPUAllocator() == plain);
    }
    CHECK(c10::GetCPUAllocator() != plain);
  }
  CHECK(c10::GetCPUAllocator() == plain);
}

TEST_CASE("a request takes the smallest idle block that holds it, up to twice its size", "[allocator]") {
  CachingCpuAllocatorScope scope;
  const CpuCacheStats before = cpu_cache_stats();
  void *big_ptr = nullptr, *mid_ptr = nullptr;
  {
    auto big = torch::empty({3 << 20}, torch::kUInt8);  // 3 MiB
    auto mid = torch::empty({2 << 20}, torch::kUInt8);  // 2 MiB
    big_ptr = big.data_ptr(), mid_ptr = mid.data_ptr();
  }
  {
    auto a = torch::empty({(3 << 19) + 4096}, torch::kUInt8);  // 1.5 MiB + a page: the 2 MiB block
    CHECK(a.data_ptr() == mid_ptr);
    auto b = torch::empty({1 << 20}, torch::kUInt8);  // 1 MiB: 3 MiB is more than twice it
    CHECK(b.data_ptr() != big_ptr);
    auto c = torch::empty({(5 << 19) + 1}, torch::kUInt8);  // 2.5 MiB: the 3 MiB block
    CHECK(c.data_ptr() == big_ptr);
  }
  const CpuCacheStats after = cpu_cache_stats();
  CHECK(after.hits == before.hits + 2);
  CHECK(after.misses == before.misses + 3);
}

TEST_CASE("EMO_NO_CPU_MEMORY_CACHING=1 leaves LibTorch's allocator in place", "[allocator]") {
  c10::Allocator* plain = c10::GetCPUAllocator();
  setenv("EMO_NO_CPU_MEMORY_CACHING", "1", 1);
  {
    CachingCpuAllocatorScope scope;
    CHECK(c10::GetCPUAllocator() == plain);
  }
  setenv("EMO_NO_CPU_MEMORY_CACHING", "0", 1);
  {
    CachingCpuAllocatorScope scope;
    CHECK(c10::GetCPUAllocator() != plain);
  }
  unsetenv("EMO_NO_CPU_MEMORY_CACHING");
}
