// Our CUDA kernels (native/kernels) against their CPU references: resize + normalize + patchify,
// the video keep mask (token merging), and the m×m merge. The GPU comparisons need the CUDA build
// (`npm run build:cuda`) and an NVIDIA GPU and skip otherwise, saying why; the CPU references are
// checked here always, and every .cu file is compiled with nvcc whenever nvcc is installed.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { native } from '../lib/binding';
import { decodeImage } from '../lib/media/image';

const kernels = native().kernels;
const gpuReason = kernels.cudaUnavailableReason();
const HALF = [0.5, 0.5, 0.5];
const CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073];
const CLIP_STD = [0.26862954, 0.26130258, 0.27577711];

/** Deterministic pseudo-random bytes (xorshift32). */
function noise(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out[i] = x & 255;
  }
  return out;
}

/** A smooth gradient with noise, so resampling has structure to get wrong. */
function picture(w: number, h: number, seed: number): Uint8Array {
  const n = noise(w * h * 3, seed);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      for (let c = 0; c < 3; c++) {
        const i = (y * w + x) * 3 + c;
        n[i] = (((x * (c + 1) * 255) / w + (y * 255) / h) / 2 + (n[i]! & 31)) & 255;
      }
    }
  }
  return n;
}

function nvccPath(): string | undefined {
  const which = spawnSync('sh', ['-c', 'command -v nvcc'], { encoding: 'utf8' });
  if (which.status === 0 && which.stdout.trim()) return which.stdout.trim();
  return ['/usr/local/cuda/bin/nvcc'].find((p) => existsSync(p));
}

const nvcc = nvccPath();
const cuFiles = readdirSync(join(__dirname, '..', 'native', 'kernels')).filter((f) => f.endsWith('.cu'));

describe.skipIf(!nvcc)(`our .cu files compile with nvcc${nvcc ? '' : ' (skipped: nvcc not installed)'}`, () => {
  const out = mkdtempSync(join(tmpdir(), 'vl3-nvcc-'));
  it.each(cuFiles)('%s', (file) => {
    const res = spawnSync(
      nvcc!,
      ['-std=c++17', '-arch=sm_80', '-Werror', 'all-warnings', '-I', join(__dirname, '..', 'native'), '-c',
        join(__dirname, '..', 'native', 'kernels', file), '-o', join(out, `${file}.o`)],
      { encoding: 'utf8' },
    );
    expect(res.stderr + res.stdout).toBe('');
    expect(res.status).toBe(0);
  }, 120_000);
  afterAll(() => rmSync(out, { recursive: true, force: true }));
});

