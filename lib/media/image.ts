// Image decoding: a file, encoded bytes or raw pixels -> 8-bit RGB, exactly as the reference sees
// them. Internal module.
//
// # What "exactly" means
//
// The reference is transformers' `load_image` (5.18) with Pillow 12.3:
// `ImageOps.exif_transpose(Image.open(f)).convert("RGB")`. decodeImage returns the same bytes.
// media_expected.json's sha256 of every test image matches; test/image.test.ts checks them, plus
// generated edge cases (fixtures made by tools/reference/make_preprocess_fixtures.py).
//
// JPEG, PNG and WebP go through sharp (libvips 8.18: libjpeg-turbo/mozjpeg, libpng, libwebp) with
// no colour management and no libvips colourspace conversion; GIF has its own decoder below
// (libvips renders transparent GIF pixels as transparent black, Pillow keeps their palette colour).
// Pillow's behaviour, per case:
//
// - **ICC profiles are ignored.** convert("RGB") never applies them; sharp would convert to sRGB
//   unless told `keepIccProfile()`, so the stored values are used (rocket.jpg is Adobe RGB).
// - **Alpha is dropped, not composited** (RGBA, LA, PNG tRNS, GIF transparency): the colour stored
//   under a transparent pixel is what the model sees.
// - **Palettes are expanded**; grey is replicated to R = G = B. 1/2/4-bit grey PNGs are scaled by
//   bit replication (x255, x85, x17), as both Pillow and libpng do.
// - **16-bit PNG** follows Pillow's modes: 16-bit grey is mode "I;16", whose RGB conversion *clips*
//   (v > 255 -> 255, else v), so a normal 16-bit grey photo comes out almost white
//   (camera_gray16: mean 254.996); 16-bit grey+alpha, RGB and RGBA keep the *high byte* (v >> 8,
//   truncated, not rounded). The PNG colour type decides (grey + tRNS is still "I;16").
// - **CMYK JPEG**: both read every CMYK JPEG as Adobe-inverted, with or without the APP14 marker
//   (Pillow's "CMYK;I"; checked on a file with the marker removed), and the raw CMYK is taken from
//   libvips without its ICC-based conversion. Then Pillow's naive formula, no ICC: nk = 255 - K,
//   R = nk - ((t >> 8) + t) >> 8 with t = C * nk + 128 (= C * nk / 255 rounded), likewise G (M) and
//   B (Y). YCCK is converted to CMYK by libjpeg first.
// - **EXIF orientation is applied** (load_image calls exif_transpose; spec §5.1 predates that):
//   Orientation 2-8 from EXIF, or, when EXIF has no Orientation, from XMP `tiff:Orientation`
//   (Pillow's getexif falls back to it). Other values are ignored.
// - **JPEG pixels** are libjpeg-turbo's ISLOW IDCT with fancy upsampling in both; bit-exact on
//   every test image (baseline, progressive, CMYK, 4:2:0).
// - **WebP** is libwebp in both (Pillow's WebPAnimDecoder on the first frame, libvips' WebPDecode),
//   non-premultiplied RGBA. **Animated images** give their first frame.
// - **GIF**: first frame on Pillow's canvas: the logical screen, grown to contain the frame;
//   outside the frame the canvas holds the transparent index if the frame has one, else index 0.
//   No palette, or a palette that is exactly the grey ramp, gives mode "L" (value = index); pixel
//   indices past the end of a palette are black (Pillow's palette is zero-padded).
//   An LZW stream that ends before the frame is full is an error (Pillow: "image file is truncated").
// - **Corrupt or truncated data** is an error, as it is in Pillow (sharp's failOn: 'truncated').
// - Not supported (INVALID_ARGUMENT): TIFF, BMP, AVIF/HEIF, SVG and other formats Pillow may open
//   but whose decoding was not verified against it.
// - Pillow's own decompression-bomb limit is not copied; `maxPixels` (default 100 megapixels) is
//   checked from the header before any pixel is decoded.
import { constants as bufferConstants } from 'node:buffer';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import type { Metadata, OutputInfo } from 'sharp';

