// The AdamW update of a contiguous float32 range, in plain C++ (no LibTorch): compiled
// with -fno-math-errno so that sqrt vectorises, for AVX-512, AVX2 and plain x86-64,
// chosen at run time.
#pragma once

#include <cstdint>

namespace emo {

// torch.optim.AdamW's single-tensor arithmetic: p *= decay_factor; m = b1*m + (1-b1)*g;
// v = b2*v + (1-b2)*g*g; p -= step_size * m / (sqrt(v)/bc2_sqrt + eps).
void adamw_range(float* p, const float* g, float* m, float* v, int64_t n, float decay_factor, float b1, float b2,
                 float step_size, float bc2_sqrt, float eps);

}  // namespace emo
