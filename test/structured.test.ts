// Structured output (responseFormat / grammar through xgrammar) on a tiny random model with the
// real Qwen2 vocabulary: whatever the random weights prefer, every output must be valid.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Ajv2020 from 'ajv/dist/2020';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { convertModel, loadModel, VideoLlama3Error, type Model } from '../lib/index';
import { makeTinyCheckpoint } from './helpers/checkpoint';

const work = mkdtempSync(join(tmpdir(), 'vl3-structured-'));
let model: Model;

beforeAll(async () => {
  const src = join(work, 'hf');
  makeTinyCheckpoint(src, { layout: 'video_llama_3', tokenizer: 'qwen2', tied: true, dtype: 'F32', values: 'normal', text: { layers: 2 } });
  await convertModel({ input: src, output: join(work, 'model'), type: 'f32' });
  model = await loadModel({ model: join(work, 'model'), threads: 2, contextSize: 1024 });
});
afterAll(async () => {
  await model?.dispose();
  rmSync(work, { recursive: true, force: true });
});

const str = (maxLength = 12) => ({ type: 'string', maxLength });
const SCHEMAS: Record<string, Record<string, unknown>> = {
  integer: { type: 'integer' },
  'bounded integer': { type: 'integer', minimum: -5, maximum: 40 },
  'bounded number': { type: 'number', minimum: 0, maximum: 1 },
  boolean: { type: 'boolean' },
  enum: { enum: ['red', 'green', 'blue', 7, null] },
  'short string': { type: 'string', minLength: 2, maxLength: 8 },
  'flat object': {
    type: 'object',
    properties: { name: str(), age: { type: 'integer', minimum: 0, maximum: 120 } },
    required: ['name', 'age'],
    additionalProperties: false,
  },
  'optional properties': {
    type: 'object',
    properties: { a: { type: 'boolean' }, b: { type: 'integer', minimum: 1, maximum: 9 }, c: str(4) },
    required: ['a'],
    additionalProperties: false,
  },
  'nested objects': {
    type: 'object',
    properties: {
      user: { type: 'object', properties: { id: { type: 'integer', minimum: 1 }, tag: str(6) }, required: ['id', 'tag'], additionalProperties: false },
      meta: { type: 'object', properties: { ok: { type: 'boolean' } }, required: ['ok'], additionalProperties: false },
    },
    required: ['user', 'meta'],
    additionalProperties: false,
  },
  'array of integers': { type: 'array', items: { type: 'integer', minimum: 0, maximum: 99 }, minItems: 1, maxItems: 5 },
  'array of objects': {
    type: 'array',
    items: { type: 'object', properties: { k: str(5), v: { type: 'number' } }, required: ['k', 'v'], additionalProperties: false },
    maxItems: 3,
  },
  'enum property': {
    type: 'object',
    properties: { color: { enum: ['red', 'green'] }, size: { type: 'string', enum: ['S', 'M', 'L'] } },
    required: ['color', 'size'],
    additionalProperties: false,
  },
  const: { type: 'object', properties: { version: { const: 3 }, kind: { const: 'event' } }, required: ['version', 'kind'], additionalProperties: false },
  'string pattern': { type: 'object', properties: { code: { type: 'string', pattern: '^[A-Z]{3}-[0-9]{2}$' } }, required: ['code'], additionalProperties: false },
  'anyOf': { anyOf: [{ type: 'integer', minimum: 0, maximum: 9 }, str(5), { type: 'null' }] },
  'nullable field': {
    type: 'object',
    properties: { note: { type: ['string', 'null'], maxLength: 6 } },
    required: ['note'],
    additionalProperties: false,
  },
  'array of arrays': { type: 'array', items: { type: 'array', items: { type: 'boolean' }, maxItems: 3 }, maxItems: 3 },
  'tuple (prefixItems)': { type: 'array', prefixItems: [{ type: 'integer', minimum: 0, maximum: 5 }, str(4)], items: false },
  '$defs and $ref': {
    type: 'object',
    $defs: { point: { type: 'object', properties: { x: { type: 'integer', minimum: -9, maximum: 9 }, y: { type: 'integer', minimum: -9, maximum: 9 } }, required: ['x', 'y'], additionalProperties: false } },
    properties: { from: { $ref: '#/$defs/point' }, to: { $ref: '#/$defs/point' } },
    required: ['from', 'to'],
    additionalProperties: false,
  },
  'exclusive ranges and multipleOf': {
    type: 'object',
    properties: { p: { type: 'number', exclusiveMinimum: 0, exclusiveMaximum: 10 }, n: { type: 'integer', exclusiveMinimum: -3, maximum: 3 } },
    required: ['p', 'n'],
    additionalProperties: false,
  },
};

