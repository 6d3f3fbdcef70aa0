#include "kernels/q8_0_matmul.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#endif

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <type_traits>
#include <vector>

#include "ggml-cpu.h"

namespace vl3::kernels {
namespace {

constexpr int kRows = 8;                               // rows per group
constexpr int kBlock = 32;                             // Q8_0 block width
constexpr size_t kPlainBlock = 2 + kBlock;             // block_q8_0: fp16 scale + 32 int8
constexpr size_t kGroupBlock = kRows * kPlainBlock;    // 16 bytes of scales + 8 vectors of 32 quants
constexpr size_t kScales = kRows * sizeof(uint16_t);

// The tag q8_0x8_mark stores in ggml_tensor::extra (unused by plain CPU buffers; ggml's own
// extra-buffer kernels check the buffer type before reading it).
const char kInterleavedTag = 0;

inline float f16(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return ggml_fp16_to_fp32(h);
}

// Activation rows as the kernel reads them (written by quantize_op from ggml's Q8_0 quantizer):
// nb float scales, then nb x 32 |x| bytes, then nb x 32 x bytes. |x| is maddubs' unsigned operand;
// x lends its signs to the weights.
size_t act_row_bytes(int64_t nb) { return static_cast<size_t>(nb) * (4 + 2 * kBlock); }

// One f32 row of k values -> an activation row (ggml's Q8_0 quantizer, then the layout above).
void quantize_row(const float* x, uint8_t* out, int64_t k, std::vector<uint8_t>& plain) {
  const int64_t nb = k / kBlock;
  plain.resize(static_cast<size_t>(nb) * kPlainBlock);
  ggml_get_type_traits_cpu(GGML_TYPE_Q8_0)->from_float(x, plain.data(), k);
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* blk = plain.data() + b * kPlainBlock;
    const float d = f16(blk);
    std::memcpy(out + b * 4, &d, 4);
    for (int e = 0; e < kBlock; ++e) {
      const auto v = static_cast<int8_t>(blk[2 + e]);
      out[nb * 4 + b * kBlock + e] = static_cast<uint8_t>(v < 0 ? -v : v);
      out[nb * (4 + kBlock) + b * kBlock + e] = blk[2 + e];
    }
  }
}

// ---- AVX2 kernel --------------------------------------------------------------------------------

#if defined(__x86_64__) || defined(_M_X64)
#define VL3_Q8X8_SIMD 1
#define VL3_AVX2 __attribute__((target("avx2,fma,f16c")))

// T activation rows against blocks [0, nb) of one 8-row group `g` (offset to its first block);
// xd/xa/xs: each row's scales, |x| and x at that block. Adds to acc[t] (lane r = row r).
template <int T>
VL3_AVX2 inline void group_rows(const uint8_t* g, int64_t nb, const float* const* xd, const uint8_t* const* xa,
                                const uint8_t* const* xs, __m256* acc, bool prefetch) {
  const __m256i ones = _mm256_set1_epi16(1);
  for (int64_t b = 0; b < nb; ++b, g += kGroupBlock) {
    if (prefetch) {  // decode: the weights stream from memory once; stay ~4 group-blocks ahead
      for (int l = 0; l < 5; ++l) _mm_prefetch(reinterpret_cast<const char*>(g) + 1024 + 64 * l, _MM_HINT_T0);
    }
    __m256i dot[T];
    for (int t = 0; t < T; ++t) dot[t] = _mm256_setzero_si256();
#pragma GCC unroll 8
    for (int c = 0; c < 8; ++c) {  // 4 columns of all 8 rows per vector
      const __m256i w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(g + kScales + c * 32));
      for (int t = 0; t < T; ++t) {
        int32_t a4, s4;
        std::memcpy(&a4, xa[t] + b * kBlock + 4 * c, 4);
        std::memcpy(&s4, xs[t] + b * kBlock + 4 * c, 4);
        const __m256i p = _mm256_maddubs_epi16(_mm256_set1_epi32(a4), _mm256_sign_epi8(w, _mm256_set1_epi32(s4)));
        dot[t] = _mm256_add_epi32(dot[t], _mm256_madd_epi16(p, ones));
      }
    }
    const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(g)));
    for (int t = 0; t < T; ++t)
      acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot[t]), _mm256_mul_ps(dw, _mm256_set1_ps(xd[t][b])), acc[t]);
  }
}

