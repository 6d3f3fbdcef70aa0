// Video frames: per-frame target size (spec §6.2), streaming resize (torchvision's antialiased
// bicubic, as the reference video processor) + patchify (the image path's, merge 2) and
// differential frame pruning (spec §6.4), against transformers'
// VideoLlama3VideoProcessor. Expected values: tools/reference/make_video_fixtures.py.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { native } from '../lib/binding';

interface VideoCase {
  name: string; width: number; height: number; frames: number; offset: number; gridH: number; gridW: number;
  mask: number[][]; maskByThreshold: Record<string, number[][]>;
  imagenet: { mean: number[]; std: number[]; mask: number[][] };
  pixelSum: number[]; pixelAbsSum: number[]; pixelHead: number[];
}
interface SizeCase { h: number; w: number; t: number; min: number; max: number; out: [number, number] }

const dir = join(__dirname, 'fixtures', 'video-preprocess');
const fixture = JSON.parse(readFileSync(join(dir, 'video.json'), 'utf8')) as {
  target: [number, number]; patchSize: number; mergeSize: number; cases: VideoCase[]; sizes: SizeCase[];
};
const blob = gunzipSync(readFileSync(join(dir, 'frames.bin.gz')));
const [TH, TW] = fixture.target;
const HALF = [0.5, 0.5, 0.5];

function frameOf(c: VideoCase, k: number): Buffer {
  const n = c.width * c.height * 3;
  return blob.subarray(c.offset + k * n, c.offset + (k + 1) * n);
}

function create(pruneThreshold = 0.1, mean = HALF, std = HALF, height = TH, width = TW) {
  return native().createVideoPreprocessor({ patchSize: 14, mergeSize: 2, height, width, mean, std, pruneThreshold });
}

async function run(c: VideoCase, threshold = 0.1, mean = HALF, std = HALF) {
  const pre = create(threshold, mean, std);
  const out = [];
  for (let k = 0; k < c.frames; k++) out.push(await pre.push(frameOf(c, k), c.width, c.height));
  return out;
}

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    return (e as { code?: string }).code;
  }
  return undefined;
}

describe('videoFrameSize', () => {
  it('matches the reference smart_resize with the per-frame budget max // T', () => {
    for (const s of fixture.sizes) {
      const r = native().videoFrameSize(s.h, s.w, s.t, { patchSize: 14, mergeSize: 2, minPixels: s.min, maxPixels: s.max });
      expect([r.height, r.width], JSON.stringify(s)).toEqual(s.out);
    }
  });
  it('gives 196x336 for 1280x720 at T = 180 (spec §6.2 example)', () => {
    const o = { patchSize: 14, mergeSize: 2, minPixels: 12544, maxPixels: 12845056 };
    expect(native().videoFrameSize(720, 1280, 180, o)).toEqual({ height: 196, width: 336 });
  });
  it('rejects bad arguments with INVALID_ARGUMENT', () => {
    const o = { patchSize: 14, mergeSize: 2, minPixels: 12544, maxPixels: 100 };
    expect(codeOf(() => native().videoFrameSize(720, 1280, 0, o))).toBe('INVALID_ARGUMENT');
    expect(codeOf(() => native().videoFrameSize(720, 1280, 101, o))).toBe('INVALID_ARGUMENT');
    expect(codeOf(() => native().videoFrameSize(0, 1280, 4, o))).toBe('INVALID_ARGUMENT');
    expect(codeOf(() => native().videoFrameSize(1, 1280, 4, { ...o, maxPixels: 1e9 }))).toBe('INVALID_ARGUMENT');
    expect(codeOf(() => native().videoFrameSize(72, 128, 4, { ...o, patchSize: 0 }))).toBe('INVALID_ARGUMENT');
  });
});

