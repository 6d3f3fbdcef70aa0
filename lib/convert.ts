/**
 * Converting a Hugging Face VideoLLaMA 3 checkpoint into this library's model folder:
 * `llm.gguf` (llama.cpp `qwen2`, loads in llama.cpp / node-llama-cpp too) and `vision.gguf`
 * (vision encoder, projector and preprocessing constants).
 */
import { existsSync, mkdirSync, mkdtempSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join, resolve } from 'node:path';
import { call, callSync, native, type NativeBinding, type NativeKv } from './binding';
import { readCheckpoint } from './convert/checkpoint';
import { llmMetadata, visionMetadata } from './convert/metadata';
import { planTensors, type ConvertType } from './convert/plan';
import { VideoLlama3Error } from './errors';
import { checkKnownKeys, choiceOption, intOption, signalOption, stringOption } from './validate';

export type { ConvertType } from './convert/plan';

/** File names inside a converted model folder. */
export const MODEL_FILES = { llm: 'llm.gguf', vision: 'vision.gguf' } as const;

/** Removes staging folders left by conversions whose process died (killed, power loss). */
function removeStaleStaging(output: string): void {
  for (const name of readdirSync(output)) {
    const m = /^\.converting-(\d+)-/.exec(name);
    if (!m) continue;
    const pid = Number(m[1]);
    let alive = pid === process.pid;
    if (!alive) {
      try {
        process.kill(pid, 0);
        alive = true;
      } catch (err) {
        alive = (err as NodeJS.ErrnoException).code === 'EPERM';
      }
    }
    if (!alive) rmSync(join(output, name), { recursive: true, force: true });
  }
}

/** Starts a native GGUF write; an argument it refuses at once is a VideoLlama3Error too. */
function startWrite(
  binding: NativeBinding,
  ...args: Parameters<NativeBinding['writeGguf']>
): ReturnType<NativeBinding['writeGguf']> {
  return callSync(() => binding.writeGguf(...args));
}

/**
 * Loads the tokenizer of the llm.gguf metadata `kvs` with the model loader's own checks (from a
 * file of metadata alone, in `staging`), so that a tokenizer the loader would refuse fails the
 * conversion before any weights are written. Errors name `tokFile`, where the tokenizer comes from.
 */
async function checkTokenizer(binding: NativeBinding, kvs: NativeKv[], staging: string, tokFile: string): Promise<void> {
  const file = join(staging, 'tokenizer.gguf');
  try {
    await call(() => startWrite(binding, file, kvs, []).promise);
    await call(() => binding.loadTokenizer(file));
  } catch (err) {
    if (!(err instanceof VideoLlama3Error) || err.code !== 'INVALID_MODEL') throw err;
    throw new VideoLlama3Error('INVALID_MODEL', `${err.message.replaceAll(file, tokFile)}; fix the file or download it again`);
  } finally {
    rmSync(file, { force: true });
  }
}

/** Output types accepted by {@link convertModel}. */
export const CONVERT_TYPES: readonly ConvertType[] = ['f32', 'f16', 'bf16', 'q8_0', 'q4_k_m'];

/** Progress of a conversion, reported at most every 100 ms per file. */
export interface ConvertProgress {
  /** Which output file is being written. */
  file: 'vision' | 'llm';
  /** GGUF name of the tensor being written. */
  tensor: string;
  /** Checkpoint bytes read so far, over both files. */
  bytesDone: number;
  /** Checkpoint bytes to read in all. */
  bytesTotal: number;
}

/** Options of {@link convertModel}. */
export interface ConvertOptions {
  /** Hugging Face checkpoint folder (config.json, safetensors, tokenizer files). */
  input: string;
  /** Output folder; created if missing. */
  output: string;
  /** Stored type of the weights (default `'f16'`). Norms and biases always stay f32. */
  type?: ConvertType;
  /** Replace an existing converted model in `output` (default false). */
  overwrite?: boolean;
  /** Threads used for quantization (default: all cores). */
  threads?: number;
  /** Called as the conversion advances. */
  onProgress?: (progress: ConvertProgress) => void;
  /** Cancels the conversion; nothing is left in `output`. */
  signal?: AbortSignal;
}

/** What {@link convertModel} wrote. */
export interface ConvertResult {
  /** Absolute path of the language-model GGUF. */
  llm: string;
  /** Absolute path of the vision GGUF. */
  vision: string;
  /** Which checkpoint layout was read. */
  layout: 'video_llama_3' | 'videollama3_qwen2';
  /** Number of tensors written to each file. */
  tensorCount: { llm: number; vision: number };
}

const KNOWN = ['input', 'output', 'type', 'overwrite', 'threads', 'onProgress', 'signal'] as const;

