#include "kernels/attention.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#endif

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/cpu_support.h"

namespace vl3::kernels {
namespace {

#if defined(__x86_64__) || defined(_M_X64)
#define VL3_ATTN_SIMD 1
#if defined(_MSC_VER) && !defined(__clang__)
#define VL3_AVX2  // MSVC compiles AVX2 intrinsics in any function (cpu_has_avx2_fma_f16c() gates the calls)
#else
#define VL3_AVX2 __attribute__((target("avx2,fma,f16c")))
#endif

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

constexpr int kHeads = 6;  // query heads sharing one pass over their KV head's rows (6 accumulators)

// acc[h] += w[h·len] · vrow (8C columns) for H heads.
template <int H, int C>
VL3_AVX2 inline void add_row(__m256 (&acc)[H][C], const float* w, int64_t len, const uint16_t* vrow) {
  __m256 vj[C];
#pragma GCC unroll 2
  for (int c = 0; c < C; ++c) vj[c] = load_f16(vrow + 8 * c);
#pragma GCC unroll 8
  for (int h = 0; h < H; ++h) {
    const __m256 wh = _mm256_broadcast_ss(w + h * len);
#pragma GCC unroll 2
    for (int c = 0; c < C; ++c) acc[h][c] = _mm256_fmadd_ps(wh, vj[c], acc[h][c]);
  }
}

// out[h] = Σ_j w[h·len + j] · v_j for H heads: columns [d0, hd) of every head, C vectors (8C
// columns) per pass over the V rows, H · C accumulators in registers. v_j = v + j·v_stride, but the
// last row at v_last when that is set.
template <int H, int C>
VL3_AVX2 void weighted_sum(const float* w, int64_t len, const uint16_t* v, int64_t v_stride, const uint16_t* v_last,
                           int64_t d0, int64_t hd, float* const* out) {
  for (int64_t d = d0; d + 8 * C <= hd; d += 8 * C) {
    __m256 acc[H][C];
#pragma GCC unroll 8
    for (int h = 0; h < H; ++h) {
#pragma GCC unroll 2
      for (int c = 0; c < C; ++c) acc[h][c] = _mm256_setzero_ps();
    }
    const int64_t cached = v_last != nullptr ? len - 1 : len;
    for (int64_t j = 0; j < cached; ++j) add_row<H, C>(acc, w + j, len, v + j * v_stride + d);
    if (v_last != nullptr) add_row<H, C>(acc, w + len - 1, len, v_last + d);
#pragma GCC unroll 8
    for (int h = 0; h < H; ++h) {
#pragma GCC unroll 2
      for (int c = 0; c < C; ++c) _mm256_storeu_ps(out[h] + d + 8 * c, acc[h][c]);
    }
  }
}
template <int H>
VL3_AVX2 void weighted_sum(const float* w, int64_t len, const uint16_t* v, int64_t v_stride, const uint16_t* v_last,
                           int64_t hd, float* const* out) {
  weighted_sum<H, 2>(w, len, v, v_stride, v_last, 0, hd, out);
  if (hd % 16 != 0) weighted_sum<H, 1>(w, len, v, v_stride, v_last, hd - 8, hd, out);
}

// Query heads q[0..H) (H <= kHeads) of one KV head against `len` positions, k_j at k + j·k_stride and
// v_j at v + j·v_stride (f16 elements), or for the last position at k_last and v_last when those are
// set: out[h] (hd floats) = softmax(scale · q[h]·k_j) · v_j. Each K and V row is read once for all
// H heads. `scores` holds kHeads · len floats, `row` hd floats.
VL3_AVX2 void attend(const float* const* q, float* const* out, int H, const uint16_t* k, int64_t k_stride,
                     const uint16_t* v, int64_t v_stride, const uint16_t* k_last, const uint16_t* v_last, int64_t len,
                     int64_t hd, float scale, float* scores, float* row) {
  float top[kHeads];
  for (int h = 0; h < H; ++h) top[h] = -INFINITY;
  for (int64_t j = 0; j < len; ++j) {  // scores
    const uint16_t* kj = k_last != nullptr && j + 1 == len ? k_last : k + j * k_stride;
    for (int64_t d = 0; d < hd; d += 8) _mm256_storeu_ps(row + d, load_f16(kj + d));
    for (int h = 0; h < H; ++h) {
      __m256 a0 = _mm256_setzero_ps(), a1 = a0;
      int64_t d = 0;
      for (; d + 16 <= hd; d += 16) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q[h] + d), _mm256_loadu_ps(row + d), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(q[h] + d + 8), _mm256_loadu_ps(row + d + 8), a1);
      }
      if (d < hd) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q[h] + d), _mm256_loadu_ps(row + d), a0);  // hd % 16 == 8
      const float s = scale * hsum(_mm256_add_ps(a0, a1));
      scores[h * len + j] = s;
      top[h] = std::max(top[h], s);
    }
  }
  for (int h = 0; h < H; ++h) {  // weights e^(s - max) / sum
    float* w = scores + h * len;
    const __m256 vtop = _mm256_set1_ps(top[h]);
    __m256 vsum = _mm256_setzero_ps();
    int64_t j = 0;
    for (; j + 8 <= len; j += 8) {
      const __m256 e = exp_nonpositive(_mm256_sub_ps(_mm256_loadu_ps(w + j), vtop));
      _mm256_storeu_ps(w + j, e);
      vsum = _mm256_add_ps(vsum, e);
    }
    float sum = hsum(vsum);
    if (j < len) {
      alignas(32) float tail[8];
      for (int i = 0; i < 8; ++i) tail[i] = j + i < len ? w[j + i] - top[h] : -INFINITY;
      _mm256_store_ps(tail, exp_nonpositive(_mm256_load_ps(tail)));
      for (int64_t i = 0; j + i < len; ++i) sum += (w[j + i] = tail[i]);
    }
    const __m256 inv = _mm256_set1_ps(1.0f / sum);
    for (j = 0; j + 8 <= len; j += 8) _mm256_storeu_ps(w + j, _mm256_mul_ps(_mm256_loadu_ps(w + j), inv));
    for (; j < len; ++j) w[j] *= 1.0f / sum;
  }
  switch (H) {  // out: H accumulators in registers
    case 1: weighted_sum<1>(scores, len, v, v_stride, v_last, hd, out); break;
    case 2: weighted_sum<2>(scores, len, v, v_stride, v_last, hd, out); break;
    case 3: weighted_sum<3>(scores, len, v, v_stride, v_last, hd, out); break;
    case 4: weighted_sum<4>(scores, len, v, v_stride, v_last, hd, out); break;
    case 5: weighted_sum<5>(scores, len, v, v_stride, v_last, hd, out); break;
    default: weighted_sum<kHeads>(scores, len, v, v_stride, v_last, hd, out); break;
  }
}

