// Videos in prompts: sampling, pruning, "Time t.ts:" layout, estimate() before encoding,
// encode-once reuse, and typed errors — on a tiny random model. Needs the ffmpeg CLI.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { convertModel, loadModel, VideoLlama3Error, type Model } from '../lib/index';
import { makeTinyCheckpoint } from './helpers/checkpoint';

function hasFfmpeg(): boolean {
  try {
    execFileSync('ffmpeg', ['-version'], { stdio: 'ignore' });
    execFileSync('ffprobe', ['-version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

const CLIP = join(__dirname, 'fixtures', 'videos', 'synthetic_static_motion_cut_12s.mp4');
const work = mkdtempSync(join(tmpdir(), 'vl3-video-gen-'));
let model: Model;

describe.skipIf(!hasFfmpeg())('videos in prompts (ffmpeg found)', () => {
  beforeAll(async () => {
    const src = join(work, 'hf');
    makeTinyCheckpoint(src, { layout: 'video_llama_3', dtype: 'F32', values: 'normal' });
    writeFileSync(join(src, 'preprocessor_config.json'), JSON.stringify({ min_pixels: 8 * 196, max_pixels: 32 * 196 }));
    writeFileSync(
      join(src, 'video_preprocessor_config.json'),
      JSON.stringify({ size: { shortest_edge: 4 * 784, longest_edge: 16 * 784 * 12 }, fps: 1, max_frames: 12, min_frames: 4 }),
    );
    await convertModel({ input: src, output: join(work, 'model'), type: 'f32' });
    model = await loadModel({ model: join(work, 'model'), threads: 2, contextSize: 1024 });
  });
  afterAll(async () => {
    await model?.dispose();
    rmSync(work, { recursive: true, force: true });
  });

  it('samples 1 fps, prunes static tokens and reports the per-frame layout', async () => {
    const r = await model.complete({ text: 'What happens?', videos: [CLIP] }, { maxTokens: 4 });
    expect(r.videos).toHaveLength(1);
    const v = r.videos![0]!;
    expect(v.timestamps).toEqual(Array.from({ length: 12 }, (_, i) => i)); // 12 s at 10 fps, 1 fps sampling
    expect(v.tokensPerFrame).toHaveLength(12);
    expect(v.tokensPerFrame[0]).toBeGreaterThan(1);
    expect(Math.min(...v.tokensPerFrame)).toBeGreaterThanOrEqual(1); // a static frame keeps its first token
    expect(v.tokensPerFrame.reduce((a, b) => a + b, 0)).toBeLessThan(v.tokensPerFrame[0]! * 12); // something was pruned
    expect(r.usage.visionTokens).toBe(v.tokensPerFrame.reduce((a, b) => a + b, 0));
  });

  it('estimate() predicts exactly what generation uses, before any encoding', async () => {
    const prompt = { text: 'What happens?', videos: [CLIP] };
    const est = await model.estimate(prompt, { maxTokens: 4 });
    const r = await model.complete(prompt, { maxTokens: 4 });
    expect(est.promptTokens).toBe(r.usage.promptTokens);
    expect(est.visionTokens).toBe(r.usage.visionTokens);
    expect(est.videos).toEqual(r.videos);
    expect(est.kvCacheBytes).toBeGreaterThan(0);
    expect(est.fits).toBe(true);
  });

  it('pruneThreshold 0 keeps every token; encode() once, ask many times', async () => {
    const all = await model.encode(CLIP, { pruneThreshold: 0 });
    const perFrame = all.video!.tokensPerFrame;
    expect(new Set(perFrame).size).toBe(1);
    const tokens = await model.encode(CLIP);
    expect(tokens.source).toBe('video');
    expect(tokens.shape[0]).toBeLessThan(all.shape[0]);
    const direct = await model.complete({ text: 'What happens?', videos: [CLIP] }, { maxTokens: 5 });
    const reused = await model.complete({ text: 'What happens?', videos: [tokens] }, { maxTokens: 5 });
    expect(reused.tokens).toEqual(direct.tokens);
    expect(reused.videos).toEqual(direct.videos);
  });

  it('gives typed errors for bad videos and keeps serving', async () => {
    const junk = join(work, 'junk.mp4');
    writeFileSync(junk, Buffer.from('definitely not a video'));
    const err = await model.complete({ text: 'x', videos: [junk] }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(VideoLlama3Error);
    expect((err as VideoLlama3Error).code).toBe('INVALID_ARGUMENT');
    const reason = new Error('stop');
    const c = new AbortController();
    const p = model.complete({ text: 'x', videos: [CLIP] }, { signal: c.signal });
    setTimeout(() => c.abort(reason), 20);
    await expect(p).rejects.toBe(reason);
    expect((await model.complete('still here', { maxTokens: 2 })).tokens.length).toBeGreaterThan(0);
  });
});
