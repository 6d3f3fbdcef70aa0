// The README's Electron-style example runs as written: a worker thread loads the model and streams
// a reply to the main thread, is terminated in the middle of its generation, and the main process
// carries on (a second worker answers in full).
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { convertModel } from '../lib/index';
import { makeTinyCheckpoint } from './helpers/checkpoint';

const ROOT = join(__dirname, '..');
const work = mkdtempSync(join(tmpdir(), 'vl3-examples-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe.skipIf(!existsSync(join(ROOT, 'dist', 'index.mjs')))('examples/model-worker.mjs (dist/ built by npm install)', () => {
  beforeAll(async () => {
    const src = join(work, 'hf');
    makeTinyCheckpoint(src, { layout: 'video_llama_3', tied: true, dtype: 'F32', values: 'normal', text: { layers: 2 } });
    writeFileSync(join(src, 'preprocessor_config.json'), JSON.stringify({ min_pixels: 8 * 196, max_pixels: 64 * 196 }));
    await convertModel({ input: src, output: join(work, 'model'), type: 'f32' });
  });

  it('streams from a worker, survives terminating it mid-generation, and serves again', async () => {
    const image = join(__dirname, 'fixtures', 'images', 'rocket.jpg');
    const { out, code, signal } = await new Promise<{ out: string; code: number | null; signal: string | null }>((resolve) => {
      execFile(process.execPath, [join(ROOT, 'examples', 'model-worker.mjs'), join(work, 'model'), image, '--stop-after', '3'], { cwd: ROOT, timeout: 60_000 }, (err, stdout) =>
        resolve({ out: stdout, code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, signal: err?.signal ?? null }),
      );
    });
    expect(signal).toBeNull();
    expect(code, out).toBe(0);
    expect(out).toContain('[main] first worker terminated after 3 chunks');
    expect(out).toMatch(/\[main\] second worker finished \((length|stop)\) after \d+ chunks; \d+ timer ticks meanwhile/);
  });
});
