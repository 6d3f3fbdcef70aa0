// Video input (lib/media/video.ts): metadata and sampling as transformers 5.18 (PyAV backend +
// VideoLlama3VideoProcessor.sample_frames, spec §6.1), pixels as an independent ffmpeg decode,
// bounded memory, and every error path. Needs ffmpeg/ffprobe on PATH; skipped otherwise.
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import v8 from 'node:v8';
import { runInNewContext } from 'node:vm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { VideoLlama3Error } from '../lib/errors';
import {
  formatTimestamp,
  frameTimestamp,
  planVideo,
  probeVideo,
  sampleFrameIndices,
  sampleVideoFrames,
  type DecodedFrame,
  type SampledFrame,
} from '../lib/media/video';

const hasTool = (t: string): boolean => spawnSync(t, ['-version'], { stdio: 'ignore' }).status === 0;
const haveFfmpeg = hasTool('ffmpeg') && hasTool('ffprobe');
const videos = join(__dirname, 'fixtures', 'videos');
const clip = (name: string): string => join(videos, name);

/** Values from /work/shared/testdata/media_expected.json (ffprobe 5.1 / PyAV 18.1). */
const CLIPS = [
  { name: 'bbb_cuts_10s_640x360.mp4', codec: 'h264', w: 640, h: 360, fps: 24, frames: 240, rotation: 0 },
  { name: 'synthetic_static_motion_cut_12s.mp4', codec: 'h264', w: 640, h: 360, fps: 10, frames: 120, rotation: 0 },
  { name: 'testsrc2_3s_320x240_vp9.webm', codec: 'vp9', w: 320, h: 240, fps: 10, frames: 30, rotation: 0 },
  // The display matrix says 90 degrees; frames stay 160x96 as PyAV returns them.
  { name: 'rotate90_2s_160x96.mp4', codec: 'h264', w: 160, h: 96, fps: 10, frames: 20, rotation: 90 },
] as const;

/** Spec §6.1 written out independently of the implementation. */
function expectedIndices(N: number, fps0: number, fps = 1, maxFrames = 180, minFrames = 4): number[] {
  const maxf = Math.floor(Math.min(maxFrames, N));
  const n = Math.floor(Math.min(Math.max((N / fps0) * fps, minFrames), maxf, N));
  return Array.from({ length: n }, (_, i) => Math.floor((i * N) / n));
}

async function collect(it: AsyncIterable<SampledFrame>): Promise<SampledFrame[]> {
  const out: SampledFrame[] = [];
  for await (const f of it) out.push(f);
  return out;
}

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(VideoLlama3Error);
    return `${(err as VideoLlama3Error).code}: ${(err as Error).message}`;
  }
  throw new Error('expected a rejection');
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('frameTimestamp (the reference divides an int32 index tensor: float32)', () => {
  it('is float32(float32(index) / float32(fps)), which can print differently from the float64 quotient', () => {
    expect(frameTimestamp(7, 10)).toBe(Math.fround(0.7));
    expect(frameTimestamp(30, 30000 / 1001)).toBe(Math.fround(Math.fround(30) / Math.fround(30000 / 1001)));
    // torch: (torch.tensor([9], dtype=torch.int32) / 20.0) -> 0.44999998807907104 -> "0.4"
    expect(frameTimestamp(9, 20)).toBe(0.44999998807907104);
    expect(formatTimestamp(frameTimestamp(9, 20))).toBe('0.4');
    expect(formatTimestamp(9 / 20)).toBe('0.5');
  });
});

