#!/usr/bin/env node
// Our side of the image benchmark, matching tools/bench/torch_bench.py:
//   node tools/bench/vision-bench.mjs <model-dir> [threads=2] [reps=3]
// vision_448: decode-free encode of a 448×448 noise image (preprocess + vision encoder + projector);
// ttft_image: one image + "Describe the image in detail." to the first generated token (greedy);
// decode: 32 greedy tokens after it. One warm-up each; median and reps in seconds; peak RSS.
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const require = createRequire(import.meta.url);
const { loadModel } = require(join(root, 'dist', 'index.js'));
const [dir, thArg, repArg] = process.argv.slice(2);
const threads = Number(thArg ?? 2), reps = Number(repArg ?? 3);
const median = (a) => [...a].sort((x, y) => x - y)[a.length >> 1];

let s = 7;
const data = new Uint8Array(448 * 448 * 3).map(() => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0) >>> 24));
const image = { data, width: 448, height: 448, channels: 3 };

const t0 = performance.now();
const model = await loadModel({ model: dir, threads, contextSize: 2048 });
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

const encode = await timed(async () => {
  await model.encode(image);
});
let promptTokens = 0;
const ttft = await timed(async () => {
  const r = await model.complete({ text: 'Describe the image in detail.', images: [image] }, { maxTokens: 1 });
  promptTokens = r.usage.promptTokens;
  return r.timings.timeToFirstTokenMs / 1000;
});
const tokens = await model.encode(image);
const decode = await timed(async () => {
  const r = await model.complete({ text: 'Describe the image in detail.', images: [tokens] }, { maxTokens: 33 });
  return r.timings.decodeTokensPerSecond;
});
await model.dispose();
process.stdout.write(
  `${JSON.stringify({
    engine: 'videollama3-node', model: dir, threads, reps, loadS,
    vision_448: { encode_s: encode },
    ttft_image: { ...ttft, prompt_tokens: promptTokens },
    decode: { tokens_per_s: decode },
    peak_rss_mib: Math.round(process.resourceUsage().maxRSS / 1024),
  })}\n`,
);
