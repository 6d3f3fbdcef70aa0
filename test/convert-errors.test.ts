// Bad checkpoints and bad files give a typed, precise error, leave nothing behind, and never
// take the process down.
import { spawn, execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { native } from '../lib/binding';
import { convertModel, readGgufInfo, readGgufTensor, VideoLlama3Error } from '../lib/index';
import { makeTinyCheckpoint, writeSafetensors, type TinyCheckpoint } from './helpers/checkpoint';

const work = mkdtempSync(join(tmpdir(), 'vl3-convert-err-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

let n = 0;
function setup(opts: Parameters<typeof makeTinyCheckpoint>[1] = { layout: 'video_llama_3' }) {
  n++;
  const src = join(work, `ck${n}`);
  const out = join(work, `out${n}`);
  const ck = makeTinyCheckpoint(src, opts);
  return { src, out, ck };
}

async function expectFailure(p: Promise<unknown>, code: string, ...fragments: string[]): Promise<VideoLlama3Error> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(VideoLlama3Error);
  const e = err as VideoLlama3Error;
  expect(e.code).toBe(code);
  for (const f of fragments) expect(e.message).toContain(f);
  return e;
}

function rewriteJson(file: string, edit: (c: Record<string, any>) => void): void {
  const c = JSON.parse(readFileSync(file, 'utf8')) as Record<string, any>;
  edit(c);
  writeFileSync(file, JSON.stringify(c));
}

function rewriteConfig(dir: string, edit: (c: Record<string, any>) => void): void {
  rewriteJson(join(dir, 'config.json'), edit);
}

/** Rewrites the header of a .safetensors file with `edit`, keeping its data. */
function rewriteHeader(file: string, edit: (header: Record<string, any>) => void): void {
  const buf = readFileSync(file);
  const len = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + len).toString('utf8')) as Record<string, any>;
  edit(header);
  const json = Buffer.from(JSON.stringify(header));
  const lenBuf = Buffer.alloc(8);
  lenBuf.writeBigUInt64LE(BigInt(json.length));
  writeFileSync(file, Buffer.concat([lenBuf, json, buf.subarray(8 + len)]));
}

/**
 * Runs `fn` while a child process keeps opening `fifos` for writing and closing them again: a
 * converter that opened one for reading gets end-of-file within a fraction of a second instead
 * of blocking the JavaScript thread (and this test) forever.
 */
async function withFifoWriter<T>(fifos: string[], fn: () => Promise<T>): Promise<T> {
  const script = `
    const fs = require('node:fs');
    const paths = JSON.parse(process.argv[1]);
    setInterval(() => {
      for (const p of paths) {
        try { fs.closeSync(fs.openSync(p, fs.constants.O_RDWR | fs.constants.O_NONBLOCK)); } catch {}
      }
    }, 100);
    setTimeout(() => process.exit(0), 60000);`;
  const writer = spawn(process.execPath, ['-e', script, JSON.stringify(fifos)], { stdio: 'ignore' });
  try {
    return await fn();
  } finally {
    writer.kill();
  }
}

/** Rewrites model.safetensors with `edit` applied to the tensor list. */
function rewriteTensors(
  dir: string,
  ck: TinyCheckpoint,
  edit: (list: { name: string; dtype: string; shape: number[]; data: Buffer }[]) => void,
): void {
  const list = [...ck.tensors].map(([name, t]) => ({
    name,
    dtype: 'F32',
    shape: t.shape,
    data: Buffer.from(t.values.buffer.slice(0)),
  }));
  edit(list);
  writeSafetensors(join(dir, 'model.safetensors'), list);
}

