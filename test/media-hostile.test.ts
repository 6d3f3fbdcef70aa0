// Hostile media input: image paths that never end (devices, FIFOs) or are far too large, decoded-frame
// sources that stall, and malformed frame arrays. Each fails fast with a typed error; an abort rejects
// with signal.reason. The last block runs the same inputs through the public API on a tiny model.
import { execFileSync } from 'node:child_process';
import { closeSync, constants, mkdtempSync, openSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { getEventListeners } from 'node:events';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { VideoLlama3Error } from '../lib/errors';
import { decodeImage } from '../lib/media/image';
import { planVideo, sampleVideoFrames, type DecodedFrame } from '../lib/media/video';
import { convertModel, loadModel, type Model } from '../lib/index';
import { makeTinyCheckpoint } from './helpers/checkpoint';

const work = mkdtempSync(join(tmpdir(), 'vl3-hostile-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** Settles as `p`, or fails the test after `ms` instead of hanging it. */
function within<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`did not settle within ${ms} ms`)), ms);
  });
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

async function failure(p: Promise<unknown>, code: string, ...fragments: string[]): Promise<VideoLlama3Error> {
  const err = await within(p, 5000).then(
    () => {
      throw new Error('expected a rejection');
    },
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(VideoLlama3Error);
  expect((err as VideoLlama3Error).code).toBe(code);
  for (const f of fragments) expect((err as Error).message).toContain(f);
  return err as VideoLlama3Error;
}

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

const frame = (t: number, w = 4, h = 2): DecodedFrame => ({ data: Buffer.alloc(w * h * 3, 7), width: w, height: h, timestamp: t });

/** An async iterable that yields `frames`, then never answers next() again; records return() calls. */
function stalling(frames: DecodedFrame[]) {
  const returned = vi.fn(() => new Promise<IteratorResult<DecodedFrame>>(() => {})); // as stuck as next()
  let nexts = 0;
  const iterable: AsyncIterable<DecodedFrame> = {
    [Symbol.asyncIterator]: () => ({
      next: (): Promise<IteratorResult<DecodedFrame>> => {
        nexts++;
        const f = frames.shift();
        return f ? Promise.resolve({ done: false, value: f }) : new Promise(() => {});
      },
      return: returned,
    }),
  };
  return { iterable, returned, nexts: () => nexts };
}

describe.skipIf(process.platform === 'win32')('image paths that are not regular files', () => {
  it('/dev/zero is refused at once, before any read', async () => {
    await failure(decodeImage('/dev/zero'), 'IO_ERROR', 'Cannot read image file "/dev/zero"', 'it is a device', 'pass the path of an image file');
  });

  it('a FIFO is refused without opening it (an open would block until a writer appears)', async () => {
    const fifo = join(work, 'image.png');
    execFileSync('mkfifo', [fifo]);
    try {
      await failure(decodeImage(fifo), 'IO_ERROR', `file ${JSON.stringify(fifo)}`, 'it is a FIFO');
    } finally {
      // Should a regression leave a reader blocked on the FIFO, a writer coming and going releases it.
      try {
        closeSync(openSync(fifo, constants.O_WRONLY | constants.O_NONBLOCK));
      } catch {
        // ENXIO: no reader, as expected.
      }
    }
  });
});

describe('image file size cap', () => {
  it('a file larger than maxPixels can need is refused from its size, unread', async () => {
    const big = join(work, 'big.png');
    writeFileSync(big, Buffer.from('\x89PNG\r\n\x1a\n', 'latin1'));
    truncateSync(big, 65 * 1024 * 1024); // sparse: no disk used
    // maxPixels 1: the cap is 8 bytes + 64 MiB.
    await failure(decodeImage(big, { maxPixels: 1 }), 'INVALID_ARGUMENT', `${65 * 1024 * 1024} bytes, over the limit of ${8 + 64 * 1024 * 1024} bytes`, 'raise maxPixels');
    // Within the default cap the same file is read and rejected by the decoder instead.
    await failure(decodeImage(big), 'INVALID_ARGUMENT', 'Cannot decode image');
  });
});

describe('decoded-frame sources that stall', () => {
  it('an abort rejects with signal.reason at once and calls return() without awaiting it', async () => {
    const src = stalling([frame(0), frame(0.5)]);
    const c = new AbortController();
    const reason = new Error('user gave up');
    const p = planVideo(src.iterable, { signal: c.signal });
    setTimeout(() => c.abort(reason), 30);
    await expect(within(p, 2000)).rejects.toBe(reason);
    expect(src.nexts()).toBe(3);
    expect(src.returned).toHaveBeenCalledTimes(1);
    expect(getEventListeners(c.signal, 'abort')).toHaveLength(0);
  });

  it('an async generator stuck in an await is abandoned the same way', async () => {
    async function* gen(): AsyncGenerator<DecodedFrame> {
      yield frame(0);
      await new Promise(() => {});
    }
    const c = new AbortController();
    const p = collect(sampleVideoFrames(gen(), { signal: c.signal }));
    setTimeout(() => c.abort(), 30);
    const err = await within(p, 2000).catch((e: unknown) => e);
    expect(err).toBe(c.signal.reason);
    expect((err as Error).name).toBe('AbortError');
  });

  it('an already aborted signal rejects before next() is called', async () => {
    const src = stalling([frame(0)]);
    const reason = new Error('too late');
    await expect(within(planVideo(src.iterable, { signal: AbortSignal.abort(reason) }), 2000)).rejects.toBe(reason);
    expect(src.nexts()).toBe(0);
  });

  it('a source that ends reads normally and leaves no abort listener behind', async () => {
    async function* gen(): AsyncGenerator<DecodedFrame> {
      for (let i = 0; i < 40; i++) yield frame(i / 10);
    }
    const c = new AbortController();
    const plan = await planVideo(gen(), { signal: c.signal });
    expect(plan.metadata.frameCount).toBe(40);
    expect(getEventListeners(c.signal, 'abort')).toHaveLength(0);
    expect(await collect(plan.frames())).toHaveLength(4);
  });

  it('a broken iterator protocol is INVALID_ARGUMENT, not a TypeError', async () => {
    const notIterator = { [Symbol.asyncIterator]: () => 42 } as unknown as AsyncIterable<DecodedFrame>;
    await failure(planVideo(notIterator), 'INVALID_ARGUMENT', 'an async iterator', 'received 42');
    let n = 0;
    const badResult = {
      [Symbol.asyncIterator]: () => ({ next: async () => (n++ === 0 ? { done: false, value: frame(0) } : undefined) }),
    } as unknown as AsyncIterable<DecodedFrame>;
    await failure(planVideo(badResult), 'INVALID_ARGUMENT', 'iterator result of frames[1]', 'received undefined');
  });
});

describe('malformed frame arrays', () => {
  it('holes in a sparse array name their index', async () => {
    await failure(planVideo(new Array<DecodedFrame>(3)), 'INVALID_ARGUMENT', 'frames[0] is missing', 'sparse array of 3');
    const gap = [frame(0), , frame(1)] as DecodedFrame[]; // a hole at index 1
    await failure(planVideo(gap), 'INVALID_ARGUMENT', 'frames[1] is missing');
    await failure(collect(sampleVideoFrames(gap)), 'INVALID_ARGUMENT', 'frames[1] is missing');
  });

  it.each([
    ['a null entry', [frame(0), null], 'frames[1]', 'received null'],
    ['an undefined entry', [frame(0), undefined], 'frames[1]', 'received undefined'],
    ['a number entry', [7], 'frames[0]', 'received 7'],
    ['data as a string', [{ ...frame(0), data: 'pixels' }], 'frames[0].data', 'received "pixels"'],
    ['data as a plain array', [{ ...frame(0), data: [1, 2, 3] }], 'frames[0].data', 'received an array'],
    ['data as a Float32Array', [{ ...frame(0), data: new Float32Array(24) }], 'frames[0].data', 'Buffer or Uint8Array'],
    ['data as an ArrayBuffer', [{ ...frame(0), data: new ArrayBuffer(24) }], 'frames[0].data', 'Buffer or Uint8Array'],
    ['no data', [{ width: 4, height: 2, timestamp: 0 }], 'frames[0].data', 'received undefined'],
    ['a fractional width', [frame(0), { ...frame(1), width: 4.5 }], 'frames[1].width', 'received 4.5'],
    ['a string height', [{ ...frame(0), height: '2' }], 'frames[0].height', 'received "2"'],
    ['a NaN width', [{ ...frame(0), width: NaN }], 'frames[0].width', 'received NaN'],
    ['channels 2', [{ ...frame(0), channels: 2 }], 'frames[0].channels', '3 or 4'],
    ['no timestamp', [{ data: Buffer.alloc(24), width: 4, height: 2 }], 'frames[0].timestamp', 'received undefined'],
  ])('%s is INVALID_ARGUMENT naming the field', async (_what, frames, name, fragment) => {
    const err = await failure(planVideo(frames as DecodedFrame[]), 'INVALID_ARGUMENT', name, fragment);
    expect(err.message).toMatch(/^Expected .* for frames\[\d\]/);
  });
});

describe('through the public API', () => {
  let model: Model;
  beforeAll(async () => {
    const src = join(work, 'hf');
    makeTinyCheckpoint(src, { layout: 'video_llama_3', dtype: 'F32', values: 'normal', text: { layers: 1 } });
    await convertModel({ input: src, output: join(work, 'model'), type: 'f32' });
    model = await loadModel({ model: join(work, 'model'), threads: 2, contextSize: 512 });
  });
  afterAll(async () => {
    await model?.dispose();
  });

  it.skipIf(process.platform === 'win32')('an image path of /dev/zero fails fast in encode() and complete()', async () => {
    await failure(model.encode('/dev/zero'), 'IO_ERROR', 'it is a device');
    await failure(model.complete({ text: 'x', images: ['/dev/zero'] }, { maxTokens: 1 }), 'IO_ERROR', 'it is a device');
  });

  it('a stalled frame source: encode() and estimate() reject with signal.reason on abort', async () => {
    const c = new AbortController();
    const reason = new Error('stop');
    const src = stalling([frame(0, 56, 56), frame(1, 56, 56)]);
    setTimeout(() => c.abort(reason), 30);
    await expect(within(model.encode(src.iterable, { signal: c.signal }), 2000)).rejects.toBe(reason);
    expect(src.returned).toHaveBeenCalledTimes(1);
    const c2 = new AbortController();
    setTimeout(() => c2.abort(reason), 30);
    const est = model.estimate({ text: 'x', videos: [stalling([]).iterable] }, { signal: c2.signal });
    await expect(within(est, 2000)).rejects.toBe(reason);
  });

  it('a sparse frame array is INVALID_ARGUMENT, and the model keeps serving', async () => {
    const gap = [frame(0, 56, 56), , frame(1, 56, 56)] as DecodedFrame[]; // a hole at index 1
    await failure(model.encode(gap), 'INVALID_ARGUMENT', 'frames[1] is missing');
    const ok = await model.encode([frame(0, 56, 56), frame(1, 56, 56)]);
    expect(ok.source).toBe('video');
  });
});
