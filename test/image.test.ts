// Image input: decoding (lib/media/image.ts) and preprocessing (native/media/image.cpp) give exactly
// what transformers' load_image + VideoLlama3ImageProcessorPil (Pillow 12.3) give, and every bad
// input is a coded error. Expected values: tools/reference/make_preprocess_fixtures.py.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { call, native } from '../lib/binding';
import { VideoLlama3Error } from '../lib/errors';
import { decodeImage, type DecodedImage } from '../lib/media/image';

const fixtures = join(__dirname, 'fixtures');
const images = join(fixtures, 'images');
const load = <T>(name: string): T => JSON.parse(readFileSync(join(fixtures, 'preprocess', name), 'utf8')) as T;

interface DecodeCase { image: string; width: number; height: number; sha256: string }
interface ResizeCase { image: string; from: [number, number]; to: [number, number]; sha256: string; samples: number[][] }
interface SmartCase { h: number; w: number; factor: number; min: number; max: number; out?: [number, number]; error?: string }
interface PreprocessCase {
  image: string; patchSize: number; mergeSize: number; minPixels: number; maxPixels: number; mean: number[]; std: number[];
  gridH: number; gridW: number; resizedWidth: number; resizedHeight: number; rows: number; sha256: string; samples: number[][];
}

const decodeCases = load<{ images: DecodeCase[] }>('decode.json').images;
const resizeCases = load<{ cases: ResizeCase[] }>('resize.json').cases;
const smartCases = load<{ cases: SmartCase[] }>('smart_resize.json').cases;
const preprocessCases = load<{ cases: PreprocessCase[] }>('preprocess.json').cases;

const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');
const file = (name: string): string => join(images, name);
const bytes = (name: string): Buffer => readFileSync(file(name));

/** The synthetic image of the fixture script: ((x*37 + y*61 + c*89) ^ (x*y*7)) & 255. */
function pattern(w: number, h: number): DecodedImage {
  const data = Buffer.alloc(w * h * 3);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      for (let c = 0; c < 3; c++) data[(y * w + x) * 3 + c] = ((x * 37 + y * 61 + c * 89) ^ (x * y * 7)) & 255;
    }
  }
  return { data, width: w, height: h };
}

async function source(name: string): Promise<DecodedImage> {
  if (!name.startsWith('pattern:')) return decodeImage(file(name));
  const [w, h] = name.slice('pattern:'.length).split('x').map(Number) as [number, number];
  return pattern(w, h);
}

async function failure(p: Promise<unknown> | (() => unknown), code: string, ...fragments: (string | RegExp)[]) {
  let err: unknown;
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (e) {
    err = e;
  }
  expect(err, 'expected a failure').toBeInstanceOf(Error);
  expect((err as { code?: string }).code).toBe(code);
  for (const f of fragments) expect((err as Error).message).toMatch(f);
  return err as Error;
}

/** A JPEG whose SOF header claims another size (nothing else changed). */
function withJpegSize(jpeg: Buffer, width: number, height: number): Buffer {
  const out = Buffer.from(jpeg);
  for (let p = 2; p + 9 < out.length; ) {
    const marker = out[p + 1]!;
    if (marker >= 0xc0 && marker <= 0xc2) {
      out.writeUInt16BE(height, p + 5);
      out.writeUInt16BE(width, p + 7);
      return out;
    }
    p += 2 + out.readUInt16BE(p + 2);
  }
  throw new Error('no SOF marker');
}