type Sharp = typeof import('sharp').default;
let sharpModule: Sharp | undefined;

/**
 * sharp, loaded on first use: a missing or broken sharp binary for this platform (an Electron app
 * that did not unpack it from its asar archive, a platform sharp has no prebuild for) then only
 * fails image decoding, with a message that says what to do, instead of the whole library.
 */
function sharp(...args: Parameters<Sharp>): ReturnType<Sharp> {
  if (!sharpModule) {
    try {
      sharpModule = require('sharp') as Sharp;
    } catch (err) {
      throw new VideoLlama3Error(
        'ADDON_NOT_FOUND',
        `Image decoding needs sharp, which did not load for ${process.platform}-${process.arch}: ${(err as Error).message.split('\n')[0]}. ` +
          'Reinstall with `npm install --include=optional sharp`, or pass raw pixels { data, width, height, channels }; ' +
          'in Electron, unpack node_modules/sharp and node_modules/@img from the asar archive',
        { cause: err },
      );
    }
  }
  return sharpModule(...args);
}
import { VideoLlama3Error } from '../errors';
import { invalid } from '../validate';

/** Raw pixels: rows top to bottom, channels interleaved (grey, RGB or RGBA), no row padding. */
export interface RawImage {
  data: Uint8Array | Uint8ClampedArray | Buffer;
  /** Pixels per row, a positive integer. */
  width: number;
  /** Rows, a positive integer. */
  height: number;
  /** 1 = grey (replicated to RGB), 3 = RGB, 4 = RGBA (alpha dropped, not composited). */
  channels: 1 | 3 | 4;
}

/** Decoded 8-bit RGB pixels: `width * height * 3` bytes, HWC, rows top to bottom. */
export interface DecodedImage {
  data: Buffer;
  width: number;
  height: number;
}

/** Options of {@link decodeImage}. */
export interface DecodeImageOptions {
  /**
   * Largest accepted image, in pixels (width x height, before EXIF rotation). Checked from the file
   * header, before any pixel is decoded. Default 100 000 000 (100 megapixels).
   */
  maxPixels?: number;
}

/** Default of {@link DecodeImageOptions.maxPixels}: 100 megapixels. */
export const DEFAULT_MAX_PIXELS = 100_000_000;

/**
 * Largest image file read for a given `maxPixels`: 8 bytes a pixel (16-bit RGBA PNG stored without
 * compression, the widest layout decoded here) plus 64 MiB for metadata (EXIF, ICC, XMP) and
 * container overhead. A larger file cannot be a real image within the pixel budget; the bound stops
 * a wrong path (a disk image, a file still being written) from being read into memory whole. Never
 * more than a Buffer can hold.
 */
function maxFileBytes(maxPixels: number): number {
  return Math.min(maxPixels * 8 + 64 * 1024 * 1024, bufferConstants.MAX_LENGTH);
}

/**
 * Decodes an image to 8-bit RGB exactly as transformers' `load_image` + Pillow 12.3 do
 * (`ImageOps.exif_transpose(img).convert("RGB")`): EXIF orientation applied, alpha dropped without
 * compositing, palettes expanded, grey replicated, ICC profiles ignored, CMYK by Pillow's naive
 * formula, 16-bit grey PNG clipped to 255 and other 16-bit PNGs cut to their high byte. See the notes
 * at the top of lib/media/image.ts for every case.
 *
 * @param input A file path; encoded JPEG, PNG, WebP or GIF bytes (first frame of animations); or raw
 *   pixels ({@link RawImage}, used as is: no orientation).
 * @throws VideoLlama3Error `INVALID_ARGUMENT` for unreadable, corrupt, truncated or unsupported data,
 *   an empty image, an image over `maxPixels`, a file over 8 bytes a pixel of `maxPixels` plus 64 MiB,
 *   or malformed raw input; `IO_ERROR` when the file cannot be read (missing, no permission, or not a
 *   regular file: a directory, device, FIFO or socket, refused before it is opened).
 * @example
 * const { data, width, height } = await decodeImage('cat.jpg');
 */
