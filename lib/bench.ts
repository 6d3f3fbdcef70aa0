/** Micro-benchmarks of the loaded native build (used by `videollama3 bench-matmul` and BENCHMARKS.md). */
import { availableParallelism } from 'node:os';
import { call, native } from './binding';
import { checkKnownKeys, intOption, stringOption } from './validate';

/** Options of {@link benchmarkMatmul}. */
export interface MatmulBenchmarkOptions {
  /**
   * ggml weight type: `f32`, `f16`, `bf16`, `q8_0`, `q4_K`, ... (default `q8_0`), or `q8_0x8`, `q6_Kx8`,
   * `q4_Kx8`: that type packed for our CPU kernels (native/kernels/int8_matmul.h; AVX2 CPUs).
   */
  type?: string;
  /** Rows of the activation matrix (tokens; 1 = decode-like, 512 = prefill-like). Default 1. */
  m?: number;
  /** Output features (weight rows). Default 4096. */
  n?: number;
  /** Input features (weight row length). Default 4096. */
  k?: number;
  /** CPU threads (1..512, capped to the core count). Default 1. */
  threads?: number;
  /** Timed repetitions after one warm-up; the best is reported. Default 5. */
  reps?: number;
}

/** Result of {@link benchmarkMatmul}. */
export interface MatmulBenchmarkResult {
  /** Best wall time of one multiply, in seconds. */
  secondsPerRep: number;
  /** 2·m·n·k / secondsPerRep, in GFLOP/s. */
  gflops: number;
}

/** Times one ggml matrix multiply on the CPU backend of the loaded build. */
export async function benchmarkMatmul(options: MatmulBenchmarkOptions = {}): Promise<MatmulBenchmarkResult> {
  checkKnownKeys('benchmarkMatmul', options, ['type', 'm', 'n', 'k', 'threads', 'reps']);
  const opts = {
    type: options.type === undefined ? 'q8_0' : stringOption('type', options.type),
    m: intOption('m', options.m, 1, 65536, 1),
    n: intOption('n', options.n, 1, 65536, 4096),
    k: intOption('k', options.k, 1, 65536, 4096),
    threads: Math.min(availableParallelism(), intOption('threads', options.threads, 1, 512, 1)), // spinning extra threads only slow it
    reps: intOption('reps', options.reps, 1, 1000, 5),
  };
  return call(() => native().benchMatmul(opts));
}
