// Matrix multiplies on 8-row interleaved int8 weights, the CPU kernels behind prefill and decode for
// Q8_0 and Q6_K matrices on AVX2 machines, where ggml has no interleaved kernel for these types
// (it has them for Q4_0/Q4_K; Q8_0 goes through tinyBLAS, Q6_K through one row-column dot product
// at a time, each paying conversions and scale products per block for every row-column pair).
//
// Packed layout of a `rows` x `cols` matrix (rows % 8 == 0): group by group (8 consecutive rows),
// then block by block (the type's block of columns: 32 for Q8_0, 256 for Q6_K):
//   Q8_0: the 8 rows' fp16 scales (16 bytes), then 8 vectors of 32 int8 quants;
//   Q6_K: the 8 rows' fp16 super-block scales (16 bytes), then the 16 sub-block scales of each
//         16 columns as int8, rows 0..7 per sub-block (128 bytes), then 64 vectors of 32 int8
//         quants (q - 32, so -32..31): 2192 bytes where Q6_K takes 1680.
// Vector c holds columns 4c..4c+3 of rows 0..7 in turn, so one broadcast activation dword times one
// vector gives all 8 rows' partial dot products in their own lanes: no horizontal sums per block.
// Packed matrices are tagged (int8_is_packed) and must only be used through int8_mul_mat.
//
// Activations are quantized by ggml's own quantizer for the type's dot product (Q8_0 rows for
// Q8_0, Q8_K for Q6_K), so the integer dot products equal ggml's; only the float accumulation
// order differs. Each output is Σ_blocks fma(float(int dot), d_w * d_x, acc) in block order, which
// the scalar reference (int8_gemm_reference) reproduces bit for bit.
#pragma once

#include <cstddef>
#include <cstdint>

#include "ggml.h"

namespace vl3::kernels {

/**
 * Whether these kernels should replace ggml's on this machine: the CPU runs AVX2, FMA and F16C,
 * this ggml build has no AVX-512 kernels (those, VNNI and AMX, beat these), and VL3_CPU_KERNELS is
 * not "ggml" (the switch benchmarks and tests use to compare).
 */
bool int8_matmul_enabled();

/** Whether a `type` matrix of `rows` x `cols` can be packed (Q8_0 or Q6_K, whole blocks, rows % 8 == 0). */
bool int8_packable(ggml_type type, int64_t rows, int64_t cols);

/** Bytes of the packed layout of a packable matrix. */
size_t int8_packed_size(ggml_type type, int64_t rows, int64_t cols);

/** Rewrites `rows` x `cols` blocks of `type` at `src` into the packed layout at `dst` (no overlap). */
void int8_pack(ggml_type type, const void* src, void* dst, int64_t rows, int64_t cols);

/** Tags `w` (type and shape of the original matrix, data in the packed layout, CPU memory). */
void int8_mark(ggml_tensor* w);
bool int8_is_packed(const ggml_tensor* w);

/**
 * y = w·x for a packed `w` [k, n] and f32 `x` [k, m, ...] (elements of a row contiguous): two
 * custom ops (quantize x, then the interleaved GEMM/GEMV) on the ggml CPU backend. Returns [n, m, ...].
 */
ggml_tensor* int8_mul_mat(ggml_context* ctx, ggml_tensor* w, ggml_tensor* x);

/** Activation rows as the kernels read them: ggml's quantization of each of m rows of k floats. */
void int8_quantize(ggml_type type, const float* x, void* out, int64_t m, int64_t k);
size_t int8_activation_bytes(ggml_type type, int64_t m, int64_t k);

/**
 * Scalar reference: y[j*n + i] for j < m, i < n, from packed weights `w` (n rows, k columns) and
 * activation rows `xq` (int8_quantize). The SIMD kernels' arithmetic, in the same order.
 */
void int8_gemm_reference(ggml_type type, const void* w, const void* xq, float* y, int64_t n, int64_t k, int64_t m);

}  // namespace vl3::kernels
