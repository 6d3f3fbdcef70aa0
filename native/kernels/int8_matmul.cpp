#include "kernels/int8_matmul.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#endif
#if defined(_MSC_VER) && !defined(__clang__)
#include <intrin.h>  // _InterlockedCompareExchange, _InterlockedExchangeAdd
#endif

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "ggml-cpu.h"
#include "kernels/cpu_support.h"

namespace vl3::kernels {
namespace {

constexpr int kRows = 8;        // rows per group
constexpr int64_t kFusedRows = 2;  // decode: products of at most this many activation rows quantize them inside the product op

/** What differs between the packed types. */
struct Format {
  int64_t block;         // columns per block
  size_t plain_block;    // bytes of one block of the file's type
  size_t group_block;    // bytes of one packed group-block
  size_t quants;         // offset of the quant vectors in a group-block
  ggml_type act_type;    // ggml's activation type for this weight type
  size_t act_block;      // bytes of one block of act_type
  size_t act_qs;         // offset of the int8 quants in an act_type block
  int64_t sum_cols;      // activation rows also carry the sum of each sum_cols quants (0: none)
  size_t sum_bytes;      // bytes per sum: int16 (Q4_K), or int16 then a zero int16 (Q6_K)
};
// Q8_0: 8 fp16 scales + 8 x 32 quants. Q6_K: 8 fp16 scales + 16 x 8 int8 sub-block scales + 8 x 256
// 6-bit quants. Q4_K: 8 fp16 scales + 8 fp16 min scales + the 8 x 8 6-bit scales and 8 x 8 6-bit mins
// in 96 bytes (q4_scales_at) + 8 x 256 4-bit quants: 144 bytes a row-block, as in the file.
constexpr size_t kQ8_K_bytes = 292;  // ggml's block_q8_K: float d, int8 qs[256], int16 bsums[16]
constexpr Format kQ8_0{32, 34, 16 + 8 * 32, 16, GGML_TYPE_Q8_0, 34, 2, 0, 0};
constexpr Format kQ6_K{256, 210, 16 + 128 + 8 * 128 + 8 * 64, 16 + 128, GGML_TYPE_Q8_K, kQ8_K_bytes, 4, 16, 4};
constexpr Format kQ4_K{256, 144, 16 + 16 + 96 + 8 * 128, 16 + 16 + 96, GGML_TYPE_Q8_K, kQ8_K_bytes, 4, 32, 2};

constexpr const Format& format_of(ggml_type type) {
  return type == GGML_TYPE_Q6_K ? kQ6_K : type == GGML_TYPE_Q4_K ? kQ4_K : kQ8_0;
}

// The tag int8_mark stores in ggml_tensor::extra (unused by plain CPU buffers; ggml's own
// extra-buffer kernels check the buffer type before reading it).
const char kPackedTag = 0;

// After the packed layout, one cache line of uint32 for the decode product's threads: word 0 counts
// the threads done, word 1 + s the groups taken from span s's front (low 16 bits) and back (high 16).
constexpr size_t kWorkStateBytes = 64;
constexpr int kMaxSpans = 15;
constexpr int64_t kMaxGroups = 0xFFFF;  // so a span's counts fit 16 bits
uint32_t* work_state(const ggml_tensor* w) {
  return reinterpret_cast<uint32_t*>(static_cast<char*>(w->data) + int8_packed_size(w->type, w->ne[1], w->ne[0]));
}

inline float f16(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return ggml_fp16_to_fp32(h);
}

// Activation rows as the kernels read them: nb float scales, then nb blocks of int8 quants, then
// (K-quants) for each block the sums of each f.sum_cols quants, f.sum_bytes apart.
size_t act_row_bytes(const Format& f, int64_t nb) {
  return static_cast<size_t>(nb) * (4 + f.block + (f.sum_cols != 0 ? f.sum_bytes * (f.block / f.sum_cols) : 0));
}

// Q4_K's quants: per 32 columns 4 vectors; vector k holds columns 4k..4k+3 in its low nibbles and
// 16 + 4k..16 + 4k + 3 in its high ones. Column e (of a block) of row r of group-block gb (0..15):
inline int q4_at(const uint8_t* gb, int64_t e, int64_t r) {
  const int64_t c = (e % 32) / 4;  // the column's vector of 8 rows x 4 columns
  const uint8_t byte = gb[kQ4_K.quants + (e / 32) * 128 + (c % 4) * 32 + r * 4 + e % 4];
  return c >= 4 ? byte >> 4 : byte & 0xF;
}
// Q4_K's 6-bit scales and mins: value i of 128 (scale of sub-block s, row r: i = 8s + r; its min:
// 64 + 8s + r) in the 96 bytes at p, laid out as Q6_K's quants (see q6_at): values 0..95 in the low 6
// bits of bytes 0..95, value 96 + j in the top 2 bits of bytes j, 32 + j and 64 + j (bits 0-1, 2-3,
// 4-5), so unpack_q6 turns the 96 bytes into the 128 values with a few vector ops.
inline int q4_scales_at(const uint8_t* p, int i) {
  if (i < 96) return p[i] & 63;
  const int j = i - 96;
  return (p[j] >> 6) | ((p[32 + j] >> 6) << 2) | ((p[64 + j] >> 6) << 4);
}
inline void q4_scales_put(uint8_t* p, int i, uint8_t v) {
  if (i < 96) {
    p[i] = static_cast<uint8_t>((p[i] & 0xC0) | v);
    return;
  }
  const int j = i - 96;
  for (int k = 0; k < 3; ++k) p[32 * k + j] = static_cast<uint8_t>((p[32 * k + j] & 0x3F) | (((v >> (2 * k)) & 3) << 6));
}
inline int q4_scale(const uint8_t* gb, int64_t s, int64_t r) { return q4_scales_at(gb + 32, static_cast<int>(8 * s + r)); }
inline int q4_min(const uint8_t* gb, int64_t s, int64_t r) { return q4_scales_at(gb + 32, static_cast<int>(64 + 8 * s + r)); }

// Q6_K's quants (+ 32: 0..63): per 16 columns (one sub-block: vectors v0..v3 of 6-bit values) 3
// vectors A, B, C holding v0, v1, v2 in their low 6 bits and v3's bits 0-1, 2-3, 4-5 in their top 2.
// Column e of row r of group-block gb:
inline int q6_at(const uint8_t* gb, int64_t e, int64_t r) {
  const uint8_t* abc = gb + kQ6_K.quants + (e / 16) * 96 + r * 4 + e % 4;
  const int64_t k = (e % 16) / 4;
  if (k < 3) return abc[32 * k] & 63;
  return (abc[0] >> 6) | ((abc[32] >> 6) << 2) | ((abc[64] >> 6) << 4);
}
// One row's 256 quants of a Q4_K block into its bytes of the packed vectors at q (the row's first
// byte): see q4_at.
void put_nibbles(const uint8_t* v, uint8_t* q) {
  for (int j = 0; j < 8; ++j) {
    for (int k = 0; k < 4; ++k) {
      for (int e = 0; e < 4; ++e) {
        q[j * 128 + k * 32 + e] = static_cast<uint8_t>((v[j * 32 + 4 * k + e] & 0xF) | (v[j * 32 + 16 + 4 * k + e] << 4));
      }
    }
  }
}
// One row's 256 Q6_K quants (0..63) into its bytes of the packed vectors at q: see q6_at.
void put_q6(const uint8_t* v, uint8_t* q) {
  for (int s = 0; s < 16; ++s) {
    for (int e = 0; e < 4; ++e) {
      const uint8_t* col = v + 16 * s + e;  // column 4k + e of the sub-block: col[4 * k]
      for (int k = 0; k < 3; ++k) q[s * 96 + 32 * k + e] = static_cast<uint8_t>(col[4 * k] | (((col[12] >> (2 * k)) & 3) << 6));
    }
  }
}

// Block b of a K-quant activation row: its scale d, its 256 quants and its 16 bsums (Q8_K's sums of
// each 16 quants) into the layout above.
void put_act_block(const Format& f, int64_t nb, int64_t b, float d, const int8_t* qs, const int16_t* bsums, uint8_t* out) {
  std::memcpy(out + b * 4, &d, 4);
  std::memcpy(out + nb * 4 + b * f.block, qs, static_cast<size_t>(f.block));
  const int64_t per_block = f.block / f.sum_cols;
  for (int64_t sb = 0; sb < per_block; ++sb) {
    int16_t sums[2] = {0, 0};  // the sum, then (Q6_K's sum_bytes) a zero
    for (int64_t h = sb * f.sum_cols / 16; h < (sb + 1) * f.sum_cols / 16; ++h) sums[0] = static_cast<int16_t>(sums[0] + bsums[h]);
    std::memcpy(out + nb * (4 + f.block) + (b * per_block + sb) * f.sum_bytes, sums, f.sum_bytes);
  }
}

// ggml's Q8_K quantizer on one block of 256 floats: its scale, quants and bsums. The block starts
// zeroed: ggml leaves the bsums of an all-zero block unwritten.
void q8_K_block_ggml(const float* x, float* d, int8_t* qs, int16_t* bsums) {
  alignas(4) uint8_t blk[kQ8_K_bytes] = {};
  ggml_get_type_traits_cpu(GGML_TYPE_Q8_K)->from_float(x, blk, 256);
  std::memcpy(d, blk, 4);
  std::memcpy(qs, blk + 4, 256);
  std::memcpy(bsums, blk + 4 + 256, 16 * sizeof(int16_t));
}

// One f32 row of k values -> an activation row through ggml's own quantizer (from_float).
void quantize_row_ggml(const Format& f, const float* x, uint8_t* out, int64_t k, std::vector<uint8_t>& plain) {
  const int64_t nb = k / f.block;
  if (f.act_type == GGML_TYPE_Q8_K) {
    int8_t qs[256];
    int16_t bsums[16];
    for (int64_t b = 0; b < nb; ++b) {
      float d;
      q8_K_block_ggml(x + b * f.block, &d, qs, bsums);
      put_act_block(f, nb, b, d, qs, bsums, out);
    }
    return;
  }
  plain.resize(static_cast<size_t>(nb) * f.act_block);
  ggml_get_type_traits_cpu(f.act_type)->from_float(x, plain.data(), k);
  for (int64_t b = 0; b < nb; ++b) {  // block_q8_0: fp16 d, int8 qs[32]
    const uint8_t* blk = plain.data() + b * f.act_block;
    const float d = f16(blk);
    std::memcpy(out + b * 4, &d, 4);
    std::memcpy(out + nb * 4 + b * f.block, blk + f.act_qs, static_cast<size_t>(f.block));
  }
}

// The 6-bit scale and min of sub-block s (32 columns) of a Q4_K block (ggml's block_q4_K: d, dmin,
// scales[12], qs[128]), packed 6 bits each in scales[12].
inline void q4_scale_min(const uint8_t* blk, int s, uint8_t* sc, uint8_t* m) {
  const uint8_t* q = blk + 4;
  if (s < 4) {
    *sc = q[s] & 63;
    *m = q[s + 4] & 63;
  } else {
    *sc = (q[s + 4] & 0xF) | ((q[s - 4] >> 6) << 4);
    *m = (q[s + 4] >> 4) | ((q[s] >> 6) << 4);
  }
}

// What the products add to their outputs, as ggml_add would: bias [n] first, then the residual
// rows (res_stride bytes apart). Either may be null.
struct Adds {
  const float* bias;
  const char* res;
  size_t res_stride;
};

// ---- AVX2 kernels -------------------------------------------------------------------------------

#if defined(__x86_64__) || defined(_M_X64)
#define VL3_INT8_SIMD 1
#if defined(_MSC_VER) && !defined(__clang__)
#define VL3_AVX2  // MSVC compiles AVX2 intrinsics in any function (cpu_has_avx2_fma_f16c() gates the calls)
#else
#define VL3_AVX2 __attribute__((target("avx2,fma,f16c")))
#endif

// One weight vector (8 rows x 4 columns) as maddubs operands: |w| (unsigned; -128 gives 128, which
// the file's Q8_0 can hold) and w itself, whose signs the activations take (they stay in -127..127).
struct Weights4 {
  __m256i abs, w;
};
VL3_AVX2 inline Weights4 weight_vector(const uint8_t* q, int c) {
  const __m256i w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + 32 * c));
  return {_mm256_sign_epi8(w, w), w};
}
// Activation dword c of x (columns 4c..4c+3) in every lane.
VL3_AVX2 inline __m256i broadcast4(const int8_t* x, int c) {
  int32_t x4;
  std::memcpy(&x4, x + 4 * c, 4);
  return _mm256_set1_epi32(x4);
}
// Decode reads each weight once, from memory: the kernels prefetch kAhead bytes ahead, a line or
// two at a time spread through a group-block's work, so the L1's few miss buffers stay evenly in
// use. Issuing a group-block's prefetches together at its start made decode's products 5-8 %
// slower on Q4_K_M and 2-3 % on Q8_0 (Zen 3, 2 threads); 1.5 KiB ahead beat 0.75-2 KiB by 1-3 %.
constexpr int kAhead = 1536;
VL3_AVX2 inline void prefetch_ahead(const uint8_t* at, bool on) {
  if (on) _mm_prefetch(reinterpret_cast<const char*>(at) + kAhead, _MM_HINT_T0);
}
// 16 int16 sums of pairs: row r's two columns pairs of |w|·(x·sign w) in lanes 2r, 2r+1.
VL3_AVX2 inline __m256i products(const Weights4& v, const int8_t* x, int c) {
  return _mm256_maddubs_epi16(v.abs, _mm256_sign_epi8(broadcast4(x, c), v.w));
}