export async function decodeImage(
  input: string | Buffer | Uint8Array | RawImage,
  opts: DecodeImageOptions = {},
): Promise<DecodedImage> {
  if (opts === null || typeof opts !== 'object') invalid('options', 'an options object', opts);
  const maxPixels = opts.maxPixels ?? DEFAULT_MAX_PIXELS;
  if (typeof maxPixels !== 'number' || !Number.isSafeInteger(maxPixels) || maxPixels < 1) {
    invalid('options.maxPixels', 'positive integer', maxPixels);
  }
  if (typeof input === 'string') {
    const label = `file ${JSON.stringify(input)}`;
    return decodeEncoded(await readImageFile(input, label, maxFileBytes(maxPixels)), label, maxPixels);
  }
  if (input instanceof Uint8Array) {
    const bytes = Buffer.isBuffer(input) ? input : Buffer.from(input.buffer, input.byteOffset, input.byteLength);
    return decodeEncoded(bytes, `Buffer of ${bytes.length} bytes`, maxPixels);
  }
  if (input !== null && typeof input === 'object' && 'data' in input) return fromRaw(input, maxPixels);
  const expected = 'a file path, a Buffer of encoded image bytes or a raw image { data, width, height, channels }';
  return invalid('input', expected, input);
}

/**
 * The size {@link decodeImage} would return, from the image's header alone (no pixels decoded), or
 * `undefined` where that is not cheap to know (GIF, whose first frame's size needs its frame
 * headers). EXIF orientation is applied. Lets a prompt that cannot fit be refused before any
 * image is decoded or encoded.
 */
export async function imageSize(
  input: string | Buffer | Uint8Array | RawImage,
  opts: DecodeImageOptions = {},
): Promise<{ width: number; height: number } | undefined> {
  if (input !== null && typeof input === 'object' && !(input instanceof Uint8Array) && 'data' in input) {
    const { width, height } = input;
    return Number.isSafeInteger(width) && Number.isSafeInteger(height) ? { width, height } : undefined;
  }
  const maxPixels = opts.maxPixels ?? DEFAULT_MAX_PIXELS;
  let bytes: Buffer;
  if (typeof input === 'string') bytes = await readImageFile(input, `file ${JSON.stringify(input)}`, maxFileBytes(maxPixels));
  else if (input instanceof Uint8Array) bytes = Buffer.isBuffer(input) ? input : Buffer.from(input.buffer, input.byteOffset, input.byteLength);
  else return undefined;
  const format = bytes.length > 0 ? sniff(bytes) : undefined;
  if (typeof format !== 'string' || format === 'gif') return undefined;
  try {
    const meta = await sharp(bytes, { limitInputPixels: false, failOn: 'truncated', page: 0, pages: 1 }).metadata();
    const width = meta.width ?? 0;
    const height = meta.pageHeight ?? meta.height ?? 0;
    if (width < 1 || height < 1) return undefined;
    const orientation = meta.orientation ?? xmpOrientation(meta.xmp) ?? 1;
    return orientation >= 5 && orientation <= 8 ? { width: height, height: width } : { width, height };
  } catch {
    return undefined; // decodeImage reports what is wrong with the data
  }
}

// ---------------------------------------------------------------------------------------------
// Raw pixels

function fromRaw(raw: RawImage, maxPixels: number): DecodedImage {
  const { data, width, height, channels } = raw;
  if (!(data instanceof Uint8Array || (data as unknown) instanceof Uint8ClampedArray)) {
    invalid('image.data', 'Buffer, Uint8Array or Uint8ClampedArray', data);
  }
  const positive = (v: unknown): boolean => typeof v === 'number' && Number.isSafeInteger(v) && v >= 1;
  if (!positive(width)) invalid('image.width', 'positive integer', width);
  if (!positive(height)) invalid('image.height', 'positive integer', height);
  if (channels !== 1 && channels !== 3 && channels !== 4) invalid('image.channels', '1, 3 or 4', channels);
  checkBudget(width, height, maxPixels, 'raw pixels');
  const expected = width * height * channels;
  if (data.length !== expected) {
    throw new VideoLlama3Error(
      'INVALID_ARGUMENT',
      `Raw image data must be width * height * channels = ${width} * ${height} * ${channels} = ${expected} bytes, ` +
        `got ${data.length}`,
    );
  }
  const src = new Uint8Array(data.buffer, data.byteOffset, data.length);
  return { data: toRgb8(src, channels, true), width, height };
}

