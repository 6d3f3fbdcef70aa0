// Video input: a file, encoded bytes or already-decoded frames -> the frames the reference samples,
// as 8-bit RGB, streamed one at a time. Internal module.
//
// # The reference
//
// transformers 5.18 `load_video` with its default backend, PyAV (`read_video_pyav`), then
// `VideoLlama3VideoProcessor.sample_frames` (spec §6.1):
//
// - **Frame count** = `container.streams.video[0].frames`, i.e. the container's `nb_frames` (what
//   ffprobe prints as `nb_frames`); **fps** = `stream.average_rate`, i.e. `avg_frame_rate`. When the
//   container has no frame count (Matroska/WebM), PyAV says 0 and the reference cannot sample the
//   video at all; here the frames are counted instead (`ffprobe -count_frames`, a full decode).
//   When the stream has no average rate, `r_frame_rate` is used, and failing that 1 fps (the spec's
//   "fps unknown" rule: timestamps = indices).
// - **Frames** are the decoder's output in presentation order, counted from 0 (PyAV's
//   `enumerate(container.decode(video=0))`); frame `n` is kept when it is a sampled index. Here one
//   ffmpeg process decodes the stream with a `select` filter that keeps exactly those frames
//   (an O(1) arithmetic test, see {@link selectExpression}) and `-vsync passthrough`, so no frame is
//   duplicated or dropped, and writes raw `rgb24` to a pipe.
// - **Rotation is not applied by default.** PyAV (and libavcodec) return frames as coded, ignoring the
//   display matrix; the ffmpeg CLI would auto-rotate, so it runs with `-noautorotate`.
//   rotate90_2s_160x96.mp4 gives 160x96 frames, as in the reference. The rotation is reported in
//   {@link VideoMetadata}; `autoRotate: true` applies it instead (ffmpeg's own transpose/flip,
//   lossless), for phone videos, departing from the reference on purpose.
// - **YUV -> RGB** is libswscale's unscaled conversion to `rgb24` with its defaults (BT.601 matrix,
//   limited range unless the stream says full range), which is what PyAV's `to_ndarray("rgb24")`
//   (`VideoFrame.reformat`, also libswscale) does: PyAV 18.1 (with its own FFmpeg) gives the very same
//   RGB bytes as this path on every test clip (tools/reference/make_fixtures.py asserts it; the parity
//   test compares the sampled frames' sha256).
// - **Timestamps** are `index / fps` in float32 as the reference computes them ({@link frameTimestamp},
//   spec §6.1), formatted with {@link formatTimestamp} (pitfall 9).
// - **Indices** are `floor(i * N / n)` for i = 0..n-1 (pitfall 20: the reference's float `arange`
//   sometimes yields an extra, out-of-range index; it is not copied).
//
// # Memory
//
// Frames are streamed: ffmpeg's stdout is read with back-pressure (reading stops while the consumer
// holds a frame), so at most a couple of frames plus the pipe buffers are in memory, whatever the
// video's length. Buffers are written to a temporary file (MP4 needs seeking; a pipe cannot) that is
// deleted when the call ends. An `AsyncIterable` of decoded frames is the exception: the total count
// decides which frames are sampled, so the iterable is read to its end first (unselected frames are
// released once the count is known).
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { VideoLlama3Error } from '../errors';
import { checkKnownKeys, invalid, signalOption } from '../validate';

/**
 * One already-decoded frame (camera, WebCodecs, your own decoder): rows top to bottom, channels
 * interleaved, no row padding. All frames of a video must have the same size.
 */
export interface DecodedFrame {
  /** `width * height * channels` bytes. */
  data: Uint8Array | Buffer;
  /** Pixels per row, a positive integer. */
  width: number;
  /** Rows, a positive integer. */
  height: number;
  /** 3 = RGB (default), 4 = RGBA (alpha dropped, not composited). */
  channels?: 3 | 4;
  /** Presentation time in seconds; finite and non-decreasing across the video. */
  timestamp: number;
}

/**
 * A video: a file path; the encoded bytes of a file (any container/codec the ffmpeg binary decodes);
 * or already-decoded frames, as an array or an async iterable.
 */
export type VideoInput = string | Buffer | readonly DecodedFrame[] | AsyncIterable<DecodedFrame>;

