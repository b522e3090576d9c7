#include "finetune/adamw_kernel.h"

namespace emo {

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_ADDRESS__)
__attribute__((target_clones("avx512f", "avx2", "default")))
#endif
void adamw_range(float* __restrict p, const float* __restrict g, float* __restrict m, float* __restrict v, int64_t n,
                 float decay_factor, float b1, float b2, float step_size, float bc2_sqrt, float eps) {
  const float c1 = 1.0f - b1, c2 = 1.0f - b2;
  for (int64_t i = 0; i < n; ++i) {
    float gi = g[i];
    float mi = m[i] * b1 + gi * c1;
    float vi = v[i] * b2 + c2 * gi * gi;
    m[i] = mi;
    v[i] = vi;
    float denom = __builtin_sqrtf(vi) / bc2_sqrt + eps;
    p[i] = p[i] * decay_factor - step_size * (mi / denom);
  }
}

}  // namespace emo
