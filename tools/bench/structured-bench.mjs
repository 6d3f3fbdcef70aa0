#!/usr/bin/env node
// The per-token cost of constrained decoding, two engines side by side on the same llm.gguf:
//   ours: xgrammar's token mask (lib/structured/) applied in our native sampler, through the public
//         API (greedy, the same prompt with and without `responseFormat`, alternating in one process);
//   nlc:  node-llama-cpp 3.21.1 with llama.cpp's grammar engine (createGrammarForJsonSchema), the same
//         schema, with and without `grammarEvaluationState`, alternating in one process.
// The schema never closes on its own (an unbounded array of strings), so every run decodes `tg` tokens.
// Usage: node tools/bench/structured-bench.mjs ours|nlc <model-dir> [tg=64] [threads=2] [rounds=6]
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const [engine, dir, tgArg, threadsArg, roundsArg] = process.argv.slice(2);
const tg = Number(tgArg ?? 64);
const threads = Number(threadsArg ?? 2);
const rounds = Number(roundsArg ?? 6);
const schema = { type: 'object', properties: { items: { type: 'array', items: { type: 'string' } } }, required: ['items'] };
const prompt = 'List every word you know as JSON.';
const median = (a) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
const round2 = (x) => Math.round(x * 100) / 100;
const out = { engine, dir, tg, threads, rounds };

if (engine === 'ours') {
  const { loadModel } = await import(pathToFileURL(join(root, 'dist', 'index.js')).href);
  const model = await loadModel({ model: dir, threads, contextSize: 1024 });
  const plain = [];
  const masked = [];
  const grammarMsPerToken = [];
  await model.complete(prompt, { maxTokens: 8, responseFormat: { type: 'json_schema', schema } }); // vocabulary index, compile
  for (let r = 0; r < rounds; r++) {
    for (const constrained of r % 2 ? [true, false] : [false, true]) {
      const res = await model.complete(prompt, { maxTokens: tg, temperature: 0, ...(constrained ? { responseFormat: { type: 'json_schema', schema } } : {}) });
      (constrained ? masked : plain).push(res.timings.decodeTokensPerSecond);
      if (constrained) grammarMsPerToken.push((res.timings.grammarMs ?? 0) / res.tokens.length);
    }
  }
  await model.dispose();
  Object.assign(out, { plain_tps: plain.map(round2), masked_tps: masked.map(round2), grammar_ms_per_token: grammarMsPerToken.map((x) => Math.round(x * 1000) / 1000) });
  out.plain_median = round2(median(plain));
  out.masked_median = round2(median(masked));
} else if (engine === 'nlc') {
  const { ensurePeers } = await import(pathToFileURL(join(root, 'scripts', 'peers.mjs')).href);
  const nlc = await import(pathToFileURL(join(ensurePeers(), 'node_modules', 'node-llama-cpp', 'dist', 'index.js')).href);
  const llama = await nlc.getLlama({ gpu: false, build: 'never', logLevel: nlc.LlamaLogLevel.error, maxThreads: threads });
  const model = await llama.loadModel({ modelPath: join(dir, 'llm.gguf'), gpuLayers: 0 });
  const ctx = await model.createContext({ contextSize: 1024, threads: { ideal: threads, min: threads }, sequences: 1 });
  const seq = ctx.getSequence();
  const grammar = await llama.createGrammarForJsonSchema(schema);
  const tokens = model.tokenize(prompt);
  const plain = [];
  const masked = [];
  for (let r = 0; r <= rounds; r++) {
    for (const constrained of r % 2 ? [true, false] : [false, true]) {
      await seq.clearHistory();
      const grammarEvaluationState = constrained ? new nlc.LlamaGrammarEvaluationState({ model, grammar }) : undefined;
      let n = 0;
      let t = 0;
      for await (const _ of seq.evaluate(tokens, { temperature: 0, ...(grammarEvaluationState ? { grammarEvaluationState } : {}) })) {
        if (n === 0) t = performance.now(); // after the prompt and the first token
        if (++n >= tg) break;
      }
      const tps = ((n - 1) / (performance.now() - t)) * 1000;
      if (r > 0) (constrained ? masked : plain).push(tps);
    }
  }
  await ctx.dispose();
  await model.dispose();
  await llama.dispose();
  Object.assign(out, { plain_tps: plain.map(round2), masked_tps: masked.map(round2) });
  out.plain_median = round2(median(plain));
  out.masked_median = round2(median(masked));
} else {
  process.stderr.write('usage: structured-bench.mjs ours|nlc <model-dir> [tg] [threads] [rounds]\n');
  process.exit(2);
}
out.mask_cost_percent = round2((out.plain_median / out.masked_median - 1) * 100);
process.stdout.write(`${JSON.stringify(out)}\n`);