describe('decodeImage matches Pillow (load_image: exif_transpose + convert("RGB"))', () => {
  it.each(decodeCases.map((c) => [c.image, c] as const))('%s', async (_name, c) => {
    const img = await decodeImage(file(c.image));
    expect([img.width, img.height]).toEqual([c.width, c.height]);
    expect(img.data.length).toBe(c.width * c.height * 3);
    expect(sha256(img.data)).toBe(c.sha256);
  });

  it('gives the same pixels for a path, a Buffer and a Uint8Array', async () => {
    const buf = bytes('chelsea_exif_orient6.jpg');
    const a = await decodeImage(file('chelsea_exif_orient6.jpg'));
    const b = await decodeImage(buf);
    const c = await decodeImage(new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength));
    expect(b.data.equals(a.data) && c.data.equals(a.data)).toBe(true);
    expect([a.width, a.height]).toEqual([451, 300]); // stored 300x451, EXIF orientation 6 applied
  });

  it('converts raw grey, RGB and RGBA pixels like convert("RGB") (no compositing, copied)', async () => {
    const grey = await decodeImage({ data: new Uint8Array([0, 7, 255, 128]), width: 2, height: 2, channels: 1 });
    expect([...grey.data]).toEqual([0, 0, 0, 7, 7, 7, 255, 255, 255, 128, 128, 128]);
    const rgba = new Uint8ClampedArray([10, 20, 30, 0, 40, 50, 60, 255]);
    expect([...(await decodeImage({ data: rgba, width: 2, height: 1, channels: 4 })).data]).toEqual([10, 20, 30, 40, 50, 60]);
    const rgb = Buffer.from([1, 2, 3]);
    const out = await decodeImage({ data: rgb, width: 1, height: 1, channels: 3 });
    rgb[0] = 99;
    expect([...out.data]).toEqual([1, 2, 3]);
  });
});

