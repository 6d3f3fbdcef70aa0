// Writes tiny random-weight VideoLLaMA 3 checkpoints in either Hugging Face layout, as
// safetensors + config + tokenizer files, for converter tests. Independent of lib/: names and
// shapes here are written from the spec (§3.2), so a wrong table in native/ fails the tests.
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export type Layout = 'video_llama_3' | 'videollama3_qwen2';
export type Dtype = 'F32' | 'F16' | 'BF16';

export interface TinyOptions {
  layout: Layout;
  tied?: boolean;
  dtype?: Dtype;
  tokenizer?: 'bytes' | 'qwen2';
  text?: Partial<{ hidden: number; intermediate: number; layers: number; heads: number; kvHeads: number; vocab: number }>;
  vision?: Partial<{ hidden: number; intermediate: number; layers: number; heads: number }>;
  shards?: number;
  seed?: number;
  /** 'grid': values k/256 (exact in bf16 and f16); 'normal': bell-shaped k/1024 (exact in f16), for quantization tests. */
  values?: 'grid' | 'normal';
}

export interface TinyTensor {
  shape: number[];
  dtype: Dtype;
  values: Float32Array;
}

export interface TinyCheckpoint {
  dir: string;
  /** Tensors by their name in this checkpoint's layout. */
  tensors: Map<string, TinyTensor>;
  /** Native (transformers) name of each checkpoint name. */
  nativeName: Map<string, string>;
}

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** f32 -> f16 bits for values exactly representable in f16 (the grid values are). */
export function f32ToF16(v: number): number {
  if (v === 0) return Object.is(v, -0) ? 0x8000 : 0;
  const sign = v < 0 ? 0x8000 : 0;
  const a = Math.abs(v);
  const e = Math.floor(Math.log2(a));
  const m = a / 2 ** e - 1;
  return sign | ((e + 15) << 10) | Math.round(m * 1024);
}

function encode(values: Float32Array, dtype: Dtype): Buffer {
  if (dtype === 'F32') return Buffer.from(values.buffer, values.byteOffset, values.byteLength);
  const out = Buffer.alloc(values.length * 2);
  const u32 = new Uint32Array(values.buffer, values.byteOffset, values.length);
  for (let i = 0; i < values.length; i++) {
    out.writeUInt16LE(dtype === 'BF16' ? u32[i]! >>> 16 : f32ToF16(values[i]!), i * 2);
  }
  return out;
}

/** Writes one .safetensors file. `extra` entries may carry any dtype/raw bytes (error tests). */
export function writeSafetensors(
  file: string,
  tensors: { name: string; dtype: string; shape: number[]; data: Buffer }[],
): void {
  const header: Record<string, unknown> = { __metadata__: { format: 'pt' } };
  let off = 0;
  for (const t of tensors) {
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [off, off + t.data.length] };
    off += t.data.length;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (json.length % 8)) % 8);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
  writeFileSync(file, Buffer.concat([len, Buffer.from(json), ...tensors.map((t) => t.data)]));
}

/** GPT-2 byte -> unicode table (the byte-level BPE alphabet). */
function byteAlphabet(): string[] {
  const bs: number[] = [];
  for (let b = 33; b <= 126; b++) bs.push(b);
  for (let b = 161; b <= 172; b++) bs.push(b);
  for (let b = 174; b <= 255; b++) bs.push(b);
  const cs = [...bs];
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (!bs.includes(b)) {
      bs.push(b);
      cs.push(256 + n++);
    }
  }
  const out = new Array<string>(256);
  bs.forEach((b, i) => (out[b] = String.fromCodePoint(cs[i]!)));
  return out;
}

const FIXTURES = join(__dirname, '..', 'fixtures');

