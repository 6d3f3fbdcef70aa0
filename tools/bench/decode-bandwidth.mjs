#!/usr/bin/env node
// Decode speed as a share of the machine's read bandwidth, measured next to each other: the
// bandwidth of this VM drifts by the second (24–42 GB/s seen within ten minutes, and by a third
// within one engine run), so one reading per session, or per process, cannot be the denominator.
// Each engine runs tools/bench/llm-bench.mjs (a short prompt, then REPS decodes of TG tokens after
// a warm-up), which takes a readbw reading right before and right after each decode while the
// engine is idle; a decode's share is its tok/s times the llm.gguf size over the mean of its two
// readings. Engines alternate, one process at a time (ggml threads busy-wait: never run anything
// else meanwhile).
//   node tools/bench/decode-bandwidth.mjs <model-dir>...
// Env: ROUNDS (4) REPS (4) TG (64) THREADS (2) ENGINES (ours,nlc); VL3_ADDON_PATH picks our addon build.
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
const rounds = Number(process.env.ROUNDS ?? 4), reps = Number(process.env.REPS ?? 4), tg = Number(process.env.TG ?? 64),
  threads = Number(process.env.THREADS ?? 2);
const engines = (process.env.ENGINES ?? 'ours,nlc').split(',');
const readbw = join(tmpdir(), 'vl3-readbw');
execFileSync('cc', ['-O3', '-march=native', '-ffast-math', '-fopenmp', '-o', readbw, join(root, 'tools/bench/readbw.c')]);
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
      const target = engine === 'nlc' ? join(dir, 'llm.gguf') : dir;
      const out = JSON.parse(
        execFileSync('node', [join(root, 'tools/bench/llm-bench.mjs'), engine, target, '16', String(tg), String(threads), String(reps)], {
          env: { ...process.env, READBW: readbw },
        })
          .toString()
          .trim()
          .split('\n')
          .pop(),
      );
      const gb = statSync(join(dir, 'llm.gguf')).size / 1e9;
      const shares = out.tg_tps.map((tps, i) => (tps * gb) / mean(out.tg_bw[i]));
      const run = { model: dir, engine, round: r + 1, tg_tps: out.tg_tps, tg_bw: out.tg_bw, shares: shares.map((x) => Math.round(1000 * x) / 1000) };
      runs.push(run);
      process.stdout.write(`${JSON.stringify(run)}\n`);
    }
  }
}
const pct = (x) => `${Math.round(100 * x)} %`;
console.log('\n| model | engine | decode tok/s median | read bandwidth GB/s, min–max | decode share of the readings around it: median (min–max, decodes) |');
console.log('| --- | --- | --- | --- | --- |');
for (const dir of dirs) {
  for (const engine of engines) {
    const rs = runs.filter((x) => x.model === dir && x.engine === engine);
    const shares = rs.flatMap((x) => x.shares);
    const bws = rs.flatMap((x) => x.tg_bw.flat());
    console.log(`| ${dir} | ${engine === 'ours' ? 'videollama3-node' : 'node-llama-cpp'} | ${median(rs.flatMap((x) => x.tg_tps)).toFixed(1)} | ${Math.min(...bws).toFixed(1)}–${Math.max(...bws).toFixed(1)} | **${pct(median(shares))}** (${pct(Math.min(...shares))}–${pct(Math.max(...shares))}, ${shares.length}) |`);
  }
}
