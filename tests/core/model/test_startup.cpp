// The start-up hook (core/model/startup/omp_wait.cpp) runs the process on one CPU while the
// shared libraries load, so that libgomp's idle threads spin briefly beside OpenBLAS's. It
// must do so exactly where it should (OpenBLAS with its own threads, two CPUs or more,
// nothing configured by the user), and by the time any code runs it must have given
// everything back: the CPUs, and the thread counts OpenMP and OpenBLAS choose when nothing
// configures them.
#include "core/model/startup/omp_wait.h"

#include <catch2/catch.hpp>
#include <dlfcn.h>

#include <cstring>
#include <initializer_list>

namespace {

extern "C" char** environ;

bool threads_configured() {
  for (char** e = environ; e && *e; ++e)
    for (const char* prefix : {"OMP_", "GOMP_", "OPENBLAS_", "GOTO_"})
      if (std::strncmp(*e, prefix, std::strlen(prefix)) == 0) return true;
  return false;
}

int call_int(const char* symbol) {
  auto fn = reinterpret_cast<int (*)()>(dlsym(RTLD_DEFAULT, symbol));
  return fn ? fn() : -1;
}

}  // namespace

TEST_CASE("the start-up hook narrows where it should and gives back the CPUs and thread counts") {
  cpu_set_t now, before;
  REQUIRE(sched_getaffinity(0, sizeof now, &now) == 0);
  const bool narrowed = emo_startup_narrowed(&before);
  const bool should = emo_startup_blas_runs_own_threads() && !threads_configured() && CPU_COUNT(&now) >= 2;
  CHECK(narrowed == should);
  if (narrowed) CHECK(CPU_EQUAL(&now, &before));
  if (threads_configured()) return;  // the user's settings decide the counts
  const int cpus = CPU_COUNT(&now);
  CHECK(call_int("omp_get_max_threads") == cpus);
  if (dlsym(RTLD_DEFAULT, "openblas_get_num_threads")) CHECK(call_int("openblas_get_num_threads") == cpus);
}
