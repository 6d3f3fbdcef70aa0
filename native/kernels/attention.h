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
 * Whether attention_f16 can run here: the CPU has AVX2, FMA and F16C, a head is a multiple of 8
 * floats wide, and VL3_CPU_KERNELS is not "ggml" (the switch tests and benchmarks use to compare).
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
 * Scalar reference of the same in double precision: q [n][nh][hd] floats, k and v [L][nkv][hd] f16
 * bits (the cache's layout), out [n][nh][hd].
 */
void attention_f16_reference(const float* q, const uint16_t* k, const uint16_t* v, float* out, int64_t hd, int64_t nh,
                             int64_t nkv, int64_t n, int64_t L);

}  // namespace vl3::kernels
