// readbw.c - sustained read bandwidth (the decode limit): sum of a 1 GiB array, best of N.
// Build: cc -O3 -march=native -ffast-math -fopenmp -o readbw tools/bench/readbw.c (fast-math lets the sums vectorize)
// Run:   OMP_NUM_THREADS=2 ./readbw [MiB=1024] [reps=5]   -> GB/s (1e9 bytes/s)
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char** argv) {
  size_t mib = argc > 1 ? (size_t)atol(argv[1]) : 1024;
  int reps = argc > 2 ? atoi(argv[2]) : 5;
  size_t n = mib * 1024 * 1024 / sizeof(float);
  float* a = aligned_alloc(64, n * sizeof(float));
  if (!a) return 1;
#pragma omp parallel for schedule(static)
  for (size_t i = 0; i < n; i++) a[i] = (float)(i & 15);
  double best = 1e30, sink = 0;
  for (int r = 0; r < reps; r++) {
    double t0 = omp_get_wtime(), total = 0;
#pragma omp parallel for schedule(static) reduction(+ : total)
    for (size_t i = 0; i < n; i += 64) {
      float s = 0;  // 8 independent 8-wide sums per 64 floats, vectorized by the compiler
      for (int j = 0; j < 64; j++) s += a[i + j];
      total += s;
    }
    double t = omp_get_wtime() - t0;
    sink += total;
    if (t < best) best = t;
  }
  printf("{\"threads\": %d, \"read_GBps\": %.2f, \"sink\": %g}\n", omp_get_max_threads(), n * sizeof(float) / best / 1e9, sink);
  return 0;
}