// The 8 rows' int32 dot products with activation row t (x[t] at this block) over one Q8_0 group-block.
template <int T>
VL3_AVX2 inline void dots_q8_0(const uint8_t* g, const int8_t* const* x, __m256i* dot, bool prefetch) {
  const __m256i ones = _mm256_set1_epi16(1);
  for (int t = 0; t < T; ++t) dot[t] = _mm256_setzero_si256();
#pragma GCC unroll 8
  for (int c = 0; c < 8; ++c) {
    if (c < 5) prefetch_ahead(g + 64 * c, prefetch);  // 272 bytes
    const Weights4 v = weight_vector(g + kQ8_0.quants, c);
    for (int t = 0; t < T; ++t) dot[t] = _mm256_add_epi32(dot[t], _mm256_madd_epi16(products(v, x[t], c), ones));
  }
}

// The 8 rows' sub-block scales at p (8 bytes) as int16, each twice: [s0, s0, s1, s1, ..., s7, s7]
// (maddubs gives a row 2 lanes). Q6_K's are signed, Q4_K's unsigned.
VL3_AVX2 inline __m256i row_scales_i8(const uint8_t* p) {
  const __m128i s = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p));
  return _mm256_cvtepi8_epi16(_mm_unpacklo_epi8(s, s));
}
VL3_AVX2 inline __m256i row_scales_u8(const uint8_t* p) {
  const __m128i s = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p));
  return _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(s, s));
}
// The 4 packed vectors of 32 columns as 8 vectors of nibbles (columns 4c..4c+3 of rows 0..7 in v[c]).
VL3_AVX2 inline void unpack_nibbles(const uint8_t* q, __m256i* v) {
  const __m256i nibble = _mm256_set1_epi8(0x0F);
  for (int k = 0; k < 4; ++k) {
    const __m256i packed = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + 32 * k));
    v[k] = _mm256_and_si256(packed, nibble);
    v[k + 4] = _mm256_and_si256(_mm256_srli_epi16(packed, 4), nibble);
  }
}
// One Q6_K sub-block's 3 stored vectors (q6_at) as its 4 vectors of 6-bit quants. The 16-bit shifts
// carry bits across bytes only into positions the masks clear.
VL3_AVX2 inline void unpack_q6(const uint8_t* q, __m256i* v) {
  const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q));
  const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + 32));
  const __m256i c = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + 64));
  const __m256i low6 = _mm256_set1_epi8(0x3F);
  v[0] = _mm256_and_si256(a, low6);
  v[1] = _mm256_and_si256(b, low6);
  v[2] = _mm256_and_si256(c, low6);
  const __m256i lo = _mm256_and_si256(_mm256_srli_epi16(a, 6), _mm256_set1_epi8(0x03));
  const __m256i mid = _mm256_and_si256(_mm256_srli_epi16(b, 4), _mm256_set1_epi8(0x0C));
  const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(c, 2), _mm256_set1_epi8(0x30));
  v[3] = _mm256_or_si256(_mm256_or_si256(lo, mid), hi);
}
// 16 int16: row r's two column-pair sums of v·x (columns 4c..4c+3) in lanes 2r, 2r + 1.
VL3_AVX2 inline __m256i products_u(__m256i v, const int8_t* x, int c) {
  return _mm256_maddubs_epi16(v, broadcast4(x, c));
}