describe('formatTimestamp (Python f"{t:.1f}")', () => {
  // Expected strings printed by python3 -c 'print(f"{x:.1f}")'.
  const table: Array<[number, string]> = [
    [0.25, '0.2'], [0.75, '0.8'], [31 / 30, '1.0'], [1.05, '1.1'], [2.675, '2.7'], [0.05, '0.1'],
    [0.15, '0.1'], [0.35, '0.3'], [0.45, '0.5'], [1.25, '1.2'], [2.5, '2.5'], [9.95, '9.9'],
    [0, '0.0'], [-0, '-0.0'], [-0.04, '-0.0'], [123.45, '123.5'], [1e-320, '0.0'], [3, '3.0'],
    [1 / 3, '0.3'], [7 / 24, '0.3'], [1e16, '10000000000000000.0'], [0.95, '0.9'], [59.95, '60.0'],
    [1.15, '1.1'],
  ];
  it.each(table)('%s -> %s', (x, s) => expect(formatTimestamp(x)).toBe(s));
  it('differs from toFixed on exact ties', () => {
    expect((0.25).toFixed(1)).toBe('0.3');
    expect(formatTimestamp(0.25)).toBe('0.2');
  });
  it('non-finite values print as Python', () => {
    expect(formatTimestamp(NaN)).toBe('nan');
    expect(formatTimestamp(Infinity)).toBe('inf');
    expect(formatTimestamp(-Infinity)).toBe('-inf');
  });
});

describe('sampleFrameIndices (spec §6.1)', () => {
  it('matches the formula on a grid of sizes', () => {
    for (const N of [1, 2, 3, 4, 5, 7, 30, 100, 185, 240, 1000, 3600, 100000]) {
      for (const fps0 of [1, 10, 23.976, 24, 29.97, 30, 60]) {
        for (const fps of [0.5, 1, 2]) {
          const got = sampleFrameIndices(N, fps0, { fps });
          expect(got).toEqual(expectedIndices(N, fps0, fps));
          expect(got.every((i) => i >= 0 && i < N)).toBe(true);
        }
      }
    }
  });
  it('never returns the reference arange bug index (N = 185, n = 180)', () => {
    const got = sampleFrameIndices(185, 1);
    expect(got).toHaveLength(180);
    expect(got[179]).toBe(Math.floor((179 * 185) / 180));
    expect(Math.max(...got)).toBeLessThan(185);
  });
  it('uses all frames when there are fewer than minFrames, and honours maxFrames', () => {
    expect(sampleFrameIndices(3, 30)).toEqual([0, 1, 2]);
    expect(sampleFrameIndices(30, 30)).toEqual([0, 7, 15, 22]);
    expect(sampleFrameIndices(3600, 30, { maxFrames: 10 })).toEqual(expectedIndices(3600, 30, 1, 10));
    expect(sampleFrameIndices(0, 30)).toEqual([]);
  });
  it('rejects bad arguments', () => {
    expect(() => sampleFrameIndices(-1, 30)).toThrow(VideoLlama3Error);
    expect(() => sampleFrameIndices(10, 0)).toThrow(/nativeFps/);
    expect(() => sampleFrameIndices(10, 30, { fps: -1 })).toThrow(/options.fps/);
    expect(() => sampleFrameIndices(10, 30, { maxFrames: 1.5 })).toThrow(/options.maxFrames/);
  });
});