describe('converter errors', () => {
  it('names the file and tensor of a truncated safetensors file, and leaves no output', async () => {
    const { src, out } = setup();
    const file = join(src, 'model.safetensors');
    truncateSync(file, readFileSync(file).length - 100);
    await expectFailure(convertModel({ input: src, output: out }), 'INVALID_MODEL', file, 'truncated', 'tensor');
    expect(existsSync(out)).toBe(false);
  });

  it('rejects a corrupt safetensors header', async () => {
    const { src, out } = setup();
    writeFileSync(join(src, 'model.safetensors'), Buffer.concat([Buffer.from([16, 0, 0, 0, 0, 0, 0, 0]), Buffer.from('{"not json')]));
    await expectFailure(convertModel({ input: src, output: out }), 'INVALID_MODEL', 'model.safetensors', 'header');
  });

  it('rejects a weight stored with a dtype it cannot read', async () => {
    const { src, out, ck } = setup();
    rewriteTensors(src, ck, (list) => {
      const t = list.find((x) => x.name === 'model.language_model.layers.0.self_attn.q_proj.weight')!;
      t.dtype = 'I64';
      t.data = Buffer.alloc(t.shape.reduce((a, b) => a * b, 1) * 8);
    });
    await expectFailure(convertModel({ input: src, output: out }), 'INVALID_MODEL', 'layers.0.self_attn.q_proj.weight', 'I64');
  });

  it('rejects a tensor whose shape does not match the config', async () => {
    const { src, out, ck } = setup();
    rewriteTensors(src, ck, (list) => {
      const t = list.find((x) => x.name === 'model.vision_model.encoder.layers.1.mlp.fc1.weight')!;
      t.shape = [t.shape[1]!, t.shape[0]!];
    });
    await expectFailure(convertModel({ input: src, output: out }), 'INVALID_MODEL', 'layers.1.mlp.fc1.weight', 'shape');
  });

  it('names a missing tensor', async () => {
    const { src, out, ck } = setup();
    rewriteTensors(src, ck, (list) => list.splice(list.findIndex((x) => x.name === 'model.projector.readout.2.bias'), 1));
    await expectFailure(convertModel({ input: src, output: out }), 'INVALID_MODEL', 'model.projector.readout.2.bias', 'missing');
  });

  it('rejects NaN weights, naming the tensor, and leaves no partial file', async () => {
    const { src, out, ck } = setup();
    rewriteTensors(src, ck, (list) => {
      const t = list.find((x) => x.name === 'model.language_model.norm.weight')!;
      t.data.writeFloatLE(Number.NaN, 8);
    });
    await expectFailure(convertModel({ input: src, output: out }), 'INVALID_MODEL', 'output_norm.weight', 'NaN');
    expect(existsSync(out)).toBe(false);
  });

  it('names a missing config key', async () => {
    const { src, out } = setup();
    rewriteConfig(src, (c) => delete c.text_config.hidden_size);
    await expectFailure(convertModel({ input: src, output: out }), 'INVALID_MODEL', 'config.json', 'hidden_size');
  });

  it('names a missing vision config', async () => {
    const { src, out } = setup({ layout: 'videollama3_qwen2' });
    rewriteConfig(src, (c) => delete c.vision_encoder_config);
    await expectFailure(convertModel({ input: src, output: out }), 'INVALID_MODEL', 'vision_encoder_config');
  });

  it('refuses an unknown model_type', async () => {
    const { src, out } = setup();
    rewriteConfig(src, (c) => (c.model_type = 'llava'));
    await expectFailure(convertModel({ input: src, output: out }), 'UNSUPPORTED_MODEL', '"llava"', 'video_llama_3');
  });

  it('rejects config.json that is not JSON, and a missing folder', async () => {
    const { src, out } = setup();
    writeFileSync(join(src, 'config.json'), '{ oops');
    await expectFailure(convertModel({ input: src, output: out }), 'INVALID_MODEL', 'config.json', 'JSON');
    await expectFailure(convertModel({ input: join(work, 'nope'), output: out }), 'IO_ERROR', 'does not exist');
  });

  it('validates options with precise messages', async () => {
    const { src, out } = setup();
    await expectFailure(convertModel({ input: src, output: out, type: 'q3' as never }), 'INVALID_ARGUMENT', "one of 'f32'", '"q3"');
    await expectFailure(convertModel({ input: src, output: out, threads: 0 }), 'INVALID_ARGUMENT', 'integer between 1 and 1024 for threads but received 0');
    await expectFailure(convertModel({ input: src, output: out, Type: 'f16' } as never), 'INVALID_ARGUMENT', "Unknown option 'Type'", "did you mean 'type'");
  });

  it('aborts mid-conversion: rejects with signal.reason and leaves nothing behind', async () => {
    const { src, out } = setup({ layout: 'video_llama_3', text: { vocab: 40000 } });
    const controller = new AbortController();
    const reason = new Error('stop now');
    const p = convertModel({
      input: src,
      output: out,
      type: 'q8_0',
      signal: controller.signal,
      onProgress: () => controller.abort(reason),
    });
    await expect(p).rejects.toBe(reason);
    expect(existsSync(out)).toBe(false);
    // An already-aborted signal rejects before any work.
    await expect(convertModel({ input: src, output: out, signal: AbortSignal.abort(reason) })).rejects.toBe(reason);
  });
});