// The same over one Q6_K group-block, with the quants as stored (q + 32, 0..63, unsigned: no sign
// trick): dot = Σ_s scale_s · (Σ q·x − 32 · Σ x) over the 16 sub-blocks of 16 columns, which is the
// file's Σ_s scale_s · Σ (q − 32)·x exactly. Two products (<= 2 · 63 · 127 · 2 = 32004) share an int16 sum.
template <int T>
VL3_AVX2 inline void dots_q6_K(const uint8_t* g, const int8_t* const* x, const int32_t* const* sums, __m256i* dot,
                               bool prefetch) {
  const uint8_t* q = g + kQ6_K.quants;
  __m256i corr[T];
  for (int t = 0; t < T; ++t) dot[t] = corr[t] = _mm256_setzero_si256();
  for (int j = 0; j < 8; ++j, q += 192) {  // 32 columns: sub-blocks 2j (v[0..3]), 2j + 1 (v[4..7])
    for (int l = 0; l < 3; ++l) prefetch_ahead(q + 64 * l, prefetch);
    if (j < 3) prefetch_ahead(g + 64 * j, prefetch);  // the 144 bytes of scales
    __m256i v[8];
    unpack_q6(q, v);
    unpack_q6(q + 96, v + 4);
    const __m256i sc[2] = {row_scales_i8(g + 16 + 16 * j), row_scales_i8(g + 16 + 16 * j + 8)};
    for (int t = 0; t < T; ++t) {
      const int8_t* xs = x[t] + 32 * j;
      for (int h = 0; h < 2; ++h) {
        const __m256i a = _mm256_add_epi16(products_u(v[4 * h], xs, 4 * h), products_u(v[4 * h + 1], xs, 4 * h + 1));
        const __m256i b = _mm256_add_epi16(products_u(v[4 * h + 2], xs, 4 * h + 2), products_u(v[4 * h + 3], xs, 4 * h + 3));
        dot[t] = _mm256_add_epi32(dot[t], _mm256_add_epi32(_mm256_madd_epi16(a, sc[h]), _mm256_madd_epi16(b, sc[h])));
        // (sum, 0) against (scale, scale): scale · sum per row
        corr[t] = _mm256_add_epi32(corr[t], _mm256_madd_epi16(sc[h], _mm256_set1_epi32(sums[t][2 * j + h])));
      }
    }
  }
  for (int t = 0; t < T; ++t) dot[t] = _mm256_sub_epi32(dot[t], _mm256_slli_epi32(corr[t], 5));
}

