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
void attention_rows(const AttentionArgs& a, int64_t b, int64_t kvh, int64_t t0, int64_t t1,
                    float* scratch);

}  // namespace lorashear::detail