describe('decoded-frame input', () => {
  const mk = (n: number, fps: number, channels: 3 | 4 = 3): DecodedFrame[] =>
    Array.from({ length: n }, (_, i) => ({
      data: Buffer.alloc(4 * 2 * channels, i),
      width: 4,
      height: 2,
      channels,
      timestamp: 5 + i / fps,
    }));

  it('array: same sampling with fps estimated from timestamps', async () => {
    const frames = mk(90, 30);
    const plan = await planVideo(frames);
    expect(plan.metadata.fps).toBeCloseTo(30, 9);
    expect(plan.indices).toEqual(expectedIndices(90, plan.metadata.fps));
    const got = await collect(plan.frames());
    expect(got.map((f) => f.index)).toEqual(plan.indices);
    expect(got[1]!.data).toEqual(Buffer.alloc(24, plan.indices[1]!));
    expect(got[1]!.timestamp).toBe(frameTimestamp(plan.indices[1]!, plan.metadata.fps));
  });
  it('async iterable, RGBA drops alpha, fewer than minFrames uses all', async () => {
    async function* gen(): AsyncGenerator<DecodedFrame> {
      for (let i = 0; i < 3; i++) {
        const data = Buffer.alloc(4 * 2 * 4);
        for (let p = 0; p < 8; p++) data.set([i, 10 + i, 20 + i, 255], p * 4);
        yield { data, width: 4, height: 2, channels: 4, timestamp: i * 0.5 };
      }
    }
    const got = await collect(sampleVideoFrames(gen()));
    expect(got.map((f) => f.index)).toEqual([0, 1, 2]);
    expect(got.map((f) => f.timestamp)).toEqual([0, 0.5, 1]);
    expect([...got[2]!.data.subarray(0, 6)]).toEqual([2, 12, 22, 2, 12, 22]);
    expect(got[2]!.data).toHaveLength(24);
  });
  it('a single frame has fps 1', async () => {
    const plan = await planVideo(mk(1, 30));
    expect(plan.metadata.fps).toBe(1);
    expect(plan.indices).toEqual([0]);
  });
  it('rejects malformed frames', async () => {
    expect(await codeOf(planVideo([]))).toMatch(/^INVALID_ARGUMENT/);
    const bad = mk(3, 10);
    bad[1] = { ...bad[1]!, data: Buffer.alloc(5) };
    expect(await codeOf(planVideo(bad))).toMatch(/frames\[1\]\.data/);
    const mixed = mk(3, 10);
    mixed[2] = { data: Buffer.alloc(3 * 3 * 3), width: 3, height: 3, timestamp: 9 };
    expect(await codeOf(planVideo(mixed))).toMatch(/same size/);
    const order = mk(3, 10);
    order[2] = { ...order[2]!, timestamp: 0 };
    expect(await codeOf(planVideo(order))).toMatch(/time order/);
    expect(await codeOf(planVideo(mk(3, 10), { fps: 0 }))).toMatch(/options.fps/);
    expect(await codeOf(planVideo(mk(3, 10), { fpss: 1 } as never))).toMatch(/did you mean 'fps'/);
  });
});

