#include "model/layers.h"

#include <algorithm>
#include <cmath>

#include "ggml-cpu.h"
#include "kernels/int8_matmul.h"

namespace vl3::layers {

ggml_tensor* matmul(ggml_context* ctx, ggml_tensor* w, ggml_tensor* x) { return linear(ctx, x, w, nullptr); }

ggml_tensor* get_rows(ggml_context* ctx, ggml_tensor* w, ggml_tensor* ids) {
  return kernels::int8_is_packed(w) ? kernels::int8_get_rows(ctx, w, ids) : ggml_get_rows(ctx, w, ids);
}

ggml_tensor* linear(ggml_context* ctx, ggml_tensor* x, ggml_tensor* w, ggml_tensor* b, ggml_tensor* res) {
  if (kernels::int8_is_packed(w)) {
    if (x->type != GGML_TYPE_F32 || x->nb[0] != sizeof(float)) x = ggml_cast(ctx, x, GGML_TYPE_F32);  // contiguous f32
    return kernels::int8_mul_mat(ctx, w, x, b, res);
  }
  ggml_tensor* y = ggml_mul_mat(ctx, w, x);
  if (b != nullptr) y = ggml_add(ctx, y, b);
  return res != nullptr ? ggml_add(ctx, res, y) : y;
}

ggml_tensor* layer_norm(ggml_context* ctx, ggml_tensor* x, ggml_tensor* w, ggml_tensor* b, float eps) {
  return ggml_add(ctx, ggml_mul(ctx, ggml_norm(ctx, x, eps), w), b);
}

ggml_tensor* rms_norm(ggml_context* ctx, ggml_tensor* x, ggml_tensor* w, float eps) {
  return ggml_mul(ctx, ggml_rms_norm(ctx, x, eps), w);
}

ggml_tensor* gelu_tanh(ggml_context* ctx, ggml_tensor* x) {
  // 0.5·x·(1 + tanh(√(2/π)·x·(1 + 0.044715·x²)))
  const float c = std::sqrt(2.0f / static_cast<float>(M_PI));
  ggml_tensor* inner = ggml_mul(ctx, x, ggml_scale_bias(ctx, ggml_sqr(ctx, x), 0.044715f, 1.0f));
  ggml_tensor* t = ggml_tanh(ctx, ggml_scale(ctx, inner, c));
  return ggml_mul(ctx, x, ggml_scale_bias(ctx, t, 0.5f, 0.5f));
}

ggml_tensor* rotary(ggml_context* ctx, ggml_tensor* x, ggml_tensor* cos, ggml_tensor* sin) {
  const int64_t d = x->ne[0], half = d / 2;
  // halves of ne[0] as strided views: [half, heads, n]
  ggml_tensor* lo = ggml_view_3d(ctx, x, half, x->ne[1], x->ne[2], x->nb[1], x->nb[2], 0);
  ggml_tensor* hi = ggml_view_3d(ctx, x, half, x->ne[1], x->ne[2], x->nb[1], x->nb[2], half * ggml_element_size(x));
  ggml_tensor* rot = ggml_concat(ctx, ggml_neg(ctx, hi), lo, 0);  // [d, heads, n]
  return ggml_add(ctx, ggml_mul(ctx, x, cos), ggml_mul(ctx, rot, sin));
}

int64_t cpu_flash_simd_floats() {
  if (ggml_cpu_has_avx512()) return 16;
  if (ggml_cpu_has_sve()) return std::max<int64_t>(8, ggml_cpu_get_sve_cnt() / 4);  // bytes -> floats
  return 8;
}

bool cpu_flash_tiled(int64_t n_q, int64_t head_dim) {
  constexpr int64_t kTileRows = 64;  // GGML_FA_TILE_Q (ggml-cpu/common.h)
  return n_q >= kTileRows && head_dim % cpu_flash_simd_floats() == 0;
}

ggml_tensor* attention(ggml_context* ctx, ggml_tensor* q, ggml_tensor* k, ggml_tensor* v_t, ggml_tensor* mask,
                       float scale) {
  ggml_tensor* kq = ggml_mul_mat(ctx, k, q);                   // [n_kv, n_q, h]
  kq = ggml_soft_max_ext(ctx, kq, mask, scale, 0.0f);          // softmax over n_kv, in f32
  ggml_tensor* kqv = ggml_mul_mat(ctx, v_t, kq);               // [d, n_q, h]
  return ggml_cont(ctx, ggml_permute(ctx, kqv, 0, 2, 1, 3));   // [d, h, n_q]
}

}  // namespace vl3::layers