// ---------------------------------------------------------------------------------------------
// Encoded bytes

type Format = 'jpeg' | 'png' | 'webp' | 'gif';

/**
 * Reads an image file of at most `cap` bytes. Only regular files are read, checked with stat()
 * before any open: opening a FIFO blocks until a writer appears, and a device such as /dev/zero
 * never ends.
 */
async function readImageFile(path: string, label: string, cap: number): Promise<Buffer> {
  const ioError = (err: unknown): VideoLlama3Error => {
    const e = err as NodeJS.ErrnoException;
    const why =
      e.code === 'ENOENT' ? 'no such file'
      : e.code === 'EACCES' || e.code === 'EPERM' ? 'permission denied'
      : e.message;
    return new VideoLlama3Error('IO_ERROR', `Cannot read image ${label}: ${why}`, { cause: err });
  };
  const tooLarge = (size?: number): VideoLlama3Error =>
    new VideoLlama3Error(
      'INVALID_ARGUMENT',
      `Image ${label} is ${size === undefined ? 'larger than' : `${size} bytes, over`} the limit of ${cap} bytes ` +
        '(8 bytes a pixel of maxPixels + 64 MiB); pass a smaller image or raise maxPixels',
    );
  let st;
  try {
    st = await stat(path);
  } catch (err) {
    throw ioError(err);
  }
  if (!st.isFile()) {
    const what =
      st.isDirectory() ? 'it is a directory'
      : st.isFIFO() ? 'it is a FIFO (named pipe)'
      : st.isSocket() ? 'it is a socket'
      : st.isCharacterDevice() || st.isBlockDevice() ? 'it is a device'
      : 'not a regular file';
    throw new VideoLlama3Error('IO_ERROR', `Cannot read image ${label}: ${what}; pass the path of an image file or its bytes`);
  }
  if (st.size > cap) throw tooLarge(st.size);
  const chunks: Buffer[] = [];
  let total = 0;
  try {
    // `end` is inclusive: one byte past the cap is read to tell a file that grew past it.
    for await (const chunk of createReadStream(path, { end: cap, highWaterMark: 1 << 20 }) as AsyncIterable<Buffer>) {
      chunks.push(chunk);
      total += chunk.length;
    }
  } catch (err) {
    throw ioError(err);
  }
  if (total > cap) throw tooLarge();
  return Buffer.concat(chunks, total);
}

function cannotDecode(label: string, why: string, cause?: unknown): VideoLlama3Error {
  const message = `Cannot decode image (${label}): ${why}`;
  return new VideoLlama3Error('INVALID_ARGUMENT', message, cause ? { cause } : undefined);
}

function checkBudget(width: number, height: number, maxPixels: number, what: string): void {
  if (width < 1 || height < 1) {
    throw cannotDecode(what, `it has no pixels (${width}x${height})`);
  }
  if (width * height > maxPixels) {
    throw new VideoLlama3Error(
      'INVALID_ARGUMENT',
      `Image (${what}) is ${width}x${height} = ${width * height} pixels, over the maxPixels budget of ${maxPixels}`,
    );
  }
}

/** Recognizes the container from its first bytes. */
function sniff(b: Buffer): Format | { unsupported: string } {
  const ascii = (start: number, s: string): boolean =>
    b.length >= start + s.length && b.toString('latin1', start, start + s.length) === s;
  if (b.length >= 3 && b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) return 'jpeg';
  if (ascii(0, '\x89PNG\r\n\x1a\n')) return 'png';
  if (ascii(0, 'GIF87a') || ascii(0, 'GIF89a')) return 'gif';
  if (ascii(0, 'RIFF') && ascii(8, 'WEBP')) return 'webp';
  if (ascii(0, 'II*\0') || ascii(0, 'MM\0*')) return { unsupported: 'TIFF' };
  if (ascii(0, 'BM')) return { unsupported: 'BMP' };
  if (ascii(4, 'ftyp')) return { unsupported: 'AVIF/HEIF' };
  if (ascii(0, '%PDF')) return { unsupported: 'PDF' };
  if (/^\s*<(\?xml|svg|!DOCTYPE svg)/i.test(b.toString('latin1', 0, 64))) return { unsupported: 'SVG' };
  if (ascii(0, '\xff\x0a') || ascii(4, 'JXL ')) return { unsupported: 'JPEG XL' };
  return { unsupported: '' };
}

