#pragma once
// Fused causal grouped-query attention for float32 on the CPU (inference only). One pass per query
// row: scores against the keys it may see, softmax, weighted sum of values; nothing of size T×S is
// ever materialised. Raw pointers and strides so this file stays free of LibTorch headers and can
// be compiled for several instruction sets.

#include <cstdint>

namespace lorashear::detail {

/// Layouts are logical [B, T or S, heads, head_dim] with arbitrary strides except a unit stride on
/// head_dim. Query t (0-based in this call) sits at absolute position start+t and sees keys
/// 0..start+t. Query head j reads kv head j / (n_heads / n_kv_heads).
struct AttentionArgs {
  const float* q;
  int64_t q_sb, q_st, q_sh;
  const float* k;
  int64_t k_sb, k_ss, k_sh;
  const float* v;
  int64_t v_sb, v_ss, v_sh;
  float* out;
  int64_t o_sb, o_st, o_sh;
  int64_t n_heads, n_kv_heads, head_dim, start;
  float scale;
  int64_t window = 0;  ///< sliding window: position p sees keys (p - window, p]; 0 = all
};

/// Floats of scratch space `attention_rows` needs for `keys` keys.
inline int64_t attention_scratch_floats(int64_t keys, int64_t head_dim) {
  return (2 * head_dim + 1) * keys;
}

/// Computes query rows [t0, t1) of batch b for every query head that reads kv head `kvh`.
/// Runs the kernel variant chosen at first use (see below).
void attention_rows(const AttentionArgs& a, int64_t b, int64_t kvh, int64_t t0, int64_t t1,
                    float* scratch);

// Kernel variants (attention_dispatch.cpp). An x86-64 build holds "baseline" (SSE2), "avx2"
// (x86-64-v3) and "avx512" (x86-64-v4) and uses the best this CPU runs, or the one the environment
// variable LORASHEAR_CPU_KERNEL names (refused with a UsageError if the CPU lacks it). A
// -DLORASHEAR_NATIVE_KERNELS=ON build holds only "native", a build for another architecture only
// "baseline"; there attention_rows is the kernel itself and the variable is checked only by
// attention_variant() and set_attention_variant().

/// Whether this build holds variant `name` and this CPU can run it.
bool attention_variant_available(const char* name);
/// Makes attention_rows use variant `name` from now on (tests, benchmarks); throws UsageError if it
/// is not available. Calls already running finish with the previous variant.
void set_attention_variant(const char* name);
/// Forgets the choice: the next use chooses again, reading LORASHEAR_CPU_KERNEL anew (tests).
void reset_attention_variant();
/// The variant in use (choosing it now if nothing ran yet); throws like attention_rows would.
const char* attention_variant();

}  // namespace lorashear::detail
