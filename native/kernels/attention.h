// Decode attention on the CPU: a few query rows against an f16 KV cache, as one custom op on the
// ggml CPU backend. ggml's flash attention, for one query row, converts q to f16, takes one
// vector-dot call per cached position, an expf per position and accumulates V in f16, head by head,
// so grouped-query heads read their shared K and V rows once each. This op keeps q, the scores and
// the V sums in f32 (closer to the reference), vectorizes the softmax, and reads each K and V row
// once for up to 6 query heads sharing it (V sums in registers). 28 layers of 12 heads over 2 KV
// heads on 2 threads: 0.3 vs 1.7-2.7 ms at 65 positions, 5 vs 16.5 ms at 1500. Prefill keeps
// ggml's tiled flash attention, which is fast for many query rows.
#pragma once

#include <cstdint>

#include "ggml.h"

namespace vl3::kernels {

/**
 * Whether attention_f16 and attention_f16_append can run here: the CPU has AVX2, FMA and F16C, a
 * head is a multiple of 8 floats wide, and VL3_CPU_KERNELS is not "ggml" (the switch tests and
 * benchmarks use to compare).
 */
bool attention_f16_enabled(int64_t head_dim);

/**
 * softmax(q·kᵀ / √head_dim) · v for query rows that see a causal prefix of the cache.
 *   q [hd, nh, n] f32, contiguous (n query rows of nh heads);
 *   k, v [hd, nkv, L] f16 views of the cache (positions 0..L-1, rows of hd contiguous), nh % nkv == 0;
 *   query row t sees positions 0..L-n+t (the rows are the last n positions).
 * Returns [hd, nh, n] f32. Query head h reads KV head h / (nh / nkv) (grouped-query attention).
 */
ggml_tensor* attention_f16(ggml_context* ctx, ggml_tensor* q, ggml_tensor* k, ggml_tensor* v);

/**
 * Decode attention for one new token at position L − 1 that also appends it to the cache: rotates
 * q and k_new with RoPE (NeoX halves, HF's rotate_half), writes rope(k_new) and v_new as f16 into
 * position L − 1 of the cache, and attends over positions 0..L − 1. One graph node instead of five
 * (two ropes, two cache copies, the attention), each of which decode pays a thread barrier for.
 *   q [hd, nh, 1], k_new and v_new [hd, nkv, 1]: f32 with rows of hd contiguous (views of one fused
 *   q/k/v output are fine); k, v [hd, nkv, L]: f16 views of the cache, position L − 1 overwritten;
 *   cos, sin [hd] f32: the rotation of position L − 1 (cos[i] = cos[i + hd/2], likewise sin).
 * Returns [hd, nh, 1] f32.
 */
ggml_tensor* attention_f16_append(ggml_context* ctx, ggml_tensor* q, ggml_tensor* k_new, ggml_tensor* v_new, ggml_tensor* k,
                                  ggml_tensor* v, ggml_tensor* cos, ggml_tensor* sin);

/**
 * Scalar reference of attention_f16 in double precision: q [n][nh][hd] floats, k and v [L][nkv][hd] f16
 * bits (the cache's layout), out [n][nh][hd].
 */
void attention_f16_reference(const float* q, const uint16_t* k, const uint16_t* v, float* out, int64_t hd, int64_t nh,
                             int64_t nkv, int64_t n, int64_t L);

}  // namespace vl3::kernels
