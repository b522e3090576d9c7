// The start-up hook of omp_wait.cpp (linked into every executable that runs LibTorch): what
// it did, for tests and diagnostics.
#pragma once

#include <sched.h>

// Whether this process ran on one CPU while its libraries loaded; if so (and `before` is
// given), the CPUs it had before, which it has again by the time main() runs.
extern "C" bool emo_startup_narrowed(cpu_set_t* before);

// Whether the hook applies here: a BLAS with threads of its own (OpenBLAS's pthreads).
extern "C" bool emo_startup_blas_runs_own_threads();