async function decodeEncoded(bytes: Buffer, label: string, maxPixels: number): Promise<DecodedImage> {
  if (bytes.length === 0) throw cannotDecode(label, 'the data is empty');
  const format = sniff(bytes);
  if (typeof format !== 'string') {
    const what = format.unsupported ? `unsupported image format ${format.unsupported}` : 'unsupported image format';
    throw cannotDecode(label, `${what} (supported: JPEG, PNG, WebP, GIF)`);
  }
  if (format === 'gif') return decodeGif(bytes, label, maxPixels);
  return decodeWithSharp(bytes, format, label, maxPixels);
}

/** libvips' message without its internal prefixes, for our error text. */
function vipsReason(err: unknown): string {
  const msg = (err instanceof Error ? err.message : String(err)).trim();
  const lines = msg.split('\n').map((l) => l.trim().replace(/:$/, '')).filter((l) => l.length > 0);
  return lines.slice(0, 2).join('; ') || 'unknown decoder error';
}

async function decodeWithSharp(bytes: Buffer, format: Format, label: string, maxPixels: number): Promise<DecodedImage> {
  let meta: Metadata;
  try {
    meta = await sharp(bytes, { limitInputPixels: false, failOn: 'truncated' }).metadata();
  } catch (err) {
    throw cannotDecode(label, `corrupt or unreadable ${format.toUpperCase()} data (${vipsReason(err)})`, err);
  }
  checkBudget(meta.width ?? 0, meta.height ?? 0, maxPixels, label);

  // Ask for the image's own colourspace (and 16 bits where it has them): libvips then converts
  // nothing, and keepIccProfile() stops its ICC transform to sRGB.
  const known = ['cmyk', 'b-w', 'grey16', 'rgb16'] as const;
  const space = known.find((k) => k === meta.space) ?? 'srgb';
  const cmyk = space === 'cmyk';
  const wide = space === 'grey16' || space === 'rgb16';
  let pipeline = sharp(bytes, { limitInputPixels: maxPixels, failOn: 'truncated', page: 0, pages: 1 })
    .keepIccProfile();
  if (cmyk) pipeline = pipeline.pipelineColourspace('cmyk');
  pipeline = pipeline.toColourspace(space).raw({ depth: wide ? 'ushort' : 'uchar' });

  let out: { data: Buffer; info: OutputInfo };
  try {
    out = await pipeline.toBuffer({ resolveWithObject: true });
  } catch (err) {
    throw cannotDecode(label, `corrupt or truncated ${format.toUpperCase()} data (${vipsReason(err)})`, err);
  }
  const { width, height, channels } = out.info;
  let rgb: Buffer;
  if (cmyk) {
    if (channels !== 4) throw cannotDecode(label, `CMYK image decoded to ${channels} channels`);
    rgb = cmykToRgb(out.data);
  } else if (wide) {
    rgb = wideToRgb(out.data, channels, format === 'png' ? pngColourType(bytes) : -1);
  } else {
    rgb = toRgb8(out.data, channels, false);
  }
  const orientation = meta.orientation ?? xmpOrientation(meta.xmp);
  return orient({ data: rgb, width, height }, orientation);
}

// ---------------------------------------------------------------------------------------------
// Channel conversions (Pillow's convert("RGB"))