function writeTokenizer(dir: string, kind: 'bytes' | 'qwen2', layout: Layout): { ids: Record<string, number>; size: number } {
  if (kind === 'qwen2') {
    copyFileSync(join(FIXTURES, 'tokenizer', 'tokenizer.json'), join(dir, 'tokenizer.json'));
    copyFileSync(join(FIXTURES, 'tokenizer', 'tokenizer_config.json'), join(dir, 'tokenizer_config.json'));
    return {
      ids: { '<|endoftext|>': 151643, '<|im_start|>': 151644, '<|im_end|>': 151645, '<|image_pad|>': 151655, '<|video_pad|>': 151656 },
      size: 151665,
    };
  }
  const vocab: Record<string, number> = {};
  byteAlphabet().forEach((c, i) => (vocab[c] = i));
  const specials = ['<|endoftext|>', '<|im_start|>', '<|im_end|>', '<|image_pad|>', '<|video_pad|>'];
  if (layout === 'videollama3_qwen2') specials.push('<image>');
  const ids: Record<string, number> = {};
  specials.forEach((s, i) => (ids[s] = 256 + i));
  const tokenizer = {
    version: '1.0',
    added_tokens: specials.map((content, i) => ({
      id: 256 + i, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true,
    })),
    normalizer: null,
    pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: true },
    post_processor: null,
    decoder: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: true },
    model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null,
      fuse_unk: false, byte_fallback: false, vocab, merges: [] },
  };
  writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(tokenizer));
  writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify({
    eos_token: '<|im_end|>', pad_token: '<|endoftext|>', bos_token: null, model_max_length: 4096,
  }));
  return { ids, size: 256 + specials.length };
}

/** Native name -> original remote-code name (spec §3.2). */
export function origName(native: string): string {
  return native
    .replace(/^model\.vision_model\./, 'model.vision_encoder.')
    .replace(/^model\.projector\./, 'model.mm_projector.')
    .replace(/^model\.language_model\./, 'model.');
}

