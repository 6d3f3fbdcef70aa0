#include "kernels/attention.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#endif

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace vl3::kernels {
namespace {

#if defined(__x86_64__) || defined(_M_X64)
#define VL3_ATTN_SIMD 1
#define VL3_AVX2 __attribute__((target("avx2,fma,f16c")))

VL3_AVX2 inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
}

VL3_AVX2 inline __m256 load_f16(const uint16_t* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}

// e^x for x <= 0 (softmax arguments) within 2e-7 relative: x = k·ln 2 + r with |r| <= ln 2 / 2, e^r
// by its Taylor series to r^6 / 720 (truncation < 7e-8), 2^k through the exponent bits; x below
// -87 (e^x under the smallest normal float) gives 0.
VL3_AVX2 inline __m256 exp_nonpositive(__m256 x) {
  const __m256 tiny = _mm256_cmp_ps(x, _mm256_set1_ps(-87.0f), _CMP_LT_OQ);
  x = _mm256_max_ps(x, _mm256_set1_ps(-87.0f));
  const __m256 k = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  // ln 2 in two parts, so k · ln2_hi is exact for |k| < 2^11
  __m256 r = _mm256_fnmadd_ps(k, _mm256_set1_ps(0.693145751953125f), x);
  r = _mm256_fnmadd_ps(k, _mm256_set1_ps(1.428606765330187045e-06f), r);
  __m256 p = _mm256_set1_ps(1.0f / 720);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  const __m256i two_k = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(k), _mm256_set1_epi32(127)), 23);
  return _mm256_andnot_ps(tiny, _mm256_mul_ps(p, _mm256_castsi256_ps(two_k)));
}

// One query head against `len` positions: out (hd floats) = softmax(scale · q·k_j) · v_j, with k_j
// at k + j·k_stride and v_j at v + j·v_stride (f16 elements). `scores` holds len floats.
VL3_AVX2 void attend(const float* q, const uint16_t* k, int64_t k_stride, const uint16_t* v, int64_t v_stride,
                     int64_t len, int64_t hd, float scale, float* scores, float* out) {
  float top = -INFINITY;
  for (int64_t j = 0; j < len; ++j) {  // scores
    const uint16_t* kj = k + j * k_stride;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0;
    int64_t d = 0;
    for (; d + 16 <= hd; d += 16) {
      a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + d), load_f16(kj + d), a0);
      a1 = _mm256_fmadd_ps(_mm256_loadu_ps(q + d + 8), load_f16(kj + d + 8), a1);
    }
    if (d < hd) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + d), load_f16(kj + d), a0);  // hd % 16 == 8
    scores[j] = scale * hsum(_mm256_add_ps(a0, a1));
    top = std::max(top, scores[j]);
  }
  const __m256 vtop = _mm256_set1_ps(top);
  __m256 vsum = _mm256_setzero_ps();
  int64_t j = 0;
  for (; j + 8 <= len; j += 8) {  // weights e^(s - max), summed
    const __m256 e = exp_nonpositive(_mm256_sub_ps(_mm256_loadu_ps(scores + j), vtop));
    _mm256_storeu_ps(scores + j, e);
    vsum = _mm256_add_ps(vsum, e);
  }
  float sum = hsum(vsum);
  if (j < len) {
    alignas(32) float tail[8];
    for (int i = 0; i < 8; ++i) tail[i] = j + i < len ? scores[j + i] - top : -INFINITY;
    alignas(32) float e[8];
    _mm256_store_ps(e, exp_nonpositive(_mm256_load_ps(tail)));
    for (int64_t i = 0; j + i < len; ++i) {
      scores[j + i] = e[i];
      sum += e[i];
    }
  }
  const __m256 inv = _mm256_set1_ps(1.0f / sum);
  for (int64_t d0 = 0; d0 < hd; d0 += 64) {  // out, 64 columns (8 accumulators) at a time
    const int nv = static_cast<int>(std::min<int64_t>(64, hd - d0) / 8);
    __m256 acc[8];
    for (int i = 0; i < 8; ++i) acc[i] = _mm256_setzero_ps();
    for (int64_t p = 0; p < len; ++p) {
      const __m256 w = _mm256_set1_ps(scores[p]);
      const uint16_t* vp = v + p * v_stride + d0;
      if (nv == 8) {
        for (int i = 0; i < 8; ++i) acc[i] = _mm256_fmadd_ps(w, load_f16(vp + 8 * i), acc[i]);
      } else {
        for (int i = 0; i < nv; ++i) acc[i] = _mm256_fmadd_ps(w, load_f16(vp + 8 * i), acc[i]);
      }
    }
    for (int i = 0; i < nv; ++i) _mm256_storeu_ps(out + d0 + 8 * i, _mm256_mul_ps(acc[i], inv));
  }
}

