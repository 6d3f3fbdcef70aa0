// Q8_0 matrix multiply on 8-row interleaved weights ("q8_0x8"), the CPU kernel behind prefill and
// decode on AVX2 machines where ggml has no interleaved Q8_0 kernel (it has them for Q4_0/Q4_K
// only; Q8_0 goes through tinyBLAS, which pays an int->float conversion and a scale product per
// 32-element block for every row-column pair).
//
// Layout: a Q8_0 matrix of `rows` x `cols` (rows % 8 == 0, cols % 32 == 0) is stored group by
// group (8 consecutive rows); within a group, block by block (32 columns): the 8 rows' fp16 scales
// (16 bytes), then 8 vectors of 32 bytes, vector c holding columns 4c..4c+3 of rows 0..7 in turn.
// One broadcast activation dword times one vector gives all 8 rows' partial dot products in their
// own lanes, so a block needs no horizontal sums. 272 bytes per group-block, the same total size as
// plain Q8_0 (8 x 34), so the tensor keeps its ggml type and shape; it is tagged
// (q8_0x8_is_interleaved) and must only be used through q8_0x8_mul_mat.
//
// Activations are quantized to Q8_0 by ggml's own row quantizer (as ggml's mul_mat does), so the
// integer dot products equal ggml's; only the float accumulation order differs from ggml. Each
// output is Σ_blocks fma(float(int dot), d_w * d_x, acc) in block order, which the scalar
// reference (q8_0x8_gemm_reference) reproduces bit for bit.
#pragma once

#include <cstdint>

#include "ggml.h"

namespace vl3::kernels {

/**
 * Whether q8_0x8 matmuls should replace ggml's on this machine: the CPU runs AVX2, FMA and F16C,
 * this ggml build has no AVX-512 kernels (those, VNNI and AMX, beat this kernel), and
 * VL3_Q8_KERNEL is not "ggml" (the switch benchmarks and tests use to compare).
 */
bool q8_0x8_enabled();

/** Rewrites `rows` x `cols` plain Q8_0 blocks at `src` into the interleaved layout at `dst` (same size, no overlap). */
void q8_0x8_repack(const void* src, void* dst, int64_t rows, int64_t cols);

/** Tags `w` (a repacked Q8_0 matrix in a CPU buffer) as interleaved; q8_0x8_mul_mat then accepts it. */
void q8_0x8_mark(ggml_tensor* w);
bool q8_0x8_is_interleaved(const ggml_tensor* w);

/**
 * y = w·x for an interleaved `w` [k, n] and f32 `x` [k, m, ...] (rows contiguous): two custom ops
 * (quantize x, then the interleaved GEMM/GEMV) on the ggml CPU backend. Returns [n, m, ...] f32.
 */
ggml_tensor* q8_0x8_mul_mat(ggml_context* ctx, ggml_tensor* w, ggml_tensor* x);

/** Activation rows as the kernel reads them: ggml's Q8_0 quantization of each of m rows of k floats. */
void q8_0x8_quantize(const float* x, void* out, int64_t m, int64_t k);
size_t q8_0x8_activation_bytes(int64_t m, int64_t k);

/**
 * Scalar reference: y[j*n + i] for j < m, i < n, from interleaved weights `w` (n rows, k columns)
 * and activation rows `xq` (q8_0x8_quantize). The SIMD kernel's arithmetic, in the same order.
 */
void q8_0x8_gemm_reference(const void* w, const void* xq, float* y, int64_t n, int64_t k, int64_t m);

}  // namespace vl3::kernels
