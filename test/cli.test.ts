// The `videollama3` command on a tiny model: generate (text and --json), encode (.npy), errors.
import { execFile, execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { convertModel } from '../lib/index';
import { makeTinyCheckpoint } from './helpers/checkpoint';

const run = promisify(execFile);
const CLI = join(__dirname, '..', 'dist', 'cli', 'main.js');
const IMAGE = join(__dirname, 'fixtures', 'images', 'chelsea_palette_226x150.png');
const work = mkdtempSync(join(tmpdir(), 'vl3-cli-'));
const model = join(work, 'model');

beforeAll(async () => {
  makeTinyCheckpoint(join(work, 'hf'), { layout: 'video_llama_3', dtype: 'F32', values: 'normal' });
  writeFileSync(join(work, 'hf', 'preprocessor_config.json'), JSON.stringify({ min_pixels: 8 * 196, max_pixels: 32 * 196 }));
  await convertModel({ input: join(work, 'hf'), output: model, type: 'f16' });
});
afterAll(() => rmSync(work, { recursive: true, force: true }));

async function cli(...args: string[]): Promise<{ stdout: string; stderr: string; code: number }> {
  try {
    const r = await run(process.execPath, [CLI, ...args], { encoding: 'utf8' });
    return { ...r, code: 0 };
  } catch (err) {
    const e = err as { stdout: string; stderr: string; code: number };
    return { stdout: e.stdout, stderr: e.stderr, code: e.code };
  }
}

describe.skipIf(!existsSync(CLI))('videollama3 CLI (dist/ built by npm install)', () => {
  it('generate --json prints text, tokens, logprobs, usage and timings', async () => {
    const r = await cli('generate', '--model', model, '--image', IMAGE, '--prompt', 'Describe.', '--max-tokens', '5', '--top-logprobs', '2', '--json');
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as { text: string; tokens: number[]; logprobs: unknown[][]; usage: { visionTokens: number }; finishReason: string; timings: object };
    expect(out.tokens.length).toBeGreaterThan(0);
    expect(out.logprobs[0]).toHaveLength(2);
    expect(out.usage.visionTokens).toBeGreaterThan(0);
    expect(['stop', 'length']).toContain(out.finishReason);
  });

  it('bench: warm-up, rounds of concurrent requests, per-stage percentiles as JSON or a table', async () => {
    const r = await cli('bench', '--model', model, '--image', IMAGE, '--max-tokens', '4', '--warmup', '1', '--reps', '2', '--concurrency', '2', '--json');
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as {
      plan: { reps: number; concurrency: number };
      rounds: { wallMs: number; requests: unknown[] }[];
      timings: Record<string, { p50: number; p90: number; max: number }>;
      usage: { visionTokens: number };
      aggregateTokensPerSecond: { p50: number };
      peakRssMiB: number;
    };
    expect(out.plan).toMatchObject({ reps: 2, concurrency: 2 });
    expect(out.rounds.map((x) => x.requests.length)).toEqual([2, 2]);
    expect(out.timings.totalMs!.p50).toBeGreaterThan(0);
    expect(out.timings.visionMs!.max).toBeGreaterThanOrEqual(out.timings.visionMs!.p50);
    expect(out.usage.visionTokens).toBeGreaterThan(0);
    expect(out.aggregateTokensPerSecond.p50).toBeGreaterThan(0);
    const table = await cli('bench', '--model', model, '--prompt', 'hi', '--max-tokens', '2', '--reps', '1', '--warmup', '0');
    expect(table.code, table.stderr).toBe(0);
    expect(table.stdout).toMatch(/time to first token\s+[\d.]+/);
    expect((await cli('bench', '--model', model, '--reps', '0')).code).not.toBe(0);
  });

  it('generate streams text; encode writes a .npy of the vision tokens', async () => {
    const g = await cli('generate', '--model', model, '--prompt', 'hello', '--max-tokens', '3');
    expect(g.code, g.stderr).toBe(0);
    const npy = join(work, 'x.npy');
    const e = await cli('encode', '--model', model, '--image', IMAGE, '--out', npy);
    expect(e.code, e.stderr).toBe(0);
    const bytes = readFileSync(npy);
    expect(bytes.subarray(0, 6).toString('latin1')).toBe('\x93NUMPY');
    expect(bytes.toString('latin1', 10, 80)).toMatch(/'descr': '<f4'.*'shape': \(\d+, 64\)/);
  });

  it('generate --video adds the per-video frame layout to --json', async () => {
    let ffmpeg = true;
    try {
      execFileSync('ffprobe', ['-version'], { stdio: 'ignore' });
    } catch {
      ffmpeg = false;
    }
    if (!ffmpeg) return;
    const clip = join(__dirname, 'fixtures', 'videos', 'testsrc2_3s_320x240_vp9.webm');
    const r = await cli('generate', '--model', model, '--video', clip, '--fps', '2', '--max-frames', '5', '--prompt', 'What happens?', '--max-tokens', '2', '--json');
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as { videos: { timestamps: number[]; tokensPerFrame: number[] }[] };
    expect(out.videos[0]!.timestamps).toHaveLength(5);
    expect(out.videos[0]!.tokensPerFrame).toHaveLength(5);
  });

  it('explains bad usage with exit code 2', async () => {
    expect((await cli('generate', '--prompt', 'x')).stderr).toContain('--model <dir> is required');
    expect((await cli('generate', '--model', model, '--prompt', 'x', '--max-tokens', 'lots')).stderr).toContain('--max-tokens expects a number');
    const bad = await cli('generate', '--model', join(work, 'nope'), '--prompt', 'x');
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('does not exist');
    expect((await cli('frobnicate')).stderr).toContain("unknown command 'frobnicate'");
  });
});
