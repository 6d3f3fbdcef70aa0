/** Inspecting GGUF model files: metadata, tensor table and tensor values. */
import { resolve } from 'node:path';
import { call, native, type NativeMetaValue } from './binding';
import { stringOption } from './validate';

/** One tensor of a GGUF file. */
export interface GgufTensorInfo {
  /** GGUF tensor name, e.g. `blk.0.attn_q.weight`. */
  name: string;
  /** ggml type name, e.g. `f16`, `q8_0`, `q4_K`. */
  type: string;
  /** ggml order: `shape[0]` is the fastest-varying (row) dimension. */
  shape: number[];
  /** Absolute byte offset of the data in the file. */
  offset: number;
  /** Stored bytes. */
  byteLength: number;
}

/** Metadata value as stored (arrays of strings, numbers or booleans included). */
export type GgufValue = NativeMetaValue;

/** Header of a GGUF file. */
export interface GgufInfo {
  /** All metadata keys and values. */
  metadata: Record<string, GgufValue>;
  /** The tensor table, in file order. */
  tensors: GgufTensorInfo[];
  /** File size in bytes. */
  fileSize: number;
}

/**
 * Reads and validates a GGUF file's header (every tensor range is checked against the file size).
 * @throws VideoLlama3Error INVALID_MODEL for a corrupt or truncated file, IO_ERROR when unreadable.
 */
export async function readGgufInfo(path: string): Promise<GgufInfo> {
  return call(() => native().readGguf(resolve(stringOption('path', path))));
}

/**
 * Reads one tensor, widened or dequantized to f32 (ggml order, row-major).
 * @throws VideoLlama3Error INVALID_ARGUMENT when the file has no such tensor.
 */
export async function readGgufTensor(path: string, name: string): Promise<Float32Array> {
  return call(() => native().readGgufTensor(resolve(stringOption('path', path)), stringOption('name', name)));
}