export function makeTinyCheckpoint(dir: string, opts: TinyOptions): TinyCheckpoint {
  mkdirSync(dir, { recursive: true });
  const tied = opts.tied ?? true;
  const dtype = opts.dtype ?? 'BF16';
  const tok = writeTokenizer(dir, opts.tokenizer ?? 'bytes', opts.layout);
  const T = { hidden: 64, intermediate: 128, layers: 2, heads: 4, kvHeads: 2, vocab: tok.size + 3, ...opts.text };
  const V = { hidden: 32, intermediate: 64, layers: 2, heads: 2, ...opts.vision };
  const kv = (T.hidden / T.heads) * T.kvHeads;

  const shapes: [string, number[]][] = [
    ['model.vision_model.embeddings.patch_embedding.weight', [V.hidden, 3, 14, 14]],
    ['model.vision_model.embeddings.patch_embedding.bias', [V.hidden]],
  ];
  for (let l = 0; l < V.layers; l++) {
    const p = `model.vision_model.encoder.layers.${l}.`;
    shapes.push([`${p}layer_norm1.weight`, [V.hidden]], [`${p}layer_norm1.bias`, [V.hidden]]);
    for (const x of ['q', 'k', 'v', 'out']) {
      shapes.push([`${p}self_attn.${x}_proj.weight`, [V.hidden, V.hidden]], [`${p}self_attn.${x}_proj.bias`, [V.hidden]]);
    }
    shapes.push([`${p}layer_norm2.weight`, [V.hidden]], [`${p}layer_norm2.bias`, [V.hidden]]);
    shapes.push([`${p}mlp.fc1.weight`, [V.intermediate, V.hidden]], [`${p}mlp.fc1.bias`, [V.intermediate]]);
    shapes.push([`${p}mlp.fc2.weight`, [V.hidden, V.intermediate]], [`${p}mlp.fc2.bias`, [V.hidden]]);
  }
  shapes.push(['model.vision_model.post_layernorm.weight', [V.hidden]], ['model.vision_model.post_layernorm.bias', [V.hidden]]);
  shapes.push(['model.projector.readout.0.weight', [T.hidden, V.hidden]], ['model.projector.readout.0.bias', [T.hidden]]);
  shapes.push(['model.projector.readout.2.weight', [T.hidden, T.hidden]], ['model.projector.readout.2.bias', [T.hidden]]);
  shapes.push(['model.language_model.embed_tokens.weight', [T.vocab, T.hidden]]);
  for (let l = 0; l < T.layers; l++) {
    const p = `model.language_model.layers.${l}.`;
    shapes.push([`${p}input_layernorm.weight`, [T.hidden]]);
    shapes.push([`${p}self_attn.q_proj.weight`, [T.hidden, T.hidden]], [`${p}self_attn.q_proj.bias`, [T.hidden]]);
    shapes.push([`${p}self_attn.k_proj.weight`, [kv, T.hidden]], [`${p}self_attn.k_proj.bias`, [kv]]);
    shapes.push([`${p}self_attn.v_proj.weight`, [kv, T.hidden]], [`${p}self_attn.v_proj.bias`, [kv]]);
    shapes.push([`${p}self_attn.o_proj.weight`, [T.hidden, T.hidden]]);
    shapes.push([`${p}post_attention_layernorm.weight`, [T.hidden]]);
    shapes.push([`${p}mlp.gate_proj.weight`, [T.intermediate, T.hidden]], [`${p}mlp.up_proj.weight`, [T.intermediate, T.hidden]]);
    shapes.push([`${p}mlp.down_proj.weight`, [T.hidden, T.intermediate]]);
  }
  shapes.push(['model.language_model.norm.weight', [T.hidden]]);
  if (!tied) shapes.push(['lm_head.weight', [T.vocab, T.hidden]]);

  const rand = rng(opts.seed ?? 1);
  const tensors = new Map<string, TinyTensor>();
  const nativeName = new Map<string, string>();
  for (const [native, shape] of shapes) {
    const n = shape.reduce((a, b) => a * b, 1);
    const values = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      if (opts.values === 'normal') {
        values[i] = Math.round((rand() + rand() + rand() - 1.5) * 0.8 * 1024) / 1024; // exact in f16
      } else {
        values[i] = (Math.floor(rand() * 511) - 255) / 256;
      }
    }
    const name = opts.layout === 'video_llama_3' ? native : origName(native);
    tensors.set(name, { shape, dtype, values });
    nativeName.set(name, native);
  }

  const shards = opts.shards ?? 1;
  const names = [...tensors.keys()];
  const per = Math.ceil(names.length / shards);
  const weightMap: Record<string, string> = {};
  for (let s = 0; s < shards; s++) {
    const file = shards === 1 ? 'model.safetensors' : `model-${String(s + 1).padStart(5, '0')}-of-${String(shards).padStart(5, '0')}.safetensors`;
    const part = names.slice(s * per, (s + 1) * per);
    writeSafetensors(join(dir, file), part.map((name) => {
      const t = tensors.get(name)!;
      return { name, dtype: t.dtype, shape: t.shape, data: encode(t.values, t.dtype) };
    }));
    for (const name of part) weightMap[name] = file;
  }
  if (shards > 1) {
    writeFileSync(join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: {}, weight_map: weightMap }));
  }

  const visionCfg = {
    hidden_size: V.hidden, intermediate_size: V.intermediate, num_hidden_layers: V.layers, num_attention_heads: V.heads,
    num_channels: 3, patch_size: 14, layer_norm_eps: 1e-6, hidden_act: 'gelu_pytorch_tanh',
  };
  const textCfg = {
    vocab_size: T.vocab, hidden_size: T.hidden, intermediate_size: T.intermediate, num_hidden_layers: T.layers,
    num_attention_heads: T.heads, num_key_value_heads: T.kvHeads, rms_norm_eps: 1e-6, max_position_embeddings: 4096,
    tie_word_embeddings: tied, bos_token_id: tok.ids['<|endoftext|>'], eos_token_id: tok.ids['<|im_end|>'],
  };
  const config =
    opts.layout === 'video_llama_3'
      ? {
          model_type: 'video_llama_3', architectures: ['VideoLlama3ForConditionalGeneration'],
          vision_config: { model_type: 'video_llama_3_vision', ...visionCfg },
          text_config: { model_type: 'qwen2', ...textCfg, rope_parameters: { rope_type: 'default', rope_theta: 1e6 } },
          image_token_id: tok.ids['<|image_pad|>'], video_token_id: tok.ids['<|video_pad|>'], tie_word_embeddings: tied,
        }
      : {
          model_type: 'videollama3_qwen2', architectures: ['Videollama3Qwen2ForCausalLM'], ...textCfg, rope_theta: 1e6,
          image_token_index: tok.ids['<image>'] ?? 151665, mm_projector_type: 'mlp2x_gelu', use_token_compression: true,
          vision_encoder_config: { model_type: 'videollama3_vision_encoder', ...visionCfg },
        };
  writeFileSync(join(dir, 'config.json'), JSON.stringify(config, null, 2));
  writeFileSync(join(dir, 'generation_config.json'), JSON.stringify({ eos_token_id: [tok.ids['<|im_end|>'], tok.ids['<|endoftext|>']] }));
  return { dir, tensors, nativeName };
}
