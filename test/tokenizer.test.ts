// The native Qwen2 tokenizer (native/model/tokenizer.cpp), loaded from a converted llm.gguf with
// the real Qwen2.5 vocabulary, gives the ids of Hugging Face `tokenizers` on every reference
// string (fixtures from tools/reference/make_tokenizer_fixtures.py), decodes them back, and
// fails with coded errors, never a crash, on bad input.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type NativeBinding, type NativeKv, native } from '../lib/binding';
import { convertModel } from '../lib/index';
import { makeTinyCheckpoint } from './helpers/checkpoint';

type NativeTokenizer = Awaited<ReturnType<NativeBinding['loadTokenizer']>>;

interface Case {
  text: string;
  ids: number[];
  decoded?: string;
}
const fixtures = join(__dirname, 'fixtures', 'tokenizer');
const reference = JSON.parse(readFileSync(join(fixtures, 'tokenizer_expected.json'), 'utf8')) as {
  cases: Case[];
  chat: Case;
};
const extra = JSON.parse(readFileSync(join(fixtures, 'extra_expected.json'), 'utf8')) as { cases: Case[] };

const VOCAB = 151936; // embedding rows: 151665 tokens + [PAD<id>] filler
const work = mkdtempSync(join(tmpdir(), 'vl3-tok-'));
let llmPath: string;
let visionPath: string;
let tok: NativeTokenizer;

beforeAll(async () => {
  const src = join(work, 'hf');
  makeTinyCheckpoint(src, {
    layout: 'video_llama_3',
    tokenizer: 'qwen2',
    tied: true,
    dtype: 'BF16',
    text: { hidden: 32, intermediate: 64, heads: 2, kvHeads: 1, layers: 1, vocab: VOCAB },
  });
  const out = await convertModel({ input: src, output: join(work, 'model'), type: 'f16' });
  llmPath = out.llm;
  visionPath = out.vision;
  tok = await native().loadTokenizer(llmPath);
});

afterAll(() => rmSync(work, { recursive: true, force: true }));

/** The `code` of what `fn` throws (a coded native error), or 'none'. */
function thrownCode(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    return String((err as { code?: unknown }).code);
  }
  return 'none';
}

const text = (ids: Int32Array | number[]) => tok.decode(ids).toString('utf8');

describe('Tokenizer vocabulary', () => {
  it('has every embedding row and finds tokens by their byte-level text', () => {
    expect(tok.vocabSize).toBe(VOCAB);
    expect(tok.tokenId('<|im_end|>')).toBe(151645);
    expect(tok.tokenId('Ġworld')).toBe(1879);
    expect(tok.tokenId('[PAD151700]')).toBe(151700);
    expect(tok.tokenId('not a token')).toBe(-1);
  });
});

describe('Tokenizer.encode matches Hugging Face tokenizers', () => {
  it('on the reference strings', () => {
    expect(reference.cases.length).toBeGreaterThan(20);
    for (const c of reference.cases) {
      expect(Array.from(tok.encode(c.text.normalize('NFC'), true)), JSON.stringify(c.text)).toEqual(c.ids);
    }
  });

  it('on the chat prompt with special tokens', () => {
    expect(Array.from(tok.encode(reference.chat.text, true))).toEqual(reference.chat.ids);
  });

  it('on the extra strings (scripts, emoji, whitespace, code, added tokens, paragraphs)', () => {
    expect(extra.cases.length).toBeGreaterThan(140);
    const mismatches = extra.cases.filter(
      (c) => JSON.stringify(Array.from(tok.encode(c.text.normalize('NFC'), true))) !== JSON.stringify(c.ids),
    );
    expect(mismatches.map((c) => c.text)).toEqual([]);
  });

  it('treats added-token text as plain text when parseSpecial is false', () => {
    const ids = Array.from(tok.encode('<|im_start|>user<|im_end|>', false));
    expect(ids.every((id) => id < 151643)).toBe(true);
    expect(text(ids)).toBe('<|im_start|>user<|im_end|>');
    expect(Array.from(tok.encode('<|im_start|>user', true))).toEqual([151644, 872]);
  });
});