/** Options of {@link planVideo}, {@link sampleVideoFrames} and {@link probeVideo}. */
export interface VideoSamplingOptions {
  /** Frames to sample per second of video, a positive number. Default 1 (as the VideoLLaMA 3 docs). */
  fps?: number;
  /** Most frames sampled, a positive integer. Default 180. */
  maxFrames?: number;
  /** Fewest frames sampled (if the video has that many), a positive integer. Default 4. */
  minFrames?: number;
  /**
   * The ffmpeg binary. Default `ffmpeg` on PATH. ffprobe is looked for next to it (the same path
   * with `ffmpeg` in the file name replaced by `ffprobe`), or `ffprobe` on PATH by default.
   */
  ffmpegPath?: string;
  /** Cancels probing and decoding: the call rejects with `signal.reason` and ffmpeg is killed. */
  signal?: AbortSignal;
  /**
   * Apply the display rotation (phone videos) so frames come out upright. Default `false`, as the
   * reference (PyAV ignores it): turning it on changes the frames the model sees.
   */
  autoRotate?: boolean;
}

/** What {@link probeVideo} found out about a video (its first video stream). */
export interface VideoMetadata {
  /**
   * Width of the frames produced, in pixels. The display rotation is applied only with
   * `autoRotate` (as the reference, by default this is the stream's decoded width even when
   * `rotation` is 90 or 270).
   */
  width: number;
  /** Height of the frames produced, in pixels (see `width`). */
  height: number;
  /** Native frame rate: the stream's average frame rate (`avg_frame_rate`), as the reference. */
  fps: number;
  /** Frames in the stream: the container's count (`nb_frames`), or counted by decoding if absent. */
  frameCount: number;
  /** `frameCount / fps`, in seconds (as the reference's metadata). */
  durationS: number;
  /** Display rotation in degrees, 0..359 (from the display matrix); applied only with `autoRotate`. */
  rotation: number;
  /** Whether the frames produced have `rotation` applied (`autoRotate` and a non-zero rotation). */
  rotated: boolean;
  /** Codec name as ffprobe gives it (`h264`, `vp9`, ...), or `raw` for decoded frames. */
  codec: string;
}

/** One sampled frame: 8-bit RGB, HWC, `width * height * 3` bytes. */
export interface SampledFrame {
  /** Index of the frame in the video (0-based, presentation order). */
  index: number;
  /** `index / metadata.fps` in float32 ({@link frameTimestamp}), in seconds: the time the prompt shows. */
  timestamp: number;
  data: Buffer;
  width: number;
  height: number;
}

/** A video's sampling plan: known before any pixel is decoded. */
export interface VideoPlan {
  metadata: VideoMetadata;
  /** Sampled frame indices, increasing. */
  indices: number[];
  /** `indices[k] / metadata.fps`, in float32 ({@link frameTimestamp}). */
  timestamps: number[];
  /**
   * Decodes the sampled frames, in order. For a file or Buffer each call starts a new ffmpeg; for
   * an async iterable input it can be called once. Breaking out of the loop stops ffmpeg.
   */
  frames(): AsyncGenerator<SampledFrame>;
}

const DEFAULT_FPS = 1;
const DEFAULT_MAX_FRAMES = 180;
const DEFAULT_MIN_FRAMES = 4;
const KNOWN_OPTIONS = ['fps', 'maxFrames', 'minFrames', 'ffmpegPath', 'signal', 'autoRotate'] as const;
const STDERR_TAIL = 2000;

interface Resolved {
  fps: number;
  maxFrames: number;
  minFrames: number;
  ffmpeg: string;
  ffprobe: string;
  signal: AbortSignal | undefined;
  autoRotate: boolean;
}

function positiveInt(name: string, v: unknown, fallback: number): number {
  if (v === undefined) return fallback;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 1) invalid(name, 'positive integer', v);
  return v;
}

function positiveNumber(name: string, v: unknown, fallback: number): number {
  if (v === undefined) return fallback;
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) invalid(name, 'positive finite number', v);
  return v;
}

function resolveOptions(opts: unknown, where: string): Resolved {
  if (opts === undefined) opts = {};
  if (opts === null || typeof opts !== 'object') invalid('options', 'an options object', opts);
  const o = opts as VideoSamplingOptions;
  checkKnownKeys(where, o, KNOWN_OPTIONS);
  let ffmpeg = 'ffmpeg';
  let ffprobe = 'ffprobe';
  if (o.ffmpegPath !== undefined) {
    if (typeof o.ffmpegPath !== 'string' || o.ffmpegPath.length === 0) {
      invalid('options.ffmpegPath', 'non-empty string', o.ffmpegPath);
    }
    ffmpeg = o.ffmpegPath;
    const base = basename(ffmpeg);
    const i = base.toLowerCase().lastIndexOf('ffmpeg');
    const probeBase = i >= 0 ? base.slice(0, i) + 'ffprobe' + base.slice(i + 6) : 'ffprobe';
    ffprobe = ffmpeg.includes('/') || ffmpeg.includes('\\') ? join(dirname(ffmpeg), probeBase) : probeBase;
  }
  return {
    fps: positiveNumber('options.fps', o.fps, DEFAULT_FPS),
    maxFrames: positiveInt('options.maxFrames', o.maxFrames, DEFAULT_MAX_FRAMES),
    minFrames: positiveInt('options.minFrames', o.minFrames, DEFAULT_MIN_FRAMES),
    ffmpeg,
    ffprobe,
    signal: signalOption('options.signal', o.signal),
    autoRotate: o.autoRotate === undefined ? false : typeof o.autoRotate === 'boolean' ? o.autoRotate : invalid('options.autoRotate', 'boolean', o.autoRotate),
  };
}