describe('decodeImage errors', () => {
  it('missing file and directory: IO_ERROR', async () => {
    await failure(decodeImage(join(tmpdir(), 'no-such-image.png')), 'IO_ERROR', 'Cannot read image file', 'no such file');
    await failure(decodeImage(images), 'IO_ERROR', 'it is a directory');
  });

  it('empty, unknown and unsupported data: INVALID_ARGUMENT naming the input', async () => {
    await failure(decodeImage(Buffer.alloc(0)), 'INVALID_ARGUMENT', 'Cannot decode image (Buffer of 0 bytes): the data is empty');
    await failure(decodeImage(Buffer.from('definitely not an image')), 'INVALID_ARGUMENT',
      'Cannot decode image (Buffer of 23 bytes): unsupported image format (supported: JPEG, PNG, WebP, GIF)');
    await failure(decodeImage(Buffer.from(`BM${'\0'.repeat(60)}`)), 'INVALID_ARGUMENT', 'unsupported image format BMP');
    await failure(decodeImage(Buffer.from('<svg xmlns="http://www.w3.org/2000/svg"/>')), 'INVALID_ARGUMENT',
      'unsupported image format SVG');
    const tiff = await sharp({ create: { width: 2, height: 2, channels: 3, background: '#000' } }).tiff().toBuffer();
    await failure(decodeImage(tiff), 'INVALID_ARGUMENT', 'unsupported image format TIFF');
  });

  it('corrupt and truncated files: INVALID_ARGUMENT', async () => {
    const png = bytes('chart_bar_line_640x400.png');
    const jpg = bytes('rocket.jpg');
    const gif = bytes('gen_photo.gif');
    const webp = bytes('chelsea_lossless.webp');
    await failure(decodeImage(png.subarray(0, 8)), 'INVALID_ARGUMENT', 'Buffer of 8 bytes', 'corrupt or unreadable PNG data');
    await failure(decodeImage(png.subarray(0, png.length >> 1)), 'INVALID_ARGUMENT', 'corrupt or truncated PNG data');
    await failure(decodeImage(jpg.subarray(0, jpg.length >> 1)), 'INVALID_ARGUMENT', 'corrupt or truncated JPEG data', /premature end/);
    await failure(decodeImage(gif.subarray(0, gif.length >> 1)), 'INVALID_ARGUMENT', 'truncated GIF image data');
    await failure(decodeImage(gif.subarray(0, 10)), 'INVALID_ARGUMENT', 'truncated GIF data');
    await failure(decodeImage(webp.subarray(0, webp.length >> 1)), 'INVALID_ARGUMENT', 'corrupt or unreadable WEBP data');
    // LZW code past the next free table entry
    const bad = Buffer.from(bytes('gen_no_palette.gif'));
    const lzw = bad.indexOf(Buffer.from([0x2c])) + 10; // min code size byte (no local palette)
    bad[lzw + 2] = 0xff;
    bad[lzw + 3] = 0xff;
    await failure(decodeImage(bad), 'INVALID_ARGUMENT', 'corrupt GIF image data');
  });

  it('empty and over-budget images are rejected from the header, before decoding', async () => {
    await failure(decodeImage(bytes('chart_bar_line_640x400.png'), { maxPixels: 1000 }), 'INVALID_ARGUMENT',
      'Image (Buffer of 26925 bytes) is 640x400 = 256000 pixels, over the maxPixels budget of 1000');
    // 60000 x 60000 JPEG header over a 640x427 body: refused by size, never decoded.
    const t = Date.now();
    await failure(decodeImage(withJpegSize(bytes('rocket.jpg'), 60000, 60000)), 'INVALID_ARGUMENT',
      '60000x60000 = 3600000000 pixels, over the maxPixels budget of 100000000');
    expect(Date.now() - t).toBeLessThan(2000);
    const gif = Buffer.from(bytes('gen_no_palette.gif'));
    gif.writeUInt16LE(65535, 6);
    gif.writeUInt16LE(65535, 8);
    await failure(decodeImage(gif), 'INVALID_ARGUMENT', '65535x65535', 'maxPixels budget of 100000000');
    const empty = Buffer.from(bytes('gen_no_palette.gif'));
    empty.fill(0, 6, 10); // 0x0 screen
    const frame = empty.indexOf(Buffer.from([0x2c]), 13);
    empty.fill(0, frame + 5, frame + 9); // 0x0 frame
    await failure(decodeImage(empty), 'INVALID_ARGUMENT', 'the first GIF frame has no pixels');
    await failure(decodeImage({ data: new Uint8Array(12), width: 2, height: 2, channels: 3 }, { maxPixels: 3 }),
      'INVALID_ARGUMENT', 'Image (raw pixels) is 2x2 = 4 pixels, over the maxPixels budget of 3');
  });

  it('validates raw images and options', async () => {
    await failure(decodeImage({ data: new Uint8Array(0), width: 0, height: 0, channels: 3 }), 'INVALID_ARGUMENT',
      'Expected positive integer for image.width but received 0');
    await failure(decodeImage({ data: new Uint8Array(10), width: 2, height: 2, channels: 3 }), 'INVALID_ARGUMENT',
      'Raw image data must be width * height * channels = 2 * 2 * 3 = 12 bytes, got 10');
    await failure(decodeImage({ data: new Uint8Array(8), width: 2, height: 2, channels: 2 as 3 }), 'INVALID_ARGUMENT',
      'Expected 1, 3 or 4 for image.channels but received 2');
    await failure(decodeImage({ data: new Uint8Array(6), width: 1.5, height: 1, channels: 3 }), 'INVALID_ARGUMENT',
      'Expected positive integer for image.width but received 1.5');
    await failure(decodeImage({ data: [1, 2, 3] as unknown as Uint8Array, width: 1, height: 1, channels: 3 }),
      'INVALID_ARGUMENT', 'Expected Buffer, Uint8Array or Uint8ClampedArray for image.data');
    await failure(decodeImage(42 as unknown as string), 'INVALID_ARGUMENT', 'for input but received 42');
    await failure(decodeImage(bytes('tiny_1x1.png'), { maxPixels: 0 }), 'INVALID_ARGUMENT',
      'Expected positive integer for options.maxPixels but received 0');
  });

  it('decodes a 100000x1 image, which preprocessing then refuses (aspect ratio over 200)', async () => {
    const png = await sharp({ create: { width: 100000, height: 1, channels: 3, background: '#0a141e' } }).png().toBuffer();
    const img = await decodeImage(png);
    expect([img.width, img.height, img.data[3], img.data[4], img.data[5]]).toEqual([100000, 1, 10, 20, 30]);
    const err = await failure(
      call(() => native().preprocessImage(img.data, img.width, img.height, {
        patchSize: 14, mergeSize: 1, minPixels: 3136, maxPixels: 3211264, mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5],
      })),
      'INVALID_ARGUMENT', 'Image aspect ratio 100000:1 (100000x1 pixels) exceeds the supported maximum of 200:1');
    expect(err).toBeInstanceOf(VideoLlama3Error);
  });

  it('never crashes on damaged files: each one decodes or fails with INVALID_ARGUMENT', async () => {
    let seed = 12345;
    const rand = (n: number): number => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return seed % n;
    };
    const inputs = ['gen_photo.gif', 'gen_anim.gif', 'gen_frame_transparent.gif', 'chelsea_palette_226x150.png',
      'gen_orient3.jpg', 'gen_lossy_alpha.webp', 'gen_rgb16.png'].map(bytes);
    let decoded = 0;
    for (let i = 0; i < 210; i++) {
      const src = inputs[i % inputs.length]!;
      const b = Buffer.from(src.subarray(0, i % 3 === 0 ? rand(src.length) + 1 : src.length));
      for (let k = 0; k < 1 + rand(8); k++) b[rand(b.length)] = rand(256);
      try {
        const img = await decodeImage(b);
        expect(img.data.length).toBe(img.width * img.height * 3);
        decoded++;
      } catch (e) {
        expect(e).toBeInstanceOf(VideoLlama3Error);
        expect((e as VideoLlama3Error).code).toBe('INVALID_ARGUMENT');
      }
    }
    expect(decoded).toBeGreaterThan(0);
  });
});