/**
 * Converts a checkpoint (transformers `video_llama_3` or DAMO-NLP-SG `videollama3_qwen2`
 * layout, single or sharded safetensors, bf16/f16/f32) to `llm.gguf` + `vision.gguf`.
 * Streams tensor by tensor, so memory stays small whatever the model size. Both files appear
 * only when both are complete; on failure or abort nothing is left behind.
 *
 * @throws VideoLlama3Error INVALID_ARGUMENT for bad options (an output path that is a file included),
 * INVALID_MODEL / UNSUPPORTED_MODEL naming the file, tensor or key at fault (every value the model
 * loader would refuse among them), IO_ERROR when the operating system refuses a read or write.
 */
export async function convertModel(options: ConvertOptions): Promise<ConvertResult> {
  if (typeof options !== 'object' || options === null) {
    throw new VideoLlama3Error('INVALID_ARGUMENT', 'convertModel expects an options object { input, output, ... }');
  }
  checkKnownKeys('convertModel', options, KNOWN);
  const input = resolve(stringOption('input', options.input));
  const output = resolve(stringOption('output', options.output));
  const type = choiceOption('type', options.type, CONVERT_TYPES, 'f16');
  const threads = intOption('threads', options.threads, 1, 1024, availableParallelism());
  const signal = signalOption('signal', options.signal);
  if (options.onProgress !== undefined && typeof options.onProgress !== 'function') {
    throw new VideoLlama3Error('INVALID_ARGUMENT', 'Expected function for onProgress');
  }
  signal?.throwIfAborted();
  if (existsSync(output) && !statSync(output).isDirectory()) {
    throw new VideoLlama3Error(
      'INVALID_ARGUMENT',
      `Output ${output} is a file, not a folder; pass the folder to write ${MODEL_FILES.llm} and ${MODEL_FILES.vision} into`,
    );
  }

  const llmPath = join(output, MODEL_FILES.llm);
  const visionPath = join(output, MODEL_FILES.vision);
  if (!options.overwrite && (existsSync(llmPath) || existsSync(visionPath))) {
    throw new VideoLlama3Error(
      'INVALID_ARGUMENT',
      `${output} already holds a converted model; pass overwrite: true (--overwrite) to replace it`,
    );
  }
  const binding = native();
  const ck = readCheckpoint(input);
  const plans = planTensors(ck, binding.names.tensors, type);
  const kvs = {
    vision: visionMetadata(ck, binding.names.keys, type),
    llm: llmMetadata(ck, binding.names.keys, type),
  };
  const total = [...plans.vision, ...plans.llm].reduce((s, t) => s + t.byteLength, 0);

  let staging: string;
  try {
    mkdirSync(output, { recursive: true });
    removeStaleStaging(output);
    staging = mkdtempSync(join(output, `.converting-${process.pid}-`));
  } catch (err) {
    throw new VideoLlama3Error('IO_ERROR', `Cannot create the output folder ${output}: ${(err as Error).message}`, { cause: err });
  }
  try {
    await checkTokenizer(binding, kvs.llm, staging, join(input, 'tokenizer.json'));
    signal?.throwIfAborted();
    let before = 0;
    for (const file of ['vision', 'llm'] as const) {
      // Progress events come from the writer thread and may reach JavaScript after the file's promise
      // has settled: late ones are dropped, and the file's last event is sent here if it has not come.
      const offset = before;
      const fileBytes = plans[file].reduce((s, t) => s + t.byteLength, 0);
      let settled = false;
      let reported = -1;
      const report = (tensor: string, bytesDone: number): void => {
        reported = bytesDone;
        options.onProgress?.({ file, tensor, bytesDone: offset + bytesDone, bytesTotal: total });
      };
      const job = startWrite(binding, join(staging, MODEL_FILES[file]), kvs[file], plans[file], {
        threads,
        onProgress: options.onProgress
          ? (p) => {
              if (!settled) report(p.tensor, p.bytesDone);
            }
          : undefined,
      });
      const onAbort = (): void => job.cancel();
      signal?.addEventListener('abort', onAbort, { once: true });
      try {
        await call(() => job.promise);
      } catch (err) {
        if (signal?.aborted) throw signal.reason;
        throw err;
      } finally {
        settled = true;
        signal?.removeEventListener('abort', onAbort);
      }
      signal?.throwIfAborted();
      if (options.onProgress && reported !== fileBytes) report(plans[file].at(-1)?.name ?? '', fileBytes);
      before += fileBytes;
    }
    renameSync(join(staging, MODEL_FILES.vision), visionPath);
    renameSync(join(staging, MODEL_FILES.llm), llmPath);
  } finally {
    rmSync(staging, { recursive: true, force: true });
    if (readdirSync(output).length === 0) rmSync(output, { recursive: true, force: true });
  }
  return {
    llm: llmPath,
    vision: visionPath,
    layout: ck.layout,
    tensorCount: { llm: plans.llm.length, vision: plans.vision.length },
  };
}
