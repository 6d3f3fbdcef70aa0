// Regression tests for what a hostile user found: workers ended mid-call, model files that load but
// would crash at first use, non-regular files, thread counts past the core count, dispose() with work
// running, untyped errors, and prompts refused only after all their vision work.
import { execFile, execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { benchmarkMatmul, convertModel, loadModel, readGgufInfo, VideoLlama3Error, type Model } from '../lib/index';
import { makeTinyCheckpoint } from './helpers/checkpoint';
import { GGML_TYPE, ggufLayout, kvSlot, setNumber } from './helpers/gguf';

const work = mkdtempSync(join(tmpdir(), 'vl3-reliability-'));
const IMAGE = join(__dirname, 'fixtures', 'images', 'chelsea_palette_226x150.png');
const MODEL = join(work, 'model');
const DIST = join(__dirname, '..', 'dist', 'index.js');
const posix = process.platform !== 'win32';
let model: Model;

beforeAll(async () => {
  const src = join(work, 'hf');
  makeTinyCheckpoint(src, { layout: 'video_llama_3', tied: true, dtype: 'F32', values: 'normal', text: { layers: 2 } });
  writeFileSync(join(src, 'preprocessor_config.json'), JSON.stringify({ min_pixels: 8 * 196, max_pixels: 64 * 196 }));
  await convertModel({ input: src, output: MODEL, type: 'f32' });
  model = await loadModel({ model: MODEL, threads: 1, contextSize: 512 });
});
afterAll(async () => {
  await model?.dispose();
  rmSync(work, { recursive: true, force: true });
});

async function failure(p: Promise<unknown> | (() => unknown)): Promise<VideoLlama3Error> {
  const err = await (typeof p === 'function' ? Promise.resolve().then(p) : p).then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(VideoLlama3Error);
  return err as VideoLlama3Error;
}
async function expectCode(p: Promise<unknown> | (() => unknown), code: string, ...fragments: string[]): Promise<void> {
  const e = await failure(p);
  expect(e.code, e.message).toBe(code);
  for (const f of fragments) expect(e.message).toContain(f);
}

let copies = 0;
/** A copy of the tiny model with `edit` applied to one of its files' bytes. */
function editedModel(file: 'llm.gguf' | 'vision.gguf', edit: (buf: Buffer) => void): string {
  const dir = join(work, `edited-${copies++}`);
  mkdirSync(dir);
  for (const f of ['llm.gguf', 'vision.gguf']) copyFileSync(join(MODEL, f), join(dir, f));
  const buf = readFileSync(join(dir, file));
  edit(buf);
  writeFileSync(join(dir, file), buf);
  return dir;
}

describe('model files that load but cannot run are refused at load time', () => {
  for (const [file, key] of [
    ['llm.gguf', 'qwen2.attention.layer_norm_rms_epsilon'],
    ['vision.gguf', 'vl3.vision.attention.layer_norm_epsilon'],
  ] as const) {
    for (const eps of [Number.NaN, -1e-6, Number.POSITIVE_INFINITY]) {
      it(`${key} = ${eps}`, async () => {
        const dir = editedModel(file, (b) => setNumber(b, kvSlot(b, key), eps));
        await expectCode(loadModel({ model: dir, threads: 1 }), 'INVALID_MODEL', key);
      });
    }
  }

  it('matrix weights stored as integer or f64 types (same byte size, so ggml accepts the file)', async () => {
    for (const [file, tensor] of [
      ['llm.gguf', 'blk.0.attn_q.weight'],
      ['llm.gguf', 'token_embd.weight'],
      ['vision.gguf', 'v.blk.0.ffn_up.weight'],
      ['vision.gguf', 'mm.0.weight'],
    ] as const) {
      const dir = editedModel(file, (b) => {
        const t = ggufLayout(b).tensors.find((x) => x.name === tensor)!;
        expect(t.type).toBe(GGML_TYPE.f32);
        b.writeUInt32LE(GGML_TYPE.i32, t.typeOffset); // 4 bytes an element, as f32
      });
      await expectCode(loadModel({ model: dir, threads: 1 }), 'INVALID_MODEL', tensor, 'i32');
    }
  });

  it('preprocessing constants and token ids no request could use', async () => {
    const cases: [string, number][] = [
      ['vl3.preprocess.image.max_pixels', 0],
      ['vl3.preprocess.image.min_pixels', 0],
      ['vl3.preprocess.video.fps', Number.NaN],
      ['vl3.preprocess.video.max_frames', 0],
      ['vl3.image_token_id', 1e9],
      ['vl3.video_token_id', 4_000_000_000],
    ];
    for (const [key, value] of cases) {
      const dir = editedModel('vision.gguf', (b) => setNumber(b, kvSlot(b, key), value));
      await expectCode(loadModel({ model: dir, threads: 1 }), 'INVALID_MODEL', key);
    }
    const nanStd = editedModel('vision.gguf', (b) => setNumber(b, kvSlot(b, 'vl3.preprocess.image_std'), Number.NaN, 1));
    await expectCode(loadModel({ model: nanStd, threads: 1 }), 'INVALID_MODEL', 'mean/std');
  });
});

describe('non-regular files settle at once', () => {
  it.skipIf(!posix)('a FIFO as llm.gguf, and FIFOs and devices given to readGgufInfo', async () => {
    const dir = join(work, 'fifo-model');
    mkdirSync(dir);
    copyFileSync(join(MODEL, 'vision.gguf'), join(dir, 'vision.gguf'));
    execFileSync('mkfifo', [join(dir, 'llm.gguf')]);
    const t0 = Date.now();
    await expectCode(loadModel({ model: dir, threads: 1 }), 'INVALID_MODEL', 'not a regular file');
    await expectCode(readGgufInfo(join(dir, 'llm.gguf')), 'IO_ERROR', 'not a regular file');
    await expectCode(readGgufInfo('/dev/zero'), 'IO_ERROR', 'not a regular file');
    await expectCode(readGgufInfo(dir), 'IO_ERROR', 'directory');
    expect(Date.now() - t0).toBeLessThan(5000);
  });
});

describe('options that would hurt are capped or refused with a typed error', () => {
  it('threads above the core count run as many threads as there are cores', async () => {
    const m = await loadModel({ model: MODEL, threads: 64 });
    try {
      expect(m.info.threads).toBe(Math.min(64, availableParallelism()));
      expect((await m.complete({ text: 'hi' }, { maxTokens: 2 })).tokens.length).toBeGreaterThan(0);
    } finally {
      await m.dispose();
    }
    await expectCode(loadModel({ model: MODEL, threads: 257 }), 'INVALID_ARGUMENT', 'threads');
  });

  it('benchmarkMatmul with types that have no matrix kernel or quantizer', async () => {
    for (const type of ['i32', 'f64', 'iq2_xxs', 'q8_K', 'i8']) {
      await expectCode(benchmarkMatmul({ type, m: 1, n: 32, k: 256, reps: 1 }), 'INVALID_ARGUMENT', type);
    }
    expect((await benchmarkMatmul({ type: 'q8_0', m: 1, n: 32, k: 256, reps: 1 })).gflops).toBeGreaterThan(0);
  });

  it('null options, signal look-alikes and a 201:1 image are INVALID_ARGUMENT', async () => {
    await expectCode(model.encode(IMAGE, null as never), 'INVALID_ARGUMENT', 'options');
    await expectCode(model.estimate({ text: 'hi' }, null as never), 'INVALID_ARGUMENT', 'options');
    await expectCode(() => model.tokenize('hi', null as never), 'INVALID_ARGUMENT', 'options');
    await expectCode(() => model.tokenize('hi', { special: 'yes' as never }), 'INVALID_ARGUMENT', 'special');
    await expectCode(model.complete({ text: 'hi' }, { signal: { aborted: false } as never }), 'INVALID_ARGUMENT', 'AbortSignal');
    await expectCode(model.encode(IMAGE, { signal: { aborted: false } as never }), 'INVALID_ARGUMENT', 'AbortSignal');
    await expectCode(model.encode(IMAGE, { kind: 'audio' as never }), 'INVALID_ARGUMENT', 'kind');
    const wide = { data: new Uint8Array(201 * 3 * 1), width: 201 * 1, height: 1, channels: 3 as const };
    await expectCode(model.estimate({ text: 'hi', images: [wide] }), 'INVALID_ARGUMENT', 'aspect');
    await expectCode(model.complete({ text: 'hi', images: [wide] }, { maxTokens: 1 }), 'INVALID_ARGUMENT', 'aspect');
    expect((await model.complete({ text: 'hi' }, { maxTokens: 2 })).tokens.length).toBeGreaterThan(0); // still serving
  });
});

describe('a prompt that cannot fit is refused before its vision work', () => {
  it('many images: refused from their headers, before any is encoded', async () => {
    const m = await loadModel({ model: MODEL, threads: 1, contextSize: 64 });
    try {
      const one = (await m.estimate({ text: '', images: [IMAGE] })).visionTokens;
      const t0 = performance.now();
      await expectCode(m.complete({ text: 'Compare.', images: Array<string>(200).fill(IMAGE) }), 'INVALID_ARGUMENT', `at least ${200 * one}`);
      const rejectMs = performance.now() - t0;
      const t1 = performance.now();
      await m.encode(IMAGE);
      const encodeMs = performance.now() - t1;
      expect(rejectMs).toBeLessThan(Math.max(2000, 50 * encodeMs)); // 200 encodes would take 200x
    } finally {
      await m.dispose();
    }
  });

  it('a long video of decoded frames: refused at the first frame past the context', async () => {
    const m = await loadModel({ model: MODEL, threads: 1, contextSize: 64 });
    try {
      const frames = Array.from({ length: 300 }, (_, i) => {
        const data = new Uint8Array(64 * 64 * 3);
        for (let j = 0; j < data.length; j++) data[j] = (j * 7 + i * 31) & 0xff; // every frame differs
        return { data, width: 64, height: 64, timestamp: i };
      });
      await expectCode(m.complete({ text: 'What happens?', videos: [frames] }, { maxTokens: 1 }), 'INVALID_ARGUMENT', 'at least');
    } finally {
      await m.dispose();
    }
  });
});

describe('dispose() with work running', () => {
  it("lets running generations finish, refuses new calls with 'DISPOSED'", async () => {
    const m = await loadModel({ model: MODEL, threads: 1 });
    const running = m.complete({ text: 'Describe.', images: [IMAGE] }, { maxTokens: 8 });
    const alone = (await model.complete({ text: 'Describe.', images: [IMAGE] }, { maxTokens: 8 })).tokens;
    const disposed = m.dispose();
    await expectCode(m.complete({ text: 'hi' }), 'DISPOSED');
    await expectCode(m.generate({ text: 'hi' }).result, 'DISPOSED'); // a Generation that rejects, not a throw
    await expectCode(m.encode(IMAGE), 'DISPOSED');
    await expectCode(() => m.tokenize('hi'), 'DISPOSED');
    const r = await running;
    expect(r.finishReason).not.toBe('cancelled');
    expect(r.tokens).toEqual(alone);
    await disposed;
    await m.dispose(); // again: nothing left to do
  });

  it("{ running: 'cancel' } ends generations as 'cancelled' and rejects encodes with ABORTED", async () => {
    const m = await loadModel({ model: MODEL, threads: 1 });
    const gen = m.generate({ text: 'Describe.', images: [IMAGE] }, { maxTokens: 400 });
    const it = gen[Symbol.asyncIterator]();
    await it.next(); // streaming
    expect(m.stats().sequences).toBe(1);
    expect(m.stats().kvCacheBytes).toBeGreaterThan(0);
    const early = m.complete({ text: 'Describe.', images: [IMAGE] }, { maxTokens: 400 }); // queued behind it
    const encoding = m.encode(IMAGE).then(() => undefined, (err: unknown) => err);
    await m.dispose({ running: 'cancel' });
    const r = await gen.result;
    expect(m.stats()).toEqual({ running: 0, sequences: 0, kvCacheBytes: 0 });
    expect(r.finishReason).toBe('cancelled');
    expect(r.tokens.length).toBeLessThan(400);
    expect((await early).finishReason).toBe('cancelled');
    const e = await encoding;
    if (e !== undefined) expect((e as VideoLlama3Error).code).toBe('ABORTED'); // unless it had finished
  });

  it('an abort still rejects with signal.reason', async () => {
    const ac = new AbortController();
    const p = model.complete({ text: 'Describe.', images: [IMAGE] }, { maxTokens: 400, signal: ac.signal });
    setTimeout(() => ac.abort(new Error('user left')), 20);
    await expect(p).rejects.toThrow('user left');
  });
});

// A worker ended mid-call (worker.terminate(), or process.exit() inside it) used to end the whole
// process in std::terminate: node-addon-api threw a C++ exception out of a completion callback
// into an environment that could no longer take a JS exception.
const WORKER_CHILD = `
const { Worker, isMainThread, workerData } = require('node:worker_threads');
const lib = require(${JSON.stringify(DIST)});
const [mode, dir, image, rounds] = isMainThread ? process.argv.slice(2) : [workerData.mode, workerData.dir, workerData.image];
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
async function work() {
  if (mode === 'load-once') return (await lib.loadModel({ model: dir, threads: 1 })).dispose();
  if (mode === 'load') for (;;) await (await lib.loadModel({ model: dir, threads: 1 })).dispose();
  if (mode === 'info') for (;;) await lib.readGgufInfo(dir + '/llm.gguf');
  const m = await lib.loadModel({ model: dir, threads: 1 });
  if (mode === 'tokenize') for (;;) { m.tokenize('hello world '.repeat(50)); await new Promise(setImmediate); }
  if (mode === 'encode') for (;;) await m.encode(image);
  if (mode === 'generate') for (;;) await m.complete({ text: 'hi', images: [image] }, { maxTokens: 20 });
  if (mode === 'exit') { m.complete({ text: 'hi', images: [image] }, { maxTokens: 20 }); await sleep(Math.random() * 30); process.exit(0); }
}
if (!isMainThread) work();
else (async () => {
  // Warm-up: whole loads in workers first (the addon's pages, the allocator's per-thread arenas),
  // so that what the terminated workers leave behind is measured, not what the first ones set up.
  for (let i = 0; i < 8; i++) {
    const w = new Worker(__filename, { workerData: { mode: 'load-once', dir, image } });
    await new Promise((r) => w.once('exit', r));
  }
  global.gc?.();
  await sleep(100);
  const rssWarm = process.memoryUsage().rss;
  for (let i = 0; i < Number(rounds); i++) {
    const w = new Worker(__filename, { workerData: { mode, dir, image } });
    w.on('error', () => {});
    await sleep(10 + Math.random() * 120);
    await w.terminate();
  }
  global.gc?.();
  await sleep(200);
  const rss = process.memoryUsage().rss; // before this thread loads a model of its own
  const m = await lib.loadModel({ model: dir, threads: 1 });
  const r = await m.complete({ text: 'hi' }, { maxTokens: 2 });
  await m.dispose();
  console.log(JSON.stringify({ tokens: r.tokens.length, rssWarm, rss }));
})();
`;

describe.skipIf(!existsSync(DIST))('terminating a worker mid-call never ends the process (dist/ built by npm install)', () => {
  const run = (mode: string, rounds: number): Promise<{ tokens: number; rssWarm: number; rss: number }> => {
    const file = join(work, 'worker-child.cjs');
    writeFileSync(file, WORKER_CHILD);
    return new Promise((resolve, reject) => {
      execFile(process.execPath, ['--expose-gc', file, mode, MODEL, IMAGE, String(rounds)], { timeout: 120_000 }, (err, stdout, stderr) =>
        err ? reject(new Error(`${mode}: ${err.message} (exit ${String(err.code)}, signal ${String(err.signal)})\n${stderr}`)) : resolve(JSON.parse(stdout)),
      );
    });
  };
  for (const mode of ['load', 'info', 'tokenize', 'encode', 'generate', 'exit']) {
    it(`during ${mode}`, async () => {
      expect((await run(mode, 6)).tokens).toBeGreaterThan(0);
    });
  }

  it('40 workers loading a model, terminated at random points: the process lives on and its memory returns', async () => {
    const r = await run('load', 40);
    expect(r.tokens).toBeGreaterThan(0);
    expect(r.rss / r.rssWarm, JSON.stringify(r)).toBeLessThan(1.1);
  });
});