describe('Tokenizer.decode', () => {
  it('gives the text back', () => {
    for (const c of reference.cases) {
      if (c.decoded === c.text) expect(text(c.ids), JSON.stringify(c.text)).toBe(c.text);
    }
    for (const c of extra.cases) expect(text(c.ids), JSON.stringify(c.text)).toBe(c.text.normalize('NFC'));
    expect(text(reference.chat.ids)).toBe(reference.chat.text);
  });

  it('returns raw bytes, which may end inside a character', () => {
    const ids = tok.encode('𓀀', false); // a rare 4-byte character: several byte tokens
    expect(ids.length).toBeGreaterThan(1);
    const head = tok.decode(ids.subarray(0, ids.length - 1));
    expect(head.length).toBeLessThan(4);
    expect(Buffer.concat([head, tok.decode(ids.subarray(ids.length - 1))]).toString('utf8')).toBe('𓀀');
  });

  it('decodes unused filler ids to nothing', () => {
    expect(tok.decode([151700]).length).toBe(0);
  });
});

describe('Tokenizer robustness', () => {
  it('encodes the empty string to no ids', () => {
    expect(tok.encode('', true).length).toBe(0);
    expect(tok.decode([]).length).toBe(0);
  });

  it('encodes 100k-character inputs quickly and round-trips them', () => {
    const para = extra.cases.map((c) => c.text.normalize('NFC')).join(' ');
    let long = '';
    while (long.length < 100_000) long += para;
    const t0 = performance.now();
    const ids = tok.encode(long, false);
    const seconds = (performance.now() - t0) / 1000;
    console.log(`encode: ${long.length} chars -> ${ids.length} tokens in ${(seconds * 1000).toFixed(1)} ms ` +
      `(${Math.round(ids.length / seconds)} tokens/s)`);
    expect(text(ids)).toBe(long);
    expect(seconds).toBeLessThan(5);

    // One 100k-letter "word" (a single pre-token): BPE must not be quadratic.
    const word = 'ab'.repeat(50_000);
    const t1 = performance.now();
    const wordIds = tok.encode(word, true);
    expect(performance.now() - t1).toBeLessThan(5000);
    expect(text(wordIds)).toBe(word);
    expect(Array.from(tok.encode(' \n'.repeat(50_000), true)).length).toBeGreaterThan(0);
  });

  it('accepts strings from invalid UTF-8 and lone surrogates (U+FFFD)', () => {
    const broken = Buffer.from([0x61, 0xff, 0xfe, 0xc3, 0x28, 0xe2, 0x82, 0x62]).toString('utf8');
    expect(text(tok.encode(broken, true))).toBe(broken);
    const lone = 'a\ud800b\udfffc';
    expect(text(tok.encode(lone, true))).toBe('a\ufffdb\ufffdc');
  });

  it('rejects ids outside the vocabulary and malformed arguments with INVALID_ARGUMENT', () => {
    expect(thrownCode(() => tok.decode([VOCAB]))).toBe('INVALID_ARGUMENT');
    expect(thrownCode(() => tok.decode(Int32Array.of(5, -1)))).toBe('INVALID_ARGUMENT');
    expect(thrownCode(() => tok.decode([1.5]))).toBe('INVALID_ARGUMENT');
    expect(thrownCode(() => tok.decode([2 ** 40]))).toBe('INVALID_ARGUMENT');
    expect(thrownCode(() => tok.decode(new Float32Array(2) as unknown as Int32Array))).toBe('INVALID_ARGUMENT');
    expect(thrownCode(() => tok.encode(42 as unknown as string, true))).toBe('INVALID_ARGUMENT');
    expect(thrownCode(() => tok.encode('x', undefined as unknown as boolean))).toBe('INVALID_ARGUMENT');
    expect(thrownCode(() => tok.tokenId(undefined as unknown as string))).toBe('INVALID_ARGUMENT');
  });

  it('rejects files without a usable tokenizer with INVALID_MODEL', async () => {
    await expect(native().loadTokenizer(visionPath)).rejects.toMatchObject({ code: 'INVALID_MODEL' });
    const junk = join(work, 'junk.gguf');
    writeFileSync(junk, 'not a gguf file');
    await expect(native().loadTokenizer(junk)).rejects.toMatchObject({ code: 'INVALID_MODEL' });
    await expect(native().loadTokenizer(join(work, 'missing.gguf'))).rejects.toHaveProperty('code');
  });
});