bool cpu_ok() {
  static const bool ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
  return ok;
}
#endif

// dst [hd, nh, n] <- src[0] q, src[1] k, src[2] v (attention_f16). Threads take query heads in
// contiguous ranges, so the heads sharing a KV head mostly share a thread and its cached K and V.
void attention_op(ggml_tensor* dst, int ith, int nth, void*) {
#if defined(VL3_ATTN_SIMD)
  const ggml_tensor* q = dst->src[0];
  const ggml_tensor* k = dst->src[1];
  const ggml_tensor* v = dst->src[2];
  const int64_t hd = q->ne[0], nh = q->ne[1], n = q->ne[2], nkv = k->ne[1], L = k->ne[2], group = nh / nkv;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  thread_local std::vector<float> scores;
  scores.resize(static_cast<size_t>(L));
  const int64_t items = n * nh;  // (row, head) pairs
  for (int64_t it = items * ith / nth; it < items * (ith + 1) / nth; ++it) {
    const int64_t t = it / nh, h = it % nh, g = h / group;
    const auto* kp = reinterpret_cast<const uint16_t*>(static_cast<const char*>(k->data) + g * k->nb[1]);
    const auto* vp = reinterpret_cast<const uint16_t*>(static_cast<const char*>(v->data) + g * v->nb[1]);
    const auto* qp = reinterpret_cast<const float*>(static_cast<const char*>(q->data) + h * q->nb[1] + t * q->nb[2]);
    auto* out = reinterpret_cast<float*>(static_cast<char*>(dst->data) + h * dst->nb[1] + t * dst->nb[2]);
    attend(qp, kp, static_cast<int64_t>(k->nb[2] / 2), vp, static_cast<int64_t>(v->nb[2] / 2), L - n + t + 1, hd, scale,
           scores.data(), out);
  }
#else
  (void)dst, (void)ith, (void)nth;
#endif
}

}  // namespace

bool attention_f16_enabled(int64_t head_dim) {
#if defined(VL3_ATTN_SIMD)
  const char* env = std::getenv("VL3_CPU_KERNELS");
  if (env != nullptr && std::strcmp(env, "ggml") == 0) return false;
  return head_dim > 0 && head_dim % 8 == 0 && cpu_ok();
#else
  (void)head_dim;
  return false;
#endif
}

ggml_tensor* attention_f16(ggml_context* ctx, ggml_tensor* q, ggml_tensor* k, ggml_tensor* v) {
  ggml_tensor* args[3] = {q, k, v};
  return ggml_custom_4d(ctx, GGML_TYPE_F32, q->ne[0], q->ne[1], q->ne[2], 1, args, 3, attention_op, GGML_N_TASKS_MAX,
                        nullptr);  // [hd, nh, n]
}

void attention_f16_reference(const float* q, const uint16_t* k, const uint16_t* v, float* out, int64_t hd, int64_t nh,
                             int64_t nkv, int64_t n, int64_t L) {
  const int64_t group = nh / nkv;
  const double scale = 1.0 / std::sqrt(static_cast<double>(hd));
  std::vector<double> w(static_cast<size_t>(L));
  for (int64_t t = 0; t < n; ++t) {
    for (int64_t h = 0; h < nh; ++h) {
      const int64_t g = h / group, len = L - n + t + 1;
      const float* qp = q + (t * nh + h) * hd;
      double top = -INFINITY;
      for (int64_t j = 0; j < len; ++j) {
        double s = 0;
        for (int64_t d = 0; d < hd; ++d) s += qp[d] * static_cast<double>(ggml_fp16_to_fp32(k[(j * nkv + g) * hd + d]));
        w[j] = s * scale;
        top = std::max(top, w[j]);
      }
      double sum = 0;
      for (int64_t j = 0; j < len; ++j) sum += (w[j] = std::exp(w[j] - top));
      for (int64_t d = 0; d < hd; ++d) {
        double o = 0;
        for (int64_t j = 0; j < len; ++j) o += w[j] * static_cast<double>(ggml_fp16_to_fp32(v[(j * nkv + g) * hd + d]));
        out[(t * nh + h) * hd + d] = static_cast<float>(o / sum);
      }
    }
  }
}

}  // namespace vl3::kernels