// Over one Q4_K group-block: dotA = Σ_s scale_s · Σ q·x (unsigned 4-bit quants need no sign trick:
// eight products of <= 15 · 127 · 2 stay under 32767 in int16), dotB = Σ_s min_s · (sum of the 32 x).
template <int T>
VL3_AVX2 inline void dots_q4_K(const uint8_t* g, const int8_t* const* x, const int16_t* const* sums, __m256i* dotA,
                               __m256i* dotB, bool prefetch) {
  const uint8_t* q = g + kQ4_K.quants;
  for (int t = 0; t < T; ++t) dotA[t] = dotB[t] = _mm256_setzero_si256();
  // The 64 scales (8 per sub-block), then the 64 mins, as bytes. Kept at 6 bits in memory, as in the
  // file: 2.7 % fewer bytes than 8-bit ones and group-blocks of exactly 18 cache lines; decode 2.5 %
  // faster (median of six runs, the two layouts in one process, alternating every 8 tokens).
  alignas(32) uint8_t sm[128];
  {
    __m256i v[4];
    unpack_q6(g + 32, v);
    for (int k = 0; k < 4; ++k) _mm256_store_si256(reinterpret_cast<__m256i*>(sm + 32 * k), v[k]);
  }
  for (int s = 0; s < 8; ++s, q += 128) {
    prefetch_ahead(q, prefetch);
    prefetch_ahead(q + 64, prefetch);
    if (s < 2) prefetch_ahead(g + 64 * s, prefetch);  // the 128 bytes of scales and mins
    const __m256i scale = row_scales_u8(sm + 8 * s);
    __m256i v[8];
    unpack_nibbles(q, v);
    for (int t = 0; t < T; ++t) {
      const int8_t* xs = x[t] + 32 * s;
      __m256i p = products_u(v[0], xs, 0);
#pragma GCC unroll 7
      for (int c = 1; c < 8; ++c) p = _mm256_add_epi16(p, products_u(v[c], xs, c));
      dotA[t] = _mm256_add_epi32(dotA[t], _mm256_madd_epi16(p, scale));
    }
  }
  for (int s = 0; s < 8; s += 2) {  // mins of sub-blocks s, s + 1 per row as int16 pairs, times the x sums
    const __m128i a = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(sm + 64 + 8 * s));
    const __m128i b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(sm + 64 + 8 * (s + 1)));
    const __m256i mins = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(a, b));
    for (int t = 0; t < T; ++t) {
      int32_t pair;
      std::memcpy(&pair, sums[t] + s, 4);
      dotB[t] = _mm256_add_epi32(dotB[t], _mm256_madd_epi16(mins, _mm256_set1_epi32(pair)));
    }
  }
}

// T activation rows (from `x`, `row_bytes` apart) against blocks [0, nb) of one 8-row group `g`;
// y[t * n + r] gets row r's output for activation row t (plus the adds at the same places).
template <ggml_type Type, int T>
VL3_AVX2 void group_rows(const uint8_t* g, int64_t nb, const uint8_t* x, size_t row_bytes, float* y, int64_t n,
                         bool prefetch, const Adds& adds) {
  constexpr const Format& f = format_of(Type);
  const float* xd[T];
  const int8_t* xq[T];
  const uint8_t* xsum[T];  // the K-quants' activation sums of this block
  __m256 acc[T];
  for (int t = 0; t < T; ++t) {
    const uint8_t* row = x + t * row_bytes;
    xd[t] = reinterpret_cast<const float*>(row);
    xq[t] = reinterpret_cast<const int8_t*>(row + nb * 4);
    xsum[t] = row + nb * (4 + f.block);
    acc[t] = _mm256_setzero_ps();
  }
  for (int64_t b = 0; b < nb; ++b, g += f.group_block) {
    __m256i dot[T], dot_min[T];
    if constexpr (Type == GGML_TYPE_Q4_K) {
      const int16_t* sums[T];
      for (int t = 0; t < T; ++t) sums[t] = reinterpret_cast<const int16_t*>(xsum[t]);
      dots_q4_K<T>(g, xq, sums, dot, dot_min, prefetch);
    } else if constexpr (Type == GGML_TYPE_Q6_K) {
      const int32_t* sums[T];
      for (int t = 0; t < T; ++t) sums[t] = reinterpret_cast<const int32_t*>(xsum[t]);
      dots_q6_K<T>(g, xq, sums, dot, prefetch);
    } else {
      dots_q8_0<T>(g, xq, dot, prefetch);
    }
    const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(g)));
    for (int t = 0; t < T; ++t) {
      const __m256 dx = _mm256_set1_ps(xd[t][b]);
      acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot[t]), _mm256_mul_ps(dw, dx), acc[t]);
      if constexpr (Type == GGML_TYPE_Q4_K) {
        const __m256 dmin = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(g + 16)));
        acc[t] = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(dot_min[t]), _mm256_mul_ps(dmin, dx), acc[t]);
      }
      if constexpr (f.sum_cols != 0) xsum[t] += f.sum_bytes * (f.block / f.sum_cols);
      xq[t] += f.block;
    }
  }
  for (int t = 0; t < T; ++t) {
    __m256 out = acc[t];
    if (adds.bias != nullptr) out = _mm256_add_ps(out, _mm256_loadu_ps(adds.bias));
    if (adds.res != nullptr) {
      out = _mm256_add_ps(_mm256_loadu_ps(reinterpret_cast<const float*>(adds.res + t * adds.res_stride)), out);
    }
    _mm256_storeu_ps(y + t * n, out);
  }
}

// Groups [g0, g1) x activation rows [0, m) of the product. Rows go in chunks whose activations
// stay in L2 while every group of this thread passes over them, 4 at a time sharing each weight load.
template <ggml_type Type>
VL3_AVX2 void gemm_avx2(const uint8_t* w, const uint8_t* xq, float* y, int64_t n, int64_t nb, int64_t m,
                        int64_t g0, int64_t g1, const Adds& adds) {
  constexpr const Format& f = format_of(Type);
  constexpr int T = 4;
  constexpr int64_t l2 = 192 << 10;  // bytes of activations per chunk (of a 512 KiB L2)
  const size_t row_bytes = act_row_bytes(f, nb);
  const size_t group_bytes = static_cast<size_t>(nb) * f.group_block;
  const int64_t chunk = std::max<int64_t>(T, static_cast<int64_t>(l2 / row_bytes) / T * T);
  const bool prefetch = m <= kFusedRows;  // decode
  for (int64_t j0 = 0; j0 < m; j0 += chunk) {
    const int64_t j1 = std::min(m, j0 + chunk);
    for (int64_t gi = g0; gi < g1; ++gi) {
      const uint8_t* g = w + gi * group_bytes;
      float* yg = y + gi * kRows;
      int64_t j = j0;
      const auto at = [&](int64_t row) {  // the adds for this group and activation row
        return Adds{adds.bias != nullptr ? adds.bias + gi * kRows : nullptr,
                    adds.res != nullptr ? adds.res + row * adds.res_stride + gi * kRows * sizeof(float) : nullptr,
                    adds.res_stride};
      };
      for (; j + T <= j1; j += T) group_rows<Type, T>(g, nb, xq + j * row_bytes, row_bytes, yg + j * n, n, false, at(j));
      for (; j < j1; ++j) group_rows<Type, 1>(g, nb, xq + j * row_bytes, row_bytes, yg + j * n, n, prefetch, at(j));
    }
  }
}

