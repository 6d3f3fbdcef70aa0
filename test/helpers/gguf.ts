// A GGUF header reader for tests that corrupt model files on purpose: where each metadata value and
// each tensor's type field sits, so a test can overwrite them in place (same byte length, so the
// rest of the file stays valid). Format: https://github.com/ggml-org/ggml/blob/master/docs/gguf.md

/** GGUF metadata value types (gguf.md "gguf_metadata_value_type"). */
export const GGUF_TYPE = { u8: 0, i8: 1, u16: 2, i16: 3, u32: 4, i32: 5, f32: 6, bool: 7, str: 8, arr: 9, u64: 10, i64: 11, f64: 12 } as const;
const SCALAR_BYTES: Record<number, number> = { 0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8 };

/** ggml tensor type ids (ggml.h `enum ggml_type`) used by the tests. */
export const GGML_TYPE = { f32: 0, f16: 1, q4_0: 2, q8_0: 8, q4_K: 12, q6_K: 14, iq2_xxs: 16, i8: 24, i16: 25, i32: 26, i64: 27, f64: 28, bf16: 30 } as const;

export interface GgufKvSlot {
  key: string;
  /** Value type (GGUF_TYPE). */
  type: number;
  /** Byte offset of the value (for arrays: of the first element). */
  offset: number;
  /** For arrays: element type and count. */
  elementType?: number;
  count?: number;
}

export interface GgufTensorSlot {
  name: string;
  /** Byte offset of the tensor's u32 type field. */
  typeOffset: number;
  type: number;
  dims: number[];
}

/** Where every metadata value and tensor type field of a GGUF file's header is. */
export function ggufLayout(buf: Buffer): { kvs: GgufKvSlot[]; tensors: GgufTensorSlot[] } {
  if (buf.toString('latin1', 0, 4) !== 'GGUF') throw new Error('not a GGUF file');
  let o = 8;
  const u64 = (): number => {
    const v = Number(buf.readBigUInt64LE(o));
    o += 8;
    return v;
  };
  const str = (): string => {
    const n = u64();
    const s = buf.toString('utf8', o, o + n);
    o += n;
    return s;
  };
  const nTensors = u64();
  const nKv = u64();
  const skip = (type: number): void => {
    if (type === GGUF_TYPE.str) str();
    else o += SCALAR_BYTES[type]!;
  };
  const kvs: GgufKvSlot[] = [];
  for (let i = 0; i < nKv; i++) {
    const key = str();
    const type = buf.readUInt32LE(o);
    o += 4;
    if (type === GGUF_TYPE.arr) {
      const elementType = buf.readUInt32LE(o);
      o += 4;
      const count = u64();
      kvs.push({ key, type, offset: o, elementType, count });
      for (let j = 0; j < count; j++) skip(elementType);
    } else {
      kvs.push({ key, type, offset: o });
      skip(type);
    }
  }
  const tensors: GgufTensorSlot[] = [];
  for (let i = 0; i < nTensors; i++) {
    const name = str();
    const nDims = buf.readUInt32LE(o);
    o += 4;
    const dims: number[] = [];
    for (let d = 0; d < nDims; d++) dims.push(u64());
    tensors.push({ name, typeOffset: o, type: buf.readUInt32LE(o), dims });
    o += 4 + 8; // type, data offset
  }
  return { kvs, tensors };
}

/** The slot of metadata key `key` (throws if absent). */
export function kvSlot(buf: Buffer, key: string): GgufKvSlot {
  const slot = ggufLayout(buf).kvs.find((k) => k.key === key);
  if (!slot) throw new Error(`no metadata key ${key}`);
  return slot;
}

/** Overwrites a scalar numeric value in place, in its own type (f32, u32, ...). */
export function setNumber(buf: Buffer, slot: GgufKvSlot, value: number, index = 0): void {
  const type = slot.type === GGUF_TYPE.arr ? slot.elementType! : slot.type;
  const at = slot.offset + index * (SCALAR_BYTES[type] ?? 0);
  switch (type) {
    case GGUF_TYPE.f32: buf.writeFloatLE(value, at); break;
    case GGUF_TYPE.f64: buf.writeDoubleLE(value, at); break;
    case GGUF_TYPE.u32: buf.writeUInt32LE(value >>> 0, at); break;
    case GGUF_TYPE.i32: buf.writeInt32LE(value | 0, at); break;
    case GGUF_TYPE.u64: buf.writeBigUInt64LE(BigInt.asUintN(64, BigInt(Math.trunc(value))), at); break;
    case GGUF_TYPE.i64: buf.writeBigInt64LE(BigInt.asIntN(64, BigInt(Math.trunc(value))), at); break;
    case GGUF_TYPE.u8: case GGUF_TYPE.bool: buf.writeUInt8(value & 0xff, at); break;
    case GGUF_TYPE.i8: buf.writeInt8(((value + 128) & 0xff) - 128, at); break;
    case GGUF_TYPE.u16: buf.writeUInt16LE(value & 0xffff, at); break;
    case GGUF_TYPE.i16: buf.writeInt16LE(((value + 32768) & 0xffff) - 32768, at); break;
    default: throw new Error(`metadata ${slot.key} is not numeric`);
  }
}
