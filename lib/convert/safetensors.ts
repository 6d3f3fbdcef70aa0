// Reads safetensors headers (single file or sharded with model.safetensors.index.json) and
// checks every range against the file size. Tensor bytes are read later, natively, in chunks.
import { closeSync, existsSync, fstatSync, openSync, readSync } from 'node:fs';
import { basename, join } from 'node:path';
import { VideoLlama3Error } from '../errors';
import { checkRegularFile, readTextFile } from './files';

/** Element types the converter reads. Others are reported when a needed tensor uses them. */
export type SafetensorsDtype = 'F32' | 'F16' | 'BF16';

const DTYPE_BYTES: Record<string, number> = {
  F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1, F8_E4M3: 1, F8_E5M2: 1,
};

export interface SafetensorsEntry {
  name: string;
  file: string;
  dtype: string;
  /** PyTorch order (slowest-varying first). */
  shape: number[];
  /** Absolute byte offset of the data in `file`. */
  offset: number;
  byteLength: number;
}

const MAX_HEADER_BYTES = 256 * 1024 * 1024;

function bad(file: string, detail: string): never {
  throw new VideoLlama3Error('INVALID_MODEL', `${file}: ${detail}`);
}

/** Parses one .safetensors header; throws INVALID_MODEL naming the file (and tensor). */
export function readSafetensorsHeader(file: string): SafetensorsEntry[] {
  checkRegularFile(file);
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (err) {
    throw new VideoLlama3Error('IO_ERROR', `Cannot open ${file}: ${(err as Error).message}`);
  }
  try {
    const size = fstatSync(fd).size;
    if (size < 8) bad(file, `not a safetensors file (${size} bytes)`);
    const lenBuf = Buffer.alloc(8);
    readSync(fd, lenBuf, 0, 8, 0);
    const headerLen = Number(lenBuf.readBigUInt64LE(0));
    if (headerLen < 2 || headerLen > MAX_HEADER_BYTES || headerLen > size - 8) {
      bad(file, `corrupt or truncated safetensors header (declares ${headerLen} header bytes, file has ${size})`);
    }
    const headerBuf = Buffer.alloc(headerLen);
    readSync(fd, headerBuf, 0, headerLen, 8);
    let header: unknown;
    try {
      header = JSON.parse(headerBuf.toString('utf8'));
    } catch {
      bad(file, 'corrupt safetensors header (not valid JSON)');
    }
    if (typeof header !== 'object' || header === null || Array.isArray(header)) bad(file, 'corrupt safetensors header');
    const dataStart = 8 + headerLen;
    const dataSize = size - dataStart;
    const entries: SafetensorsEntry[] = [];
    for (const [name, raw] of Object.entries(header as Record<string, unknown>)) {
      if (name === '__metadata__') continue;
      const info = raw as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
      const offsets = info?.data_offsets;
      if (
        typeof info?.dtype !== 'string' ||
        !Array.isArray(info.shape) ||
        !info.shape.every((d) => Number.isInteger(d) && d >= 0) ||
        !Array.isArray(offsets) ||
        offsets.length !== 2 ||
        !offsets.every((o) => Number.isInteger(o) && o >= 0) ||
        offsets[1] < offsets[0]
      ) {
        bad(file, `tensor ${name} has a malformed header entry`);
      }
      const [begin, end] = offsets as [number, number];
      const shape = info.shape as number[];
      const elemBytes = DTYPE_BYTES[info.dtype];
      if (elemBytes !== undefined) {
        const want = shape.reduce((a, b) => a * b, 1) * elemBytes;
        if (want !== end - begin) {
          bad(file, `tensor ${name} (${info.dtype} [${shape.join(', ')}]) should hold ${want} bytes but its range holds ${end - begin}`);
        }
      }
      if (end > dataSize) {
        bad(file, `file is truncated: tensor ${name} needs data up to byte ${dataStart + end} but the file has ${size} bytes`);
      }
      entries.push({ name, file, dtype: info.dtype, shape, offset: dataStart + begin, byteLength: end - begin });
    }
    // Each byte belongs to one tensor at most (empty tensors hold none).
    const stored = entries.filter((e) => e.byteLength > 0).sort((a, b) => a.offset - b.offset);
    for (let i = 1; i < stored.length; i++) {
      const prev = stored[i - 1]!;
      const cur = stored[i]!;
      if (cur.offset < prev.offset + prev.byteLength) {
        bad(file, `corrupt safetensors header: the data of tensors ${prev.name} and ${cur.name} overlap; download the file again`);
      }
    }
    return entries;
  } finally {
    closeSync(fd);
  }
}

/** All tensors of a checkpoint directory, by name. */
export function readCheckpointTensors(dir: string): Map<string, SafetensorsEntry> {
  const index = join(dir, 'model.safetensors.index.json');
  let files: string[];
  if (existsSync(index)) {
    const content = readTextFile(index);
    let parsed: { weight_map?: Record<string, string> };
    try {
      parsed = JSON.parse(content) as typeof parsed;
    } catch (err) {
      throw new VideoLlama3Error('INVALID_MODEL', `${index}: not valid JSON (${(err as Error).message})`);
    }
    if (!parsed?.weight_map || typeof parsed.weight_map !== 'object') bad(index, 'has no weight_map');
    files = [...new Set(Object.values(parsed.weight_map))].map((f) => {
      if (typeof f !== 'string' || basename(f) !== f || ['', '.', '..'].includes(f)) {
        bad(index, `weight_map names an invalid shard ${JSON.stringify(f)}; shards are file names in ${dir}`);
      }
      const p = join(dir, f);
      if (!existsSync(p)) bad(index, `weight_map names ${f}, which is missing from ${dir}`);
      return p;
    });
  } else if (existsSync(join(dir, 'model.safetensors'))) {
    files = [join(dir, 'model.safetensors')];
  } else {
    throw new VideoLlama3Error(
      'INVALID_MODEL',
      `${dir} has no model.safetensors or model.safetensors.index.json; point the converter at a Hugging Face checkpoint folder`,
    );
  }
  const tensors = new Map<string, SafetensorsEntry>();
  for (const f of files) {
    for (const e of readSafetensorsHeader(f)) {
      if (tensors.has(e.name)) bad(f, `tensor ${e.name} is also stored in ${tensors.get(e.name)?.file}`);
      tensors.set(e.name, e);
    }
  }
  return tensors;
}