describe('CPU references', () => {
  it('merge_tokens_cpu averages each group of m*m rows in order', async () => {
    const rows = 8, dim = 3;
    const x = Float32Array.from({ length: rows * dim }, (_, i) => i * 0.25 - 1);
    const out = await kernels.mergeTokens(x, rows, dim, 2, { device: 'cpu' });
    const expected = new Float32Array(2 * dim);
    for (let t = 0; t < 2; t++) {
      for (let d = 0; d < dim; d++) {
        let s = Math.fround(0);
        for (let r = 0; r < 4; r++) s = Math.fround(s + x[(t * 4 + r) * dim + d]!);
        expected[t * dim + d] = Math.fround(s * 0.25);
      }
    }
    expect(Array.from(out)).toEqual(Array.from(expected));
    await expect(kernels.mergeTokens(x.subarray(0, 6 * dim), 6, dim, 2)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  });

  it('kernels.preprocess on the CPU is the image path (preprocessImage)', async () => {
    const img = await decodeImage(join(__dirname, 'fixtures', 'images', 'chelsea.png'));
    const pre = await native().preprocessImage(img.data, img.width, img.height, {
      patchSize: 14, mergeSize: 1, minPixels: 3136, maxPixels: 200_704, mean: CLIP_MEAN, std: CLIP_STD,
    });
    const k = await kernels.preprocess(img.data, img.width, img.height, {
      outWidth: pre.resizedWidth, outHeight: pre.resizedHeight, patchSize: 14, mergeSize: 1, mean: CLIP_MEAN, std: CLIP_STD, device: 'cpu',
    });
    expect(Buffer.from(k.pixels.buffer).equals(Buffer.from(pre.pixels.buffer))).toBe(true);
    expect(k.resized.equals(native().resizeBicubic(img.data, img.width, img.height, pre.resizedWidth, pre.resizedHeight))).toBe(true);
  });

  it("device 'cuda' without a usable GPU is DEVICE_UNAVAILABLE, and bad devices are rejected", async () => {
    const rgb = picture(28, 28, 1);
    const opts = { patchSize: 14, mergeSize: 1, minPixels: 3136, maxPixels: 200_704, mean: HALF, std: HALF };
    if (gpuReason) {
      expect(() => native().preprocessImage(rgb, 28, 28, { ...opts, device: 'cuda' })).toThrow(
        expect.objectContaining({ code: 'DEVICE_UNAVAILABLE' }) as Error,
      );
      expect(() => kernels.mergeTokens(new Float32Array(4), 4, 1, 2, { device: 'cuda' })).toThrow(/build:cuda|GPU/);
    }
    expect(() => native().preprocessImage(rgb, 28, 28, { ...opts, device: 'gpu' as never })).toThrow(/'cpu' or 'cuda'/);
  });
});

describe.skipIf(gpuReason !== '')(`CUDA kernels match their CPU references${gpuReason ? ` (skipped: ${gpuReason})` : ''}`, () => {
  const sizes: [string, number, number, number, number, number][] = [
    // name, source w, h, target w, h, merge
    ['downscale', 640, 480, 448, 336, 1],
    ['upscale', 100, 60, 224, 140, 1],
    ['one side only', 300, 112, 448, 112, 1],
    ['unchanged', 224, 224, 224, 224, 2],
    ['very tall (vertical pass first)', 6, 2000, 28, 1400, 2],
    ['video frame', 1280, 720, 504, 280, 2],
  ];
  it.each(sizes)('preprocess: %s', async (_name, w, h, ow, oh, merge) => {
    const rgb = picture(w, h, w * 7 + h);
    for (const [mean, std] of [[HALF, HALF], [CLIP_MEAN, CLIP_STD]] as const) {
      const o = { outWidth: ow, outHeight: oh, patchSize: 14, mergeSize: merge, mean: [...mean], std: [...std] };
      const cpu = await kernels.preprocess(rgb, w, h, { ...o, device: 'cpu' });
      const gpu = await kernels.preprocess(rgb, w, h, { ...o, device: 'cuda' });
      expect(gpu.resized.equals(cpu.resized)).toBe(true);
      expect(Buffer.from(gpu.pixels.buffer).equals(Buffer.from(cpu.pixels.buffer))).toBe(true);
    }
  });

  it('preprocessImage and the video preprocessor give the same bytes on the GPU', async () => {
    const img = await decodeImage(join(__dirname, 'fixtures', 'images', 'document_invoice_816x1056.png'));
    const opts = { patchSize: 14, mergeSize: 1, minPixels: 3136, maxPixels: 1_003_520, mean: CLIP_MEAN, std: CLIP_STD };
    const cpu = await native().preprocessImage(img.data, img.width, img.height, opts);
    const gpu = await native().preprocessImage(img.data, img.width, img.height, { ...opts, device: 'cuda' });
    expect(Buffer.from(gpu.pixels.buffer).equals(Buffer.from(cpu.pixels.buffer))).toBe(true);

    const vopts = { patchSize: 14, mergeSize: 2, height: 140, width: 252, mean: HALF, std: HALF, pruneThreshold: 0.1 };
    const a = native().createVideoPreprocessor(vopts);
    const b = native().createVideoPreprocessor({ ...vopts, device: 'cuda' });
    const base = picture(320, 180, 5);
    for (let f = 0; f < 4; f++) {
      const frame = Uint8Array.from(base);
      frame.fill(f * 60, 0, (320 * 180 * 3 * f) / 4);  // a growing changed region
      const x = await a.push(frame, 320, 180);
      const y = await b.push(frame, 320, 180);
      expect(Array.from(y.keep)).toEqual(Array.from(x.keep));
      expect(Buffer.from(y.pixels.buffer).equals(Buffer.from(x.pixels.buffer))).toBe(true);
    }
  });

  it('keep mask: identical at several thresholds, std settings and block sizes', async () => {
    const w = 280, h = 168;
    const prev = picture(w, h, 11);
    const cur = Uint8Array.from(prev);
    const delta = noise(w * h * 3, 12);
    for (let i = 0; i < cur.length; i++) {
      const region = Math.floor(i / 3 / w / 28) * 10 + Math.floor(((i / 3) % w) / 28);
      cur[i] = Math.min(255, Math.max(0, cur[i]! + ((delta[i]! % (region % 7 + 1)) - 3)));
    }
    for (const threshold of [0, 0.05, 0.1, 0.5, 3]) {
      for (const [mean, std] of [[HALF, HALF], [CLIP_MEAN, CLIP_STD]] as const) {
        for (const merge of [1, 2]) {
          const o = { patchSize: 14, mergeSize: merge, threshold, mean: [...mean], std: [...std] };
          const cpu = await kernels.keepMask(prev, cur, w, h, { ...o, device: 'cpu' });
          const gpu = await kernels.keepMask(prev, cur, w, h, { ...o, device: 'cuda' });
          expect(Array.from(gpu)).toEqual(Array.from(cpu));
        }
      }
    }
    const same = await kernels.keepMask(prev, prev, w, h, { patchSize: 14, mergeSize: 2, threshold: 0.1, mean: HALF, std: HALF, device: 'cuda' });
    expect(same.reduce((a, b) => a + b, 0)).toBe(1);  // nothing changed: token 0 kept
    expect(same[0]).toBe(1);
  });

  it('merge: equal to the CPU reference, and bad shapes are INVALID_ARGUMENT', async () => {
    for (const [rows, dim, m] of [[4, 1152, 2], [1024, 1536, 2], [9, 7, 3], [5, 3, 1]] as const) {
      const x = Float32Array.from(noise(rows * dim * 4, rows + dim), (v) => (v - 128) / 37);
      const x2 = x.subarray(0, rows * dim);
      const cpu = await kernels.mergeTokens(x2, rows, dim, m, { device: 'cpu' });
      const gpu = await kernels.mergeTokens(x2, rows, dim, m, { device: 'cuda' });
      expect(Buffer.from(gpu.buffer).equals(Buffer.from(cpu.buffer))).toBe(true);
    }
    await expect(kernels.mergeTokens(new Float32Array(6), 6, 1, 2, { device: 'cuda' })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  });
});

// Our packed CPU kernels (native/kernels/int8_matmul.h) that replace ggml's Q8_0, Q6_K and Q4_K
// matmuls on AVX2 machines: bit-identical to their scalar reference, and equal to ggml's mul_mat up
// to float summation order (same activation quantizer, same integer dot products).
const int8Reason = kernels.int8Matmul()
  ? ''
  : 'the int8 kernels are off here (they need AVX2/FMA/F16C and a build without AVX-512, and VL3_CPU_KERNELS unset)';
describe.skipIf(int8Reason !== '')(`int8 matmul kernels${int8Reason ? ` (skipped: ${int8Reason})` : ''}`, () => {
  // m <= 2 is decode (spans of groups per thread, taken from the backs once a thread's own is
  // done; more threads than groups; more threads than the 15 spans); the others cross the 4-row
  // step, the L2 row chunks and the thread split.
  it.each([
    ['q8_0', 1, 8, 32, 1],
    ['q8_0', 1, 256, 1536, 2],
    ['q8_0', 2, 16, 64, 3],
    ['q8_0', 1, 200, 64, 17],
    ['q4_K', 1, 64, 256, 5],
    ['q8_0', 3, 24, 64, 2],
    ['q8_0', 7, 40, 96, 3],
    ['q8_0', 64, 136, 1536, 2],
    ['q8_0', 37, 16, 8960, 2],
    ['q6_K', 1, 8, 256, 1],
    ['q6_K', 1, 64, 1536, 2],
    ['q6_K', 5, 24, 512, 2],
    ['q6_K', 70, 40, 1536, 3],
    ['q6_K', 21, 16, 8960, 2],
    ['q4_K', 1, 8, 256, 1],
    ['q4_K', 1, 64, 1536, 2],
    ['q4_K', 5, 24, 512, 2],
    ['q4_K', 70, 40, 1536, 3],
    ['q4_K', 21, 16, 8960, 2],
  ] as const)('%s m=%i n=%i k=%i threads=%i', async (type, m, n, k, threads) => {
    const r = await kernels.int8MatmulCheck(type, m, n, k, threads);
    expect(Buffer.from(r.packed.buffer).equals(Buffer.from(r.reference.buffer))).toBe(true);
    expect(Buffer.from(r.rowsPacked.buffer).equals(Buffer.from(r.rowsGgml.buffer))).toBe(true);  // embeddings
    expect(Buffer.from(r.activations).equals(Buffer.from(r.activationsGgml))).toBe(true);  // our quantizer = ggml's
    let scale = 0;
    for (const v of r.ggml) scale = Math.max(scale, Math.abs(v));
    let worst = 0;
    for (let i = 0; i < r.ggml.length; i++) worst = Math.max(worst, Math.abs(r.ggml[i]! - r.packed[i]!));
    expect(scale).toBeGreaterThan(1);
    expect(worst / scale).toBeLessThan(1e-5);
  });
});

// Our decode attention (native/kernels/attention.h): f32 scores and sums where ggml's flash attention
// rounds q and the V sums to f16, so it is compared with a double-precision reference tightly and
// with ggml loosely.
const attentionReason = kernels.attentionF16()
  ? ''
  : 'our attention is off here (it needs AVX2/FMA/F16C, and VL3_CPU_KERNELS unset)';
describe.skipIf(attentionReason !== '')(`decode attention${attentionReason ? ` (skipped: ${attentionReason})` : ''}`, () => {
  it.each([
    [1, 12, 2, 128, 1, 2],
    [1, 12, 2, 128, 77, 2],
    [1, 14, 2, 64, 600, 3],
    [1, 16, 1, 128, 300, 2],
    [1, 10, 2, 64, 50, 2],
    [2, 4, 4, 40, 9, 1],
    [3, 6, 3, 24, 33, 2],
  ] as const)('n=%i heads=%i kvHeads=%i headDim=%i positions=%i threads=%i', async (n, heads, kvHeads, headDim, positions, threads) => {
    const r = await kernels.attentionCheck(n, heads, kvHeads, headDim, positions, threads);
    let worstRef = 0;
    let worstGgml = 0;
    for (let i = 0; i < r.reference.length; i++) {
      worstRef = Math.max(worstRef, Math.abs(r.ours[i]! - r.reference[i]!));
      worstGgml = Math.max(worstGgml, Math.abs(r.ours[i]! - r.ggml[i]!));
    }
    expect(worstRef).toBeLessThan(2e-5);  // outputs are O(1): weighted means of N(0, 1) values
    expect(worstGgml).toBeLessThan(1e-2);  // ggml: 2-4e-3 off the reference here
  });
  // Decode's form: RoPE and the cache append in the same op. The new key and value must land in the
  // cache as the reference rounds them (ggml's rope angles differ from the exact tables by ~1e-6).
  it.each([
    [12, 2, 128, 1, 2],
    [12, 2, 128, 77, 2],
    [14, 2, 64, 600, 3],
    [16, 1, 128, 40, 4],
    [10, 2, 64, 50, 5],
    [6, 3, 24, 33, 1],
  ] as const)('appending: heads=%i kvHeads=%i headDim=%i positions=%i threads=%i', async (heads, kvHeads, headDim, positions, threads) => {
    const r = await kernels.attentionAppendCheck(heads, kvHeads, headDim, positions, threads);
    const worst = (a: Float32Array, b: Float32Array): number => a.reduce((m, x, i) => Math.max(m, Math.abs(x - b[i]!)), 0);
    expect(r.oursCache).toEqual(r.referenceCache);
    expect(worst(r.oursCache, r.ggmlCache)).toBeLessThan(1e-2);  // f16 steps of the rotated keys (|k| up to ~8)
    expect(worst(r.ours, r.reference)).toBeLessThan(2e-5);
    expect(worst(r.ours, r.ggml)).toBeLessThan(1e-2);
  });
});
