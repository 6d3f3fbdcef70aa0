// Maps checkpoint tensors to GGUF tensors (names from the native table), checks every shape
// against the config, and picks each tensor's stored type for the requested output type.
import { VideoLlama3Error } from '../errors';
import type { NativeTensorName, NativeTensorPlan } from '../binding';
import type { Checkpoint } from './checkpoint';
import type { SafetensorsEntry } from './safetensors';

/** Output types of `videollama3 convert --type`. */
export type ConvertType = 'f32' | 'f16' | 'bf16' | 'q8_0' | 'q4_k_m';

/** llama.cpp `general.file_type` (llama_ftype) of each output type. */
export const FILE_TYPE: Record<ConvertType, number> = { f32: 0, f16: 1, q8_0: 7, q4_k_m: 15, bf16: 32 };

/** ggml block sizes of the quantized types used here (elements per block along a row). */
const BLOCK: Record<string, number> = { q8_0: 32, q5_0: 32, q4_K: 256, q6_K: 256 };

/** llama.cpp's Q4_K_M rule: these layers of attn_v / ffn_down get 6-bit. */
function useMoreBits(layer: number, nLayers: number): boolean {
  return layer < nLayers / 8 || layer >= (7 * nLayers) / 8 || (layer - Math.floor(nLayers / 8)) % 3 === 2;
}

function fits(type: string, rowLength: number): boolean {
  const b = BLOCK[type];
  return b === undefined || rowLength % b === 0;
}

/** Falls back to a type whose block divides the row, as llama.cpp does (K-quants need 256). */
function fallback(type: string, rowLength: number): string {
  if (fits(type, rowLength)) return type;
  const alt = type === 'q4_K' ? 'q5_0' : type === 'q6_K' ? 'q8_0' : type;
  return fits(alt, rowLength) ? alt : 'f16';
}

/**
 * The stored type of one tensor. 1-D tensors (norms, biases) stay f32. For quantized outputs the
 * vision tower and projector use q8_0 (f16 where a row is not a multiple of 32) to keep parity.
 */
export function tensorType(
  type: ConvertType,
  gguf: string,
  shape: number[],
  file: 'llm' | 'vision',
  layer: number,
  nLayers: number,
  tied: boolean,
): string {
  if (shape.length < 2) return 'f32';
  const row = shape[0] ?? 1;
  if (type === 'f32' || type === 'f16' || type === 'bf16') return type;
  if (file === 'vision' || type === 'q8_0') return fallback('q8_0', row);
  // q4_k_m
  let t = 'q4_K';
  if (gguf === 'output.weight' || (tied && gguf === 'token_embd.weight')) t = 'q6_K';
  else if ((gguf.endsWith('.attn_v.weight') || gguf.endsWith('.ffn_down.weight')) && useMoreBits(layer, nLayers)) t = 'q6_K';
  return fallback(t, row);
}

