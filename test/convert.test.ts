// Converter round trip: every tensor read back from the GGUF files equals the checkpoint
// tensor (bit-exact for f32/f16/bf16, within the quantization bound for q8_0 / q4_k_m),
// for tiny models in both checkpoint layouts, tied and untied, single and sharded.
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { convertModel, readGgufInfo, readGgufTensor, type ConvertType, type GgufInfo } from '../lib/index';
import { makeTinyCheckpoint, type Layout, type TinyCheckpoint, type TinyTensor } from './helpers/checkpoint';

const work = mkdtempSync(join(tmpdir(), 'vl3-convert-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** GGUF name of a transformers-native tensor name, written from spec §3.2 and llama.cpp's qwen2 names. */
function ggufName(native: string): string {
  const rules: [RegExp, string][] = [
    [/^model\.language_model\.embed_tokens\.weight$/, 'token_embd.weight'],
    [/^model\.language_model\.norm\.weight$/, 'output_norm.weight'],
    [/^lm_head\.weight$/, 'output.weight'],
    [/^model\.language_model\.layers\.(\d+)\.input_layernorm\.weight$/, 'blk.$1.attn_norm.weight'],
    [/^model\.language_model\.layers\.(\d+)\.post_attention_layernorm\.weight$/, 'blk.$1.ffn_norm.weight'],
    [/^model\.language_model\.layers\.(\d+)\.self_attn\.o_proj\.weight$/, 'blk.$1.attn_output.weight'],
    [/^model\.language_model\.layers\.(\d+)\.self_attn\.([qkv])_proj\.(weight|bias)$/, 'blk.$1.attn_$2.$3'],
    [/^model\.language_model\.layers\.(\d+)\.mlp\.(gate|up|down)_proj\.weight$/, 'blk.$1.ffn_$2.weight'],
    [/^model\.vision_model\.embeddings\.patch_embedding\.(weight|bias)$/, 'v.patch_embd.$1'],
    [/^model\.vision_model\.post_layernorm\.(weight|bias)$/, 'v.post_ln.$1'],
    [/^model\.vision_model\.encoder\.layers\.(\d+)\.layer_norm([12])\.(weight|bias)$/, 'v.blk.$1.ln$2.$3'],
    [/^model\.vision_model\.encoder\.layers\.(\d+)\.self_attn\.([qkv])_proj\.(weight|bias)$/, 'v.blk.$1.attn_$2.$3'],
    [/^model\.vision_model\.encoder\.layers\.(\d+)\.self_attn\.out_proj\.(weight|bias)$/, 'v.blk.$1.attn_out.$2'],
    [/^model\.vision_model\.encoder\.layers\.(\d+)\.mlp\.fc1\.(weight|bias)$/, 'v.blk.$1.ffn_up.$2'],
    [/^model\.vision_model\.encoder\.layers\.(\d+)\.mlp\.fc2\.(weight|bias)$/, 'v.blk.$1.ffn_down.$2'],
    [/^model\.projector\.readout\.([02])\.(weight|bias)$/, 'mm.$1.$2'],
  ];
  for (const [re, out] of rules) if (re.test(native)) return native.replace(re, out);
  throw new Error(`no GGUF name for ${native}`);
}

const BITS: Record<string, number> = { q8_0: 8, q6_K: 6, q5_0: 5, q4_K: 4 };
const BLOCK: Record<string, number> = { q8_0: 32, q5_0: 32, q6_K: 256, q4_K: 256 };

/** Max error allowed for a quantized block: two steps of a b-bit grid spanning ±amax of the block. */
function checkQuantized(type: string, src: Float32Array, got: Float32Array, name: string): void {
  const bits = BITS[type];
  const block = BLOCK[type];
  if (bits === undefined || block === undefined) throw new Error(`${name}: unexpected type ${type}`);
  for (let b = 0; b < src.length; b += block) {
    let amax = 0;
    for (let i = b; i < b + block; i++) amax = Math.max(amax, Math.abs(src[i]!));
    const bound = (2 * amax) / (2 ** bits - 1) + 1e-6;
    for (let i = b; i < b + block; i++) {
      const err = Math.abs(got[i]! - src[i]!);
      if (err > bound) throw new Error(`${name}[${i}] (${type}): |${got[i]} - ${src[i]}| = ${err} > ${bound}`);
    }
  }
}

async function roundTrip(ck: TinyCheckpoint, out: string, type: ConvertType): Promise<Record<'llm' | 'vision', GgufInfo>> {
  const files = { llm: join(out, 'llm.gguf'), vision: join(out, 'vision.gguf') };
  const info = { llm: await readGgufInfo(files.llm), vision: await readGgufInfo(files.vision) };
  let checked = 0;
  for (const [name, t] of ck.tensors) {
    const gname = ggufName(ck.nativeName.get(name)!);
    const file = gname.startsWith('v.') || gname.startsWith('mm.') ? 'vision' : 'llm';
    const entry = info[file].tensors.find((x) => x.name === gname);
    expect(entry, `${gname} in ${file}.gguf`).toBeDefined();
    const expectShape = gname === 'v.patch_embd.weight' ? [t.shape.slice(1).reduce((a, b) => a * b, 1), t.shape[0]] : [...t.shape].reverse();
    expect(entry!.shape, gname).toEqual(expectShape);
    const got = await readGgufTensor(files[file], gname);
    if (entry!.type === 'f32' || entry!.type === 'f16' || entry!.type === 'bf16') {
      expect(Buffer.from(got.buffer).equals(Buffer.from(t.values.buffer)), `${gname} (${entry!.type}) bit-exact`).toBe(true);
    } else {
      checkQuantized(entry!.type, t.values, got, gname);
    }
    checked++;
  }
  expect(checked).toBe(ck.tensors.size);
  // Nothing but the two model files is left in the output folder.
  expect(readdirSync(out).sort()).toEqual(['llm.gguf', 'vision.gguf']);
  return info;
}

let n = 0;
function fresh(): { src: string; out: string } {
  n++;
  return { src: join(work, `ck${n}`), out: join(work, `out${n}`) };
}

describe('convert round trip', () => {
  for (const layout of ['video_llama_3', 'videollama3_qwen2'] as Layout[]) {
    for (const type of ['f32', 'f16', 'bf16'] as ConvertType[]) {
      it(`${layout} -> ${type}: every tensor bit-exact (untied lm_head, 2 shards)`, async () => {
        const { src, out } = fresh();
        const ck = makeTinyCheckpoint(src, { layout, tied: false, dtype: 'BF16', shards: 2 });
        const result = await convertModel({ input: src, output: out, type });
        expect(result.layout).toBe(layout);
        const info = await roundTrip(ck, out, type);
        expect(info.llm.tensors.some((t) => t.name === 'output.weight')).toBe(true);
        for (const t of [...info.llm.tensors, ...info.vision.tensors]) {
          expect(t.type, t.name).toBe(t.shape.length === 1 ? 'f32' : type);
        }
      });
    }

    it(`${layout} -> f16 from f32 weights, tied embeddings: no output.weight written`, async () => {
      const { src, out } = fresh();
      const ck = makeTinyCheckpoint(src, { layout, tied: true, dtype: 'F32' });
      await convertModel({ input: src, output: out, type: 'f16' });
      const info = await roundTrip(ck, out, 'f16');
      expect(info.llm.tensors.some((t) => t.name === 'output.weight')).toBe(false);
    });

    for (const type of ['q8_0', 'q4_k_m'] as ConvertType[]) {
      it(`${layout} -> ${type}: within the quantization bound`, async () => {
        const { src, out } = fresh();
        const ck = makeTinyCheckpoint(src, {
          layout, tied: type === 'q4_k_m', dtype: 'F16', values: 'normal',
          text: { hidden: 256, intermediate: 512, heads: 4, kvHeads: 2, layers: 8 },
        });
        await convertModel({ input: src, output: out, type, threads: 2 });
        const info = await roundTrip(ck, out, type);
        const typeOf = (name: string): string | undefined =>
          [...info.llm.tensors, ...info.vision.tensors].find((t) => t.name === name)?.type;
        if (type === 'q8_0') {
          expect(typeOf('blk.0.attn_q.weight')).toBe('q8_0');
          expect(typeOf('token_embd.weight')).toBe('q8_0');
        } else {
          // llama.cpp's Q4_K_M mix: tied token_embd (the output matrix) q6_K; attn_v/ffn_down q6_K
          // in the first/last eighth and every third layer between; the rest q4_K.
          expect(typeOf('token_embd.weight')).toBe('q6_K');
          expect(typeOf('blk.0.attn_q.weight')).toBe('q4_K');
          expect(typeOf('blk.0.attn_v.weight')).toBe('q6_K');
          expect(typeOf('blk.1.attn_v.weight')).toBe('q4_K');
          expect(typeOf('blk.3.ffn_down.weight')).toBe('q6_K');
          expect(typeOf('blk.7.ffn_down.weight')).toBe('q6_K');
        }
        // Vision tower: q8_0 where rows allow, f16 for the 588-wide patch embedding; norms f32.
        expect(typeOf('v.blk.0.attn_q.weight')).toBe('q8_0');
        expect(typeOf('v.patch_embd.weight')).toBe('f16');
        expect(typeOf('v.blk.0.ln1.weight')).toBe('f32');
        expect(info.llm.metadata['general.file_type']).toBe(type === 'q8_0' ? 7 : 15);
      });
    }
  }

  it('writes llama.cpp qwen2 metadata and the documented vision metadata', async () => {
    const { src, out } = fresh();
    makeTinyCheckpoint(src, { layout: 'video_llama_3', tied: true, dtype: 'BF16' });
    await convertModel({ input: src, output: out, type: 'f16' });
    const llm = (await readGgufInfo(join(out, 'llm.gguf'))).metadata;
    expect(llm['general.architecture']).toBe('qwen2');
    expect(llm['qwen2.block_count']).toBe(2);
    expect(llm['qwen2.embedding_length']).toBe(64);
    expect(llm['qwen2.feed_forward_length']).toBe(128);
    expect(llm['qwen2.attention.head_count']).toBe(4);
    expect(llm['qwen2.attention.head_count_kv']).toBe(2);
    expect(llm['qwen2.rope.freq_base']).toBe(1e6);
    expect(llm['qwen2.attention.layer_norm_rms_epsilon']).toBeCloseTo(1e-6, 12);
    expect(llm['tokenizer.ggml.model']).toBe('gpt2');
    expect(llm['tokenizer.ggml.pre']).toBe('qwen2');
    expect((llm['tokenizer.ggml.tokens'] as string[]).length).toBe(264);
    expect((llm['tokenizer.ggml.token_type'] as number[]).slice(256, 264)).toEqual([3, 3, 3, 3, 3, 5, 5, 5]);
    expect(llm['tokenizer.ggml.eos_token_id']).toBe(258);
    expect(llm['tokenizer.ggml.add_bos_token']).toBe(false);
    const vision = (await readGgufInfo(join(out, 'vision.gguf'))).metadata;
    expect(vision['general.architecture']).toBe('videollama3-vision');
    expect(vision['vl3.vision.embedding_length']).toBe(32);
    expect(vision['vl3.vision.patch_size']).toBe(14);
    expect(vision['vl3.vision.rope.freq_base']).toBe(10000);
    expect(vision['vl3.preprocess.image_mean']).toEqual([0.5, 0.5, 0.5]);
    expect(vision['vl3.preprocess.image.max_pixels']).toBe(16384 * 14 * 14);
    expect(vision['vl3.preprocess.video.max_pixels']).toBe(16384 * 28 * 28);
    expect(vision['vl3.preprocess.video.max_frames']).toBe(180);
    expect(vision['vl3.image_token_id']).toBe(259);
    expect(vision['vl3.video_token_id']).toBe(260);
    expect(vision['vl3.source_layout']).toBe('video_llama_3');
  });

  it('reports progress up to the total and can overwrite only when asked', async () => {
    const { src, out } = fresh();
    makeTinyCheckpoint(src, { layout: 'video_llama_3' });
    const seen: number[] = [];
    let total = 0;
    await convertModel({ input: src, output: out, onProgress: (p) => { seen.push(p.bytesDone); total = p.bytesTotal; } });
    expect(seen.length).toBeGreaterThan(0);
    expect(seen.at(-1)).toBe(total);
    await expect(convertModel({ input: src, output: out })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await convertModel({ input: src, output: out, overwrite: true, type: 'bf16' });
    expect((await readGgufInfo(join(out, 'llm.gguf'))).metadata['general.file_type']).toBe(32);
  });
});
