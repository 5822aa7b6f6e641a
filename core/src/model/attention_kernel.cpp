// Compiled once per instruction-set level (see core/CMakeLists.txt): each copy defines
// attention_rows in the namespace LORASHEAR_KERNEL_NS names (kernel_baseline, kernel_avx2,
// kernel_avx512), and attention_dispatch.cpp calls the best one this CPU runs. Without the macro
// (a single -march=native or non-x86 build) it defines detail::attention_rows itself.
//
// No std:: template or other inline function with external linkage may be used here: each copy
// would emit it as a weak symbol compiled for its own instruction set, and the linker keeps one of
// them for all — possibly the AVX-512 one, which the baseline variant would then call. Only
// internal-linkage helpers (the anonymous namespace) and builtins.
#include "attention_kernel.h"

#include <cstdint>

namespace lorashear::detail {
#ifdef LORASHEAR_KERNEL_NS
namespace LORASHEAR_KERNEL_NS {
#endif

namespace {

// exp(x) for x <= 0 (the softmax argument after subtracting the row maximum): Cephes' expf
// polynomial, branch-free so the loops around it vectorise. Relative error about 2e-7.
__attribute__((always_inline)) inline float exp_nonpositive(float x) {
  x = x < -87.0f ? -87.0f : x;  // a select, not a branch: keeps the loop vectorisable
  // Round to nearest by the 1.5·2^23 trick (std::floor/nearbyint would block vectorisation).
  const float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  float r = x - n * 0.693359375f;
  r = r + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  return p * __builtin_bit_cast(float, bits);
}

}  // namespace

void attention_rows(const AttentionArgs& a, int64_t b, int64_t kvh, int64_t t0, int64_t t1,
                    float* scratch) {
  const int64_t D = a.head_dim;
  const int64_t keys = a.start + t1;  // the last row of this range sees this many keys
  const int64_t group = a.n_heads / a.n_kv_heads;
  // Keys and values transposed to [D][keys] so every inner loop runs over contiguous keys.
  float* kt = scratch;
  float* vt = scratch + D * keys;
  float* p = scratch + 2 * D * keys;
  const float* kb = a.k + b * a.k_sb + kvh * a.k_sh;
  const float* vb = a.v + b * a.v_sb + kvh * a.v_sh;
  for (int64_t s = 0; s < keys; ++s) {
    const float* ks = kb + s * a.k_ss;
    const float* vs = vb + s * a.v_ss;
    for (int64_t d = 0; d < D; ++d) {
      kt[d * keys + s] = ks[d];
      vt[d * keys + s] = vs[d];
    }
  }
  for (int64_t j = 0; j < group; ++j) {
    const int64_t h = kvh * group + j;
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t n = a.start + t + 1;  // keys [s0, n) are visible
      const int64_t s0 = a.window > 0 && n > a.window ? n - a.window : 0;
      const float* q = a.q + b * a.q_sb + t * a.q_st + h * a.q_sh;
      for (int64_t s = s0; s < n; ++s)
        p[s] = 0.0f;
      for (int64_t d = 0; d < D; ++d) {
        const float qd = q[d] * a.scale;
        const float* kd = kt + d * keys;
        for (int64_t s = s0; s < n; ++s)
          p[s] += qd * kd[s];
      }
      float m = -__builtin_inff();
#pragma omp simd reduction(max : m)
      for (int64_t s = s0; s < n; ++s)
        m = p[s] > m ? p[s] : m;
      float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
      for (int64_t s = s0; s < n; ++s) {
        p[s] = exp_nonpositive(p[s] - m);
        sum += p[s];
      }
      const float inv = 1.0f / sum;
      float* o = a.out + b * a.o_sb + t * a.o_st + h * a.o_sh;
      for (int64_t d = 0; d < D; ++d) {
        const float* vd = vt + d * keys;
        float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
        for (int64_t s = s0; s < n; ++s)
          acc += p[s] * vd[s];
        o[d] = acc * inv;
      }
    }
  }
}

#ifdef LORASHEAR_KERNEL_NS
}  // namespace LORASHEAR_KERNEL_NS
#endif
}  // namespace lorashear::detail
