#!/usr/bin/env node
// Prompt processing (pp) and generation (tg) speed of one engine on one model, in this process:
//   node tools/bench/llm-bench.mjs ours <model-dir>  [pp=512] [tg=128] [threads=2] [reps=3]
//   node tools/bench/llm-bench.mjs nlc  <llm.gguf>   [pp=512] [tg=128] [threads=2] [reps=3]
// `ours` runs videollama3-node's decoder on <model-dir>/llm.gguf; `nlc` runs node-llama-cpp
// 3.21.1 (installed by scripts/peers.mjs) on the same file. Random token ids, greedy, one
// warm-up rep. Prints one JSON line (median tok/s, every rep, load time, peak RSS). VL3_DEVICE
// (auto | cpu | cuda) picks where `ours` runs. With READBW (the path of a built tools/bench/readbw.c)
// each rep's decode is framed by two read-bandwidth readings taken while the engine is idle
// (`tg_bw`: [before, after] per rep), so its share of the bandwidth uses readings seconds away.
import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const require = createRequire(import.meta.url);
const [engine, target, ppArg, tgArg, thArg, repArg] = process.argv.slice(2);
const pp = Number(ppArg ?? 512), tg = Number(tgArg ?? 128), threads = Number(thArg ?? 2), reps = Number(repArg ?? 3);
const median = (a) => [...a].sort((x, y) => x - y)[a.length >> 1];
let seed = 12345;
const rnd = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) % 151643;

// The machine's read bandwidth now (GB/s), once the engine's threads have gone idle; null without READBW.
const readBandwidth = () => {
  if (!process.env.READBW) return null;
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 200); // ggml threads stop spinning
  const env = { ...process.env, OMP_NUM_THREADS: String(threads) };
  return JSON.parse(execFileSync(process.env.READBW, ['1024', '5'], { env }).toString()).read_GBps;
};
const tgBw = [];

const t0 = performance.now();
const ppRates = [], tgRates = [], ppCpu = []; // ppCpu: busy cores during prefill (process CPU time / wall time)
let extra = {};
if (engine === 'ours') {
  const { native } = require(join(root, 'dist', 'binding.js'));
  const nm = await native().loadModel(join(target, 'llm.gguf'), join(target, 'vision.gguf'), { threads, device: process.env.VL3_DEVICE ?? 'auto' });
  extra = { addon: require(join(root, 'dist', 'system.js')).systemInfo().cpuVariant };
  const loadS = (performance.now() - t0) / 1000;
  const greedy = { temperature: 0, topK: 0, topP: 1, minP: 0, repetitionPenalty: 1, seed: 0, topLogprobs: 0, stopIds: [] };
  for (let r = 0; r <= reps; r++) {
    let s = nm.createSession(pp + 8);
    const toks = Int32Array.from({ length: pp }, rnd);
    let t = performance.now();
    let cpu = process.cpuUsage();
    await s.evaluate([{ ids: toks }]);
    const ppS = (performance.now() - t) / 1000;
    cpu = process.cpuUsage(cpu);
    s = nm.createSession(tg + 9);
    await s.evaluate([{ ids: [rnd()] }]);
    const bwBefore = readBandwidth();
    // A step returns its token while that token's forward pass runs on: time the tg intervals
    // between tg + 1 steps, each holding one forward pass (node-llama-cpp's tg tokens hold tg).
    await s.step(greedy);
    t = performance.now();
    for (let i = 0; i < tg; i++) await s.step(greedy);
    const tgS = (performance.now() - t) / 1000;
    const bwAfter = readBandwidth(); // after the last step's pass, which runs on for one token
    if (r > 0) {
      ppRates.push(pp / ppS);
      tgRates.push(tg / tgS);
      tgBw.push([bwBefore, bwAfter]);
      ppCpu.push((cpu.user + cpu.system) / 1e6 / ppS);
    }
  }
  extra.loadS = loadS;
  nm.dispose();
} else if (engine === 'nlc') {
  const { ensurePeers } = await import(pathToFileURL(join(root, 'scripts', 'peers.mjs')).href);
  const nlc = await import(pathToFileURL(join(ensurePeers(), 'node_modules', 'node-llama-cpp', 'dist', 'index.js')).href);
  const llama = await nlc.getLlama({ gpu: false, build: 'never', logLevel: nlc.LlamaLogLevel.error, maxThreads: threads });
  const model = await llama.loadModel({ modelPath: target, gpuLayers: 0 });
  extra = { loadS: (performance.now() - t0) / 1000, buildType: llama.buildType ?? null };
  const ctx = await model.createContext({ contextSize: pp + tg + 16, batchSize: pp, threads: { ideal: threads, min: threads }, sequences: 1 });
  const seq = ctx.getSequence();
  for (let r = 0; r <= reps; r++) {
    const toks = Array.from({ length: pp }, rnd);
    await seq.clearHistory();
    let t = performance.now();
    let cpu = process.cpuUsage();
    await seq.evaluateWithoutGeneratingNewTokens(toks);
    const ppS = (performance.now() - t) / 1000;
    cpu = process.cpuUsage(cpu);
    await seq.clearHistory();
    let n = 0;
    const bwBefore = readBandwidth();
    t = performance.now();
    for await (const _ of seq.evaluate([rnd()], { temperature: 0 })) if (++n >= tg) break;
    const tgS = (performance.now() - t) / 1000;
    const bwAfter = readBandwidth();
    if (r > 0) {
      ppRates.push(pp / ppS);
      tgRates.push(tg / tgS);
      tgBw.push([bwBefore, bwAfter]);
      ppCpu.push((cpu.user + cpu.system) / 1e6 / ppS);
    }
  }
  await ctx.dispose();
  await model.dispose();
  await llama.dispose();
} else {
  process.stderr.write('usage: llm-bench.mjs ours|nlc <model-dir|llm.gguf> [pp] [tg] [threads] [reps]\n');
  process.exit(2);
}
const round = (x) => Math.round(x * 100) / 100;
process.stdout.write(
  `${JSON.stringify({
    engine, target, threads, pp, tg, reps,
    pp_tps: ppRates.map(round), pp_tps_median: round(median(ppRates)),
    tg_tps: tgRates.map(round), tg_tps_median: round(median(tgRates)),
    ...(process.env.READBW ? { tg_bw: tgBw } : {}),
    pp_busy_cores: ppCpu.map(round),
    maxRSS_MiB: Math.round(process.resourceUsage().maxRSS / 1024),
    ...extra,
  })}\n`,
);
