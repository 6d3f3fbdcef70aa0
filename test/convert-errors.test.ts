// Bad checkpoints and bad files give a typed, precise error, leave nothing behind, and never
// take the process down.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
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

function rewriteConfig(dir: string, edit: (c: Record<string, any>) => void): void {
  const file = join(dir, 'config.json');
  const c = JSON.parse(readFileSync(file, 'utf8')) as Record<string, any>;
  edit(c);
  writeFileSync(file, JSON.stringify(c));
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