describe('smartResize (spec §5.2)', () => {
  it('matches Python smart_resize on the fixture table (round half to even, else-if, error cases)', () => {
    for (const c of smartCases) {
      const what = `${c.h}x${c.w} factor ${c.factor} [${c.min}, ${c.max}]`;
      if (c.error) {
        expect(() => native().smartResize(c.h, c.w, c.factor, c.min, c.max), what).toThrow(/exceeds the supported maximum of 200:1/);
      } else {
        const r = native().smartResize(c.h, c.w, c.factor, c.min, c.max);
        expect([r.height, r.width], what).toEqual(c.out);
      }
    }
    expect(native().smartResize(42, 70, 28, 0, 1e9)).toEqual({ height: 56, width: 56 }); // 1.5 -> 2, 2.5 -> 2
  });

  it('validates its arguments', async () => {
    await failure(() => native().smartResize(0, 10, 14, 0, 100), 'INVALID_ARGUMENT',
      'smartResize: Expected integer between 1 and 16777216 for height but received 0 of type number');
    await failure(() => native().smartResize(10, 10, 14, -1, 100), 'INVALID_ARGUMENT', 'for minPixels');
    await failure(() => native().smartResize(201, 1, 14, 0, 100), 'INVALID_ARGUMENT', 'Image aspect ratio 201:1 (1x201 pixels)');
  });
});

describe('resizeBicubic is bit-exact with Pillow Image.resize(BICUBIC)', () => {
  it.each(resizeCases.map((c) => [`${c.image} ${c.from.join('x')} -> ${c.to.join('x')}`, c] as const))('%s', async (_n, c) => {
    const src = await source(c.image);
    const out = native().resizeBicubic(src.data, src.width, src.height, c.to[0], c.to[1]);
    expect(out.length).toBe(c.to[0] * c.to[1] * 3);
    for (const [x, y, r, g, b] of c.samples) {
      const o = (y! * c.to[0] + x!) * 3;
      expect([out[o], out[o + 1], out[o + 2]], `pixel ${x},${y}`).toEqual([r, g, b]);
    }
    expect(sha256(out)).toBe(c.sha256);
  });

  it('validates its arguments', async () => {
    const rgb = Buffer.alloc(12);
    await failure(() => native().resizeBicubic(rgb, 2, 3, 4, 4), 'INVALID_ARGUMENT',
      'resizeBicubic: rgb must hold width * height * 3 = 18 bytes for 2x3 pixels, got 12');
    await failure(() => native().resizeBicubic(rgb, 2, 2, 0, 4), 'INVALID_ARGUMENT', 'for outWidth but received 0');
    await failure(() => native().resizeBicubic([1, 2, 3] as unknown as Buffer, 1, 1, 2, 2), 'INVALID_ARGUMENT',
      'Expected Buffer or Uint8Array of RGB bytes for rgb but received an array');
  });
});