/** The GPT-2 byte-level alphabet: the vocabulary text of each byte's token. */
function byteAlphabet(): string[] {
  const printable = (b: number) => (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || b >= 0xae;
  let next = 256;
  return Array.from({ length: 256 }, (_, b) => String.fromCodePoint(printable(b) ? b : next++));
}

describe('Tokenizer metadata checks', () => {
  /** Writes a tensor-less GGUF with a small byte-level vocabulary (+ "ab", "<|x|>"), overridden by `patch`. */
  async function load(name: string, patch: (kv: Record<string, NativeKv>) => void) {
    const tokens = [...byteAlphabet(), 'ab', '<|x|>'];
    const kv: Record<string, NativeKv> = {
      model: { key: 'tokenizer.ggml.model', type: 'str', value: 'gpt2' },
      pre: { key: 'tokenizer.ggml.pre', type: 'str', value: 'qwen2' },
      tokens: { key: 'tokenizer.ggml.tokens', type: 'str[]', value: tokens },
      types: { key: 'tokenizer.ggml.token_type', type: 'i32[]', value: tokens.map((t) => (t === '<|x|>' ? 3 : 1)) },
      merges: { key: 'tokenizer.ggml.merges', type: 'str[]', value: ['a b'] },
    };
    patch(kv);
    const file = join(work, `${name}.gguf`);
    await native().writeGguf(file, Object.values(kv), []).promise;
    return native().loadTokenizer(file);
  }

  it('loads a minimal valid vocabulary', async () => {
    const small = await load('small', () => {});
    expect(Array.from(small.encode('abab<|x|>a', true))).toEqual([256, 256, 257, 97]);
  });

  it('rejects other tokenizers with UNSUPPORTED_MODEL', async () => {
    await expect(load('llama', (kv) => (kv.model!.value = 'llama'))).rejects.toMatchObject({
      code: 'UNSUPPORTED_MODEL',
    });
    await expect(load('pre', (kv) => (kv.pre!.value = 'llama-bpe'))).rejects.toMatchObject({
      code: 'UNSUPPORTED_MODEL',
      message: expect.stringContaining('pre.gguf'),
    });
  });

  it('rejects inconsistent vocabularies with INVALID_MODEL naming the file', async () => {
    const bytes = byteAlphabet();
    const types = (typeOf: (id: number) => number) => bytes.map((_, id) => typeOf(id)).concat([1, 3]);
    const bad: [string, (kv: Record<string, NativeKv>) => void, RegExp][] = [
      ['count', (kv) => (kv.types!.value = [1, 1]), /token_type has 2 entries/],
      ['type', (kv) => (kv.types!.value = types((id) => (id === 5 ? 2 : 1))), /token 5 has type 2/],
      ['merge', (kv) => (kv.merges!.value = ['a zz']), /merge 0 \("a zz"\) names a token/],
      ['format', (kv) => (kv.merges!.value = ['ab']), /not two tokens/],
      ['dup', (kv) => (kv.tokens!.value = [...bytes, 'ab', 'ab']), /appears twice/],
      ['byte', (kv) => (kv.tokens!.value = ['zz', ...bytes.slice(1), 'ab', '<|x|>']), /no normal token for byte 0x00/],
      ['missing', (kv) => delete kv.merges, /tokenizer\.ggml\.merges/],
    ];
    for (const [name, patch, message] of bad) {
      const err = await load(name, patch).then(
        () => undefined,
        (e: Error & { code?: string }) => e,
      );
      expect(err?.code, name).toBe('INVALID_MODEL');
      expect(err?.message, name).toMatch(message);
      expect(err?.message, name).toContain(`${name}.gguf`);
    }
  });
});