describe('converter errors on hostile inputs', () => {
  it('rejects a vocab_size too large to hold, naming the key', async () => {
    const { src, out } = setup();
    rewriteConfig(src, (c) => (c.text_config.vocab_size = 1e12));
    await expectFailure(convertModel({ input: src, output: out }), 'INVALID_MODEL', 'config.json', '"vocab_size"', '1000000000000');
    expect(existsSync(out)).toBe(false);
  });

  it('refuses an output path that is a file, and leaves the file alone', async () => {
    const { src, out } = setup();
    writeFileSync(out, 'not a folder');
    await expectFailure(convertModel({ input: src, output: out }), 'INVALID_ARGUMENT', out, 'not a folder');
    expect(readFileSync(out, 'utf8')).toBe('not a folder');
  });

  it('rejects a shard named "." in model.safetensors.index.json', async () => {
    const { src, out } = setup({ layout: 'video_llama_3', shards: 2 });
    rewriteJson(join(src, 'model.safetensors.index.json'), (index) => {
      const first = Object.keys(index.weight_map)[0]!;
      index.weight_map[first] = '.';
    });
    await expectFailure(convertModel({ input: src, output: out }), 'INVALID_MODEL', 'model.safetensors.index.json', 'invalid shard "."');
  });

  it.skipIf(process.platform === 'win32')('refuses named pipes as checkpoint files without blocking on them', async () => {
    const cases: [string, Parameters<typeof makeTinyCheckpoint>[1]][] = [
      ['config.json', { layout: 'video_llama_3' }],
      ['tokenizer.json', { layout: 'video_llama_3' }],
      ['tokenizer_config.json', { layout: 'video_llama_3' }],
      ['generation_config.json', { layout: 'video_llama_3' }],
      ['preprocessor_config.json', { layout: 'video_llama_3' }],
      ['chat_template.jinja', { layout: 'video_llama_3' }],
      ['model.safetensors', { layout: 'video_llama_3' }],
      ['model.safetensors.index.json', { layout: 'videollama3_qwen2', shards: 2 }],
      ['model-00002-of-00002.safetensors', { layout: 'videollama3_qwen2', shards: 2 }],
    ];
    const runs = cases.map(([name, opts]) => {
      const { src, out } = setup(opts);
      const fifo = join(src, name);
      rmSync(fifo, { force: true });
      execFileSync('mkfifo', [fifo]);
      return { fifo, src, out };
    });
    await withFifoWriter(
      runs.map((r) => r.fifo),
      async () => {
        for (const { fifo, src, out } of runs) {
          await expectFailure(convertModel({ input: src, output: out }), 'INVALID_MODEL', fifo, 'named pipe', 'not a regular file');
          expect(existsSync(out)).toBe(false);
        }
      },
    );
  });
});

describe('checkpoints the model loader would refuse', () => {
  // Each must fail the conversion, naming the file and field, and leave no output behind.
  const cases: [string, (src: string) => void, string[]][] = [
    [
      'an image std of zero',
      (src) => writeFileSync(join(src, 'preprocessor_config.json'), JSON.stringify({ image_std: [0, 0, 0] })),
      ['preprocessor_config.json', '"image_std"', 'positive'],
    ],
    [
      'a non-finite image mean',
      (src) => writeFileSync(join(src, 'preprocessor_config.json'), '{"image_mean": [0.5, 1e999, 0.5]}'),
      ['preprocessor_config.json', '"image_mean"'],
    ],
    [
      'a malformed merge',
      (src) => rewriteJson(join(src, 'tokenizer.json'), (t) => (t.model.merges = ['ab'])),
      ['tokenizer.json', 'merge 0 ("ab") is not two tokens'],
    ],
    [
      'a merge of tokens not in the vocabulary',
      (src) => rewriteJson(join(src, 'tokenizer.json'), (t) => (t.model.merges = ['a b'])),
      ['tokenizer.json', 'merge 0 ("a b") names a token that is not in the vocabulary'],
    ],
    [
      'two vocabulary tokens with one id',
      (src) => rewriteJson(join(src, 'tokenizer.json'), (t) => (t.model.vocab.a = t.model.vocab.b)),
      ['tokenizer.json', 'tokens "a" and "b" both have id 98'],
    ],
    [
      'an added token with the id of another token',
      (src) => rewriteJson(join(src, 'tokenizer.json'), (t) => (t.added_tokens[0].id = 65)),
      ['tokenizer.json', 'both have id 65'],
    ],
    [
      'a token listed with two ids',
      (src) => rewriteJson(join(src, 'tokenizer.json'), (t) => (t.added_tokens[0].content = 'a')),
      ['tokenizer.json', 'token "a" has two ids, 97 and 256'],
    ],
    [
      'a max_position_embeddings of 1e20',
      (src) => rewriteConfig(src, (c) => (c.text_config.max_position_embeddings = 1e20)),
      ['config.json', '"max_position_embeddings"', 'between 16 and 16777216', '100000000000000000000'],
    ],
    [
      'an image_token_id outside the vocabulary',
      (src) => rewriteConfig(src, (c) => (c.image_token_id = 1e9)),
      ['config.json', '"image_token_id"', '1000000000', 'vocab_size 264'],
    ],
    [
      'an end-of-sequence id of -1 in config.json',
      (src) => rewriteConfig(src, (c) => (c.text_config.eos_token_id = -1)),
      ['config.json', '"eos_token_id"', 'found -1'],
    ],
    [
      'an end-of-sequence id of -1 in generation_config.json',
      (src) => writeFileSync(join(src, 'generation_config.json'), JSON.stringify({ eos_token_id: [258, -1] })),
      ['generation_config.json', '"eos_token_id"', 'found -1'],
    ],
    [
      'overlapping tensor data in a safetensors header',
      (src) =>
        rewriteHeader(join(src, 'model.safetensors'), (h) => {
          const p = 'model.vision_model.encoder.layers.0.self_attn.';
          h[`${p}k_proj.weight`].data_offsets = h[`${p}q_proj.weight`].data_offsets;
        }),
      ['model.safetensors', 'self_attn.q_proj.weight', 'self_attn.k_proj.weight', 'overlap'],
    ],
  ];
  for (const [what, edit, fragments] of cases) {
    it(`rejects ${what}`, async () => {
      const { src, out } = setup();
      edit(src);
      const err = await expectFailure(convertModel({ input: src, output: out }), 'INVALID_MODEL', ...fragments);
      expect(err.message).not.toContain('.converting-');
      expect(existsSync(out)).toBe(false);
    });
  }
});