describe('preprocessImage equals VideoLlama3ImageProcessorPil pixel_values', () => {
  it.each(preprocessCases.map((c) => [`${c.image} merge ${c.mergeSize} max ${c.maxPixels}`, c] as const))('%s', async (_n, c) => {
    const src = await source(c.image);
    const r = await call(() => native().preprocessImage(src.data, src.width, src.height, c));
    expect([r.gridH, r.gridW, r.resizedWidth, r.resizedHeight]).toEqual([c.gridH, c.gridW, c.resizedWidth, c.resizedHeight]);
    const rowLen = 3 * c.patchSize * c.patchSize;
    expect(r.pixels.length).toBe(c.rows * rowLen);
    for (const [row, col, v] of c.samples) expect(r.pixels[row! * rowLen + col!], `row ${row} col ${col}`).toBe(Math.fround(v!));
    expect(sha256(new Uint8Array(r.pixels.buffer, r.pixels.byteOffset, r.pixels.byteLength))).toBe(c.sha256);
  });

  it('runs off the JavaScript thread', async () => {
    const { data, width, height } = pattern(3000, 2000);
    let ticks = 0;
    const timer = setInterval(() => ticks++, 1);
    const r = await native().preprocessImage(data, width, height, {
      patchSize: 14, mergeSize: 1, minPixels: 3136, maxPixels: 3211264, mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5],
    });
    clearInterval(timer);
    expect([r.resizedWidth, r.resizedHeight]).toEqual([2184, 1456]); // max branch: beta = sqrt(6e6 / 3211264)
    expect(ticks).toBeGreaterThan(0);
  });

  it('validates its arguments with coded errors', async () => {
    const opts = { patchSize: 14, mergeSize: 1, minPixels: 3136, maxPixels: 3211264, mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5] };
    const rgb = Buffer.alloc(28 * 28 * 3);
    const pre = (o: unknown, b: Buffer = rgb) => () => native().preprocessImage(b, 28, 28, o as typeof opts);
    await failure(pre(undefined), 'INVALID_ARGUMENT', 'preprocessImage: Expected options object for opts but received undefined');
    await failure(pre({ ...opts, patchSize: 0 }), 'INVALID_ARGUMENT', 'Expected integer between 1 and 1024 for opts.patchSize but received 0');
    await failure(pre({ ...opts, maxPixels: 0 }), 'INVALID_ARGUMENT', 'for opts.maxPixels');
    await failure(pre({ ...opts, mean: [0.5, 0.5] }), 'INVALID_ARGUMENT', 'Expected array of 3 finite numbers for opts.mean');
    await failure(pre({ ...opts, std: [0.5, 0, 0.5] }), 'INVALID_ARGUMENT', 'Expected finite non-zero number for opts.std[1] but received 0');
    await failure(pre(opts, Buffer.alloc(5)), 'INVALID_ARGUMENT', 'rgb must hold width * height * 3 = 2352 bytes for 28x28 pixels, got 5');
    await failure(call(() => native().preprocessImage(Buffer.alloc(5 * 5 * 3), 5, 5, { ...opts, minPixels: 0 })), 'INVALID_ARGUMENT',
      'Image of 5x5 pixels resizes to 0x0 with min_pixels 0');
  });
});
