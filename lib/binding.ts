// Loads the native addon: a developer build (build/Release) if present, else the prebuilt CPU
// variant best suited to this processor, else node-gyp-build's match. Internal module.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { VideoLlama3Error, fromNativeError } from './errors';
import type { ModelInfo } from './model';

/** Metadata value types the converter writes. */
export type NativeKvType = 'u32' | 'i32' | 'u64' | 'f32' | 'bool' | 'str' | 'str[]' | 'i32[]' | 'u32[]' | 'f32[]';

export interface NativeKv {
  key: string;
  type: NativeKvType;
  value: number | boolean | string | readonly string[] | readonly number[];
}

export interface NativeTensorPlan {
  name: string;
  /** ggml order: shape[0] is the fastest-varying dimension. */
  shape: number[];
  /** ggml type name: f32, f16, bf16, q8_0, q4_K, q6_K, q5_0, ... */
  type: string;
  file: string;
  offset: number;
  byteLength: number;
  dtype: 'F32' | 'F16' | 'BF16';
}

export interface NativeWriteProgress {
  tensor: string;
  tensorIndex: number;
  tensorCount: number;
  bytesDone: number;
  bytesTotal: number;
}

export interface NativeTensorName {
  gguf: string;
  hfNative: string;
  hfOrig: string;
  file: 'llm' | 'vision';
  perLayer: boolean;
  optional: boolean;
  layout: 'as-is' | 'flatten-conv';
}

export interface NativeGgufTensorInfo {
  name: string;
  type: string;
  shape: number[];
  offset: number;
  byteLength: number;
}

export type NativeMetaValue = number | boolean | string | string[] | number[] | boolean[];

/** Tensor of named intermediate stages, row-major `[rows, cols]`. */
export interface NativeStage {
  data: Float32Array;
  rows: number;
  cols: number;
}

/** What the native model reports: the public ModelInfo less `contextSize`, plus internals. */
export type NativeModelInfo = Omit<ModelInfo, 'contextSize' | 'preprocess' | 'device'> & {
  device: string;
  deviceNote: string;
  gpuLayers: number;
  preprocess: ModelInfo['preprocess'] & { imageMergeSize: number; videoMergeSize: number };
  chatTemplate: string;
};

/** Where a kernel of native/kernels runs: its CPU reference or the CUDA kernel. */
export type NativeKernelDevice = 'cpu' | 'cuda';

/** An opaque flag a running native job polls; raised by `raiseAbort`. */
export type NativeAbortHandle = { readonly __brand: 'abort-handle' };

export interface NativeSession {
  evaluate(
    segments: ({ ids: Int32Array | number[] } | { embeddings: Float32Array; rows: number })[],
    options?: { allLogits?: boolean },
  ): Promise<Float32Array | undefined>;
  /**
   * Samples the next token and resolves with it while its forward pass starts in the background;
   * the next `step`/`evaluate` waits for that pass (and rejects with its error).
   */
  step(params: {
    temperature: number;
    topK: number;
    topP: number;
    minP: number;
    repetitionPenalty: number;
    seed: number;
    topLogprobs: number;
    stopIds: number[];
    /**
     * Structured output: ceil(vocab / 32) words, bit (id % 32) of word (id / 32) set = token id
     * allowed. Applied to the logits before everything else (log-probs included).
     */
    mask?: Int32Array | Uint32Array;
  }): Promise<{ id: number; top: { id: number; logprob: number }[] }>;
  abort(): void;
  /** Frees the KV cache now, aborting a background forward pass (a call in flight keeps it until it returns). */
  dispose(): void;
  readonly position: number;
  readonly contextSize: number;
  readonly cacheBytes: number;
}

export interface NativeModel {
  info(): NativeModelInfo;
  tokenize(text: string, parseSpecial: boolean): Int32Array;
  detokenize(ids: Int32Array | number[]): Buffer;
  /** Every token's bytes (as detokenize gives them) joined, where each starts, and which are control tokens. */
  vocabulary(): { bytes: Buffer; offsets: Uint32Array; special: Uint8Array };
  encodeImage(
    pixels: Float32Array,
    gridH: number,
    gridW: number,
    merge: number,
    options?: { stages?: boolean; abortHandle?: NativeAbortHandle },
  ): Promise<{ embeddings: Float32Array; rows: number; cols: number; stages?: Record<string, NativeStage> }>;
  createSession(contextSize: number): NativeSession;
  dispose(): void;
}