/** Grey, grey+alpha, RGB or RGBA bytes -> RGB (alpha dropped). */
function toRgb8(src: Uint8Array, channels: number, copy: boolean): Buffer {
  if (channels === 3) return copy ? Buffer.from(src) : Buffer.from(src.buffer, src.byteOffset, src.length);
  const n = src.length / channels;
  const out = Buffer.allocUnsafe(n * 3);
  if (channels === 1 || channels === 2) {
    for (let i = 0, j = 0, o = 0; i < n; i++, j += channels, o += 3) {
      const v = src[j]!;
      out[o] = v;
      out[o + 1] = v;
      out[o + 2] = v;
    }
  } else {
    for (let i = 0, j = 0, o = 0; i < n; i++, j += channels, o += 3) {
      out[o] = src[j]!;
      out[o + 1] = src[j + 1]!;
      out[o + 2] = src[j + 2]!;
    }
  }
  return out;
}

/**
 * 16-bit samples (host order) -> RGB as Pillow: PNG colour type 0 (grey, mode "I;16") clips to 255;
 * every other 16-bit layout keeps the high byte.
 */
function wideToRgb(data: Buffer, channels: number, pngColourType: number): Buffer {
  const aligned = data.byteOffset % 2 === 0 ? data : Buffer.from(data);
  const src = new Uint16Array(aligned.buffer, aligned.byteOffset, aligned.length / 2);
  const n = src.length / channels;
  const out = Buffer.allocUnsafe(n * 3);
  const grey = channels <= 2;
  const clip = grey && pngColourType !== 4;
  for (let i = 0, j = 0, o = 0; i < n; i++, j += channels, o += 3) {
    if (grey) {
      const s = src[j]!;
      const v = clip ? (s > 255 ? 255 : s) : s >> 8;
      out[o] = v;
      out[o + 1] = v;
      out[o + 2] = v;
    } else {
      out[o] = src[j]! >> 8;
      out[o + 1] = src[j + 1]! >> 8;
      out[o + 2] = src[j + 2]! >> 8;
    }
  }
  return out;
}

/** Pillow's cmyk2rgb: no undercolour handling, no ICC. */
function cmykToRgb(data: Buffer): Buffer {
  const n = data.length / 4;
  const out = Buffer.allocUnsafe(n * 3);
  for (let i = 0, j = 0, o = 0; i < n; i++, j += 4, o += 3) {
    const nk = 255 - data[j + 3]!;
    for (let c = 0; c < 3; c++) {
      const t = data[j + c]! * nk + 128;
      const v = nk - (((t >> 8) + t) >> 8);
      out[o + c] = v < 0 ? 0 : v;
    }
  }
  return out;
}

/** The PNG IHDR colour type (0 grey, 2 RGB, 3 palette, 4 grey+alpha, 6 RGBA), or -1. */
function pngColourType(b: Buffer): number {
  return b.length > 25 && b.toString('latin1', 12, 16) === 'IHDR' ? b[25]! : -1;
}