describe('structured output', () => {
  const ajv = new Ajv2020({ strict: false }); // draft 2020-12: prefixItems
  const ends: string[] = [];

  it('each of 20 JSON schemas gives text that parses and validates (temperature 1)', async () => {
    expect(Object.keys(SCHEMAS)).toHaveLength(20);
    let seed = 1;
    const failures: string[] = [];
    for (const [name, schema] of Object.entries(SCHEMAS)) {
      const validate = ajv.compile(schema);
      const r = await model.complete('Answer in JSON.', { temperature: 1, seed: seed++, maxTokens: 400, responseFormat: { type: 'json_schema', schema } });
      ends.push(`${name}: ${r.finishReason} ${r.tokens.length} tokens, grammar ${r.timings.grammarMs?.toFixed(1)} ms`);
      if (r.finishReason !== 'stop') {
        failures.push(`${name}: finishReason ${r.finishReason} after ${r.tokens.length} tokens: ${r.text.slice(0, 120)}`);
        continue;
      }
      let value: unknown;
      try {
        value = JSON.parse(r.text);
      } catch (err) {
        failures.push(`${name}: ${(err as Error).message}: ${r.text}`);
        continue;
      }
      if (!validate(value)) failures.push(`${name}: ${ajv.errorsText(validate.errors)}: ${r.text}`);
    }
    expect(failures, ends.join('\n')).toEqual([]);
  });

  it('json_object gives a JSON object', async () => {
    // Keys are free strings, which random weights do not end in reasonable time: greedy ends one,
    // and a sampled, cut-off one is still the start of an object.
    const r = await model.complete('JSON please', { maxTokens: 200, responseFormat: { type: 'json_object' } });
    if (r.finishReason === 'stop') {
      const v: unknown = JSON.parse(r.text);
      expect(typeof v === 'object' && v !== null && !Array.isArray(v), r.text).toBe(true);
    } else {
      expect(r.text.trimStart().startsWith('{'), r.text).toBe(true);
    }
    const sampled = await model.complete('JSON please', { temperature: 1, seed: 3, maxTokens: 40, responseFormat: { type: 'json_object' } });
    expect(sampled.text.trimStart()).toMatch(/^\{/);
    expect(isValuePrefix(sampled.text), sampled.text).toBe(true);
  });

  it('takes a schema as JSON text, and { type: "text" } as no constraint', async () => {
    const r = await model.complete('x', { temperature: 1, seed: 4, maxTokens: 100, responseFormat: { type: 'json_schema', schema: '{"enum":["yes","no"]}' } });
    expect(['"yes"', '"no"']).toContain(r.text);
    const plain = await model.complete('x', { seed: 4, maxTokens: 5 });
    const text = await model.complete('x', { seed: 4, maxTokens: 5, responseFormat: { type: 'text' } });
    expect(text.tokens).toEqual(plain.tokens);
    expect(text.timings.grammarMs).toBeUndefined();
  });

  it('follows an EBNF grammar', async () => {
    const grammar = 'root ::= "answer: " choice (", " choice)* "."\nchoice ::= "yes" | "no" | [0-9]{1,3}';
    for (const seed of [1, 2, 3, 4]) {
      const r = await model.complete('Reply', { temperature: 1, seed, maxTokens: 200, grammar });
      expect(r.finishReason).toBe('stop');
      expect(r.text).toMatch(/^answer: (yes|no|[0-9]{1,3})(, (yes|no|[0-9]{1,3}))*\.$/);
    }
  });

  it('reports log-probs of the constrained distribution: only allowed tokens, summing to at most 1', async () => {
    const schema = { type: 'object', properties: { ok: { type: 'boolean' } }, required: ['ok'], additionalProperties: false };
    const r = await model.complete('x', { temperature: 1, seed: 9, maxTokens: 100, topLogprobs: 20, responseFormat: { type: 'json_schema', schema } });
    expect(r.finishReason).toBe('stop');
    expect(r.logprobs).toHaveLength(r.tokens.length);
    const eos = model.info.eosIds;
    let prefix = '';
    r.logprobs!.forEach((top, i) => {
      expect(top.length).toBeGreaterThan(0);
      // Each listed token continues the text so far into a prefix of a valid value (or ends it).
      for (const t of top) {
        if (eos.includes(t.id)) {
          expect(() => JSON.parse(prefix)).not.toThrow();
          continue;
        }
        const next = prefix + model.detokenize([t.id]);
        expect(isValuePrefix(next), `step ${i}: ${JSON.stringify(next)}`).toBe(true);
      }
      const total = top.reduce((a, t) => a + Math.exp(t.logprob), 0);
      expect(total).toBeLessThanOrEqual(1 + 1e-4);
      if (!eos.includes(r.tokens[i]!)) prefix += model.detokenize([r.tokens[i]!]);
    });
    // A forced step (one allowed token) has log-prob 0.
    expect(r.logprobs!.some((top) => top.length === 1 && Math.abs(top[0]!.logprob) < 1e-5)).toBe(true);
  });

  it('works with stop strings, maxTokens and abort', async () => {
    const schema = { type: 'array', items: { type: 'integer' } };
    const cut = await model.complete('x', { temperature: 1, seed: 5, maxTokens: 3, responseFormat: { type: 'json_schema', schema } });
    expect(cut.finishReason).toBe('length');
    expect(cut.tokens).toHaveLength(3);
    const stopped = await model.complete('x', { grammar: 'root ::= "abc" [x]{0,40} "def"', temperature: 1, seed: 1, maxTokens: 100, stop: ['c'] });
    expect(stopped).toMatchObject({ text: 'ab', finishReason: 'stop' });

    const ac = new AbortController();
    const gen = model.generate('x', { temperature: 1, seed: 6, maxTokens: 400, grammar: 'root ::= [a-z ]{300}', signal: ac.signal });
    let n = 0;
    const err = await (async () => {
      for await (const _ of gen) if (++n === 3) ac.abort(new Error('enough'));
    })().then(() => undefined, (e: unknown) => e);
    expect((err as Error).message).toBe('enough');
    // The model serves structured requests afterwards.
    const after = await model.complete('x', { grammar: 'root ::= "ok"', maxTokens: 10 });
    expect(after).toMatchObject({ text: 'ok', finishReason: 'stop' });
  });

  it('refuses schemas and grammars xgrammar refuses, and bad options, with INVALID_ARGUMENT', async () => {
    const refused = async (options: object, fragment: string) => {
      const err = await model.complete('x', { maxTokens: 5, ...options }).then(() => undefined, (e: unknown) => e);
      expect(err).toBeInstanceOf(VideoLlama3Error);
      expect((err as VideoLlama3Error).code).toBe('INVALID_ARGUMENT');
      expect((err as Error).message).toContain(fragment);
    };
    await refused({ responseFormat: { type: 'json_schema', schema: { type: 'bogus' } } }, 'xgrammar refused responseFormat.schema: Unsupported type "bogus"');
    await refused({ responseFormat: { type: 'json_schema', schema: { $ref: '#/$defs/missing' } } }, 'xgrammar refused responseFormat.schema');
    await refused({ grammar: 'root ::= "a' }, 'xgrammar refused grammar: EBNF lexer error');
    await refused({ grammar: 'x', responseFormat: { type: 'json_object' } }, 'mutually exclusive');
    await refused({ responseFormat: 'json' }, 'for responseFormat but received "json"');
    await refused({ responseFormat: { type: 'xml' } }, "Expected one of 'text', 'json_object', 'json_schema' for responseFormat.type");
    await refused({ responseFormat: { type: 'json_schema' } }, 'for responseFormat.schema but received undefined');
    await refused({ responseFormat: { type: 'json_schema', schema: '{nope' } }, 'for responseFormat.schema');
    await refused({ responseFormat: { type: 'json_schema', schema: {}, strict: true } }, "Unknown option 'strict' for responseFormat");
    await refused({ grammar: 42 }, 'for grammar but received 42');
    // After refusals (each aborts an xgrammar instance) the next request works.
    const r = await model.complete('x', { temperature: 1, seed: 2, maxTokens: 50, responseFormat: { type: 'json_schema', schema: { type: 'boolean' } } });
    expect(['true', 'false']).toContain(r.text);
  });
});

/** Whether `text` can be continued into a JSON value (a crude check: it parses once closed). */
function isValuePrefix(text: string): boolean {
  const t = text.trimStart();
  if (t === '') return true;
  const closers: string[] = [];
  let inString = false;
  let escaped = false;
  for (const ch of t) {
    if (inString) {
      if (escaped) escaped = false;
      else if (ch === '\\') escaped = true;
      else if (ch === '"') inString = false;
      continue;
    }
    if (ch === '"') inString = true;
    else if (ch === '{') closers.push('}');
    else if (ch === '[') closers.push(']');
    else if (ch === '}' || ch === ']') {
      if (closers.pop() !== ch) return false;
    }
  }
  return /^[\s{}\[\]":,a-z0-9.-]*$/i.test(t.replace(/"(?:[^"\\]|\\.)*"?/g, '""'));
}