export interface NativeBinding {
  loadModel(
    llmPath: string,
    visionPath: string,
    options?: { threads?: number; device?: 'auto' | 'cpu' | 'cuda'; gpuLayers?: number },
  ): Promise<NativeModel>;
  createAbortHandle(): NativeAbortHandle;
  raiseAbort(handle: NativeAbortHandle): void;
  buildInfo: {
    ggml: string;
    cpuVariant: string;
    cpuFeatures: string[];
    devices: { name: string; description: string; type: 'cpu' | 'gpu' | 'other' }[];
  };
  names: { tensors: NativeTensorName[]; keys: Record<string, string> };
  writeGguf(
    path: string,
    kvs: NativeKv[],
    tensors: NativeTensorPlan[],
    options?: { threads?: number; onProgress?: (p: NativeWriteProgress) => void },
  ): { promise: Promise<void>; cancel(): void };
  readGguf(path: string): Promise<{
    metadata: Record<string, NativeMetaValue>;
    tensors: NativeGgufTensorInfo[];
    fileSize: number;
  }>;
  readGgufTensor(path: string, name: string): Promise<Float32Array>;
  /** The Qwen2 byte-level BPE tokenizer of an llm.gguf, alone (native/model/tokenizer.h). */
  loadTokenizer(path: string): Promise<{
    /** Token ids of NFC text; with parseSpecial, added-token texts (`<|im_end|>`) become their ids. */
    encode(text: string, parseSpecial: boolean): Int32Array;
    /** Raw bytes of the tokens (UTF-8 once the ids end on a character boundary). */
    decode(ids: Int32Array | number[]): Buffer;
    readonly vocabSize: number;
    /** Id of a vocabulary entry (byte-level text, e.g. `Ġworld`); -1 if absent. */
    tokenId(text: string): number;
  }>;
  /** Smart-resize + Pillow-exact bicubic resize + normalize + patchify of decoded RGB (native/media/image.h). */
  preprocessImage(
    rgb: Uint8Array,
    width: number,
    height: number,
    opts: {
      patchSize: number;
      mergeSize: number;
      minPixels: number;
      maxPixels: number;
      mean: number[];
      std: number[];
      /** 'cuda': resize + patchify with our CUDA kernel (bit-identical); default 'cpu'. */
      device?: NativeKernelDevice;
    },
  ): Promise<{ pixels: Float32Array; gridH: number; gridW: number; resizedWidth: number; resizedHeight: number }>;
  /** Pillow `Image.resize((outWidth, outHeight), BICUBIC)` of RGB bytes, bit-exact (tests). */
  resizeBicubic(rgb: Uint8Array, width: number, height: number, outWidth: number, outHeight: number): Buffer;
  /** Target size of the image resize (spec §5.2: transformers' smart_resize, bit-exact); throws on aspect > 200. */
  smartResize(height: number, width: number, factor: number, minPixels: number, maxPixels: number): { height: number; width: number };
  /** Per-frame target size of a video of numFrames frames (spec §6.2: budget maxPixels / numFrames). */
  videoFrameSize(
    height: number,
    width: number,
    numFrames: number,
    opts: { patchSize: number; mergeSize: number; minPixels: number; maxPixels: number },
  ): { height: number; width: number };
  /** Streaming per-frame resize + patchify + differential pruning (native/media/video.h); await each push. */
  createVideoPreprocessor(opts: {
    patchSize: number;
    mergeSize: number;
    height: number;
    width: number;
    mean: number[];
    std: number[];
    pruneThreshold: number;
    /** 'cuda': resize, patchify and keep masks with our CUDA kernels (bit-identical); default 'cpu'. */
    device?: NativeKernelDevice;
  }): {
    push(rgb: Uint8Array, width: number, height: number): Promise<{
      pixels: Float32Array;
      keep: Uint8Array;
      kept: number;
      gridH: number;
      gridW: number;
    }>;
  };
  /** Our CUDA kernels beside their CPU references (native/kernels/kernels.h), for tests. */
  kernels: {
    /** '' when the CUDA kernels can run in this process, else why not. */
    cudaUnavailableReason(): string;
    preprocess(
      rgb: Uint8Array,
      width: number,
      height: number,
      opts: {
        outWidth: number;
        outHeight: number;
        /** Whose bicubic resize: Pillow's (images, default) or torchvision's (video frames). */
        filter?: 'pillow' | 'torchvision';
        patchSize: number;
        mergeSize: number;
        mean: number[];
        std: number[];
        device: NativeKernelDevice;
      },
    ): Promise<{ pixels: Float32Array; resized: Buffer }>;
    keepMask(
      prev: Uint8Array,
      cur: Uint8Array,
      width: number,
      height: number,
      opts: { patchSize: number; mergeSize: number; threshold: number; mean: number[]; std: number[]; device: NativeKernelDevice },
    ): Promise<Uint8Array>;
    mergeTokens(x: Float32Array, rows: number, dim: number, merge: number, opts?: { device: NativeKernelDevice }): Promise<Float32Array>;
    /** Whether Q8_0/Q6_K/Q4_K matmuls use our packed CPU kernels (native/kernels/int8_matmul.h) here. */
    int8Matmul(): boolean;
    /** One random q8_0, q6_K or q4_K product three ways: ggml's mul_mat, our packed kernel and its scalar reference ([m][n] each). */
    int8MatmulCheck(type: 'q8_0' | 'q6_K' | 'q4_K', m: number, n: number, k: number, threads: number): Promise<{
      ggml: Float32Array;
      packed: Float32Array;
      /** Rows 0, n-1, n/2, 3 and 1 of the weights: ggml_get_rows and our packed get_rows. */
      rowsGgml: Float32Array;
      rowsPacked: Float32Array;
      reference: Float32Array;
      /** The activations (with ties, zeros, halves and an infinity in row 0) by our quantizer and by ggml's. */
      activations: Uint8Array;
      activationsGgml: Uint8Array;
    }>;
    /** Whether decode attention runs our CPU op (native/kernels/attention.h) here, for 128-wide heads. */
    attentionF16(): boolean;
    /** One random attention of n query rows over an f16 cache three ways ([n][heads][headDim] each). */
    attentionCheck(n: number, heads: number, kvHeads: number, headDim: number, positions: number, threads: number): Promise<{
      ggml: Float32Array;
      ours: Float32Array;
      reference: Float32Array;
    }>;
    /**
     * One random decode step with RoPE and the cache append inside our attention op, three ways:
     * outputs [heads][headDim], and the new position's key then value as each cache holds them.
     */
    attentionAppendCheck(heads: number, kvHeads: number, headDim: number, positions: number, threads: number): Promise<{
      ggml: Float32Array;
      ours: Float32Array;
      reference: Float32Array;
      ggmlCache: Float32Array;
      oursCache: Float32Array;
      referenceCache: Float32Array;
    }>;
  };
  benchMatmul(o: { type: string; m: number; n: number; k: number; threads: number; reps: number }): Promise<{
    secondsPerRep: number;
    gflops: number;
  }>;
}