// RoPE on one head (NeoX halves, HF's rotate_half): out = x·cos + rotate_half(x)·sin, with
// rotate_half(x) = (−x[hd/2..hd), x[0..hd/2)).
VL3_AVX2 void rotate(const float* x, const float* cos, const float* sin, int64_t hd, float* out) {
  const int64_t half = hd / 2;
  for (int64_t i = 0; i < half; ++i) {
    out[i] = x[i] * cos[i] - x[i + half] * sin[i];
    out[i + half] = x[i + half] * cos[i + half] + x[i] * sin[i + half];
  }
}

VL3_AVX2 void to_f16(const float* x, int64_t n, uint16_t* out) {
  for (int64_t i = 0; i < n; i += 8) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i),
                     _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  }
}
#endif

template <typename T>
const T* at(const ggml_tensor* t, int64_t i1, int64_t i2) {
  return reinterpret_cast<const T*>(static_cast<const char*>(t->data) + i1 * t->nb[1] + i2 * t->nb[2]);
}

// dst [hd, nh, n] <- src[0] q, src[1] k, src[2] v (attention_f16), and for attention_f16_append
// src[3] k_new, src[4] v_new, src[5] cos, src[6] sin. The work items are (query row, KV head, part
// of its query heads), the parts only as many as it takes to give every thread one. Appending, each
// item rotates its KV head's new key itself and attends to it from its own f16 copy; the item of
// part 0 also writes the key and value into the cache, at a position the others do not read.
void attention_op(ggml_tensor* dst, int ith, int nth, void*) {
#if defined(VL3_ATTN_SIMD)
  const ggml_tensor* q = dst->src[0];
  const ggml_tensor* k = dst->src[1];
  const ggml_tensor* v = dst->src[2];
  const ggml_tensor* k_new = dst->src[3];
  const bool append = k_new != nullptr;
  const int64_t hd = q->ne[0], nh = q->ne[1], n = q->ne[2], nkv = k->ne[1], L = k->ne[2], group = nh / nkv;
  const int64_t parts = std::min<int64_t>(group, (nth + n * nkv - 1) / (n * nkv));
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  thread_local std::vector<float> scores, row, rotated;
  thread_local std::vector<uint16_t> kv_last;
  scores.resize(static_cast<size_t>(kHeads * L));
  row.resize(static_cast<size_t>(hd));
  rotated.resize(static_cast<size_t>((kHeads + 1) * hd));
  kv_last.resize(static_cast<size_t>(2 * hd));
  const int64_t items = n * nkv * parts;
  for (int64_t it = items * ith / nth; it < items * (ith + 1) / nth; ++it) {
    const int64_t t = it / (nkv * parts), g = it / parts % nkv, part = it % parts;
    const uint16_t* k_last = nullptr;
    const uint16_t* v_last = nullptr;
    const float* cos = nullptr;
    const float* sin = nullptr;
    if (append) {  // n == 1: the new position is L - 1
      cos = static_cast<const float*>(dst->src[5]->data);
      sin = static_cast<const float*>(dst->src[6]->data);
      float* k_rot = rotated.data() + kHeads * hd;
      rotate(at<float>(k_new, g, 0), cos, sin, hd, k_rot);
      to_f16(k_rot, hd, kv_last.data());
      to_f16(at<float>(dst->src[4], g, 0), hd, kv_last.data() + hd);
      k_last = kv_last.data();
      v_last = kv_last.data() + hd;
      if (part == 0) {
        std::copy(k_last, k_last + hd, const_cast<uint16_t*>(at<uint16_t>(k, g, L - 1)));
        std::copy(v_last, v_last + hd, const_cast<uint16_t*>(at<uint16_t>(v, g, L - 1)));
      }
    }
    const int64_t h1 = g * group + group * (part + 1) / parts;
    for (int64_t h0 = g * group + group * part / parts; h0 < h1; h0 += kHeads) {
      const int H = static_cast<int>(std::min<int64_t>(kHeads, h1 - h0));
      const float* qs[kHeads];
      float* outs[kHeads];
      for (int i = 0; i < H; ++i) {
        qs[i] = at<float>(q, h0 + i, t);
        if (append) {
          rotate(qs[i], cos, sin, hd, rotated.data() + i * hd);
          qs[i] = rotated.data() + i * hd;
        }
        outs[i] = reinterpret_cast<float*>(static_cast<char*>(dst->data) + (h0 + i) * dst->nb[1] + t * dst->nb[2]);
      }
      attend(qs, outs, H, at<uint16_t>(k, g, 0), static_cast<int64_t>(k->nb[2] / 2), at<uint16_t>(v, g, 0),
             static_cast<int64_t>(v->nb[2] / 2), k_last, v_last, L - n + t + 1, hd, scale, scores.data(), row.data());
    }
  }
#else
  (void)dst, (void)ith, (void)nth;
#endif
}

}  // namespace

bool attention_f16_enabled(int64_t head_dim) {
#if defined(VL3_ATTN_SIMD)
  return !cpu_kernels_switched_off() && head_dim > 0 && head_dim % 8 == 0 && cpu_has_avx2_fma_f16c();
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

ggml_tensor* attention_f16_append(ggml_context* ctx, ggml_tensor* q, ggml_tensor* k_new, ggml_tensor* v_new, ggml_tensor* k,
                                  ggml_tensor* v, ggml_tensor* cos, ggml_tensor* sin) {
  ggml_tensor* args[7] = {q, k, v, k_new, v_new, cos, sin};
  return ggml_custom_4d(ctx, GGML_TYPE_F32, q->ne[0], q->ne[1], 1, 1, args, 7, attention_op, GGML_N_TASKS_MAX,
                        nullptr);  // [hd, nh, 1]
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
