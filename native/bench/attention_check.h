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

/**
 * One random decode step through attention_f16_append (RoPE, cache append, attention in one op)
 * three ways: ggml's rope, cache copies and flash attention; ours; and a reference (f32 RoPE with
 * the same tables, the new key and value rounded to f16 into the cache, the double-precision
 * attention). `cache` holds the new position's key and value as each wrote them into its cache
 * ([2][kv_heads][head_dim]: k then v).
 */
struct AttentionAppendCheck {
  std::vector<float> ggml, ours, reference;              // [heads][head_dim]
  std::vector<float> ggml_cache, ours_cache, reference_cache;  // [2][kv_heads][head_dim]
};
AttentionAppendCheck check_attention_append(int heads, int kv_heads, int head_dim, int positions, int threads);

}  // namespace vl3::bench