// ggml's quantize_row_q8_K_ref on one block of 256 floats with the same float arithmetic, so the
// same bytes: the largest |x| (the first of equal ones gives the sign), iscale = -127 / that x,
// quants min(127, round-half-even(iscale * x)), d = 1 / iscale, bsums the sums of each 16 quants
// (0 for an all-zero block, where ggml leaves them unwritten). Returns false, writing nothing, for a
// block holding an infinity or NaN (the caller runs ggml's quantizer on it).
VL3_AVX2 bool quantize_q8_K_block(const float* x, float* d, int8_t* qs, int16_t* bsums) {
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  __m256 amax = _mm256_setzero_ps(), unordered = _mm256_setzero_ps();
  for (int j = 0; j < 256; j += 8) {
    const __m256 v = _mm256_loadu_ps(x + j);
    amax = _mm256_max_ps(_mm256_and_ps(v, abs_mask), amax);
    unordered = _mm256_or_ps(unordered, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
  }
  __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(amax), _mm256_extractf128_ps(amax, 1));
  m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
  m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
  const float am = _mm_cvtss_f32(m4);
  if (_mm256_movemask_ps(unordered) != 0 || !(am <= 3.402823466e+38f)) return false;
  if (am == 0.0f) {
    *d = 0.0f;
    std::memset(qs, 0, 256);
    std::memset(bsums, 0, 16 * sizeof(int16_t));
    return true;
  }
  float max = 0.0f;
  const __m256 target = _mm256_set1_ps(am);
  for (int j = 0; j < 256; j += 8) {
    const int hit = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_and_ps(_mm256_loadu_ps(x + j), abs_mask), target, _CMP_EQ_OQ));
    if (hit != 0) {
      int first = 0;  // the lowest set bit (__builtin_ctz, which MSVC lacks)
      while (((hit >> first) & 1) == 0) ++first;
      max = x[j + first];
      break;
    }
  }
  const float iscale = -127.f / max;
  const __m256 scale = _mm256_set1_ps(iscale);
  const __m256i top = _mm256_set1_epi32(127), order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  const __m256i bias = _mm256_set1_epi8(static_cast<char>(0x80));
  for (int j = 0; j < 256; j += 32) {
    __m256i i[4];
    for (int h = 0; h < 4; ++h) {  // cvtps rounds half to even, as ggml's nearest_int does below 2^22
      i[h] = _mm256_min_epi32(_mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + j + 8 * h), scale)), top);
    }
    // [-127, 127]: no saturation; the packs interleave 4-quant dwords across the two lanes
    const __m256i q = _mm256_permutevar8x32_epi32(
        _mm256_packs_epi16(_mm256_packs_epi32(i[0], i[1]), _mm256_packs_epi32(i[2], i[3])), order);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(qs + j), q);
    // sums of each 8 (q + 128) as 4 int64, then of each 16 quants
    const __m256i s8 = _mm256_sad_epu8(_mm256_xor_si256(q, bias), _mm256_setzero_si256());
    const __m256i s16 = _mm256_add_epi64(s8, _mm256_srli_si256(s8, 8));
    bsums[j / 16] = static_cast<int16_t>(_mm256_extract_epi32(s16, 0) - 16 * 128);
    bsums[j / 16 + 1] = static_cast<int16_t>(_mm256_extract_epi32(s16, 4) - 16 * 128);
  }
  *d = 1 / iscale;
  return true;
}
#endif

// One f32 row of k values -> an activation row: ggml's quantizer for the type's dot product, the
// same bytes faster for Q8_K on AVX2 machines (the decode products run it on every thread).
void quantize_row(const Format& f, const float* x, uint8_t* out, int64_t k, std::vector<uint8_t>& plain) {
#if defined(VL3_INT8_SIMD)
  if (f.act_type == GGML_TYPE_Q8_K && cpu_has_avx2_fma_f16c()) {
    const int64_t nb = k / f.block;
    alignas(32) int8_t qs[256];
    int16_t bsums[16];
    for (int64_t b = 0; b < nb; ++b) {
      float d;
      if (!quantize_q8_K_block(x + b * f.block, &d, qs, bsums)) q8_K_block_ggml(x + b * f.block, &d, qs, bsums);
      put_act_block(f, nb, b, d, qs, bsums, out);
    }
    return;
  }
#endif
  quantize_row_ggml(f, x, out, k, plain);
}

// m rows of k floats -> activation rows, each through `quantize` (quantize_row or quantize_row_ggml).
void quantize_rows(void (*quantize)(const Format&, const float*, uint8_t*, int64_t, std::vector<uint8_t>&),
                   ggml_type type, const float* x, void* out, int64_t m, int64_t k) {
  const Format& f = format_of(type);
  std::vector<uint8_t> plain;
  for (int64_t j = 0; j < m; ++j) quantize(f, x + j * k, static_cast<uint8_t*>(out) + j * act_row_bytes(f, k / f.block), k, plain);
}

// ---- graph ops ----------------------------------------------------------------------------------

// One f32 row (row r of x, any strides) -> an activation row.
void quantize_x_row(const Format& f, const ggml_tensor* x, int64_t r, uint8_t* out, std::vector<uint8_t>& plain) {
  const int64_t i1 = r % x->ne[1], i2 = (r / x->ne[1]) % x->ne[2], i3 = r / (x->ne[1] * x->ne[2]);
  const char* src = static_cast<const char*>(x->data) + i1 * x->nb[1] + i2 * x->nb[2] + i3 * x->nb[3];
  quantize_row(f, reinterpret_cast<const float*>(src), out, x->ne[0], plain);
}

// dst [act_row_bytes, rows] int8 <- src[0] f32 rows; userdata: the weights' Format.
void quantize_op(ggml_tensor* dst, int ith, int nth, void* userdata) {
  const Format& f = *static_cast<const Format*>(userdata);
  const ggml_tensor* x = dst->src[0];
  const int64_t rows = ggml_nrows(x);
  std::vector<uint8_t> plain;
  for (int64_t r = rows * ith / nth; r < rows * (ith + 1) / nth; ++r) {
    quantize_x_row(f, x, r, static_cast<uint8_t*>(dst->data) + r * dst->nb[1], plain);
  }
}

// How one product op runs: which adds it folds in (dst->src[2], src[3] in this order when present),
// whether it quantizes the activations itself (few rows: src[1] is f32 x, each thread quantizes
// all of it, saving the separate op and its barrier) or reads quantize_op's output, and whether it
// runs the scalar reference (the test hook VL3_TEST_INT8_REFERENCE, or a CPU without AVX2).
struct Plan {
  bool bias;      // + b [n], after the product (as ggml_add(y, b))
  bool residual;  // then res [n, rows] + that (as ggml_add(res, ...))
  bool fused;
  bool reference;
};
// Every combination, so ops can point at one (userdata outlives any graph): bit 0 bias, 1 residual,
// 2 fused, 3 reference.
constexpr std::array<Plan, 16> all_plans() {
  std::array<Plan, 16> plans{};
  for (int i = 0; i < 16; ++i) plans[i] = {(i & 1) != 0, (i & 2) != 0, (i & 4) != 0, (i & 8) != 0};
  return plans;
}
constexpr std::array<Plan, 16> kPlans = all_plans();
const Plan& plan_of(bool bias, bool residual, bool fused, bool reference) {
  return kPlans[(bias ? 1 : 0) + (residual ? 2 : 0) + (fused ? 4 : 0) + (reference ? 8 : 0)];
}