describe('GGUF writer metadata', () => {
  it('refuses values that do not fit their GGUF type instead of wrapping them', () => {
    const file = join(work, 'range.gguf');
    const bad: [string, unknown][] = [
      ['u32', 1e20], ['u32', -1], ['u32', 1.5], ['i32', 2 ** 31], ['i32[]', [1, -(2 ** 31) - 1]], ['u32[]', [-1]],
      ['f32', 1e39], ['f32[]', [0.5, Number.NaN]],
    ];
    for (const [type, value] of bad) {
      const write = (): unknown => native().writeGguf(file, [{ key: 'test.value', type, value } as never], []);
      expect(write, `${type} ${String(value)}`).toThrow(
        expect.objectContaining({ code: 'INVALID_ARGUMENT', message: expect.stringContaining('test.value') }),
      );
    }
    expect(existsSync(file)).toBe(false);
  });
});

describe('interrupted conversions', () => {
  it('removes the staging folder a killed conversion left behind', async () => {
    const { src, out } = setup();
    const stale = join(out, '.converting-2147480000-abc123');
    mkdirSync(stale, { recursive: true });
    writeFileSync(join(stale, 'llm.gguf.partial'), 'half a file');
    await convertModel({ input: src, output: out, type: 'f32' });
    expect(readdirSync(out).sort()).toEqual(['llm.gguf', 'vision.gguf']);
  });
});

describe('GGUF reader on bad files', () => {
  it('rejects random bytes, a truncated GGUF and a missing file with typed errors', async () => {
    const junk = join(work, 'junk.gguf');
    writeFileSync(junk, Buffer.alloc(4096, 7));
    await expectFailure(readGgufInfo(junk), 'INVALID_MODEL', 'not a GGUF file');
    await expectFailure(readGgufInfo(join(work, 'missing.gguf')), 'IO_ERROR', 'missing.gguf');

    const { src, out } = setup();
    await convertModel({ input: src, output: out, type: 'f32' });
    const llm = join(out, 'llm.gguf');
    const good = readFileSync(llm);
    const cut = join(work, 'cut.gguf');
    writeFileSync(cut, good.subarray(0, good.length - 1000));
    await expectFailure(readGgufInfo(cut), 'INVALID_MODEL', 'truncated');
    const headerOnly = join(work, 'header.gguf');
    writeFileSync(headerOnly, good.subarray(0, 200));
    await expectFailure(readGgufInfo(headerOnly), 'INVALID_MODEL', 'header.gguf');
    await expectFailure(readGgufTensor(llm, 'no.such.tensor'), 'INVALID_ARGUMENT', 'no.such.tensor');
    // Corrupting every header byte, one at a time, never crashes the process.
    const header = good.subarray(0, 256);
    for (let i = 4; i < header.length; i += 3) {
      const bad = Buffer.from(good.subarray(0, 4096));
      bad[i] = bad[i]! ^ 0xff;
      const f = join(work, `flip${i}.gguf`);
      writeFileSync(f, bad);
      await readGgufInfo(f).catch((e: unknown) => expect(e).toBeInstanceOf(VideoLlama3Error));
    }
    expect(readdirSync(out).sort()).toEqual(['llm.gguf', 'vision.gguf']);
  });
});
