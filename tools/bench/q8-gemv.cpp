// q8-gemv.cpp - how many bytes/s a Q8_0 matrix-vector product (the decode inner loop) streams on
// this machine: a loop shaped like ggml's AVX2 Q8_0 dot (one row at a time, one accumulator) and the
// same with two accumulators and software prefetch PF bytes ahead. 12 matrices of 8960x1536 (the
// 2B model's FFN shape, 175 MB: out of cache), best of 5; HOT=1 reuses one matrix (cache-resident).
// Build: c++ -O3 -march=native -std=c++17 -pthread -o q8-gemv tools/bench/q8-gemv.cpp
// Run:   ./q8-gemv [threads=1]
#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <thread>
#include <vector>

struct Block {  // ggml's block_q8_0 layout: fp16 scale + 32 int8
  uint16_t d;
  int8_t qs[32];
};
static_assert(sizeof(Block) == 34, "block_q8_0 is 34 bytes");

static inline float h2f(uint16_t h) { return _cvtsh_ss(h); }
static inline __m256 dot32(__m256i x, __m256i y) {  // 8 partial int32 sums of x·y, as floats
  const __m256i p = _mm256_maddubs_epi16(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x));
  return _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_set1_epi16(1), p));
}
static inline float hsum(__m256 v) {
  __m128 a = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  a = _mm_add_ps(a, _mm_movehl_ps(a, a));
  return _mm_cvtss_f32(_mm_add_ss(a, _mm_movehdup_ps(a)));
}
static inline __m256 term(const Block& w, const Block& x) {
  return _mm256_mul_ps(_mm256_set1_ps(h2f(w.d) * h2f(x.d)),
                       dot32(_mm256_loadu_si256((const __m256i*)w.qs), _mm256_loadu_si256((const __m256i*)x.qs)));
}

template <int PF>  // PF = 0: ggml's shape (one accumulator, no prefetch)
void gemv(const Block* W, const Block* x, float* y, int r0, int r1, int nb) {
  for (int r = r0; r < r1; r++) {
    const Block* w = W + (size_t)r * nb;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0;
    int b = 0;
    if (PF > 0) {
      for (; b + 2 <= nb; b += 2) {
        _mm_prefetch((const char*)(w + b) + PF, _MM_HINT_T0);
        _mm_prefetch((const char*)(w + b) + PF + 64, _MM_HINT_T0);
        a0 = _mm256_add_ps(a0, term(w[b], x[b]));
        a1 = _mm256_add_ps(a1, term(w[b + 1], x[b + 1]));
      }
    }
    for (; b < nb; b++) a0 = _mm256_add_ps(a0, term(w[b], x[b]));
    y[r] = hsum(_mm256_add_ps(a0, a1));
  }
}

int main(int argc, char** argv) {
  const int threads = argc > 1 ? std::atoi(argv[1]) : 1, K = 1536, N = 8960, L = 12, nb = K / 32;
  const bool hot = std::getenv("HOT") != nullptr;
  std::mt19937 g(1);
  std::vector<std::vector<Block>> Ws(L, std::vector<Block>((size_t)N * nb));
  for (auto& W : Ws)
    for (auto& b : W) {
      b.d = _cvtss_sh(0.001f * (g() % 100 + 1), 0);
      for (auto& q : b.qs) q = (int8_t)(g() % 255 - 127);
    }
  std::vector<Block> x(nb);
  for (auto& b : x) {
    b.d = _cvtss_sh(0.02f, 0);
    for (auto& q : b.qs) q = (int8_t)(g() % 255 - 127);
  }
  std::vector<float> y(N);
  auto run = [&](auto fn, const char* name) {
    double best = 1e9;
    for (int rep = 0; rep < 5; rep++) {
      const auto t = std::chrono::steady_clock::now();
      for (int l = 0; l < L; l++) {
        const Block* W = Ws[hot ? 0 : l].data();
        std::vector<std::thread> ts;
        for (int i = 1; i < threads; i++) ts.emplace_back([&, i] { fn(W, x.data(), y.data(), N * i / threads, N * (i + 1) / threads, nb); });
        fn(W, x.data(), y.data(), 0, N / threads, nb);
        for (auto& th : ts) th.join();
      }
      best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count());
    }
    std::printf("{\"kernel\": \"%s\", \"threads\": %d, \"GBps\": %.2f}\n", name, threads, (double)L * N * nb * 34 / best / 1e9);
  };
  run(gemv<0>, "ggml-shaped");
  run(gemv<512>, "prefetch512");
  run(gemv<1024>, "prefetch1024");
  run(gemv<2048>, "prefetch2048");
}