/**
 * CPU variants shipped as prebuilds (scripts/prebuildify.mjs), per architecture, best first, with the
 * CPU flags each needs: /proc/cpuinfo's `flags` on x86-64, hwcap names on arm64.
 */
const CPU_VARIANTS: Readonly<Record<string, readonly { name: string; flags: readonly string[] }[]>> = {
  x64: [
    {
      name: 'amx',
      flags: ['avx512f', 'avx512bw', 'avx512dq', 'avx512vl', 'avx512cd', 'avx512vbmi', 'avx512_vnni', 'avx512_bf16',
        'avx_vnni', 'amx_tile', 'amx_int8', 'amx_bf16', 'avx2', 'fma', 'f16c', 'bmi2'],
    },
    {
      name: 'avx512',
      flags: ['avx512f', 'avx512bw', 'avx512dq', 'avx512vl', 'avx512cd', 'avx512vbmi', 'avx512_vnni', 'avx2', 'fma', 'f16c', 'bmi2'],
    },
    { name: 'avx2', flags: ['avx2', 'fma', 'f16c', 'bmi2'] },
  ],
  arm64: [{ name: 'dotprod', flags: ['asimddp'] }],
};

const packageRoot = join(__dirname, '..');

/** arm64 hwcap bits (Linux uapi asm/hwcap.h) of the flags the arm64 variants need. */
const ARM64_HWCAP: Readonly<Record<string, number>> = { asimddp: 1 << 20 };

/**
 * The CPU's flags. On arm64 they come from the process's auxiliary vector (AT_HWCAP), which the
 * kernel (or an emulator) fills in for the CPU the process really runs on; /proc/cpuinfo describes
 * the host there.
 */
function cpuFlags(): Set<string> {
  try {
    if (process.arch === 'arm64') {
      const auxv = readFileSync('/proc/self/auxv');
      for (let o = 0; o + 16 <= auxv.length; o += 16) {
        if (auxv.readBigUInt64LE(o) !== 16n) continue; // AT_HWCAP
        const hwcap = auxv.readBigUInt64LE(o + 8);
        return new Set(Object.entries(ARM64_HWCAP).filter(([, bit]) => (hwcap & BigInt(bit)) !== 0n).map(([f]) => f));
      }
      return new Set();
    }
    const info = readFileSync('/proc/cpuinfo', 'utf8');
    const line = info.split('\n').find((l) => l.startsWith('flags'));
    return new Set(line ? line.slice(line.indexOf(':') + 1).trim().split(/\s+/) : []);
  } catch {
    return new Set();
  }
}

/** The prebuilt variant this CPU can run fastest, or undefined (then node-gyp-build's baseline). */
export function pickCpuVariant(flags: ReadonlySet<string> = cpuFlags(), arch: string = process.arch): string | undefined {
  return (CPU_VARIANTS[arch] ?? []).find((v) => v.flags.every((f) => flags.has(f)))?.name;
}