// U consecutive activation rows (from `x`, `row_bytes` apart) times one group: 8 outputs per row
// into y (rows `n` apart).
template <int U>
VL3_AVX2 void tokens_group(const uint8_t* g, int64_t nb, const uint8_t* x, size_t row_bytes, float* y, int64_t n,
                           bool prefetch) {
  const float* xd[U];
  const uint8_t *xa[U], *xs[U];
  __m256 acc[U];
  for (int t = 0; t < U; ++t) {
    const uint8_t* row = x + t * row_bytes;
    xd[t] = reinterpret_cast<const float*>(row);
    xa[t] = row + nb * 4;
    xs[t] = row + nb * (4 + kBlock);
    acc[t] = _mm256_setzero_ps();
  }
  group_rows<U>(g, nb, xd, xa, xs, acc, prefetch);
  for (int t = 0; t < U; ++t) _mm256_storeu_ps(y + t * n, acc[t]);
}

// Groups [g0, g1) x tokens [0, m) of the product. Tokens go in chunks whose activations stay in L2,
// T at a time sharing each weight load.
template <int T>
VL3_AVX2 void gemm_avx2(const uint8_t* w, const uint8_t* xq, float* y, int64_t n, int64_t nb, int64_t m,
                        int64_t g0, int64_t g1) {
  constexpr int64_t l2 = 192;  // KiB of activations per chunk (of a 512 KiB L2)
  const size_t row_bytes = act_row_bytes(nb);
  const size_t group_bytes = static_cast<size_t>(nb) * kGroupBlock;
  const int64_t chunk = std::max<int64_t>(T, static_cast<int64_t>((l2 << 10) / row_bytes) / T * T);
  const bool prefetch = m <= 2;
  for (int64_t j0 = 0; j0 < m; j0 += chunk) {
    const int64_t j1 = std::min(m, j0 + chunk);
    for (int64_t gi = g0; gi < g1; ++gi) {
      const uint8_t* g = w + gi * group_bytes;
      int64_t j = j0;
      for (; j + T <= j1; j += T) tokens_group<T>(g, nb, xq + j * row_bytes, row_bytes, y + j * n + gi * kRows, n, prefetch);
      for (; j < j1; ++j) tokens_group<1>(g, nb, xq + j * row_bytes, row_bytes, y + j * n + gi * kRows, n, prefetch);
    }
  }
}
#endif

bool cpu_has_avx2_fma_f16c() {
#if defined(VL3_Q8X8_SIMD)
  static const bool ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
  return ok;
#else
  return false;
#endif
}

// ---- graph ops ----------------------------------------------------------------------------------

// dst [act_row_bytes, rows] int8 <- src[0] f32 rows (quantize_row).
void quantize_op(ggml_tensor* dst, int ith, int nth, void*) {
  const ggml_tensor* x = dst->src[0];
  const int64_t rows = ggml_nrows(x);
  const int64_t r0 = rows * ith / nth, r1 = rows * (ith + 1) / nth;
  std::vector<uint8_t> plain;
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t i1 = r % x->ne[1], i2 = (r / x->ne[1]) % x->ne[2], i3 = r / (x->ne[1] * x->ne[2]);
    const char* src = static_cast<const char*>(x->data) + i1 * x->nb[1] + i2 * x->nb[2] + i3 * x->nb[3];
    quantize_row(reinterpret_cast<const float*>(src), static_cast<uint8_t*>(dst->data) + r * dst->nb[1], x->ne[0], plain);
  }
}

// dst [n, rows] f32 <- src[0] interleaved weights [k, n] · src[1] quantized activations.
void gemm_op(ggml_tensor* dst, int ith, int nth, void*) {
  const ggml_tensor* w = dst->src[0];
  const ggml_tensor* xq = dst->src[1];
  const int64_t n = w->ne[1], nb = w->ne[0] / kBlock, m = ggml_nrows(xq), groups = n / kRows;
  const int64_t g0 = groups * ith / nth, g1 = groups * (ith + 1) / nth;
  const auto* wd = static_cast<const uint8_t*>(w->data);
  const auto* xd = static_cast<const uint8_t*>(xq->data);
  auto* yd = static_cast<float*>(dst->data);
#if defined(VL3_Q8X8_SIMD)
  if (cpu_has_avx2_fma_f16c()) {
    gemm_avx2<4>(wd, xd, yd, n, nb, m, g0, g1);
    return;
  }
#endif
  // Not reached in practice (q8_0x8_enabled requires AVX2); kept correct for completeness.
  if (g0 == 0) q8_0x8_gemm_reference(wd, xd, yd, n, w->ne[0], m);
}

}  // namespace

