// Graph building blocks shared by the vision encoder, the projector and the Qwen2 decoder.
// Every function only adds ops to `ctx`; shapes use ggml order (ne[0] fastest).
#pragma once

#include "ggml.h"

namespace vl3::layers {

/**
 * y = W·x. W [in, out], x [in, n] -> [out, n]. Weights packed for our int8 kernels go through
 * them (kernels/int8_matmul.h); the rest through ggml_mul_mat.
 */
ggml_tensor* matmul(ggml_context* ctx, ggml_tensor* w, ggml_tensor* x);

/** Rows `ids` (int32 [n]) of W [in, vocab] as f32 [in, n]: ggml_get_rows, or int8_get_rows for packed W. */
ggml_tensor* get_rows(ggml_context* ctx, ggml_tensor* w, ggml_tensor* ids);

/**
 * y = res + (W·x + b). x [in, n] -> [out, n]; b and res [out, n] may be null. Packed W does it in one
 * op (the adds run in the product's threads), the rest as ggml_mul_mat and ggml_add.
 */
ggml_tensor* linear(ggml_context* ctx, ggml_tensor* x, ggml_tensor* w, ggml_tensor* b, ggml_tensor* res = nullptr);

/** LayerNorm over ne[0] with weight and bias (eps inside the sqrt, as PyTorch). */
ggml_tensor* layer_norm(ggml_context* ctx, ggml_tensor* x, ggml_tensor* w, ggml_tensor* b, float eps);

/** RMSNorm over ne[0] times weight (Qwen2). */
ggml_tensor* rms_norm(ggml_context* ctx, ggml_tensor* x, ggml_tensor* w, float eps);

/**
 * Exact tanh-approximate GELU (`gelu_pytorch_tanh`). ggml_gelu's CPU kernel uses an f16 lookup
 * table (~1e-3 relative error), too coarse for parity, so it is composed from exact ops.
 */
ggml_tensor* gelu_tanh(ggml_context* ctx, ggml_tensor* x);

/**
 * Rotary embedding, rotate-half convention: x·cos + rotate_half(x)·sin with
 * rotate_half([a, b]) = [-b, a] over ne[0]. x [d, heads, n]; cos/sin [d, 1, n] (broadcast).
 */
ggml_tensor* rotary(ggml_context* ctx, ggml_tensor* x, ggml_tensor* cos, ggml_tensor* sin);

/**
 * ggml-cpu's SIMD width in floats (its GGML_F32_EPR: 16 in an AVX-512 build, 8 with AVX/AVX2,
 * the vector length with SVE; 8, a multiple of NEON's 4, elsewhere).
 */
int64_t cpu_flash_simd_floats();

/**
 * Whether ggml's CPU flash attention (q f32, K and V both f16 or both f32) takes its tiled path for
 * n_q query rows of head_dim: at least 64 rows (its GGML_FA_TILE_Q) and head_dim a multiple of
 * cpu_flash_simd_floats(). That path is f32 inside (K and V tiles widened to f32, f32 GEMMs and
 * sums). The other one, on f16 K/V, rounds q to f16 and accumulates softmax·V in an f16 buffer,
 * rounding once per key: 4e-3 relative error over 700 keys, 9e-3 over 4000 (8e-3 for n_q >= 64 with
 * 72-wide heads under AVX-512), against 2e-6 tiled. On f32 K/V it is f32 throughout, but slower.
 */
bool cpu_flash_tiled(int64_t n_q, int64_t head_dim);

/**
 * Scaled dot-product attention. q [d, n_q, h], k [d, n_kv, h_kv], v_t [n_kv, d, h_kv]
 * (h a multiple of h_kv: head i uses kv head i / (h / h_kv)); mask [n_kv, n_q] or null.
 * Returns [d, h, n_q] (contiguous).
 */
ggml_tensor* attention(ggml_context* ctx, ggml_tensor* q, ggml_tensor* k, ggml_tensor* v_t, ggml_tensor* mask,
                       float scale);

}  // namespace vl3::layers
