#!/usr/bin/env node
// Writes a random-weight Hugging Face checkpoint with the VideoLLaMA3-2B shapes (transformers
// `video_llama_3` layout, bf16 safetensors, the Qwen2.5 tokenizer from test/fixtures), streaming
// tensor by tensor (~3.9 GB on disk, little memory). Speed is shape-bound, so random values do.
// Usage: node tools/bench/make-checkpoint.mjs <out-dir> [--layers-llm N] [--layers-vision N]
import { closeSync, copyFileSync, mkdirSync, openSync, writeFileSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const [out, ...rest] = process.argv.slice(2);
if (!out) {
  process.stderr.write('usage: make-checkpoint.mjs <out-dir> [--layers-llm N] [--layers-vision N]\n');
  process.exit(2);
}
const opt = (name, fallback) => (rest.includes(name) ? Number(rest[rest.indexOf(name) + 1]) : fallback);
const T = { hidden: 1536, ffn: 8960, layers: opt('--layers-llm', 28), heads: 12, kv: 2, vocab: 151936 };
const V = { hidden: 1152, ffn: 4304, layers: opt('--layers-vision', 27), heads: 16 };
const kvDim = (T.hidden / T.heads) * T.kv;

const shapes = [
  ['model.vision_model.embeddings.patch_embedding.weight', [V.hidden, 3, 14, 14]],
  ['model.vision_model.embeddings.patch_embedding.bias', [V.hidden]],
];
for (let l = 0; l < V.layers; l++) {
  const p = `model.vision_model.encoder.layers.${l}.`;
  for (const n of ['layer_norm1', 'layer_norm2']) shapes.push([`${p}${n}.weight`, [V.hidden]], [`${p}${n}.bias`, [V.hidden]]);
  for (const x of ['q', 'k', 'v', 'out']) shapes.push([`${p}self_attn.${x}_proj.weight`, [V.hidden, V.hidden]], [`${p}self_attn.${x}_proj.bias`, [V.hidden]]);
  shapes.push([`${p}mlp.fc1.weight`, [V.ffn, V.hidden]], [`${p}mlp.fc1.bias`, [V.ffn]]);
  shapes.push([`${p}mlp.fc2.weight`, [V.hidden, V.ffn]], [`${p}mlp.fc2.bias`, [V.hidden]]);
}
shapes.push(['model.vision_model.post_layernorm.weight', [V.hidden]], ['model.vision_model.post_layernorm.bias', [V.hidden]]);
shapes.push(['model.projector.readout.0.weight', [T.hidden, V.hidden]], ['model.projector.readout.0.bias', [T.hidden]]);
shapes.push(['model.projector.readout.2.weight', [T.hidden, T.hidden]], ['model.projector.readout.2.bias', [T.hidden]]);
shapes.push(['model.language_model.embed_tokens.weight', [T.vocab, T.hidden]]);
for (let l = 0; l < T.layers; l++) {
  const p = `model.language_model.layers.${l}.`;
  shapes.push([`${p}input_layernorm.weight`, [T.hidden]], [`${p}post_attention_layernorm.weight`, [T.hidden]]);
  shapes.push([`${p}self_attn.q_proj.weight`, [T.hidden, T.hidden]], [`${p}self_attn.q_proj.bias`, [T.hidden]]);
  shapes.push([`${p}self_attn.k_proj.weight`, [kvDim, T.hidden]], [`${p}self_attn.k_proj.bias`, [kvDim]]);
  shapes.push([`${p}self_attn.v_proj.weight`, [kvDim, T.hidden]], [`${p}self_attn.v_proj.bias`, [kvDim]]);
  shapes.push([`${p}self_attn.o_proj.weight`, [T.hidden, T.hidden]]);
  shapes.push([`${p}mlp.gate_proj.weight`, [T.ffn, T.hidden]], [`${p}mlp.up_proj.weight`, [T.ffn, T.hidden]]);
  shapes.push([`${p}mlp.down_proj.weight`, [T.hidden, T.ffn]]);
}
shapes.push(['model.language_model.norm.weight', [T.hidden]]);

mkdirSync(out, { recursive: true });
const header = { __metadata__: { format: 'pt' } };
let off = 0;
for (const [name, shape] of shapes) {
  const bytes = shape.reduce((a, b) => a * b, 1) * 2;
  header[name] = { dtype: 'BF16', shape, data_offsets: [off, off + bytes] };
  off += bytes;
}
let json = JSON.stringify(header);
json += ' '.repeat((8 - (json.length % 8)) % 8);
const fd = openSync(join(out, 'model.safetensors'), 'w');
const len = Buffer.alloc(8);
len.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
writeSync(fd, len);
writeSync(fd, json);

// bf16 bits of small random values: sign | exponent of ~2^-6..2^-3 | random mantissa.
let s = 0x12345678;
const chunk = new Uint16Array(1 << 20);
let written = 0;
for (const [name, shape] of shapes) {
  let n = shape.reduce((a, b) => a * b, 1);
  const isNorm = /norm/.test(name) && name.endsWith('weight');
  while (n > 0) {
    const k = Math.min(n, chunk.length);
    for (let i = 0; i < k; i++) {
      s ^= s << 13;
      s ^= s >>> 17;
      s ^= s << 5;
      chunk[i] = isNorm ? 0x3f80 : ((s & 0x8000) | ((0x3c + ((s >>> 16) & 3)) << 7) | (s & 0x7f)) & 0xffff;
    }
    writeSync(fd, Buffer.from(chunk.buffer, 0, k * 2));
    n -= k;
    written += k * 2;
  }
}
closeSync(fd);
process.stderr.write(`wrote ${(written / 1e9).toFixed(2)} GB of bf16 weights\n`);

const cfg = {
  model_type: 'video_llama_3',
  architectures: ['VideoLlama3ForConditionalGeneration'],
  vision_config: { model_type: 'video_llama_3_vision', hidden_size: V.hidden, intermediate_size: V.ffn, num_hidden_layers: V.layers,
    num_attention_heads: V.heads, num_channels: 3, patch_size: 14, layer_norm_eps: 1e-6, hidden_act: 'gelu_pytorch_tanh' },
  text_config: { model_type: 'qwen2', vocab_size: T.vocab, hidden_size: T.hidden, intermediate_size: T.ffn, num_hidden_layers: T.layers,
    num_attention_heads: T.heads, num_key_value_heads: T.kv, rms_norm_eps: 1e-6, max_position_embeddings: 32768,
    rope_parameters: { rope_type: 'default', rope_theta: 1e6 }, tie_word_embeddings: true, bos_token_id: 151643, eos_token_id: 151645 },
  image_token_id: 151655, video_token_id: 151656, tie_word_embeddings: true,
  _name_or_path: 'random-VideoLLaMA3-2B-shapes',
};
writeFileSync(join(out, 'config.json'), JSON.stringify(cfg, null, 2));
writeFileSync(join(out, 'generation_config.json'), JSON.stringify({ eos_token_id: [151645, 151643] }));
for (const f of ['tokenizer.json', 'tokenizer_config.json']) copyFileSync(join(root, 'test', 'fixtures', 'tokenizer', f), join(out, f));
process.stderr.write(`checkpoint in ${out}\n`);
