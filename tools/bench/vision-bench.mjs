#!/usr/bin/env node
// Our side of the image and video benchmark, matching tools/bench/torch_bench.py:
//   node tools/bench/vision-bench.mjs <model-dir> [threads=2] [reps=3] [--device auto|cpu|cuda]
//        [--video <file> | --video-noise] [--video-max-frames 16] [--video-only]
// vision_448: decode-free encode of a 448×448 noise image (preprocess + vision encoder + projector);
// ttft_image: one image + "Describe the image in detail." to the first generated token (greedy);
// decode: 32 greedy tokens after it; video (--video): the file (decoded by ffmpeg, fps 1, at most
// --video-max-frames frames, pruning on) + "Describe the video in detail." to the first token;
// --video-noise: 16 decoded 1280×720 noise frames instead (torch_bench.py --video's input; nothing
// is pruned on noise).
// One warm-up each; median and reps in seconds; peak RSS.
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const require = createRequire(import.meta.url);
const { loadModel } = require(join(root, 'dist', 'index.js'));
const { values: flags, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    device: { type: 'string', default: 'auto' },
    video: { type: 'string' },
    'video-noise': { type: 'boolean' },
    'video-max-frames': { type: 'string', default: '16' },
    'video-only': { type: 'boolean' },
  },
});
const [dir, thArg, repArg] = positionals;
const threads = Number(thArg ?? 2), reps = Number(repArg ?? 3);
const median = (a) => [...a].sort((x, y) => x - y)[a.length >> 1];

let s = 7;
const data = new Uint8Array(448 * 448 * 3).map(() => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0) >>> 24));
const image = { data, width: 448, height: 448, channels: 3 };

const t0 = performance.now();
const model = await loadModel({ model: dir, threads, contextSize: 8192, device: flags.device });
const loadS = (performance.now() - t0) / 1000;

async function timed(fn) {
  const out = [];
  for (let r = 0; r <= reps; r++) {
    const t = performance.now();
    const v = await fn();
    if (r > 0) out.push(v ?? (performance.now() - t) / 1000);
  }
  return { median: median(out), reps: out };
}

let encode = null, ttft = null, decode = null, promptTokens = 0;
if (!flags['video-only']) {
  encode = await timed(async () => {
    await model.encode(image);
  });
  ttft = await timed(async () => {
    const r = await model.complete({ text: 'Describe the image in detail.', images: [image] }, { maxTokens: 1 });
    promptTokens = r.usage.promptTokens;
    return r.timings.timeToFirstTokenMs / 1000;
  });
  const tokens = await model.encode(image);
  decode = await timed(async () => {
    const r = await model.complete({ text: 'Describe the image in detail.', images: [tokens] }, { maxTokens: 33 });
    return r.timings.decodeTokensPerSecond;
  });
}
let video = null;
if (flags.video || flags['video-noise']) {
  const frames = flags.video ?? Array.from({ length: 16 }, (_, i) => ({
    data: new Uint8Array(1280 * 720 * 3).map(() => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0) >>> 24)),
    width: 1280,
    height: 720,
    timestamp: i,
  }));
  const content = [
    { type: 'video', video: frames, maxFrames: Number(flags['video-max-frames']) },
    { type: 'text', text: 'Describe the video in detail.' },
  ];
  let info = null;
  const ttftVideo = await timed(async () => {
    const r = await model.complete({ messages: [{ role: 'user', content }] }, { maxTokens: 1 });
    info = { prompt_tokens: r.usage.promptTokens, vision_tokens: r.usage.visionTokens, frames: r.videos?.[0]?.timestamps.length };
    return r.timings.timeToFirstTokenMs / 1000;
  });
  video = { input: flags.video ?? '16 noise frames 1280x720', ...info, ttft: ttftVideo };
}
const device = model.info.device.name;
await model.dispose();
process.stdout.write(
  `${JSON.stringify({
    engine: 'videollama3-node', model: dir, device, threads, reps, loadS,
    vision_448: encode && { encode_s: encode },
    ttft_image: ttft && { ...ttft, prompt_tokens: promptTokens },
    decode: decode && { tokens_per_s: decode },
    video,
    peak_rss_mib: Math.round(process.resourceUsage().maxRSS / 1024),
  })}\n`,
);
