// A ggml-cpu matrix-multiply micro-benchmark: how fast this build's CPU backend runs the
// weight types the models use. Compares CPU variants (portable prebuilds vs native builds).
#pragma once

#include <string>
#include <vector>

namespace vl3::bench {

struct MatmulResult {
  double seconds_per_rep;
  double gflops;
};

/**
 * Times Y[m,n] = X[m,k] · W[n,k]^T with W stored as `type` (f32, f16, bf16, q8_0, q4_K...,
 * or q8_0x8 / q6_Kx8 / q4_Kx8: packed for our interleaved kernels, kernels/int8_matmul.h)
 * and X f32, on the ggml CPU backend with `threads` threads; best of `reps` after a warm-up.
 */
MatmulResult run_matmul(const std::string& type, int m, int n, int k, int threads, int reps);

/**
 * One random q8_0, q6_K or q4_K product three ways: ggml's mul_mat, our packed kernel and its scalar
 * reference; and the activations quantized by our quantizer and by ggml's.
 */
struct PackedCheck {
  std::vector<float> ggml, packed, reference;  // [m][n] each
  std::vector<float> rows_ggml, rows_packed;   // rows 0, n-1, n/2, 3 and 1 of W: ggml_get_rows, int8_get_rows
  // int8_quantize and int8_quantize_ggml of X with, in row 0, the sign of a tied largest |x| to
  // pick, an all-zero block, a block of halves to round to even, and an infinity in the last block
  std::vector<uint8_t> activations, activations_ggml;
};
PackedCheck check_packed(const std::string& type, int m, int n, int k, int threads);

}  // namespace vl3::bench
