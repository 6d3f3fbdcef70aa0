// The LLM GGUF written by the converter loads unchanged in node-llama-cpp 3.21.1 (llama.cpp's
// qwen2 loader) and its tokenizer gives the same ids as the Hugging Face tokenizer.
import { readFileSync, rmSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { convertModel } from '../lib/index';
import { makeTinyCheckpoint } from './helpers/checkpoint';

interface Expected {
  cases: { text: string; ids: number[] }[];
  chat: { text: string; ids: number[] };
}
const expected = JSON.parse(readFileSync(join(__dirname, 'fixtures', 'tokenizer', 'tokenizer_expected.json'), 'utf8')) as Expected;

const offline = process.env.VL3_OFFLINE === '1';
const work = mkdtempSync(join(tmpdir(), 'vl3-llama-'));
// node-llama-cpp's types are not a dependency of ours; only what this test touches is typed.
interface LlamaModel {
  tokenize(text: string, specialTokens?: boolean): number[];
  detokenize(tokens: readonly number[], specialTokens?: boolean): string;
  readonly trainContextSize: number;
  dispose(): Promise<void>;
}
let llama: { loadModel(o: { modelPath: string; gpuLayers: number }): Promise<LlamaModel>; dispose(): Promise<void> };
let model: LlamaModel;

beforeAll(async () => {
  if (offline) return;
  const { ensurePeers } = (await import(pathToFileURL(join(__dirname, '..', 'scripts', 'peers.mjs')).href)) as {
    ensurePeers(): string;
  };
  const peers = ensurePeers();
  const nlc = (await import(pathToFileURL(join(peers, 'node_modules', 'node-llama-cpp', 'dist', 'index.js')).href)) as {
    getLlama(o: object): Promise<typeof llama>;
    LlamaLogLevel: Record<string, string>;
  };
  const src = join(work, 'hf');
  const out = join(work, 'model');
  makeTinyCheckpoint(src, {
    layout: 'video_llama_3',
    tokenizer: 'qwen2',
    tied: true,
    dtype: 'BF16',
    text: { hidden: 64, intermediate: 128, heads: 4, kvHeads: 2, layers: 2, vocab: 151936 },
  });
  await convertModel({ input: src, output: out, type: 'f16' });
  llama = await nlc.getLlama({ gpu: false, build: 'never', logLevel: nlc.LlamaLogLevel.error ?? 'error' });
  model = await llama.loadModel({ modelPath: join(out, 'llm.gguf'), gpuLayers: 0 });
}, 300_000);

afterAll(async () => {
  await model?.dispose();
  await llama?.dispose();
  rmSync(work, { recursive: true, force: true });
});

describe.skipIf(offline)('llm.gguf in node-llama-cpp 3.21.1', () => {
  it('loads as a qwen2 model', () => {
    expect(model.trainContextSize).toBe(4096);
  });

  // The Qwen2 tokenizer.json normalizes input to Unicode NFC; llama.cpp's BPE tokenizer has no
  // normalizer step, so text is given to it NFC-normalized (a no-op for all but one case here).
  it('tokenizes every reference string to the Hugging Face ids', () => {
    expect(expected.cases.length).toBeGreaterThan(20);
    for (const c of expected.cases) {
      expect(model.tokenize(c.text.normalize('NFC'), true), JSON.stringify(c.text)).toEqual(c.ids);
    }
  });

  it('tokenizes the chat prompt with special tokens to the Hugging Face ids', () => {
    expect(model.tokenize(expected.chat.text, true)).toEqual(expected.chat.ids);
  });

  it('detokenizes back to the text', () => {
    for (const c of expected.cases) expect(model.detokenize(c.ids, true)).toBe(c.text.normalize('NFC'));
  });
});
