// A check of our decode attention (kernels/attention.h) against ggml's flash attention and a
// double-precision reference, on random inputs; the kernels test calls it through the addon.
#pragma once

#include <vector>

namespace vl3::bench {

/** One random decode attention over an f16 cache three ways: ggml's flash attention, ours (kernels/attention.h), and its double-precision reference. */
struct AttentionCheck {
  std::vector<float> ggml, ours, reference;  // [n][nh][hd] each
};
AttentionCheck check_attention(int n, int heads, int kv_heads, int head_dim, int positions, int threads);

}  // namespace vl3::bench
