#!/usr/bin/env node
// Summarizes tools/bench/run-llm.sh output (JSON lines on stdin): per model and engine, the mean
// and median over every rep of every round, the ours/node-llama-cpp ratios, and decode as a share
// of the read bandwidth measured in the same run (bytes read per token = the llm.gguf size).
//   node tools/bench/summarize-llm.mjs < runs.jsonl
import { readFileSync, statSync } from 'node:fs';

const lines = readFileSync(0, 'utf8').split('\n').filter((l) => l.startsWith('{'));
const runs = lines.map((l) => JSON.parse(l));
const bw = runs.filter((r) => r.read_GBps !== undefined).map((r) => r.read_GBps);
const stats = (a) => {
  const s = [...a].sort((x, y) => x - y);
  const mean = a.reduce((x, y) => x + y, 0) / a.length;
  return { n: a.length, mean, median: s[s.length >> 1], min: s[0], max: s[s.length - 1] };
};
const by = new Map();
for (const r of runs.filter((r) => r.engine)) {
  const model = r.engine === 'nlc' ? r.target.replace(/\/llm\.gguf$/, '') : r.target;
  const key = `${model}\t${r.engine}`;
  const e = by.get(key) ?? { model, engine: r.engine, pp: [], tg: [], rss: [] };
  e.pp.push(...r.pp_tps);
  e.tg.push(...r.tg_tps);
  e.rss.push(r.maxRSS_MiB);
  by.set(key, e);
}
const f = (x) => x.toFixed(1);
const bwMean = bw.length ? stats(bw).mean : NaN;
console.log(`read bandwidth (2 threads): mean ${f(bwMean)} GB/s over ${bw.length} measurements (${bw.map(f).join(', ')})`);
console.log('| model | engine | prefill tok/s mean (median, min–max, reps) | decode tok/s mean (median, min–max) | decode GB/s = share of read bandwidth | peak RSS |');
console.log('| --- | --- | --- | --- | --- | --- |');
const models = [...new Set([...by.values()].map((e) => e.model))];
for (const m of models) {
  const gguf = statSync(`${m}/llm.gguf`).size / 1e9;
  const rows = {};
  for (const engine of ['ours', 'nlc']) {
    const e = by.get(`${m}\t${engine}`);
    if (!e) continue;
    const pp = stats(e.pp), tg = stats(e.tg);
    rows[engine] = { pp, tg };
    const gbs = tg.mean * gguf;
    console.log(`| ${m} (${gguf.toFixed(2)} GB) | ${engine === 'ours' ? 'videollama3-node' : 'node-llama-cpp'} | **${f(pp.mean)}** (${f(pp.median)}, ${f(pp.min)}–${f(pp.max)}, ${pp.n}) | **${f(tg.mean)}** (${f(tg.median)}, ${f(tg.min)}–${f(tg.max)}) | ${f(gbs)} GB/s = ${Math.round((100 * gbs) / bwMean)} % | ${Math.max(...e.rss)} MiB |`);
  }
  if (rows.ours && rows.nlc) {
    console.log(`| | ratio | **${(rows.ours.pp.mean / rows.nlc.pp.mean).toFixed(2)}×** (medians ${(rows.ours.pp.median / rows.nlc.pp.median).toFixed(2)}×) | **${(rows.ours.tg.mean / rows.nlc.tg.mean).toFixed(2)}×** (medians ${(rows.ours.tg.median / rows.nlc.tg.median).toFixed(2)}×) | | |`);
  }
}