// ---------------------------------------------------------------------------------------------
// Sampling and timestamps

/**
 * The frame indices the reference samples (`VideoLlama3VideoProcessor.sample_frames` with `fps`,
 * spec §6.1): `maxf = floor(min(maxFrames, N))`, `n = floor(min(max(N / nativeFps * fps, minFrames),
 * maxf, N))`, indices `floor(i * N / n)` for i = 0..n-1. A video with fewer than `minFrames` frames
 * gives all its frames. Never returns the reference's occasional extra out-of-range index.
 *
 * @param totalFrames Frames in the video, a non-negative integer (0 gives `[]`).
 * @param nativeFps The video's frame rate, a positive number.
 * @throws VideoLlama3Error `INVALID_ARGUMENT` for out-of-range arguments.
 * @example sampleFrameIndices(240, 24) // [0, 24, 48, ..., 216]
 */
export function sampleFrameIndices(
  totalFrames: number,
  nativeFps: number,
  opts: { fps?: number; maxFrames?: number; minFrames?: number } = {},
): number[] {
  if (typeof totalFrames !== 'number' || !Number.isSafeInteger(totalFrames) || totalFrames < 0) {
    invalid('totalFrames', 'non-negative integer', totalFrames);
  }
  if (typeof nativeFps !== 'number' || !Number.isFinite(nativeFps) || nativeFps <= 0) {
    invalid('nativeFps', 'positive finite number', nativeFps);
  }
  if (opts === null || typeof opts !== 'object') invalid('options', 'an options object', opts);
  const fps = positiveNumber('options.fps', opts.fps, DEFAULT_FPS);
  const maxFrames = positiveInt('options.maxFrames', opts.maxFrames, DEFAULT_MAX_FRAMES);
  const minFrames = positiveInt('options.minFrames', opts.minFrames, DEFAULT_MIN_FRAMES);
  const N = totalFrames;
  if (N === 0) return [];
  const maxf = Math.floor(Math.min(maxFrames, N));
  // Same float operations, in the same order, as the Python reference.
  const wanted = (N / nativeFps) * fps;
  const n = Math.floor(Math.min(Math.max(wanted, minFrames), maxf, N));
  const out = new Array<number>(n);
  // i * N < 2^53 and the division is correctly rounded, so floor() is exact (no integer quotient
  // is approached closer than 1/n).
  for (let i = 0; i < n; i++) out[i] = Math.floor((i * N) / n);
  return out;
}

/**
 * The reference's timestamp of frame `index` of a video at `nativeFps`: `index / nativeFps` as
 * transformers computes it, an int32 index tensor divided by the fps, hence in float32
 * (`float32(float32(index) / float32(nativeFps))`: 7 / 10 gives 0.699999988..., which `.1f` still
 * prints "0.7", but 0.45-like values can round the other way than the float64 quotient would).
 * @example frameTimestamp(7, 10) // 0.699999988079071
 */
export function frameTimestamp(index: number, nativeFps: number): number {
  return Math.fround(Math.fround(index) / Math.fround(nativeFps));
}

/**
 * Formats seconds with one decimal exactly as Python's `f"{t:.1f}"`: the exact binary value of `t`
 * rounded to the nearest tenth, exact ties to even (0.25 -> "0.2", 0.75 -> "0.8", 2.675 -> "2.7",
 * 31/30 -> "1.0"). JavaScript's `toFixed(1)` rounds exact ties up instead (spec pitfall 9).
 * `-0` and small negatives keep their sign ("-0.0"); NaN and infinities print as Python does.
 */
export function formatTimestamp(seconds: number): string {
  if (typeof seconds !== 'number') invalid('seconds', 'number', seconds);
  if (Number.isNaN(seconds)) return 'nan';
  if (!Number.isFinite(seconds)) return seconds > 0 ? 'inf' : '-inf';
  const negative = seconds < 0 || Object.is(seconds, -0);
  const x = Math.abs(seconds);
  // x = m * 2^e exactly, m an integer < 2^53.
  const view = new DataView(new ArrayBuffer(8));
  view.setFloat64(0, x);
  const hi = view.getUint32(0);
  const lo = view.getUint32(4);
  const biased = (hi >>> 20) & 0x7ff;
  let m = (BigInt(hi & 0xfffff) << 32n) | BigInt(lo);
  let e: number;
  if (biased === 0) e = -1074;
  else {
    m |= 1n << 52n;
    e = biased - 1075;
  }
  let tenths: bigint;
  if (e >= 0) tenths = (m * 10n) << BigInt(e);
  else {
    const den = 1n << BigInt(-e);
    const num = m * 10n;
    tenths = num / den;
    const twiceRem = (num % den) * 2n;
    if (twiceRem > den || (twiceRem === den && tenths % 2n === 1n)) tenths += 1n;
  }
  const s = tenths.toString();
  const body = s.length === 1 ? `0.${s}` : `${s.slice(0, -1)}.${s.slice(-1)}`;
  return negative ? `-${body}` : body;
}