describe('createVideoPreprocessor', () => {
  for (const c of fixture.cases) {
    it(`keep masks and pixels of "${c.name}" match the reference`, async () => {
      const out = await run(c);
      expect(out.map((f) => Array.from(f.keep))).toEqual(c.mask);
      expect(out.map((f) => f.kept)).toEqual(c.mask.map((m) => m.reduce((a, b) => a + b, 0)));
      out.forEach((f, k) => {
        expect([f.gridH, f.gridW]).toEqual([c.gridH, c.gridW]);
        let sum = 0;
        let abs = 0;
        for (const v of f.pixels) {
          sum += v;
          abs += Math.abs(v);
        }
        // The reference's fused (p - 127.5) / 127.5 differs from the image path's rounding by ~1 ulp.
        expect(Math.abs(sum - c.pixelSum[k]!)).toBeLessThan(1e-2);
        expect(Math.abs(abs - c.pixelAbsSum[k]!)).toBeLessThan(1e-2);
      });
      for (let i = 0; i < 8; i++) expect(out[0]!.pixels[i]).toBeCloseTo(c.pixelHead[i]!, 6);
    });

    it(`"${c.name}": masks at other thresholds and with per-channel std match the reference`, async () => {
      for (const [thr, mask] of Object.entries(c.maskByThreshold)) {
        const out = await run(c, Number(thr));
        expect(out.map((f) => Array.from(f.keep)), `threshold ${thr}`).toEqual(mask);
      }
      const inet = await run(c, 0.1, c.imagenet.mean, c.imagenet.std);
      expect(inet.map((f) => Array.from(f.keep))).toEqual(c.imagenet.mask);
    });

    it(`"${c.name}": pixels are the torchvision-filter resize, patchified like the image path`, async () => {
      const pre = create();
      for (let k = 0; k < c.frames; k++) {
        const rgb = frameOf(c, k);
        const ref = await native().kernels.preprocess(rgb, c.width, c.height, {
          outWidth: TW, outHeight: TH, filter: 'torchvision', patchSize: 14, mergeSize: 2, mean: HALF, std: HALF, device: 'cpu',
        });
        const f = await pre.push(rgb, c.width, c.height);
        expect(Buffer.from(f.pixels.buffer).equals(Buffer.from(ref.pixels.buffer))).toBe(true);
      }
    });

    it(`"${c.name}": threshold 0 keeps every token`, async () => {
      const out = await run(c, 0);
      for (const f of out) {
        expect(f.kept).toBe(f.keep.length);
        expect(Array.from(f.keep).every((v) => v === 1)).toBe(true);
      }
    });
  }

  it('keeps every token of the first frame and token 0 of an unchanged frame', async () => {
    const c = fixture.cases.find((x) => x.name === 'threshold')!;
    const pre = create(0.1);
    const a = await pre.push(frameOf(c, 0), c.width, c.height);
    expect(a.kept).toBe(12);
    const b = await pre.push(frameOf(c, 0), c.width, c.height);
    expect(Array.from(b.keep)).toEqual([1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    expect(b.kept).toBe(1);
    // A huge threshold prunes everything but token 0 after the first frame.
    const big = create(1e6);
    expect((await big.push(frameOf(c, 0), c.width, c.height)).kept).toBe(12);
    expect(Array.from((await big.push(frameOf(c, 1), c.width, c.height)).keep)).toEqual([1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
  });

  it('applies the integer criterion S >= 118 at threshold 0.1 (mean = std = 0.5)', async () => {
    const c = fixture.cases.find((x) => x.name === 'threshold')!;
    const out = await run(c);
    // Token 0: S = 117, 1: 118, 2: 59 x 2, 3: one +117, 4: one +118, 5: 118 x -1.
    expect(Array.from(out[1]!.keep).slice(0, 7)).toEqual([0, 1, 1, 0, 1, 1, 0]);
  });

  it('rejects bad options, frames and overlapping pushes with INVALID_ARGUMENT', async () => {
    expect(codeOf(() => create(0.1, HALF, HALF, 85, TW))).toBe('INVALID_ARGUMENT');
    expect(codeOf(() => create(0.1, HALF, HALF, 0, TW))).toBe('INVALID_ARGUMENT');
    expect(codeOf(() => create(-1))).toBe('INVALID_ARGUMENT');
    expect(codeOf(() => create(Number.NaN))).toBe('INVALID_ARGUMENT');
    expect(codeOf(() => create(0.1, HALF, [0.5, 0, 0.5]))).toBe('INVALID_ARGUMENT');
    expect(codeOf(() => create(0.1, [0.5, 0.5], HALF))).toBe('INVALID_ARGUMENT');

    const c = fixture.cases[0]!;
    const pre = create();
    expect(codeOf(() => pre.push(Buffer.alloc(10), c.width, c.height))).toBe('INVALID_ARGUMENT');
    expect(codeOf(() => pre.push(frameOf(c, 0), 0, c.height))).toBe('INVALID_ARGUMENT');
    const first = pre.push(frameOf(c, 0), c.width, c.height);
    expect(codeOf(() => pre.push(frameOf(c, 1), c.width, c.height))).toBe('INVALID_ARGUMENT');
    await first;
    // The frame size may not change mid-video; the preprocessor stays usable afterwards.
    const r = fixture.cases.find((x) => x.name === 'resize')!;
    const err = await pre.push(frameOf(r, 0), r.width, r.height).then(() => undefined, (e: { code?: string }) => e);
    expect(err?.code).toBe('INVALID_ARGUMENT');
    expect((await pre.push(frameOf(c, 1), c.width, c.height)).kept).toBe(c.mask[1]!.reduce((a, b) => a + b, 0));
  });
});