/**
 * The variant to load: `forced` (VL3_CPU_VARIANT) when this CPU can run it, else the best one.
 * Loading a variant the CPU cannot run would kill the process with SIGILL, so a forced variant
 * is checked too; `baseline` selects node-gyp-build's portable binary.
 */
export function chooseVariant(forced: string | undefined, flags: ReadonlySet<string>, arch: string = process.arch): string | undefined {
  if (forced === 'baseline' || forced === 'sse42') return undefined;
  const variants = CPU_VARIANTS[arch] ?? [];
  if (forced) {
    const v = variants.find((x) => x.name === forced);
    if (v && v.flags.every((f) => flags.has(f))) return v.name;
    process.emitWarning(
      v
        ? `VL3_CPU_VARIANT=${forced} needs CPU features this processor lacks (${v.flags.filter((f) => !flags.has(f)).join(', ')}); using the best supported variant`
        : `VL3_CPU_VARIANT=${forced} is not one of baseline, ${variants.map((x) => x.name).join(', ')} on ${arch}; ignoring it`,
      'VideoLlama3Warning',
    );
  }
  return pickCpuVariant(flags, arch);
}

/**
 * The CUDA prebuild (scripts/prebuild-cuda.mjs): the optional package videollama3-node-linux-x64-cuda
 * or its folder in prebuilds/. It also runs on the CPU, and a machine without the CUDA 13 runtime
 * and cuBLAS 13 fails to load it (a catchable error), so it is tried first; VL3_CUDA=0 skips it.
 */
function cudaPrebuild(): string | undefined {
  if (process.env.VL3_CUDA === '0' || process.platform !== 'linux' || process.arch !== 'x64') return undefined;
  try {
    return require.resolve('videollama3-node-linux-x64-cuda/videollama3-node.node');
  } catch {
    const local = join(packageRoot, 'prebuilds', 'linux-x64-cuda', 'videollama3-node.node');
    return existsSync(local) ? local : undefined;
  }
}

function candidates(): string[] {
  const out: string[] = [];
  if (process.env.VL3_ADDON_PATH) out.push(process.env.VL3_ADDON_PATH);
  if (!process.env.PREBUILDS_ONLY) out.push(join(packageRoot, 'build', 'Release', 'videollama3.node'));
  const cuda = cudaPrebuild();
  if (cuda) out.push(cuda);
  if (process.platform === 'linux' && (process.arch === 'x64' || process.arch === 'arm64')) {
    const variant = chooseVariant(process.env.VL3_CPU_VARIANT, cpuFlags());
    if (variant) out.push(join(packageRoot, 'prebuilds', `linux-${process.arch}`, 'variants', `videollama3-node.${variant}.node`));
  }
  return out;
}

let cached: NativeBinding | undefined;
let loadedFrom: string | undefined;

/** The native addon, loaded on first use. Throws ADDON_NOT_FOUND with what to do. */
export function native(): NativeBinding {
  if (cached) return cached;
  const errors: string[] = [];
  for (const file of candidates()) {
    if (!existsSync(file)) continue;
    try {
      cached = require(file) as NativeBinding;
      loadedFrom = file;
      return cached;
    } catch (err) {
      errors.push(`${file}: ${(err as Error).message}`);
    }
  }
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const nodeGypBuild = require('node-gyp-build') as { (dir: string): unknown; resolve(dir: string): string };
    loadedFrom = nodeGypBuild.resolve(packageRoot);
    cached = nodeGypBuild(packageRoot) as NativeBinding;
    return cached;
  } catch (err) {
    errors.push((err as Error).message);
  }
  throw new VideoLlama3Error(
    'ADDON_NOT_FOUND',
    `No usable videollama3 native addon for ${process.platform}-${process.arch} (Node ${process.version}). ` +
      'Build it from source with `npm rebuild videollama3-node` (needs cmake, a C++17 compiler, git and tar). ' +
      `Tried: ${errors.join('; ') || 'no candidate files'}`,
  );
}

/** Which file the addon was loaded from (after native() succeeded). */
export function nativePath(): string | undefined {
  return loadedFrom;
}

/**
 * Starts a native job and awaits it: what it throws synchronously (argument checks) or rejects with
 * becomes a VideoLlama3Error.
 */
export async function call<T>(job: () => Promise<T>): Promise<T> {
  try {
    return await job();
  } catch (err) {
    throw fromNativeError(err);
  }
}

/** Runs a synchronous native call; what it throws becomes a VideoLlama3Error. */
export function callSync<T>(job: () => T): T {
  try {
    return job();
  } catch (err) {
    throw fromNativeError(err);
  }
}