bool q8_0x8_enabled() {
  const char* env = std::getenv("VL3_Q8_KERNEL");
  if (env != nullptr && std::strcmp(env, "ggml") == 0) return false;
  return cpu_has_avx2_fma_f16c() && !ggml_cpu_has_avx512();
}

void q8_0x8_repack(const void* src, void* dst, int64_t rows, int64_t cols) {
  const int64_t nb = cols / kBlock;
  const auto* s = static_cast<const uint8_t*>(src);
  auto* d = static_cast<uint8_t*>(dst);
  for (int64_t g = 0; g < rows / kRows; ++g) {
    for (int64_t b = 0; b < nb; ++b, d += kGroupBlock) {
      for (int r = 0; r < kRows; ++r) {
        const uint8_t* blk = s + ((g * kRows + r) * nb + b) * kPlainBlock;
        std::memcpy(d + r * 2, blk, 2);
        for (int c = 0; c < kBlock / 4; ++c) std::memcpy(d + kScales + c * 32 + r * 4, blk + 2 + 4 * c, 4);
      }
    }
  }
}

void q8_0x8_mark(ggml_tensor* w) { w->extra = const_cast<char*>(&kInterleavedTag); }

bool q8_0x8_is_interleaved(const ggml_tensor* w) { return w->extra == &kInterleavedTag; }

ggml_tensor* q8_0x8_mul_mat(ggml_context* ctx, ggml_tensor* w, ggml_tensor* x) {
  const auto row_bytes = static_cast<int64_t>(act_row_bytes(w->ne[0] / kBlock));
  ggml_tensor* xq = ggml_custom_4d(ctx, GGML_TYPE_I8, row_bytes, x->ne[1], x->ne[2], x->ne[3], &x, 1, quantize_op,
                                   GGML_N_TASKS_MAX, nullptr);  // [row_bytes, m, ...]
  ggml_tensor* args[2] = {w, xq};
  return ggml_custom_4d(ctx, GGML_TYPE_F32, w->ne[1], x->ne[1], x->ne[2], x->ne[3], args, 2, gemm_op,
                        GGML_N_TASKS_MAX, nullptr);  // [n, m, ...]
}

void q8_0x8_quantize(const float* x, void* out, int64_t m, int64_t k) {
  std::vector<uint8_t> plain;
  for (int64_t j = 0; j < m; ++j)
    quantize_row(x + j * k, static_cast<uint8_t*>(out) + j * act_row_bytes(k / kBlock), k, plain);
}

size_t q8_0x8_activation_bytes(int64_t m, int64_t k) { return static_cast<size_t>(m) * act_row_bytes(k / kBlock); }

void q8_0x8_gemm_reference(const void* w, const void* xq, float* y, int64_t n, int64_t k, int64_t m) {
  const int64_t nb = k / kBlock;
  const auto* wd = static_cast<const uint8_t*>(w);
  for (int64_t j = 0; j < m; ++j) {
    const uint8_t* row = static_cast<const uint8_t*>(xq) + j * act_row_bytes(nb);
    const auto* xv = reinterpret_cast<const int8_t*>(row + nb * (4 + kBlock));
    for (int64_t i = 0; i < n; ++i) {
      const int64_t g = i / kRows, r = i % kRows;
      float acc = 0.f;
      for (int64_t b = 0; b < nb; ++b) {
        const uint8_t* gb = wd + (g * nb + b) * kGroupBlock;
        const auto* wq = reinterpret_cast<const int8_t*>(gb + kScales);
        int32_t dot = 0;
        for (int e = 0; e < kBlock; ++e)
          dot += static_cast<int32_t>(wq[(e / 4) * 32 + r * 4 + e % 4]) * xv[b * kBlock + e];
        float dx;
        std::memcpy(&dx, row + b * 4, 4);
        acc = std::fma(static_cast<float>(dot), f16(gb + r * 2) * dx, acc);
      }
      y[j * n + i] = acc;
    }
  }
}

}  // namespace vl3::kernels