Adds adds_of(const ggml_tensor* dst, const Plan& plan) {
  const ggml_tensor* bias = plan.bias ? dst->src[2] : nullptr;
  const ggml_tensor* res = plan.residual ? dst->src[plan.bias ? 3 : 2] : nullptr;
  return {bias != nullptr ? static_cast<const float*>(bias->data) : nullptr,
          res != nullptr ? static_cast<const char*>(res->data) : nullptr, res != nullptr ? res->nb[1] : 0};
}

// The adds on all m rows of n outputs (the scalar reference's; the SIMD kernels add as they store).
void apply_adds(const Adds& adds, float* y, int64_t n, int64_t m) {
  for (int64_t j = 0; j < m; ++j, y += n) {
    if (adds.bias != nullptr) {
      for (int64_t i = 0; i < n; ++i) y[i] += adds.bias[i];
    }
    if (adds.res != nullptr) {
      const auto* r = reinterpret_cast<const float*>(adds.res + j * adds.res_stride);
      for (int64_t i = 0; i < n; ++i) y[i] = r[i] + y[i];
    }
  }
}

// The work-state words are plain uint32_t in the tensor's memory, so they are used through the
// compilers' atomic builtins (C++20's std::atomic_ref): GCC/clang's __atomic_*, MSVC's _Interlocked*
// (full barriers, so at least as strong) with plain volatile loads and stores (atomic when aligned).
#if defined(_MSC_VER) && !defined(__clang__)
inline uint32_t load_relaxed(uint32_t* p) { return *reinterpret_cast<volatile uint32_t*>(p); }
inline void store_relaxed(uint32_t* p, uint32_t v) { *reinterpret_cast<volatile uint32_t*>(p) = v; }
inline bool cas_relaxed(uint32_t* p, uint32_t* expected, uint32_t desired) {
  const auto seen = static_cast<uint32_t>(_InterlockedCompareExchange(reinterpret_cast<volatile long*>(p),
                                                                      static_cast<long>(desired), static_cast<long>(*expected)));
  if (seen == *expected) return true;
  *expected = seen;
  return false;
}
inline uint32_t add_fetch_acq_rel(uint32_t* p, uint32_t v) {
  return static_cast<uint32_t>(_InterlockedExchangeAdd(reinterpret_cast<volatile long*>(p), static_cast<long>(v))) + v;
}
#else
inline uint32_t load_relaxed(uint32_t* p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
inline void store_relaxed(uint32_t* p, uint32_t v) { __atomic_store_n(p, v, __ATOMIC_RELAXED); }
inline bool cas_relaxed(uint32_t* p, uint32_t* expected, uint32_t desired) {
  return __atomic_compare_exchange_n(p, expected, desired, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
}
inline uint32_t add_fetch_acq_rel(uint32_t* p, uint32_t v) { return __atomic_add_fetch(p, v, __ATOMIC_ACQ_REL); }
#endif

// Decode: how the threads share a matrix's groups. Thread i owns span i (spans = min(nth, 15), of
// equal size) and takes chunks from its front, so its reads are one ascending stream that the
// prefetchers (the kernels' and the hardware's) run ahead of; a thread whose span is done (or that
// owns none) takes chunks from the backs of the others', so one slowed by the other's memory
// traffic or by the hypervisor does not leave the other waiting at the barrier. Chunks shrink as a
// span runs out (a quarter of what is left, at most `chunk`, down to one group), so the threads
// finish close together. Against threads taking turns on one counter (each chunk a jump in both
// threads' streams) decode ran 3.1 % (Q8_0) and 3.4 % (Q4_K_M) faster, medians of both alternating
// every 8 tokens in one process. The last thread out clears the counts for the matrix's next product.
template <typename Run>
void decode_shares(uint32_t* state, int64_t groups, int ith, int nth, const Run& run) {
  const int spans = std::min(nth, kMaxSpans);
  const int64_t chunk = std::clamp<int64_t>(groups / (8 * nth), 1, 64);
  const auto take = [&](int s, bool front) {  // one chunk of span s; false once it is empty
    const int64_t s0 = groups * s / spans, s1 = groups * (s + 1) / spans;
    uint32_t& word = state[1 + s];
    uint32_t taken = load_relaxed(&word);
    for (;;) {
      const int64_t lo = s0 + (taken & 0xFFFF), hi = s1 - (taken >> 16);
      if (lo >= hi) return false;
      const int64_t size = std::clamp<int64_t>((hi - lo) / 4, 1, chunk);
      const uint32_t now = taken + static_cast<uint32_t>(front ? size : size << 16);
      if (cas_relaxed(&word, &taken, now)) {
        if (front) {
          run(lo, lo + size);
        } else {
          run(hi - size, hi);
        }
        return true;
      }  // else `taken` now holds the other thread's take: size again from there
    }
  };
  if (ith < spans) {
    while (take(ith, true)) {
    }
  }
  for (int k = 1; k <= spans; ++k) {
    while (take((ith + k) % spans, false)) {
    }
  }
  if (add_fetch_acq_rel(&state[0], 1u) == static_cast<uint32_t>(nth)) {
    for (int s = 0; s <= spans; ++s) store_relaxed(&state[s], 0u);
  }
}

// dst [n, rows] f32 <- src[0] packed weights [k, n] · src[1] (quantized activations, or f32 x when
// fused), plus the plan's adds. Prefill threads split the 8-row groups evenly; decode threads share
// them out as decode_shares says.
void gemm_op(ggml_tensor* dst, int ith, int nth, void* userdata) {
  const Plan& plan = *static_cast<const Plan*>(userdata);
  const ggml_tensor* w = dst->src[0];
  const Format& f = format_of(w->type);
  const int64_t n = w->ne[1], nb = w->ne[0] / f.block, m = ggml_nrows(dst), groups = n / kRows;
  const uint8_t* xq = static_cast<const uint8_t*>(dst->src[1]->data);
  if (plan.fused) {
    if (plan.reference && ith != 0) return;
    thread_local std::vector<uint8_t> own, plain;
    own.resize(act_row_bytes(f, nb) * m);
    for (int64_t r = 0; r < m; ++r) quantize_x_row(f, dst->src[1], r, own.data() + r * act_row_bytes(f, nb), plain);
    xq = own.data();
  }
  auto* y = static_cast<float*>(dst->data);
#if defined(VL3_INT8_SIMD)
  if (!plan.reference && cpu_has_avx2_fma_f16c()) {
    const auto* wd = static_cast<const uint8_t*>(w->data);
    const Adds adds = adds_of(dst, plan);
    const auto run = [&](int64_t g0, int64_t g1) {
      if (w->type == GGML_TYPE_Q6_K) {
        gemm_avx2<GGML_TYPE_Q6_K>(wd, xq, y, n, nb, m, g0, g1, adds);
      } else if (w->type == GGML_TYPE_Q4_K) {
        gemm_avx2<GGML_TYPE_Q4_K>(wd, xq, y, n, nb, m, g0, g1, adds);
      } else {
        gemm_avx2<GGML_TYPE_Q8_0>(wd, xq, y, n, nb, m, g0, g1, adds);
      }
    };
    if (!plan.fused) {
      run(groups * ith / nth, groups * (ith + 1) / nth);
      return;
    }
    decode_shares(work_state(w), groups, ith, nth, run);
    return;
  }
#endif
  if (ith == 0) {
    int8_gemm_reference(w->type, w->data, xq, y, n, w->ne[0], m);
    apply_adds(adds_of(dst, plan), y, n, m);
  }
}

// Row `i` of a packed matrix of `cols` columns as floats, with ggml's dequantization arithmetic
// (dequantize_row_*: Q8_0 q·d, Q6_K (d·sc)·q, Q4_K (d·sc)·q − dmin·m), so rows equal ggml_get_rows'.
void dequantize_packed_row(ggml_type type, const uint8_t* w, int64_t i, int64_t cols, float* y) {
  const Format& f = format_of(type);
  const int64_t nb = cols / f.block, r = i % kRows;
  const uint8_t* gb = w + (i / kRows) * nb * f.group_block;
  for (int64_t b = 0; b < nb; ++b, gb += f.group_block, y += f.block) {
    const float d = f16(gb + r * 2);
    for (int64_t e = 0; e < f.block; ++e) {
      if (type == GGML_TYPE_Q4_K) {
        const int64_t sb = e / 32;
        const float d1 = d * q4_scale(gb, sb, r), m1 = f16(gb + 16 + r * 2) * q4_min(gb, sb, r);
        const float prod = d1 * static_cast<float>(q4_at(gb, e, r));
        y[e] = prod - m1;
      } else if (type == GGML_TYPE_Q6_K) {
        y[e] = d * static_cast<int8_t>(gb[16 + (e / 16) * 8 + r]) * (q6_at(gb, e, r) - 32);
      } else {
        y[e] = static_cast<int8_t>(gb[f.quants + (e / 4) * 32 + r * 4 + e % 4]) * d;
      }
    }
  }
}

// dst [cols, n] f32 <- rows src[1] (int32 ids) of packed src[0]; ids outside the matrix give zeros.
void get_rows_op(ggml_tensor* dst, int ith, int nth, void*) {
  const ggml_tensor* w = dst->src[0];
  const ggml_tensor* ids = dst->src[1];
  const int64_t n = ggml_nelements(ids);
  for (int64_t j = n * ith / nth; j < n * (ith + 1) / nth; ++j) {
    const int32_t id = static_cast<const int32_t*>(ids->data)[j];
    float* y = reinterpret_cast<float*>(static_cast<char*>(dst->data) + j * dst->nb[1]);
    if (id < 0 || id >= w->ne[1]) {
      std::fill(y, y + w->ne[0], 0.f);
    } else {
      dequantize_packed_row(w->type, static_cast<const uint8_t*>(w->data), id, w->ne[0], y);
    }
  }
}

}  // namespace

bool int8_matmul_enabled() { return !cpu_kernels_switched_off() && cpu_has_avx2_fma_f16c() && !ggml_cpu_has_avx512(); }

bool int8_packable(ggml_type type, int64_t rows, int64_t cols) {
  if (type != GGML_TYPE_Q8_0 && type != GGML_TYPE_Q6_K && type != GGML_TYPE_Q4_K) return false;
  return rows > 0 && rows % kRows == 0 && rows / kRows <= kMaxGroups && cols > 0 && cols % format_of(type).block == 0;
}

size_t int8_packed_size(ggml_type type, int64_t rows, int64_t cols) {
  const Format& f = format_of(type);
  return static_cast<size_t>(rows / kRows) * static_cast<size_t>(cols / f.block) * f.group_block;
}

void int8_pack(ggml_type type, const void* src, void* dst, int64_t rows, int64_t cols) {
  const Format& f = format_of(type);
  const int64_t nb = cols / f.block;
  const auto* s = static_cast<const uint8_t*>(src);
  auto* d = static_cast<uint8_t*>(dst);
  for (int64_t g = 0; g < rows / kRows; ++g) {
    for (int64_t b = 0; b < nb; ++b, d += f.group_block) {
      for (int r = 0; r < kRows; ++r) {
        const uint8_t* blk = s + ((g * kRows + r) * nb + b) * f.plain_block;
        uint8_t* q = d + f.quants + r * 4;  // row r's dword in each vector (Q4_K: in each packed vector)
        if (type == GGML_TYPE_Q4_K) {
          std::memcpy(d + r * 2, blk, 2);           // d
          std::memcpy(d + 16 + r * 2, blk + 2, 2);  // dmin
          for (int sb = 0; sb < 8; ++sb) {
            uint8_t sc, m;
            q4_scale_min(blk, sb, &sc, &m);
            q4_scales_put(d + 32, 8 * sb + r, sc);
            q4_scales_put(d + 32, 64 + 8 * sb + r, m);
          }
          uint8_t v[256];
          for (int j = 0; j < 4; ++j) {  // columns 64j..64j+31: low nibbles of qs[32j..32j+31]; the next 32: high
            for (int l = 0; l < 32; ++l) {
              const uint8_t byte = blk[16 + 32 * j + l];
              v[64 * j + l] = byte & 0xF;
              v[64 * j + 32 + l] = byte >> 4;
            }
          }
          put_nibbles(v, q);
        } else if (type == GGML_TYPE_Q6_K) {
          std::memcpy(d + r * 2, blk + 208, 2);                                // d
          for (int sb = 0; sb < 16; ++sb) d[16 + sb * 8 + r] = blk[192 + sb];  // scales
          uint8_t v[256];  // ggml's block_q6_K: ql[128] (low 4 bits), qh[64] (high 2 bits), scales[16], d
          // per 128 columns, quarter j takes the low nibbles of ql[l] / ql[l + 32], then the high
          // ones, with qh[l] bits 2j..2j+1 on top
          for (int h = 0; h < 2; ++h) {
            for (int l = 0; l < 32; ++l) {
              const uint8_t ql0 = blk[64 * h + l], ql1 = blk[64 * h + 32 + l], qh = blk[128 + 32 * h + l];
              v[128 * h + l] = static_cast<uint8_t>((ql0 & 0xF) | ((qh & 3) << 4));
              v[128 * h + 32 + l] = static_cast<uint8_t>((ql1 & 0xF) | (((qh >> 2) & 3) << 4));
              v[128 * h + 64 + l] = static_cast<uint8_t>((ql0 >> 4) | (((qh >> 4) & 3) << 4));
              v[128 * h + 96 + l] = static_cast<uint8_t>((ql1 >> 4) | (((qh >> 6) & 3) << 4));
            }
          }
          put_q6(v, q);
        } else {
          std::memcpy(d + r * 2, blk, 2);
          for (int c = 0; c < 8; ++c) std::memcpy(q + c * 32, blk + 2 + 4 * c, 4);
        }
      }
    }
  }
}

size_t int8_storage_size(ggml_type type, int64_t rows, int64_t cols) {
  return int8_packed_size(type, rows, cols) + kWorkStateBytes;
}

void int8_mark(ggml_tensor* w) {
  w->extra = const_cast<char*>(&kPackedTag);
  std::memset(work_state(w), 0, kWorkStateBytes);
}

bool int8_is_packed(const ggml_tensor* w) { return w->extra == &kPackedTag; }

ggml_tensor* int8_mul_mat(ggml_context* ctx, ggml_tensor* w, ggml_tensor* x, ggml_tensor* bias, ggml_tensor* residual) {
  const Format& f = format_of(w->type);
  const int64_t n = w->ne[1], rows = ggml_nrows(x);
  // Adds are folded in when their layout is the simple one; otherwise they stay ggml_add ops.
  const bool fold_bias = bias != nullptr && bias->type == GGML_TYPE_F32 && ggml_is_contiguous(bias) &&
                         ggml_nelements(bias) == n;
  const bool fold_res = residual != nullptr && residual->type == GGML_TYPE_F32 && residual->ne[0] == n &&
                        residual->nb[0] == sizeof(float) && ggml_nrows(residual) == rows && residual->ne[1] == rows &&
                        x->ne[1] == rows && (fold_bias || bias == nullptr);
  const bool fused = rows <= kFusedRows;
  const bool reference = std::getenv("VL3_TEST_INT8_REFERENCE") != nullptr;
  ggml_tensor* args[4] = {w, x, nullptr, nullptr};
  int n_args = 2;
  if (!fused) {
    const auto row_bytes = static_cast<int64_t>(act_row_bytes(f, w->ne[0] / f.block));
    args[1] = ggml_custom_4d(ctx, GGML_TYPE_I8, row_bytes, x->ne[1], x->ne[2], x->ne[3], &x, 1, quantize_op,
                             GGML_N_TASKS_MAX, const_cast<Format*>(&f));  // [row_bytes, m, ...]
  }
  if (fold_bias) args[n_args++] = bias;
  if (fold_res) args[n_args++] = residual;
  ggml_tensor* y = ggml_custom_4d(ctx, GGML_TYPE_F32, n, x->ne[1], x->ne[2], x->ne[3], args, n_args, gemm_op,
                                  GGML_N_TASKS_MAX,
                                  const_cast<Plan*>(&plan_of(fold_bias, fold_res, fused, reference)));  // [n, m, ...]
  if (bias != nullptr && !fold_bias) y = ggml_add(ctx, y, bias);
  if (residual != nullptr && !fold_res) y = ggml_add(ctx, residual, y);
  return y;
}

ggml_tensor* int8_get_rows(ggml_context* ctx, ggml_tensor* w, ggml_tensor* ids) {
  ggml_tensor* args[2] = {w, ids};
  return ggml_custom_4d(ctx, GGML_TYPE_F32, w->ne[0], ggml_nelements(ids), 1, 1, args, 2, get_rows_op,
                        GGML_N_TASKS_MAX, nullptr);  // [cols, n]
}

void int8_quantize(ggml_type type, const float* x, void* out, int64_t m, int64_t k) {
  quantize_rows(quantize_row, type, x, out, m, k);
}

void int8_quantize_ggml(ggml_type type, const float* x, void* out, int64_t m, int64_t k) {
  quantize_rows(quantize_row_ggml, type, x, out, m, k);
}

size_t int8_activation_bytes(ggml_type type, int64_t m, int64_t k) {
  const Format& f = format_of(type);
  return static_cast<size_t>(m) * act_row_bytes(f, k / f.block);
}

void int8_gemm_reference(ggml_type type, const void* w, const void* xq, float* y, int64_t n, int64_t k, int64_t m) {
  const Format& f = format_of(type);
  const int64_t nb = k / f.block;
  const auto* wd = static_cast<const uint8_t*>(w);
  for (int64_t j = 0; j < m; ++j) {
    const uint8_t* row = static_cast<const uint8_t*>(xq) + j * act_row_bytes(f, nb);
    const auto* xv = reinterpret_cast<const int8_t*>(row + nb * 4);
    for (int64_t i = 0; i < n; ++i) {
      const int64_t g = i / kRows, r = i % kRows;
      float acc = 0.f;
      for (int64_t b = 0; b < nb; ++b) {
        const uint8_t* gb = wd + (g * nb + b) * f.group_block;
        const auto* wq = reinterpret_cast<const int8_t*>(gb + f.quants);
        const int8_t* x = xv + b * f.block;
        float dx;
        std::memcpy(&dx, row + b * 4, 4);
        if (type == GGML_TYPE_Q4_K) {
          int32_t dot = 0, dot_min = 0;
          for (int64_t sb = 0; sb < 8; ++sb) {
            int32_t part = 0;
            for (int64_t e = 32 * sb; e < 32 * (sb + 1); ++e) part += q4_at(gb, e, r) * x[e];
            int16_t sum;
            std::memcpy(&sum, row + nb * (4 + f.block) + (b * 8 + sb) * 2, 2);
            dot += part * q4_scale(gb, sb, r);
            dot_min += sum * q4_min(gb, sb, r);
          }
          acc = std::fma(static_cast<float>(dot), f16(gb + r * 2) * dx, acc);
          acc = std::fma(-static_cast<float>(dot_min), f16(gb + 16 + r * 2) * dx, acc);
          continue;
        }
        int32_t dot = 0;
        for (int64_t s = 0; s < f.block / 16; ++s) {  // 16-column sub-blocks (Q6_K's scales; 1 for Q8_0)
          int32_t part = 0;
          for (int64_t e = 16 * s; e < 16 * (s + 1); ++e) {
            const int q = type == GGML_TYPE_Q6_K ? q6_at(gb, e, r) - 32 : wq[(e / 4) * 32 + r * 4 + e % 4];
            part += q * x[e];
          }
          dot += type == GGML_TYPE_Q6_K ? part * static_cast<int8_t>(gb[16 + s * 8 + r]) : part;
        }
        acc = std::fma(static_cast<float>(dot), f16(gb + r * 2) * dx, acc);
      }
      y[j * n + i] = acc;
    }
  }
}

}  // namespace vl3::kernels
