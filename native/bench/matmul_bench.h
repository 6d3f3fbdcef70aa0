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
 * or q8_0x8: Q8_0 through our interleaved kernel, kernels/q8_0_matmul.h)
 * and X f32, on the ggml CPU backend with `threads` threads; best of `reps` after a warm-up.
 */
MatmulResult run_matmul(const std::string& type, int m, int n, int k, int threads, int reps);

/** One random Q8_0 product three ways: ggml's mul_mat, the q8_0x8 kernel and its scalar reference. */
struct Q8x8Check {
  std::vector<float> ggml, interleaved, reference;  // [m][n] each
};
Q8x8Check check_q8_0x8(int m, int n, int k, int threads);

}  // namespace vl3::bench