// ---------------------------------------------------------------------------------------------
// Child processes

function notFound(tool: 'ffmpeg' | 'ffprobe', path: string): VideoLlama3Error {
  const where = path === tool ? 'on PATH' : `at ${JSON.stringify(path)}`;
  return new VideoLlama3Error(
    'IO_ERROR',
    `${tool} was not found ${where}; install it (apt-get install ffmpeg / brew install ffmpeg) or pass ffmpegPath`,
  );
}

function tail(s: string): string {
  const t = s.trim();
  return t.length > STDERR_TAIL ? `...${t.slice(-STDERR_TAIL)}` : t;
}

/** Waits for a child to exit (or fail to start); never rejects. */
function exited(child: ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null; error?: Error }> {
  return new Promise((resolve) => {
    let error: Error | undefined;
    child.once('error', (err) => {
      error = err;
      // A child that failed to spawn may never emit 'close'.
      if (child.pid === undefined) resolve({ code: null, signal: null, error });
    });
    child.once('close', (code, signal) => resolve({ code, signal, ...(error ? { error } : {}) }));
  });
}

function killChild(child: ChildProcess): void {
  if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) {
    try {
      child.kill('SIGKILL');
    } catch {
      // Already gone.
    }
  }
}

/** Runs ffprobe to completion, collecting stdout; rejects with coded errors. */
async function runProbe(r: Resolved, args: string[], label: string): Promise<string> {
  const { signal } = r;
  if (signal?.aborted) throw signal.reason;
  const child = spawn(r.ffprobe, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const done = exited(child);
  const onAbort = (): void => killChild(child);
  signal?.addEventListener('abort', onAbort, { once: true });
  let out = '';
  let err = '';
  child.stdout?.setEncoding('utf8').on('data', (d: string) => (out += d));
  child.stderr?.setEncoding('utf8').on('data', (d: string) => {
    err += d;
    if (err.length > 4 * STDERR_TAIL) err = err.slice(-2 * STDERR_TAIL);
  });
  try {
    const res = await done;
    if (signal?.aborted) throw signal.reason;
    if (res.error) {
      if ((res.error as NodeJS.ErrnoException).code === 'ENOENT') throw notFound('ffprobe', r.ffprobe);
      throw new VideoLlama3Error('IO_ERROR', `Cannot run ffprobe (${r.ffprobe}): ${res.error.message}`);
    }
    if (res.code !== 0) {
      throw new VideoLlama3Error(
        'INVALID_ARGUMENT',
        `Cannot read a video from ${label}: ffprobe failed (${res.code ?? res.signal})${err ? `: ${tail(err)}` : ''}`,
      );
    }
    return out;
  } finally {
    signal?.removeEventListener('abort', onAbort);
    killChild(child);
  }
}

interface ProbeStream {
  index?: number;
  codec_type?: string;
  codec_name?: string;
  width?: number;
  height?: number;
  nb_frames?: string;
  nb_read_frames?: string;
  avg_frame_rate?: string;
  r_frame_rate?: string;
  disposition?: { attached_pic?: number };
  tags?: Record<string, string>;
  side_data_list?: Array<{ rotation?: number }>;
}

function parseRate(s: string | undefined): number {
  if (!s) return 0;
  const [a, b] = s.split('/');
  const num = Number(a);
  const den = b === undefined ? 1 : Number(b);
  const v = num / den;
  return Number.isFinite(v) && v > 0 ? v : 0;
}

interface Probed {
  metadata: VideoMetadata;
  streamIndex: number;
}

async function probeFile(path: string, label: string, r: Resolved): Promise<Probed> {
  const base = ['-v', 'error', '-print_format', 'json'];
  const json = await runProbe(r, [...base, '-show_streams', '-i', path], label);
  let streams: ProbeStream[];
  try {
    streams = (JSON.parse(json) as { streams?: ProbeStream[] }).streams ?? [];
  } catch {
    throw new VideoLlama3Error('INVALID_ARGUMENT', `Cannot read a video from ${label}: unparsable ffprobe output`);
  }
  const s = streams.find((x) => x.codec_type === 'video' && x.disposition?.attached_pic !== 1);
  if (!s || typeof s.index !== 'number') {
    throw new VideoLlama3Error('INVALID_ARGUMENT', `${label} has no video stream`);
  }
  const width = s.width ?? 0;
  const height = s.height ?? 0;
  if (!(width > 0 && height > 0)) {
    throw new VideoLlama3Error('INVALID_ARGUMENT', `${label}: the video stream has no frame size (corrupt?)`);
  }
  let frameCount = Number(s.nb_frames ?? 0);
  if (!Number.isSafeInteger(frameCount) || frameCount <= 0) {
    // No count in the container (Matroska/WebM): decode and count.
    const counted = await runProbe(
      r,
      [...base, '-count_frames', '-select_streams', String(s.index), '-show_entries', 'stream=nb_read_frames', '-i', path],
      label,
    );
    let n = 0;
    try {
      const st = (JSON.parse(counted) as { streams?: ProbeStream[] }).streams?.[0];
      n = Number(st?.nb_read_frames ?? 0);
    } catch {
      n = 0;
    }
    frameCount = Number.isSafeInteger(n) && n > 0 ? n : 0;
  }
  if (frameCount === 0) {
    throw new VideoLlama3Error('INVALID_ARGUMENT', `${label} has a video stream with no frames`);
  }
  const fps = parseRate(s.avg_frame_rate) || parseRate(s.r_frame_rate) || 1;
  let rotation = 0;
  const side = s.side_data_list?.find((d) => typeof d.rotation === 'number');
  if (side && typeof side.rotation === 'number') rotation = side.rotation;
  else if (s.tags?.rotate !== undefined && Number.isFinite(Number(s.tags.rotate))) rotation = Number(s.tags.rotate);
  rotation = ((Math.round(rotation) % 360) + 360) % 360;
  const rotated = r.autoRotate && rotation !== 0;
  const quarter = rotated && rotation % 180 !== 0; // 90 / 270: ffmpeg transposes, sides swap
  return {
    metadata: {
      width: quarter ? height : width,
      height: quarter ? width : height,
      fps,
      frameCount,
      durationS: frameCount / fps,
      rotation,
      rotated,
      codec: s.codec_name ?? 'unknown',
    },
    streamIndex: s.index,
  };
}

/** Runs `fn` with a file path for `input`: the path itself, or a temporary copy of a Buffer. */
async function withFile<T>(input: string | Buffer, fn: (path: string, label: string) => Promise<T>): Promise<T> {
  if (typeof input === 'string') {
    const label = `file ${JSON.stringify(input)}`;
    let st;
    try {
      st = await stat(input);
    } catch (err) {
      throw new VideoLlama3Error('IO_ERROR', `Cannot read ${label}: ${(err as Error).message}`, { cause: err });
    }
    if (!st.isFile()) throw new VideoLlama3Error('IO_ERROR', `Cannot read ${label}: not a regular file`);
    if (st.size === 0) throw new VideoLlama3Error('INVALID_ARGUMENT', `${label} is empty (0 bytes), not a video`);
    return fn(input, label);
  }
  const label = `Buffer of ${input.length} bytes`;
  if (input.length === 0) throw new VideoLlama3Error('INVALID_ARGUMENT', 'Video Buffer is empty (0 bytes)');
  const dir = await mkdtemp(join(tmpdir(), 'videollama3-video-'));
  try {
    const path = join(dir, 'input');
    await writeFile(path, input);
    return await fn(path, label);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * Reads a video's metadata with ffprobe (first video stream; cover-art streams skipped). Frame count
 * and fps are taken as the reference (transformers `load_video`, PyAV backend) takes them: the
 * container's `nb_frames` and the stream's `avg_frame_rate`. When the container has no frame count
 * (e.g. WebM, where the reference would see 0 frames), the frames are counted by decoding
 * (`ffprobe -count_frames`); a missing average rate falls back to `r_frame_rate`, then to 1.
 *
 * @param input A file path or the file's bytes (written to a temporary file, deleted afterwards).
 * @throws VideoLlama3Error `IO_ERROR` when ffprobe is missing or the file cannot be read;
 *   `INVALID_ARGUMENT` for corrupt, truncated, empty or non-video input, or a video with no frames.
 *   An aborted call rejects with `signal.reason`.
 */
export async function probeVideo(input: string | Buffer, opts?: VideoSamplingOptions): Promise<VideoMetadata> {
  const r = resolveOptions(opts, 'probeVideo()');
  if (typeof input !== 'string' && !Buffer.isBuffer(input)) invalid('input', 'a file path or a Buffer', input);
  return withFile(input, async (path, label) => (await probeFile(path, label, r)).metadata);
}

// ---------------------------------------------------------------------------------------------
// Decoding files

/**
 * Internal (exported for tests). An ffmpeg `select` expression true exactly for frame numbers `floor(i * N / n)`, i < n: frame f is
 * one iff i = ceil(f * n / N) satisfies i < n and floor(i * N / n) = f. Doubles are exact enough
 * (quotients of integers below 2^53 never round across an integer).
 */
export function selectExpression(N: number, n: number): string {
  if (n >= N) return '1';
  return `lt(ceil(n*${n}/${N}),${n})*eq(floor(ceil(n*${n}/${N})*${N}/${n}),n)`;
}

async function* decodeFile(
  input: string | Buffer,
  probed: Probed,
  indices: readonly number[],
  r: Resolved,
): AsyncGenerator<SampledFrame> {
  if (indices.length === 0) return;
  const { metadata, streamIndex } = probed;
  const { width, height, fps, frameCount } = metadata;
  const frameBytes = width * height * 3;
  const { signal } = r;
  if (signal?.aborted) throw signal.reason;

  // Temp file for Buffers, removed in finally.
  let dir: string | undefined;
  let path: string;
  let label: string;
  if (typeof input === 'string') {
    path = input;
    label = `file ${JSON.stringify(input)}`;
  } else {
    label = `Buffer of ${input.length} bytes`;
    dir = await mkdtemp(join(tmpdir(), 'videollama3-video-'));
    path = join(dir, 'input');
    await writeFile(path, input);
  }
  let child: ChildProcess | undefined;
  let onAbort: (() => void) | undefined;
  try {
    const expr = selectExpression(frameCount, indices.length);
    const args = [
      '-nostdin', '-hide_banner', '-loglevel', 'error',
      ...(metadata.rotated ? [] : ['-noautorotate']),
      '-i', path,
      '-map', `0:${streamIndex}`,
      '-an', '-sn', '-dn',
      '-vf', `select='${expr}'`,
      '-vsync', 'passthrough',
      '-f', 'rawvideo', '-pix_fmt', 'rgb24',
      'pipe:1',
    ];
    const proc = spawn(r.ffmpeg, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    child = proc;
    const done = exited(proc);
    onAbort = (): void => killChild(proc);
    signal?.addEventListener('abort', onAbort, { once: true });
    let err = '';
    proc.stderr?.setEncoding('utf8').on('data', (d: string) => {
      err += d;
      if (err.length > 4 * STDERR_TAIL) err = err.slice(-2 * STDERR_TAIL);
    });

    let k = 0;
    let frame = Buffer.allocUnsafe(frameBytes);
    let filled = 0;
    if (proc.stdout) {
      for await (const chunk of proc.stdout as AsyncIterable<Buffer>) {
        let off = 0;
        while (off < chunk.length) {
          // More decoded frames than the container claims are ignored (as the reference does).
          if (k >= indices.length) break;
          const take = Math.min(frameBytes - filled, chunk.length - off);
          chunk.copy(frame, filled, off, off + take);
          filled += take;
          off += take;
          if (filled === frameBytes) {
            const index = indices[k]!;
            const out: SampledFrame = { index, timestamp: frameTimestamp(index, fps), data: frame, width, height };
            k++;
            frame = Buffer.allocUnsafe(frameBytes);
            filled = 0;
            yield out;
            if (signal?.aborted) throw signal.reason;
          }
        }
      }
    }
    const res = await done;
    if (signal?.aborted) throw signal.reason;
    if (res.error) {
      if ((res.error as NodeJS.ErrnoException).code === 'ENOENT') throw notFound('ffmpeg', r.ffmpeg);
      throw new VideoLlama3Error('IO_ERROR', `Cannot run ffmpeg (${r.ffmpeg}): ${res.error.message}`);
    }
    if (res.code !== 0) {
      throw new VideoLlama3Error(
        'INVALID_ARGUMENT',
        `Decoding the video of ${label} failed after ${k} of ${indices.length} sampled frames ` +
          `(ffmpeg exit ${res.code ?? res.signal})${err ? `: ${tail(err)}` : ''}`,
      );
    }
    if (k < indices.length || filled !== 0) {
      throw new VideoLlama3Error(
        'INVALID_ARGUMENT',
        `The video of ${label} ended after ${k} of ${indices.length} sampled frames (truncated? the container ` +
          `says ${frameCount} frames)${err ? `: ${tail(err)}` : ''}`,
      );
    }
  } finally {
    if (onAbort) signal?.removeEventListener('abort', onAbort);
    if (child) {
      const c = child;
      killChild(c);
      c.stdout?.destroy();
      if (c.exitCode === null && c.signalCode === null && c.pid !== undefined) {
        await new Promise<void>((resolve) => c.once('close', () => resolve()));
      }
    }
    if (dir) await rm(dir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------------------
// Decoded frames

function checkFrame(f: unknown, i: number, first: DecodedFrame | undefined, prevT: number): DecodedFrame {
  const name = `frames[${i}]`;
  if (f === null || typeof f !== 'object') invalid(name, 'a frame { data, width, height, timestamp }', f);
  const fr = f as DecodedFrame;
  if (!(fr.data instanceof Uint8Array)) invalid(`${name}.data`, 'Buffer or Uint8Array', fr.data);
  const pos = (v: unknown): boolean => typeof v === 'number' && Number.isSafeInteger(v) && v >= 1;
  if (!pos(fr.width)) invalid(`${name}.width`, 'positive integer', fr.width);
  if (!pos(fr.height)) invalid(`${name}.height`, 'positive integer', fr.height);
  const ch = fr.channels ?? 3;
  if (ch !== 3 && ch !== 4) invalid(`${name}.channels`, '3 or 4', fr.channels);
  if (typeof fr.timestamp !== 'number' || !Number.isFinite(fr.timestamp)) {
    invalid(`${name}.timestamp`, 'finite number (seconds)', fr.timestamp);
  }
  if (fr.timestamp < prevT) {
    throw new VideoLlama3Error(
      'INVALID_ARGUMENT',
      `${name}.timestamp ${fr.timestamp} is before the previous frame's ${prevT}; frames must be in time order`,
    );
  }
  if (fr.data.length !== fr.width * fr.height * ch) {
    throw new VideoLlama3Error(
      'INVALID_ARGUMENT',
      `${name}.data must be width * height * channels = ${fr.width} * ${fr.height} * ${ch} = ` +
        `${fr.width * fr.height * ch} bytes, got ${fr.data.length}`,
    );
  }
  if (first && (fr.width !== first.width || fr.height !== first.height)) {
    throw new VideoLlama3Error(
      'INVALID_ARGUMENT',
      `${name} is ${fr.width}x${fr.height} but frames[0] is ${first.width}x${first.height}; all frames of a video must have the same size`,
    );
  }
  return fr;
}

function toRgb(f: DecodedFrame): Buffer {
  const ch = f.channels ?? 3;
  const src = f.data;
  if (ch === 3) return Buffer.from(src.buffer.slice(src.byteOffset, src.byteOffset + src.length));
  const px = f.width * f.height;
  const out = Buffer.allocUnsafe(px * 3);
  for (let p = 0, s = 0, d = 0; p < px; p++, s += 4, d += 3) {
    out[d] = src[s]!;
    out[d + 1] = src[s + 1]!;
    out[d + 2] = src[s + 2]!;
  }
  return out;
}

function planFrames(frames: readonly DecodedFrame[], r: Resolved): VideoPlan {
  if (frames.length === 0) throw new VideoLlama3Error('INVALID_ARGUMENT', 'The video has no frames (empty frame list)');
  let first: DecodedFrame | undefined;
  let prevT = -Infinity;
  // A plain loop, not forEach: forEach skips the holes of a sparse array, which must be errors.
  for (let i = 0; i < frames.length; i++) {
    if (!(i in frames)) {
      throw new VideoLlama3Error(
        'INVALID_ARGUMENT',
        `frames[${i}] is missing (a hole in a sparse array of ${frames.length}); pass a frame at every index`,
      );
    }
    const fr = checkFrame(frames[i], i, first, prevT);
    first ??= fr;
    prevT = fr.timestamp;
  }
  const N = frames.length;
  const f0 = frames[0]!;
  const span = frames[N - 1]!.timestamp - f0.timestamp;
  // Native fps estimated from the timestamps: (N - 1) frame intervals over the span; 1 when unknown.
  const fps = N >= 2 && span > 0 ? (N - 1) / span : 1;
  const metadata: VideoMetadata = {
    width: f0.width,
    height: f0.height,
    fps,
    frameCount: N,
    durationS: N / fps,
    rotation: 0,
    rotated: false,
    codec: 'raw',
  };
  const indices = sampleFrameIndices(N, fps, r);
  const chosen = indices.map((i) => frames[i]!);
  const { signal } = r;
  return {
    metadata,
    indices,
    timestamps: indices.map((i) => frameTimestamp(i, fps)),
    async *frames() {
      for (let k = 0; k < indices.length; k++) {
        if (signal?.aborted) throw signal.reason;
        const index = indices[k]!;
        const f = chosen[k]!;
        yield { index, timestamp: frameTimestamp(index, fps), data: toRgb(f), width: f.width, height: f.height };
      }
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Public entry points

function isAsyncIterable(v: unknown): v is AsyncIterable<DecodedFrame> {
  return v !== null && typeof v === 'object' && typeof (v as AsyncIterable<unknown>)[Symbol.asyncIterator] === 'function';
}

/** `value` awaited, or `signal.reason` as soon as `signal` aborts; the abort listener never outlives the race. */
function raceAbort<T>(value: PromiseLike<T> | T, signal: AbortSignal | undefined): Promise<T> {
  const settled = Promise.resolve(value);
  if (!signal) return settled;
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(signal.reason);
    if (signal.aborted) onAbort();
    else signal.addEventListener('abort', onAbort, { once: true });
    settled.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

/**
 * Reads an async iterable of frames to its end. Each `next()` races `signal`, so a source that
 * stalls cannot hold an aborted call: it rejects with `signal.reason` at once, and the iterator's
 * `return()` is called without being awaited (a stalled source may never answer it either).
 */
async function readFrames(input: AsyncIterable<DecodedFrame>, signal: AbortSignal | undefined): Promise<DecodedFrame[]> {
  if (signal?.aborted) throw signal.reason;
  const it = input[Symbol.asyncIterator]();
  if (it === null || typeof it !== 'object' || typeof it.next !== 'function') {
    invalid('frames[Symbol.asyncIterator]()', 'an async iterator { next() }', it);
  }
  const all: DecodedFrame[] = [];
  try {
    for (;;) {
      if (signal?.aborted) throw signal.reason;
      const res: unknown = await raceAbort(it.next(), signal);
      if (res === null || typeof res !== 'object') {
        invalid(`the iterator result of frames[${all.length}]`, 'an object { done, value }', res);
      }
      const { done, value } = res as IteratorResult<DecodedFrame>;
      if (done) return all;
      all.push(value);
    }
  } catch (err) {
    if (!signal?.aborted) throw err;
    try {
      // Settles whenever the source gets to it; its outcome no longer matters.
      Promise.resolve(it.return?.()).catch(() => undefined);
    } catch {
      // A return() that throws is ignored the same way.
    }
    throw signal.reason;
  }
}

/**
 * Probes a video and decides which frames the reference would sample, before decoding any pixel
 * (the per-frame pixel budget depends on the number of frames). Call `plan.frames()` to decode them.
 *
 * For decoded frames, the native fps is estimated from the timestamps as (N - 1) / (last - first)
 * (1 when there is a single frame or no time span), the same sampling is applied, and timestamps are
 * `index / fps` (relative to the first frame). Fewer frames than `minFrames` are all used. An async
 * iterable is read to its end here (its length decides the sampling); unselected frames are released.
 * Aborting `signal` rejects with `signal.reason` even while the iterable is stalled in `next()`.
 *
 * @throws VideoLlama3Error as {@link probeVideo}, and `INVALID_ARGUMENT` for malformed frames
 *   (holes in a sparse array, wrong data length, mixed sizes, timestamps out of order), an iterable
 *   that breaks the iterator protocol, or options.
 */
export async function planVideo(input: VideoInput, opts?: VideoSamplingOptions): Promise<VideoPlan> {
  const r = resolveOptions(opts, 'planVideo()');
  if (typeof input === 'string' || Buffer.isBuffer(input)) {
    const src = input;
    const probed = await withFile(src, (path, label) => probeFile(path, label, r));
    const indices = sampleFrameIndices(probed.metadata.frameCount, probed.metadata.fps, r);
    return {
      metadata: probed.metadata,
      indices,
      timestamps: indices.map((i) => frameTimestamp(i, probed.metadata.fps)),
      frames: () => decodeFile(src, probed, indices, r),
    };
  }
  if (Array.isArray(input)) return planFrames(input as readonly DecodedFrame[], r);
  if (isAsyncIterable(input)) return planFrames(await readFrames(input, r.signal), r);
  if (input instanceof Uint8Array) {
    return planVideo(Buffer.from(input.buffer, input.byteOffset, input.byteLength), opts);
  }
  return invalid('input', 'a file path, a Buffer, an array or async iterable of decoded frames', input);
}

/**
 * Decodes the frames the reference samples from a video, one at a time, as 8-bit RGB (HWC). Files
 * and Buffers are decoded by one ffmpeg process with back-pressure, so memory stays at a few frames
 * whatever the video's length. Breaking out of the loop, or aborting `signal`, kills ffmpeg; an
 * aborted call rejects with `signal.reason`. Use {@link planVideo} to know the frame count first.
 *
 * @throws VideoLlama3Error `IO_ERROR` when ffmpeg/ffprobe is missing; `INVALID_ARGUMENT` for corrupt,
 *   truncated, empty or non-video input, or when ffmpeg fails mid-stream (with its stderr tail).
 * @example
 * for await (const f of sampleVideoFrames('clip.mp4', { fps: 1 })) console.log(formatTimestamp(f.timestamp));
 */
export async function* sampleVideoFrames(input: VideoInput, opts?: VideoSamplingOptions): AsyncGenerator<SampledFrame> {
  const plan = await planVideo(input, opts);
  yield* plan.frames();
}