/** The expected PyTorch shape of each tensor, from the config. */
function expectedShape(ck: Checkpoint, gguf: string): number[] {
  const t = ck.text;
  const v = ck.vision;
  const kv = (t.hiddenSize / t.numHeads) * t.numKvHeads;
  const base = gguf.replace(/^(v\.)?blk\.\d+\./, '$1blk.');
  const table: Record<string, number[]> = {
    'token_embd.weight': [t.vocabSize, t.hiddenSize],
    'output.weight': [t.vocabSize, t.hiddenSize],
    'output_norm.weight': [t.hiddenSize],
    'blk.attn_norm.weight': [t.hiddenSize],
    'blk.ffn_norm.weight': [t.hiddenSize],
    'blk.attn_q.weight': [t.hiddenSize, t.hiddenSize],
    'blk.attn_q.bias': [t.hiddenSize],
    'blk.attn_k.weight': [kv, t.hiddenSize],
    'blk.attn_k.bias': [kv],
    'blk.attn_v.weight': [kv, t.hiddenSize],
    'blk.attn_v.bias': [kv],
    'blk.attn_output.weight': [t.hiddenSize, t.hiddenSize],
    'blk.ffn_gate.weight': [t.intermediateSize, t.hiddenSize],
    'blk.ffn_up.weight': [t.intermediateSize, t.hiddenSize],
    'blk.ffn_down.weight': [t.hiddenSize, t.intermediateSize],
    'v.patch_embd.weight': [v.hiddenSize, v.numChannels, v.patchSize, v.patchSize],
    'v.patch_embd.bias': [v.hiddenSize],
    'v.blk.ln1.weight': [v.hiddenSize],
    'v.blk.ln1.bias': [v.hiddenSize],
    'v.blk.ln2.weight': [v.hiddenSize],
    'v.blk.ln2.bias': [v.hiddenSize],
    'v.blk.attn_q.weight': [v.hiddenSize, v.hiddenSize],
    'v.blk.attn_q.bias': [v.hiddenSize],
    'v.blk.attn_k.weight': [v.hiddenSize, v.hiddenSize],
    'v.blk.attn_k.bias': [v.hiddenSize],
    'v.blk.attn_v.weight': [v.hiddenSize, v.hiddenSize],
    'v.blk.attn_v.bias': [v.hiddenSize],
    'v.blk.attn_out.weight': [v.hiddenSize, v.hiddenSize],
    'v.blk.attn_out.bias': [v.hiddenSize],
    'v.blk.ffn_up.weight': [v.intermediateSize, v.hiddenSize],
    'v.blk.ffn_up.bias': [v.intermediateSize],
    'v.blk.ffn_down.weight': [v.hiddenSize, v.intermediateSize],
    'v.blk.ffn_down.bias': [v.hiddenSize],
    'v.post_ln.weight': [v.hiddenSize],
    'v.post_ln.bias': [v.hiddenSize],
    'mm.0.weight': [t.hiddenSize, v.hiddenSize],
    'mm.0.bias': [t.hiddenSize],
    'mm.2.weight': [t.hiddenSize, t.hiddenSize],
    'mm.2.bias': [t.hiddenSize],
  };
  const shape = table[base];
  if (!shape) throw new VideoLlama3Error('INTERNAL', `No expected shape for ${gguf}`);
  return shape;
}

/** One GGUF tensor with its source, for the native writer. */
export type PlannedTensor = NativeTensorPlan & { hfName: string };

/** Tensor plans of both output files, in table order. */
export function planTensors(
  ck: Checkpoint,
  table: readonly NativeTensorName[],
  type: ConvertType,
): { llm: PlannedTensor[]; vision: PlannedTensor[] } {
  const out = { llm: [] as PlannedTensor[], vision: [] as PlannedTensor[] };
  const tied = ck.text.tieWordEmbeddings;
  for (const entry of table) {
    const nLayers = entry.file === 'llm' ? ck.text.numLayers : ck.vision.numLayers;
    const layers = entry.perLayer ? Array.from({ length: nLayers }, (_, i) => i) : [-1];
    if (entry.gguf === 'output.weight' && tied) continue; // llama.cpp reuses token_embd
    for (const layer of layers) {
      const sub = (s: string): string => s.replaceAll('{N}', String(layer));
      const gguf = sub(entry.gguf);
      const hfName = sub(ck.layout === 'video_llama_3' ? entry.hfNative : entry.hfOrig);
      const src: SafetensorsEntry | undefined = ck.tensors.get(hfName);
      if (!src) {
        const files = [...new Set([...ck.tensors.values()].map((e) => e.file))].join(', ');
        const hint = entry.gguf === 'output.weight' ? ' (the config says tie_word_embeddings is false)' : '';
        throw new VideoLlama3Error('INVALID_MODEL', `Tensor ${hfName} is missing from ${files}${hint}`);
      }
      const want = expectedShape(ck, gguf);
      if (want.length !== src.shape.length || want.some((d, i) => d !== src.shape[i])) {
        throw new VideoLlama3Error(
          'INVALID_MODEL',
          `${src.file}: tensor ${hfName} has shape [${src.shape.join(', ')}] but the config implies [${want.join(', ')}]`,
        );
      }
      if (src.dtype !== 'F32' && src.dtype !== 'F16' && src.dtype !== 'BF16') {
        throw new VideoLlama3Error(
          'INVALID_MODEL',
          `${src.file}: tensor ${hfName} is stored as ${src.dtype}; the converter reads F32, F16 or BF16 weights`,
        );
      }
      // ggml order is the PyTorch shape reversed; a Conv2d kernel is flattened to [out, c*kh*kw] first.
      const torchShape = entry.layout === 'flatten-conv' ? [want[0] ?? 1, want.slice(1).reduce((a, b) => a * b, 1)] : want;
      const shape = [...torchShape].reverse();
      out[entry.file].push({
        name: gguf,
        hfName,
        shape,
        type: tensorType(type, gguf, shape, entry.file, layer, nLayers, tied),
        file: src.file,
        offset: src.offset,
        byteLength: src.byteLength,
        dtype: src.dtype,
      });
    }
  }
  return out;
}