/** Pillow's fallback when EXIF has no Orientation: `tiff:Orientation` in the XMP packet. */
function xmpOrientation(xmp: Buffer | undefined): number | undefined {
  if (!xmp) return undefined;
  const m = /tiff:Orientation(="|>)([0-9])/.exec(xmp.toString('latin1'));
  return m ? Number(m[2]) : undefined;
}

// ---------------------------------------------------------------------------------------------
// EXIF orientation (ImageOps.exif_transpose)

/**
 * Applies an EXIF orientation to RGB pixels: 2 mirror, 3 rotate 180, 4 flip, 5 transpose,
 * 6 rotate 90 clockwise, 7 transverse, 8 rotate 90 counter-clockwise; anything else: unchanged.
 */
function orient(img: DecodedImage, orientation: number | undefined): DecodedImage {
  if (orientation === undefined || orientation < 2 || orientation > 8) return img;
  const { width: w, height: h, data } = img;
  const swap = orientation >= 5;
  const ow = swap ? h : w;
  const oh = swap ? w : h;
  const out = Buffer.allocUnsafe(data.length);
  for (let y = 0; y < oh; y++) {
    for (let x = 0; x < ow; x++) {
      let sx: number;
      let sy: number;
      switch (orientation) {
        case 2: sx = w - 1 - x; sy = y; break;
        case 3: sx = w - 1 - x; sy = h - 1 - y; break;
        case 4: sx = x; sy = h - 1 - y; break;
        case 5: sx = y; sy = x; break;
        case 6: sx = y; sy = h - 1 - x; break;
        case 7: sx = w - 1 - y; sy = h - 1 - x; break;
        default: sx = w - 1 - y; sy = x; break;
      }
      const s = (sy * w + sx) * 3;
      const o = (y * ow + x) * 3;
      out[o] = data[s]!;
      out[o + 1] = data[s + 1]!;
      out[o + 2] = data[s + 2]!;
    }
  }
  return { data: out, width: ow, height: oh };
}

// ---------------------------------------------------------------------------------------------
// GIF: the first frame, as Pillow's GifImagePlugin + GifDecode.c give it

function decodeGif(b: Buffer, label: string, maxPixels: number): DecodedImage {
  const fail = (why: string): never => {
    throw cannotDecode(label, why);
  };
  const need = (p: number, n: number): void => {
    if (p + n > b.length) fail('truncated GIF data');
  };
  need(0, 13);
  let width = b.readUInt16LE(6);
  let height = b.readUInt16LE(8);
  const screenFlags = b[10]!;
  let p = 13;
  let globalPalette: Buffer | null = null;
  if (screenFlags & 0x80) {
    const size = 3 << ((screenFlags & 7) + 1);
    need(p, size);
    const pal = b.subarray(p, p + size);
    if (paletteNeeded(pal)) globalPalette = pal;
    p += size;
  }

  // Extensions up to the first image descriptor; remember the frame's transparent index.
  let transparency: number | undefined;
  const skipSubBlocks = (): void => {
    for (;;) {
      need(p, 1);
      const n = b[p]!;
      p += 1 + n;
      if (n === 0) return;
    }
  };
  for (;;) {
    if (p >= b.length || b[p] === 0x3b) fail('GIF has no image');
    const introducer = b[p++]!;
    if (introducer === 0x21) {
      need(p, 1);
      const kind = b[p++]!;
      need(p, 1);
      const n = b[p]!;
      if (kind === 0xf9 && n > 0) {
        need(p, 1 + n);
        if (n < 4) fail('malformed GIF graphic control extension');
        if (b[p + 1]! & 1) transparency = b[p + 4]!;
      }
      skipSubBlocks();
    } else if (introducer === 0x2c) {
      break;
    }
    // Any other byte is skipped, as Pillow does.
  }

  need(p, 9);
  const x0 = b.readUInt16LE(p);
  const y0 = b.readUInt16LE(p + 2);
  const fw = b.readUInt16LE(p + 4);
  const fh = b.readUInt16LE(p + 6);
  const frameFlags = b[p + 8]!;
  p += 9;
  if (fw === 0 || fh === 0) fail('the first GIF frame has no pixels');
  width = Math.max(width, x0 + fw);
  height = Math.max(height, y0 + fh);
  checkBudget(width, height, maxPixels, label);

  // Frame palette: local if present ("not needed" grey ramp -> none), else global. None = mode L.
  let palette: Buffer | null = globalPalette;
  if (frameFlags & 0x80) {
    const size = 3 << ((frameFlags & 7) + 1);
    need(p, size);
    const pal = b.subarray(p, p + size);
    palette = paletteNeeded(pal) ? pal : null;
    p += size;
  }
  need(p, 1);
  const minCodeSize = b[p++]!;
  if (minCodeSize > 11) fail(`invalid GIF LZW code size ${minCodeSize}`);

  const canvas = new Uint8Array(width * height).fill(transparency ?? 0);
  const error = lzwDecode(b, p, minCodeSize, (frameFlags & 0x40) !== 0, canvas, width, x0, y0, fw, fh);
  if (error) fail(error);

  const out = Buffer.allocUnsafe(width * height * 3);
  const entries = palette ? palette.length / 3 : 0;
  for (let i = 0, o = 0; i < canvas.length; i++, o += 3) {
    const v = canvas[i]!;
    if (v < entries) {
      out[o] = palette![v * 3]!;
      out[o + 1] = palette![v * 3 + 1]!;
      out[o + 2] = palette![v * 3 + 2]!;
    } else {
      const g = palette ? 0 : v;  // mode L: the index is the grey level
      out[o] = g;
      out[o + 1] = g;
      out[o + 2] = g;
    }
  }
  return { data: out, width, height };
}

/** Pillow's `_is_palette_needed`: false when entry i is (i, i, i) for every i. */
function paletteNeeded(p: Buffer): boolean {
  for (let i = 0; i < p.length; i += 3) {
    const k = i / 3;
    if (p[i] !== k || p[i + 1] !== k || p[i + 2] !== k) return true;
  }
  return false;
}

/**
 * Decodes GIF LZW sub-blocks starting at `p` into the frame rectangle of `canvas`. Returns an error
 * message, or undefined once every row of the frame is written. Mirrors Pillow's decoder: table of
 * 4096 entries that stops growing when full, code == next allowed (KwKwK), codes past next rejected.
 */
function lzwDecode(
  b: Buffer, start: number, bits: number, interlaced: boolean,
  canvas: Uint8Array, canvasWidth: number, x0: number, y0: number, fw: number, fh: number,
): string | undefined {
  const clear = 1 << bits;
  const end = clear + 1;
  const prefix = new Int16Array(4096);
  const suffix = new Uint8Array(4096);
  const stack = new Uint8Array(4097);
  let codeSize = bits + 1;
  let codeMask = (1 << codeSize) - 1;
  let next = clear + 2;
  let prev = -1;  // previous code; -1 right after a clear
  let prevFirst = 0;  // first byte of the previous code's string

  // Output position, with Pillow's interlace passes (start row, step): (0,8) (4,8) (2,4) (1,2).
  let x = 0;
  let y = 0;
  let pass = 0;
  let step = interlaced ? 8 : 1;
  let done = false;
  const put = (v: number): void => {
    canvas[(y0 + y) * canvasWidth + x0 + x] = v;
    if (++x < fw) return;
    x = 0;
    y += step;
    while (y >= fh) {
      if (!interlaced || pass === 3) {
        done = true;
        return;
      }
      pass++;
      y = [0, 4, 2, 1][pass]!;
      step = [8, 8, 4, 2][pass]!;
    }
  };

  let p = start;
  let blockLeft = 0;
  let acc = 0;
  let accBits = 0;
  for (;;) {
    while (accBits < codeSize) {
      if (blockLeft === 0) {
        if (p >= b.length) return 'truncated GIF image data';
        blockLeft = b[p++]!;
        if (blockLeft === 0) return 'GIF image data ends before the frame is complete';
        if (p + blockLeft > b.length) return 'truncated GIF image data';
      }
      acc |= b[p++]! << accBits;
      accBits += 8;
      blockLeft--;
    }
    const code = acc & codeMask;
    acc >>>= codeSize;
    accBits -= codeSize;

    if (code === clear) {
      codeSize = bits + 1;
      codeMask = (1 << codeSize) - 1;
      next = clear + 2;
      prev = -1;
      continue;
    }
    if (code === end) return 'GIF image data ends before the frame is complete';

    let sp = 0;
    if (prev < 0) {
      if (code > clear) return 'corrupt GIF image data';
      stack[sp++] = code;
      prevFirst = code;
      prev = code;
    } else {
      if (code > next) return 'corrupt GIF image data';
      let c = code;
      if (code === next) {
        stack[sp++] = prevFirst;  // KwKwK: the new string is prev's string + its first byte
        c = prev;
      }
      while (c >= clear) {
        if (c >= 4096 || sp >= 4096) return 'corrupt GIF image data';
        stack[sp++] = suffix[c]!;
        c = prefix[c]!;
      }
      stack[sp++] = c;
      const first = c;
      if (next < 4096) {
        prefix[next] = prev;
        suffix[next] = first;
        if (next === codeMask && codeSize < 12) {
          codeSize++;
          codeMask = (1 << codeSize) - 1;
        }
        next++;
      }
      prevFirst = first;
      prev = code;
    }
    // The string was collected last byte first.
    while (sp > 0) {
      put(stack[--sp]!);
      if (done) return undefined;
    }
  }
}