describe.skipIf(!haveFfmpeg)(haveFfmpeg ? 'ffmpeg decoding' : 'ffmpeg decoding (skipped: ffmpeg/ffprobe not on PATH)', () => {
  let tmp: string;
  beforeAll(() => {
    tmp = mkdtempSync(join(tmpdir(), 'vl3-video-test-'));
  });
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));

  it.each(CLIPS)('metadata of $name', async (c) => {
    const m = await probeVideo(clip(c.name));
    expect(m).toEqual({
      width: c.w,
      height: c.h,
      fps: c.fps,
      frameCount: c.frames,
      durationS: c.frames / c.fps,
      rotation: c.rotation,
      rotated: false,
      codec: c.codec,
    });
  });

  it.each(CLIPS)('fps=1 indices, timestamps and frames of $name', async (c) => {
    const plan = await planVideo(clip(c.name), { fps: 1 });
    const want = expectedIndices(c.frames, c.fps);
    expect(plan.indices).toEqual(want);
    expect(plan.timestamps).toEqual(want.map((i) => frameTimestamp(i, c.fps)));
    const got = await collect(plan.frames());
    expect(got.map((f) => f.index)).toEqual(want);
    expect(got.map((f) => f.timestamp)).toEqual(plan.timestamps);
    for (const f of got) {
      expect([f.width, f.height]).toEqual([c.w, c.h]);
      expect(f.data).toHaveLength(c.w * c.h * 3);
    }
  });

  it.each(CLIPS)('sampled pixels of $name equal an independent ffmpeg decode (exact)', async (c) => {
    // Every frame decoded by ffmpeg without selection, rotation not applied (as PyAV); tolerance 0.
    const all = execFileSync(
      'ffmpeg',
      ['-v', 'error', '-noautorotate', '-i', clip(c.name), '-f', 'rawvideo', '-pix_fmt', 'rgb24', '-'],
      { maxBuffer: 1 << 30 },
    );
    const size = c.w * c.h * 3;
    expect(all.length).toBe(size * c.frames);
    const got = await collect(sampleVideoFrames(clip(c.name)));
    for (const f of got) {
      expect(f.data.equals(all.subarray(f.index * size, (f.index + 1) * size))).toBe(true);
    }
  });

  it('first frame equals ffmpeg select=eq(n\\,0) and a Buffer input gives the same frames', async () => {
    const name = 'bbb_cuts_10s_640x360.mp4';
    const ref = execFileSync('ffmpeg', [
      '-v', 'error', '-i', clip(name), '-vf', 'select=eq(n\\,0)', '-frames:v', '1', '-f', 'rawvideo', '-pix_fmt', 'rgb24', '-',
    ]);
    const fromPath = await collect(sampleVideoFrames(clip(name)));
    expect(fromPath[0]!.data.equals(ref)).toBe(true);
    const fromBuf = await collect(sampleVideoFrames(readFileSync(clip(name))));
    expect(fromBuf.map((f) => f.index)).toEqual(fromPath.map((f) => f.index));
    expect(fromBuf.every((f, k) => f.data.equals(fromPath[k]!.data))).toBe(true);
  });

  it('rotate90 frames are not rotated (ffmpeg CLI would give 96x160)', async () => {
    const [f] = await collect(sampleVideoFrames(clip('rotate90_2s_160x96.mp4'), { maxFrames: 1, minFrames: 1 }));
    expect([f!.width, f!.height]).toEqual([160, 96]);
  });

  it('autoRotate: true applies the display rotation (frames equal the ffmpeg CLI auto-rotated decode)', async () => {
    const file = clip('rotate90_2s_160x96.mp4');
    const m = await probeVideo(file, { autoRotate: true });
    expect([m.width, m.height, m.rotation, m.rotated]).toEqual([96, 160, 90, true]);
    const all = execFileSync('ffmpeg', ['-v', 'error', '-i', file, '-f', 'rawvideo', '-pix_fmt', 'rgb24', '-'], { maxBuffer: 1 << 26 });
    const size = 96 * 160 * 3;
    const got = await collect(sampleVideoFrames(file, { autoRotate: true }));
    expect(got.length).toBeGreaterThan(1);
    for (const f of got) {
      expect([f.width, f.height]).toEqual([96, 160]);
      expect(f.data.equals(all.subarray(f.index * size, (f.index + 1) * size))).toBe(true);
    }
    // Without a rotation in the file, autoRotate changes nothing.
    expect((await probeVideo(clip('bbb_cuts_10s_640x360.mp4'), { autoRotate: true })).rotated).toBe(false);
    await expect(probeVideo(file, { autoRotate: 'yes' as never })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  });

  it('memory stays bounded on a 120 s, 3600-frame video', async () => {
    const long = join(tmp, 'long.mp4');
    execFileSync('ffmpeg', [
      '-v', 'error', '-f', 'lavfi', '-i', 'testsrc2=duration=120:size=320x240:rate=30',
      '-c:v', 'libx264', '-preset', 'ultrafast', '-g', '300', '-pix_fmt', 'yuv420p', long,
    ]);
    const plan = await planVideo(long, { fps: 1 });
    expect(plan.metadata.frameCount).toBe(3600);
    expect(plan.indices).toEqual(expectedIndices(3600, 30));
    // Force collections so that what is measured is what is still referenced.
    v8.setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    gc();
    const before = process.memoryUsage();
    let peakBuffers = 0;
    let peakRss = 0;
    const samples: number[] = [];
    let n = 0;
    for await (const f of plan.frames()) {
      expect(f.index).toBe(plan.indices[n]);
      n++;
      await new Promise((r) => setTimeout(r, 2)); // a slow consumer: back-pressure must hold ffmpeg
      if (n % 10 === 0) {
        gc();
        const m = process.memoryUsage();
        peakBuffers = Math.max(peakBuffers, m.arrayBuffers - before.arrayBuffers);
        peakRss = Math.max(peakRss, m.rss - before.rss);
        samples.push(m.arrayBuffers);
      }
    }
    expect(n).toBe(120);
    const MiB = 1048576;
    console.log(`growth while decoding: Buffers ${(peakBuffers / MiB).toFixed(1)} MiB, RSS ${(peakRss / MiB).toFixed(1)} MiB`);
    // Keeping the 120 frames (230 KB each) would be 26 MiB of Buffers. Measured alone: a flat 0.5 MiB
    // (the frame held + the one being filled); other tests' leftovers add a few MiB when run together.
    expect(peakBuffers).toBeLessThan(12 * MiB);
    // Flat: no growth between the 10th and the 120th frame (beyond a few frames of noise; holding
    // every frame would grow by 25 MiB). RSS is process-wide (other tests' heaps), so bounded loosely.
    // Compared as min(last three samples) - max(first three): one late collection of another test's
    // garbage or one extra frame in flight at a sample cannot fail it; a leak (2.3 MiB per sample) does.
    const growth = Math.min(...samples.slice(-3)) - Math.max(...samples.slice(0, 3));
    expect(growth, `Buffers per sample: ${samples.map((b) => (b / MiB).toFixed(1)).join(' ')} MiB`).toBeLessThan(8 * 320 * 240 * 3);
    expect(peakRss, `RSS growth ${(peakRss / MiB).toFixed(1)} MiB`).toBeLessThan(64 * MiB);
  }, 60_000);

  describe('errors', () => {
    it('missing ffmpeg: IO_ERROR with install hint', async () => {
      const msg = await codeOf(planVideo(clip(CLIPS[0].name), { ffmpegPath: join(tmp, 'nope', 'ffmpeg') }));
      expect(msg).toMatch(/^IO_ERROR: ffprobe was not found/);
      expect(msg).toMatch(/apt-get install ffmpeg/);
      // ffprobe present, ffmpeg missing: the decode step reports it.
      const dir = join(tmp, 'probeonly');
      execFileSync('mkdir', ['-p', dir]);
      if (!existsSync(join(dir, 'ffprobe'))) symlinkSync(execFileSync('which', ['ffprobe']).toString().trim(), join(dir, 'ffprobe'));
      const msg2 = await codeOf(collect(sampleVideoFrames(clip(CLIPS[0].name), { ffmpegPath: join(dir, 'ffmpeg') })));
      expect(msg2).toMatch(/^IO_ERROR: ffmpeg was not found at .*pass ffmpegPath/);
    });

    it('missing file is IO_ERROR; empty file and empty Buffer are INVALID_ARGUMENT', async () => {
      expect(await codeOf(probeVideo(join(tmp, 'missing.mp4')))).toMatch(/^IO_ERROR/);
      const empty = join(tmp, 'empty.mp4');
      writeFileSync(empty, '');
      expect(await codeOf(probeVideo(empty))).toMatch(/^INVALID_ARGUMENT: file ".*empty.mp4" is empty/);
      expect(await codeOf(planVideo(Buffer.alloc(0)))).toMatch(/^INVALID_ARGUMENT: Video Buffer is empty/);
    });

    it('corrupt bytes are INVALID_ARGUMENT naming the input', async () => {
      const junk = Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 7919) & 255));
      expect(await codeOf(planVideo(junk))).toMatch(/^INVALID_ARGUMENT: Cannot read a video from Buffer of 4096 bytes/);
      const f = join(tmp, 'junk.mp4');
      writeFileSync(f, junk);
      expect(await codeOf(probeVideo(f))).toMatch(/^INVALID_ARGUMENT: .*junk\.mp4/);
    });

    it('truncated mp4 is INVALID_ARGUMENT', async () => {
      const bytes = readFileSync(clip('bbb_cuts_10s_640x360.mp4'));
      const cut = bytes.subarray(0, Math.floor(bytes.length / 2));
      const msg = await codeOf(collect(sampleVideoFrames(cut)));
      expect(msg).toMatch(/^INVALID_ARGUMENT: .*Buffer of \d+ bytes/);
    });

    it('audio-only WAV is INVALID_ARGUMENT: no video stream', async () => {
      const wav = join(tmp, 'tone.wav');
      execFileSync('ffmpeg', ['-v', 'error', '-f', 'lavfi', '-i', 'sine=frequency=440:duration=1', wav]);
      expect(await codeOf(probeVideo(wav))).toMatch(/^INVALID_ARGUMENT: file ".*tone\.wav" has no video stream/);
    });

    it('ffmpeg dying mid-stream is INVALID_ARGUMENT with its stderr', async () => {
      const dir = join(tmp, 'dying');
      execFileSync('mkdir', ['-p', dir]);
      const real = execFileSync('which', ['ffmpeg']).toString().trim();
      const probe = execFileSync('which', ['ffprobe']).toString().trim();
      // Writes two 640x360 frames, then fails.
      writeFileSync(
        join(dir, 'ffmpeg'),
        `#!/bin/sh\n"${real}" "$@" | head -c ${640 * 360 * 3 * 2}\necho "simulated decoder crash" >&2\nexit 3\n`,
      );
      chmodSync(join(dir, 'ffmpeg'), 0o755);
      if (!existsSync(join(dir, 'ffprobe'))) symlinkSync(probe, join(dir, 'ffprobe'));
      const seen: number[] = [];
      let msg = '';
      try {
        for await (const f of sampleVideoFrames(clip('bbb_cuts_10s_640x360.mp4'), { ffmpegPath: join(dir, 'ffmpeg') })) {
          seen.push(f.index);
        }
      } catch (err) {
        msg = `${(err as VideoLlama3Error).code}: ${(err as Error).message}`;
      }
      expect(seen).toEqual([0, 24]);
      expect(msg).toMatch(/^INVALID_ARGUMENT: .*after 2 of 10 .*simulated decoder crash/s);
    });

    /** An ffmpeg wrapper that records its pid, then execs the real one (same pid). */
    function pidWrapper(): { path: string; pidFile: string } {
      const dir = mkdtempSync(join(tmp, 'pid-'));
      const pidFile = join(dir, 'pid');
      const real = execFileSync('which', ['ffmpeg']).toString().trim();
      writeFileSync(join(dir, 'ffmpeg'), `#!/bin/sh\necho $$ > "${pidFile}"\nexec "${real}" "$@"\n`);
      chmodSync(join(dir, 'ffmpeg'), 0o755);
      symlinkSync(execFileSync('which', ['ffprobe']).toString().trim(), join(dir, 'ffprobe'));
      return { path: join(dir, 'ffmpeg'), pidFile };
    }

    it('abort mid-decode rejects with signal.reason and kills ffmpeg', async () => {
      const w = pidWrapper();
      const ac = new AbortController();
      const reason = new Error('stop now');
      const it = sampleVideoFrames(clip('bbb_cuts_10s_640x360.mp4'), { ffmpegPath: w.path, signal: ac.signal });
      const first = await it.next();
      expect(first.done).toBe(false);
      const pid = Number(readFileSync(w.pidFile, 'utf8'));
      expect(alive(pid)).toBe(true); // blocked on the pipe: the consumer has not asked for more
      ac.abort(reason);
      await expect(it.next()).rejects.toBe(reason);
      expect(alive(pid)).toBe(false);
    });

    it('an already-aborted signal rejects before spawning', async () => {
      const ac = new AbortController();
      ac.abort(new Error('early'));
      await expect(planVideo(clip(CLIPS[0].name), { signal: ac.signal })).rejects.toThrow('early');
    });

    it('breaking out of the loop kills ffmpeg', async () => {
      const w = pidWrapper();
      let pid = 0;
      for await (const f of sampleVideoFrames(clip('bbb_cuts_10s_640x360.mp4'), { ffmpegPath: w.path })) {
        expect(f.index).toBe(0);
        pid = Number(readFileSync(w.pidFile, 'utf8'));
        expect(alive(pid)).toBe(true);
        break;
      }
      expect(pid).toBeGreaterThan(0);
      expect(alive(pid)).toBe(false);
    });

    it('rejects bad inputs and options', async () => {
      expect(await codeOf(planVideo(42 as never))).toMatch(/^INVALID_ARGUMENT: Expected a file path/);
      expect(await codeOf(planVideo(clip(CLIPS[0].name), { maxFrames: 0 }))).toMatch(/options.maxFrames/);
      expect(await codeOf(probeVideo(clip(CLIPS[0].name), { ffmpegPath: '' }))).toMatch(/options.ffmpegPath/);
    });
  });
});
