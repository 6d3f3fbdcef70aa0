#!/usr/bin/env node
// Decode speed as a share of the machine's read bandwidth, measured next to each other: the
// bandwidth of this VM drifts by the minute (24–42 GB/s seen within ten minutes), so one reading per
// session cannot be the denominator. Each round runs readbw, one engine's decode (tools/bench/
// llm-bench.mjs, a short prompt then TG tokens twice), readbw again; the run's share is its mean
// tok/s times the llm.gguf size over the mean of the two readings. Engines alternate, one process at a
// time (ggml threads busy-wait: never run anything else meanwhile).
//   node tools/bench/decode-bandwidth.mjs <model-dir>...
// Env: ROUNDS (6) TG (64) THREADS (2) ENGINES (ours,nlc); VL3_ADDON_PATH picks our addon build.
// Prints one JSON line per run, then a Markdown table of the shares (median, min–max) per model.
import { execFileSync } from 'node:child_process';
import { statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const dirs = process.argv.slice(2);
if (dirs.length === 0) {
  process.stderr.write('usage: decode-bandwidth.mjs <model-dir>...\n');
  process.exit(2);
}
const rounds = Number(process.env.ROUNDS ?? 6), tg = Number(process.env.TG ?? 64), threads = Number(process.env.THREADS ?? 2);
const engines = (process.env.ENGINES ?? 'ours,nlc').split(',');
const readbw = join(tmpdir(), 'vl3-readbw');
execFileSync('cc', ['-O3', '-march=native', '-ffast-math', '-fopenmp', '-o', readbw, join(root, 'tools/bench/readbw.c')]);
const bandwidth = () =>
  JSON.parse(execFileSync(readbw, ['1024', '5'], { env: { ...process.env, OMP_NUM_THREADS: String(threads) } }).toString())
    .read_GBps;
const median = (a) => {
  const s = [...a].sort((x, y) => x - y);
  return s.length % 2 ? s[s.length >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const mean = (a) => a.reduce((x, y) => x + y, 0) / a.length;

const runs = [];
for (let r = 0; r < rounds; r++) {
  for (const dir of dirs) {
    const order = r % 2 ? [...engines].reverse() : engines;
    for (const engine of order) {
      const before = bandwidth();
      const target = engine === 'nlc' ? join(dir, 'llm.gguf') : dir;
      const out = JSON.parse(
        execFileSync('node', [join(root, 'tools/bench/llm-bench.mjs'), engine, target, '16', String(tg), String(threads), '2'])
          .toString()
          .trim()
          .split('\n')
          .pop(),
      );
      const after = bandwidth();
      const gb = statSync(join(dir, 'llm.gguf')).size / 1e9;
      const run = { model: dir, engine, round: r + 1, bw_before: before, bw_after: after, tg_tps: out.tg_tps,
        share: (mean(out.tg_tps) * gb) / ((before + after) / 2) };
      runs.push(run);
      process.stdout.write(`${JSON.stringify(run)}\n`);
    }
  }
}
const pct = (x) => `${Math.round(100 * x)} %`;
console.log('\n| model | engine | decode tok/s median | read bandwidth GB/s, min–max | decode share of the adjacent readings: median (min–max, runs) |');
console.log('| --- | --- | --- | --- | --- |');
for (const dir of dirs) {
  for (const engine of engines) {
    const rs = runs.filter((x) => x.model === dir && x.engine === engine);
    const shares = rs.map((x) => x.share);
    const bws = rs.flatMap((x) => [x.bw_before, x.bw_after]);
    console.log(`| ${dir} | ${engine === 'ours' ? 'videollama3-node' : 'node-llama-cpp'} | ${median(rs.flatMap((x) => x.tg_tps)).toFixed(1)} | ${Math.min(...bws).toFixed(1)}–${Math.max(...bws).toFixed(1)} | **${pct(median(shares))}** (${pct(Math.min(...shares))}–${pct(Math.max(...shares))}, ${rs.length}) |`);
  }
}
