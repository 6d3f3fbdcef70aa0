// Matrix multiplies on 8-row interleaved weights with int8 activations: the CPU kernels behind
// prefill and decode for Q8_0, Q6_K and Q4_K matrices on AVX2 machines. ggml has no interleaved
// kernel for Q8_0 (tinyBLAS) or Q6_K (one row-column dot product at a time, each paying conversions
// and scale products per block for every pair); its Q4_K one is beaten here by unsigned 4-bit quants
// that need no sign trick and scales folded into one `madd` per 32 columns. Q6_K's quants are kept
// unsigned too (q + 32, 0..63; the activations' sums take the 32 back off), in 6 bits, so decode
// reads no more bytes than the file holds.
//
// Packed layout of a `rows` x `cols` matrix (rows % 8 == 0): group by group (8 consecutive rows),
// then block by block (the type's block of columns: 32 for Q8_0, 256 for Q6_K and Q4_K). A vector
// is 32 bytes: 4 consecutive columns of rows 0..7 in turn.
//   Q8_0: the 8 rows' fp16 scales (16 bytes), then 8 vectors of int8 quants (272 bytes = 8 x 34);
//   Q6_K: the 8 rows' fp16 super-block scales (16 bytes), then the 16 sub-block scales of each
//         16 columns as int8, rows 0..7 per sub-block (128 bytes), then per sub-block 3 vectors
//         A, B, C: columns 0-3, 4-7, 8-11 (q + 32) in their low 6 bits, and bits 0-1, 2-3, 4-5 of
//         columns 12-15 in their top 2 (1680 bytes, as in the file);
//   Q4_K: the 8 rows' fp16 scales and fp16 min scales (32 bytes), the 8 sub-block scales and 8
//         sub-block mins of each row (6-bit, 96 bytes laid out as Q6_K's quants), then per 32-column
//         sub-block 4 vectors whose low nibbles hold columns 0-15 and high nibbles 16-31 (1152
//         bytes, as in the file).
// One broadcast activation dword times one vector of quants gives all 8 rows' partial dot products
// in their own lanes: no horizontal sums per block.
// Packed matrices are tagged (int8_is_packed) and must only be used through int8_mul_mat and
// int8_get_rows. After the layout, 64 bytes hold work counters: decode products (one or two
// activation rows) give each thread a span of a matrix's groups to take chunks from, front to back,
// and a thread done with its span takes chunks from the backs of the others', so a thread slowed by
// the other's memory traffic or by the hypervisor does not leave the other idle at the barrier.
//
// Activations are quantized by ggml's own quantizer for the type's dot product (Q8_0 rows for
// Q8_0, Q8_K for the K-quants), so the integer dot products equal ggml's; only the float
// accumulation order differs. Each output is Σ_blocks fma(float(int dot), d_w * d_x, acc) in block
// order (Q4_K then fma(-float(min dot), dmin_w * d_x, acc)), which the scalar reference
// (int8_gemm_reference) reproduces bit for bit.
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

/**
 * Whether a `type` matrix of `rows` x `cols` can be packed (Q8_0, Q6_K or Q4_K, whole blocks,
 * rows % 8 == 0, at most 65535 groups of 8 rows).
 */
bool int8_packable(ggml_type type, int64_t rows, int64_t cols);

/** Bytes of the packed layout of a packable matrix. */
size_t int8_packed_size(ggml_type type, int64_t rows, int64_t cols);

/**
 * Bytes to allocate for a packed matrix: its layout, then 64 bytes in which decode products share
 * out its rows between threads (so a matrix must not be in two products computing at once; each
 * model computes one graph at a time).
 */
size_t int8_storage_size(ggml_type type, int64_t rows, int64_t cols);

/** Rewrites `rows` x `cols` blocks of `type` at `src` into the packed layout at `dst` (no overlap). */
void int8_pack(ggml_type type, const void* src, void* dst, int64_t rows, int64_t cols);

/**
 * Tags `w` (type and shape of the original matrix, data in the packed layout, CPU memory of
 * int8_storage_size bytes) and clears its work counter.
 */
void int8_mark(ggml_tensor* w);
bool int8_is_packed(const ggml_tensor* w);

/**
 * residual + (w·x + bias) for a packed `w` [k, n] and f32 `x` [k, m, ...] (elements of a row
 * contiguous); bias [n] and residual [n, m] may be null. Custom ops on the ggml CPU backend: quantize
 * x, then the interleaved GEMM, which also adds bias and residual to its outputs (each as ggml_add
 * would, so the floats are the same). Decode (m <= 2) quantizes x inside the product op: one op and
 * one thread barrier per matrix. Returns [n, m, ...].
 */
ggml_tensor* int8_mul_mat(ggml_context* ctx, ggml_tensor* w, ggml_tensor* x, ggml_tensor* bias = nullptr,
                          ggml_tensor* residual = nullptr);

/**
 * ggml_get_rows for a packed `w` [k, n] and int32 `ids` [m]: rows as ggml dequantizes them (same
 * arithmetic, so identical floats); ids outside 0..n-1 give zero rows. Returns [k, m] f32.
 */
ggml_tensor* int8_get_rows(ggml_context* ctx, ggml_tensor* w, ggml_tensor* ids);

/**
 * Activation rows as the kernels read them: ggml's quantization of each of m rows of k floats (for
 * Q8_K on AVX2 machines our own SIMD copy of ggml's scalar quantizer, giving the same bytes).
 */
void int8_quantize(ggml_type type, const float* x, void* out, int64_t m, int64_t k);
/** The same rows through ggml's quantizer itself: what int8_quantize must equal byte for byte. */
void int8_quantize_ggml(ggml_type type, const float* x, void* out, int64_t m, int64_t k);
size_t int8_activation_bytes(ggml_type type, int64_t m, int64_t k);

/**
 * Scalar reference: y[j*n + i] for j < m, i < n, from packed weights `w` (n rows, k columns) and
 * activation rows `xq` (int8_quantize). The SIMD kernels' arithmetic, in the same order.
 */
void int8_gemm_reference(ggml_type type, const void* w, const void* xq, float* y, int64_t n, int64_t k, int64_t m);

}  // namespace vl3::kernels
