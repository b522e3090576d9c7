// Linked into every executable that runs LibTorch (emo, the benches, the torch tests) as an
// object of its own, never through a static library: nothing calls it, so an archive would
// drop it.
//
// Why: Debian's LibTorch runs its own ops on libgomp's threads and its GEMMs on OpenBLAS's
// own pthreads, two pools on the same cores. After each parallel region libgomp's idle
// threads spin (300,000 iterations by default), taking the cores OpenBLAS's threads need
// for the GEMM that follows, and every small GEMM waits for them. Without that spinning, on
// 2 cores, bench_moe's sorted dispatch ran 9-46% faster (by family), transformers' per-expert
// loop (a chain of small GEMMs) 1.6-3.0x faster, and bench_train's step 899-942 -> 1,013
// tokens/s (docs/performance.md).
//
// How: libgomp fixes its spinning when it loads, from OMP_WAIT_POLICY (which cannot be set
// from here: libc resets the environment after .preinit_array runs) and from how many CPUs
// it may use: with more of its threads than CPUs it spins 100 iterations, not 300,000. So
// the process runs on one CPU while the shared libraries load (.preinit_array runs before
// their constructors) and gets its CPUs back in a constructor of the executable (run after
// theirs), which also sets the thread counts libgomp and OpenBLAS took from that one CPU
// back to what they choose unconfigured: the CPUs the process may use.
//
// Nothing is done where the BLAS has no threads of its own (PyPI's LibTorch: MKL on
// libgomp's threads; short spinning cost it ~5%), on one CPU, or when any OMP_*, GOMP_*,
// OPENBLAS_* or GOTO_* variable is set: then the user's settings decide everything
// (GOMP_SPINCOUNT=300000 gives libgomp's default spinning back).
#include "core/model/startup/omp_wait.h"

#include <dlfcn.h>
#include <sched.h>

#include <cstring>
#include <initializer_list>

namespace {

cpu_set_t g_cpus;        // the process's CPUs before the narrowing
bool g_narrowed = false;

template <class Fn>
Fn loaded_symbol(const char* name) {
  return reinterpret_cast<Fn>(dlsym(RTLD_DEFAULT, name));
}

bool blas_runs_own_threads() {
  auto get_parallel = loaded_symbol<int (*)()>("openblas_get_parallel");
  constexpr int kOpenBlasPthreads = 1;  // 0: sequential, 2: OpenMP (libgomp's own threads)
  return get_parallel && get_parallel() == kOpenBlasPthreads;
}

// Whether the user configured OpenMP or OpenBLAS at all (thread counts, binding, places,
// spinning): then everything is left to them. getenv() cannot answer yet: libc sets its
// environment pointer in its own constructor, so the loader's envp is read.
bool threads_configured(char** envp) {
  for (char** e = envp; e && *e; ++e)
    for (const char* prefix : {"OMP_", "GOMP_", "OPENBLAS_", "GOTO_"})
      if (std::strncmp(*e, prefix, std::strlen(prefix)) == 0) return true;
  return false;
}

void run_on_one_cpu_while_libraries_load(int, char**, char** envp) {
  if (threads_configured(envp) || !blas_runs_own_threads()) return;
  if (sched_getaffinity(0, sizeof g_cpus, &g_cpus) != 0 || CPU_COUNT(&g_cpus) < 2) return;
  cpu_set_t one;
  CPU_ZERO(&one);
  for (int c = 0; c < CPU_SETSIZE; ++c)
    if (CPU_ISSET(c, &g_cpus)) {
      CPU_SET(c, &one);
      break;
    }
  g_narrowed = sched_setaffinity(0, sizeof one, &one) == 0;
}

__attribute__((constructor(101))) void give_back_cpus() {
  if (!g_narrowed) return;
  sched_setaffinity(0, sizeof g_cpus, &g_cpus);
  const int n = CPU_COUNT(&g_cpus);
  if (auto set_omp_threads = loaded_symbol<void (*)(int)>("omp_set_num_threads")) set_omp_threads(n);
  if (auto set_blas_threads = loaded_symbol<void (*)(int)>("openblas_set_num_threads")) set_blas_threads(n);
}

}  // namespace

extern "C" bool emo_startup_narrowed(cpu_set_t* before) {
  if (g_narrowed && before) *before = g_cpus;
  return g_narrowed;
}

extern "C" bool emo_startup_blas_runs_own_threads() { return blas_runs_own_threads(); }

__attribute__((section(".preinit_array"), used)) static void (*const kNarrow)(int, char**, char**) =
    &run_on_one_cpu_while_libraries_load;
