/** Loading a converted model and running it: `loadModel()` → {@link Model}. */
import { randomInt } from 'node:crypto';
import { statSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join, resolve } from 'node:path';
import { call, callSync, native, type NativeModel, type NativeSession } from './binding';
import { CONVERT_TYPES, MODEL_FILES, type ConvertType } from './convert';
import { VideoLlama3Error, fromNativeError } from './errors';
import { hubModelFolder, type HubProgress } from './hub';
import { Generation, type FinishReason, type GenerationResult, type TokenLogprob } from './generation';
import { decodeImage, imageSize } from './media/image';
import { formatTimestamp, planVideo } from './media/video';
import { renderPrompt, toMessages, type ImageInput, type Prompt, type VideoPartOptions, type VideoPromptInput } from './prompt';
import { Scheduler } from './scheduler';
import { StructuredEngine, type StructuredSpec } from './structured/engine';
import type { GrammarMatcher } from '@mlc-ai/web-xgrammar';
import { checkKnownKeys, choiceOption, intOption, invalid, signalOption, stringOption } from './validate';
import { VisionTokens, type VideoTokenLayout } from './vision-tokens';

/** Options of {@link loadModel}. */
export interface LoadModelOptions {
  /**
   * A folder made by `videollama3 convert` (holding llm.gguf and vision.gguf), or a Hugging Face
   * repo id `owner/name` (optionally `owner/name@revision`) when no such path exists: the repo is
   * downloaded into the Hugging Face cache and converted once (see the README, "Download from the hub").
   */
  model: string;
  /**
   * For a hub repo id only: the stored type of the converted weights (default `'f16'`; as
   * `videollama3 convert --type`). Ignored for repos that hold llm.gguf and vision.gguf.
   */
  type?: ConvertType;
  /** For a hub repo id only: the branch, tag or commit to download (default `main`). */
  revision?: string;
  /**
   * CPU threads per computation (default: all cores, at most 8; 1..256). More threads than the
   * machine has cores are capped to the core count (`info.threads` says how many run): ggml's
   * threads spin while they wait, so extra ones only slow every computation down.
   */
  threads?: number;
  /** Most positions (prompt + output) one generation may use (default 4096). */
  contextSize?: number;
  /**
   * Where to run (default `'auto'`): `'cuda'` needs the CUDA build and an NVIDIA GPU (else it
   * fails, saying why); `'auto'` uses a GPU when there is one and otherwise the CPU.
   */
  device?: 'auto' | 'cpu' | 'cuda';
  /**
   * On a GPU, how many decoder layers go to GPU memory (default `'all'`): the last `gpuLayers`
   * layers and the output head run on the GPU, the token embeddings and the first layers on the
   * CPU (for a GPU too small for the whole model; the vision encoder is always on the GPU).
   * Values above the layer count mean all. Ignored on the CPU.
   */
  gpuLayers?: number | 'all';
  /**
   * The ffmpeg binary videos are decoded with (default `ffmpeg` on PATH; ffprobe is looked for next
   * to it). In an Electron app, point it at a bundled ffmpeg unpacked from the asar archive.
   */
  ffmpegPath?: string;
  /**
   * Called with loading progress (0..1); for a hub repo id also while files download
   * (`stage: 'download'`) and the checkpoint converts (`stage: 'convert'`), see {@link HubProgress}.
   */
  onProgress?: (progress: { fraction: number; stage: 'start' | 'loaded' } | HubProgress) => void;
  /** Cancels loading. */
  signal?: AbortSignal;
}

/** Options of {@link Model.generate}. */
export interface GenerateOptions {
  /** Most tokens to generate (default 512; 1..32768). */
  maxTokens?: number;
  /** Sampling temperature; 0 (default) picks the most likely token (greedy). */
  temperature?: number;
  /** Keep the k most likely tokens (0 = off, default). */
  topK?: number;
  /** Keep the smallest set of tokens whose probability reaches p (1 = off, default). */
  topP?: number;
  /** Drop tokens less likely than minP × the most likely one (0 = off, default). */
  minP?: number;
  /** Hugging Face repetition penalty over prompt and output (1 = off, default). */
  repetitionPenalty?: number;
  /**
   * Random seed: the same seed and options give the same text. Default: a fresh random seed for
   * each call (reported as `result.seed`), so repeated sampled calls differ; greedy decoding
   * (`temperature: 0`) does not depend on it.
   */
  seed?: number;
  /** Strings that end generation; they are not included in the text. */
  stop?: string[];
  /**
   * Report this many most likely tokens per generated token (0..20, default 0). With
   * `responseFormat` or `grammar` they are log-probabilities of the constrained distribution
   * (disallowed tokens removed, the rest renormalized), and only allowed tokens are listed, so a
   * step may list fewer.
   */
  topLogprobs?: number;
  /**
   * Structured output (constrained decoding with xgrammar): `{ type: 'json_schema', schema }`
   * (a JSON Schema, as an object or JSON text) or `{ type: 'json_object' }` (any JSON object);
   * `{ type: 'text' }` is no constraint. Tokens that would break the format are never sampled,
   * and generation ends (`finishReason: 'stop'`) once the value is complete. With
   * `finishReason: 'length'` (maxTokens or the context ran out) or a `stop` string cutting it,
   * the text is a truncated, invalid value. Properties a schema does not name are not generated
   * (xgrammar's strict mode) unless `additionalProperties` allows them. Not with `grammar`.
   */
  responseFormat?: ResponseFormat;
  /**
   * Structured output: an EBNF grammar in xgrammar's syntax (GBNF-like, rule `root` first used:
   * `root ::= "yes" | "no"`); the text is a sentence of it. Not with `responseFormat`.
   */
  grammar?: string;
  /** Aborts generation; the call rejects with `signal.reason`. */
  signal?: AbortSignal;
}

/** The `responseFormat` of {@link GenerateOptions}. */
export type ResponseFormat =
  | { type: 'text' }
  | { type: 'json_object' }
  | { type: 'json_schema'; schema: Record<string, unknown> | boolean | string };

/** Options of {@link Model.encode}. */
export interface EncodeOptions extends VideoPartOptions {
  /** Aborts encoding; the call rejects with `signal.reason`. */
  signal?: AbortSignal;
}

/** What {@link Model.estimate} predicts for a prompt, before any vision encoding. */
export interface PromptEstimate {
  /** Prompt positions: text plus vision tokens. */
  promptTokens: number;
  textTokens: number;
  visionTokens: number;
  /** Tokens per image, in prompt order. */
  images: { tokens: number; grid: [number, number] }[];
  /** Per video, in prompt order: sampled frame timestamps and tokens kept per frame. */
  videos: VideoTokenLayout[];
  /** KV-cache bytes for the prompt plus `maxTokens` generated tokens. */
  kvCacheBytes: number;
  /** Whether prompt + `maxTokens` fit the context size. */
  fits: boolean;
}

/** Static facts about a loaded model. */
export interface ModelInfo {
  llm: {
    vocabSize: number;
    hiddenSize: number;
    layers: number;
    heads: number;
    kvHeads: number;
    trainContextSize: number;
    /** KV-cache element type: `f32` for f32 weights (exact parity), else `f16`. */
    kvCacheType: 'f32' | 'f16';
  };
  vision: { hiddenSize: number; layers: number; heads: number; patchSize: number };
  preprocess: {
    mean: number[];
    std: number[];
    imageMinPixels: number;
    imageMaxPixels: number;
    videoMinPixels: number;
    videoMaxPixels: number;
    fps: number;
    minFrames: number;
    maxFrames: number;
    pruneThreshold: number;
    /** Whether the model prunes video tokens (differential frame pruning). */
    useTokenCompression: boolean;
  };
  imageTokenId: number;
  videoTokenId: number;
  eosIds: number[];
  /** The context size generations use. */
  contextSize: number;
  /**
   * The ggml device the model runs on (`CPU`, `CUDA0`, ...), for `device: 'auto'` on the CPU why,
   * and how many decoder layers are on the GPU (0 on the CPU).
   */
  device: { name: string; note: string; gpuLayers: number };
  /** Bytes of weights in memory. */
  weightBytes: number;
  /** CPU threads per computation (the `threads` option, capped to the core count). */
  threads: number;
}

/** What {@link Model.stats} reports. */
export interface ModelStats {
  /** Public calls under way (generations, encodes, estimates), queued ones included. */
  running: number;
  /** Generations that hold a KV cache now (past their prompt's vision work). */
  sequences: number;
  /** Bytes of KV cache those generations hold. */
  kvCacheBytes: number;
}

/** Options of {@link Model.dispose}. */
export interface DisposeOptions {
  /**
   * What happens to work still running (default `'finish'`): `'finish'` lets every call that has
   * started end normally first; `'cancel'` ends running generations early with
   * `finishReason: 'cancelled'` and rejects running `encode()` / `estimate()` calls with `ABORTED`.
   */
  running?: 'finish' | 'cancel';
}

const LOAD_KEYS = ['model', 'type', 'revision', 'threads', 'contextSize', 'device', 'gpuLayers', 'ffmpegPath', 'onProgress', 'signal'] as const;
const GENERATE_KEYS = [
  'maxTokens', 'temperature', 'topK', 'topP', 'minP', 'repetitionPenalty', 'seed', 'stop', 'topLogprobs', 'responseFormat', 'grammar', 'signal',
] as const;

/** The constraint of `responseFormat` / `grammar`, validated; undefined for none. */
function structuredOption(options: GenerateOptions): StructuredSpec | undefined {
  const { responseFormat: rf, grammar } = options;
  if (rf !== undefined && grammar !== undefined) {
    throw new VideoLlama3Error('INVALID_ARGUMENT', 'responseFormat and grammar are mutually exclusive: pass one of them');
  }
  if (grammar !== undefined) return { kind: 'grammar', source: stringOption('grammar', grammar), option: 'grammar' };
  if (rf === undefined) return undefined;
  if (typeof rf !== 'object' || rf === null || Array.isArray(rf)) {
    invalid('responseFormat', "object { type: 'json_schema', schema } or { type: 'json_object' }", rf);
  }
  const type = choiceOption('responseFormat.type', (rf as { type?: unknown }).type, ['text', 'json_object', 'json_schema'] as const, 'text');
  checkKnownKeys('responseFormat', rf, type === 'json_schema' ? ['type', 'schema'] : ['type']);
  if (type === 'text') return undefined;
  if (type === 'json_object') return { kind: 'json_object', source: '', option: 'responseFormat' };
  const schema: unknown = (rf as { schema?: unknown }).schema;
  let source: string;
  if (typeof schema === 'string') {
    try {
      JSON.parse(schema);
    } catch {
      invalid('responseFormat.schema', 'JSON Schema (an object, or its JSON text)', schema.length > 40 ? `${schema.slice(0, 40)}...` : schema);
    }
    source = schema;
  } else if (typeof schema === 'boolean' || (typeof schema === 'object' && schema !== null && !Array.isArray(schema))) {
    try {
      source = JSON.stringify(schema);
    } catch (err) {
      throw new VideoLlama3Error('INVALID_ARGUMENT', `responseFormat.schema cannot be written as JSON: ${(err as Error).message}`);
    }
  } else {
    invalid('responseFormat.schema', 'JSON Schema (an object, or its JSON text)', schema);
  }
  return { kind: 'json_schema', source, option: 'responseFormat.schema' };
}

function numberOption(name: string, value: unknown, min: number, max: number, fallback: number, minExclusive = false): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isFinite(value) || value > max || (minExclusive ? value <= min : value < min)) {
    invalid(name, `number ${minExclusive ? `greater than ${min}` : `at least ${min}`} and at most ${max}`, value);
  }
  return value;
}

let nextModelId = 1;

/** A prompt rendered, tokenized and encoded into decoder segments. */
interface BuiltPrompt {
  segments: ({ ids: Int32Array } | { embeddings: Float32Array; rows: number })[];
  /** Input ids, with placeholder ids for vision rows (as the reference's input_ids). */
  ids: number[];
  promptTokens: number;
  visionTokens: number;
  videos: VideoTokenLayout[];
}

/**
 * Loads a converted model. Weights are read off the JavaScript thread.
 * @throws VideoLlama3Error INVALID_MODEL naming the file at fault, INVALID_ARGUMENT for bad options.
 */
export async function loadModel(options: LoadModelOptions): Promise<Model> {
  if (typeof options !== 'object' || options === null) invalid('options', 'object { model, ... }', options);
  checkKnownKeys('loadModel', options, LOAD_KEYS);
  const modelArg = stringOption('model', options.model);
  const type = options.type === undefined ? undefined : choiceOption('type', options.type, CONVERT_TYPES, 'f16');
  const revision = options.revision === undefined ? undefined : stringOption('revision', options.revision);
  const cores = availableParallelism();
  const threads = Math.min(cores, intOption('threads', options.threads, 1, 256, Math.min(8, cores)));
  const contextSize = intOption('contextSize', options.contextSize, 16, 1 << 20, 4096);
  const device = choiceOption('device', options.device, ['auto', 'cpu', 'cuda'] as const, 'auto');
  const rawLayers: unknown = options.gpuLayers;
  if (rawLayers !== undefined && rawLayers !== 'all' && !(Number.isInteger(rawLayers) && (rawLayers as number) >= 0 && (rawLayers as number) <= 100_000)) {
    invalid('gpuLayers', "integer between 0 and 100000 or 'all'", rawLayers);
  }
  const gpuLayers = rawLayers === undefined || rawLayers === 'all' ? -1 : (rawLayers as number); // -1: all
  const signal = signalOption('signal', options.signal);
  const ffmpegPath = options.ffmpegPath === undefined ? undefined : stringOption('ffmpegPath', options.ffmpegPath);
  if (options.onProgress !== undefined && typeof options.onProgress !== 'function') invalid('onProgress', 'function', options.onProgress);
  signal?.throwIfAborted();
  const dir = (await hubModelFolder(modelArg, { type, revision, signal, onProgress: options.onProgress })) ?? resolve(modelArg);
  if (!statSync(dir, { throwIfNoEntry: false })?.isDirectory()) {
    throw new VideoLlama3Error('IO_ERROR', `Model folder ${dir} does not exist; convert a checkpoint with \`npx videollama3 convert <hf-dir> ${dir}\``);
  }
  const files = { llm: join(dir, MODEL_FILES.llm), vision: join(dir, MODEL_FILES.vision) };
  for (const f of Object.values(files)) {
    const st = statSync(f, { throwIfNoEntry: false });
    if (!st) throw new VideoLlama3Error('INVALID_MODEL', `${f} is missing; is ${dir} a folder made by \`videollama3 convert\`?`);
    // Opening a FIFO would block a libuv thread until a writer appears; a device never ends.
    if (!st.isFile()) throw new VideoLlama3Error('INVALID_MODEL', `${f} is not a regular file; pass a folder made by \`videollama3 convert\``);
  }
  options.onProgress?.({ fraction: 0, stage: 'start' });
  const nm = await call(() => native().loadModel(files.llm, files.vision, { threads, device, gpuLayers }));
  if (signal?.aborted) {
    nm.dispose();
    throw signal.reason;
  }
  options.onProgress?.({ fraction: 1, stage: 'loaded' });
  return new Model(nm, contextSize, threads, ffmpegPath);
}

/** A loaded VideoLLaMA 3 model. Safe to share: concurrent calls are queued and interleaved. */
export class Model {
  /** Hyper-parameters, preprocessing constants and memory use. */
  readonly info: ModelInfo;
  readonly #native: NativeModel;
  readonly #scheduler = new Scheduler();
  readonly #id = nextModelId++;
  /** Set by dispose(): new calls are refused; running ones go on (see {@link Model.dispose}). */
  #closing = false;
  #disposed = false;
  /** Calls that have started and not settled, each with what cancels it. */
  readonly #running = new Map<Promise<unknown>, () => void>();
  /** KV caches of the generations under way. */
  readonly #sessions = new Set<NativeSession>();
  readonly #ffmpegPath: string | undefined;
  /** xgrammar's state for this model, made on the first structured-output request. */
  #structured: StructuredEngine | undefined;

  /** @internal Use {@link loadModel}. */
  constructor(nm: NativeModel, contextSize: number, threads: number, ffmpegPath?: string) {
    this.#native = nm;
    this.#ffmpegPath = ffmpegPath;
    const i = nm.info();
    this.info = {
      llm: i.llm,
      vision: i.vision,
      preprocess: i.preprocess,
      imageTokenId: i.imageTokenId,
      videoTokenId: i.videoTokenId,
      eosIds: i.eosIds,
      contextSize: Math.min(contextSize, i.llm.trainContextSize),
      device: { name: i.device, note: i.deviceNote, gpuLayers: i.gpuLayers },
      weightBytes: i.weightBytes,
      threads,
    };
  }

  /** Refuses new calls once dispose() was called. */
  #accepting(): void {
    if (this.#closing) throw disposedError();
  }

  #live(): NativeModel {
    if (this.#disposed) throw disposedError();
    return this.#native;
  }

  /**
   * Runs a public call's work, known to dispose() until it settles. `cancel` ends it early for
   * `dispose({ running: 'cancel' })`. Whatever the work throws becomes a VideoLlama3Error (aborts keep
   * `signal.reason`).
   */
  #track<T>(work: (cancelled: AbortSignal) => Promise<T>, signal?: AbortSignal, cancel?: () => void): Promise<T> {
    if (this.#closing) return Promise.reject(disposedError());
    const internal = new AbortController();
    const p = work(internal.signal).catch((err: unknown) => {
      if (signal?.aborted) throw signal.reason;
      if (internal.signal.aborted) throw new VideoLlama3Error('ABORTED', 'The model was disposed while this call ran', { cause: err });
      throw fromNativeError(err);
    });
    this.#running.set(p, () => {
      internal.abort(new VideoLlama3Error('ABORTED', 'The model was disposed while this call ran'));
      cancel?.();
    });
    const forget = (): void => void this.#running.delete(p);
    p.then(forget, forget);
    return p;
  }

  /** Token ids of `text` (NFC-normalized first, as the Hugging Face tokenizer does). */
  tokenize(text: string, options: { special?: boolean } = {}): number[] {
    this.#accepting();
    checkKnownKeys('tokenize', options, ['special']);
    if (typeof text !== 'string') invalid('text', 'string', text);
    if (options.special !== undefined && typeof options.special !== 'boolean') invalid('special', 'boolean', options.special);
    return Array.from(callSync(() => this.#live().tokenize(text.normalize('NFC'), options.special ?? true)));
  }

  /** Text of token ids (invalid UTF-8 sequences become U+FFFD). */
  detokenize(ids: readonly number[]): string {
    this.#accepting();
    if (!Array.isArray(ids)) invalid('ids', 'array of token ids', ids);
    return callSync(() => this.#live().detokenize(Int32Array.from(ids)).toString('utf8'));
  }

  /**
   * Encodes an image or a video into {@link VisionTokens} (decode, resize, vision encoder,
   * projector; for videos also frame sampling and pruning), reusable in later prompts without a
   * second vision pass. Videos are recognised by file extension (.mp4, .webm, .mov, .mkv, .avi,
   * .gif with `kind: 'video'`), by decoded-frame input, or by `kind: 'video'`.
   */
  async encode(input: ImageInput | VideoPromptInput, options: EncodeOptions & { kind?: 'image' | 'video' } = {}): Promise<VisionTokens> {
    checkKnownKeys('encode', options, ['signal', 'fps', 'maxFrames', 'pruneThreshold', 'autoRotate', 'kind']);
    const signal = signalOption('signal', options.signal);
    const kind = choiceOption('kind', options.kind, ['image', 'video'] as const, looksLikeVideo(input) ? 'video' : 'image');
    signal?.throwIfAborted();
    return this.#track(async (cancelled) => {
      const sig = anySignal(signal, cancelled);
      if (kind === 'video') return this.#encodeVideo(input as VideoPromptInput, options, sig);
      return (await this.#encode(input as ImageInput, sig, false)).tokens;
    }, signal);
  }

  /** @internal Encoding with every intermediate stage (parity tests). */
  async encodeWithStages(image: ImageInput): Promise<{ tokens: VisionTokens; pixels: Float32Array; stages: Record<string, { data: Float32Array; rows: number; cols: number }> }> {
    return this.#track(async () => {
      const r = await this.#encode(image, undefined, true);
      return { tokens: r.tokens, pixels: r.pixels, stages: r.stages ?? {} };
    });
  }

  /** Where image and frame preprocessing runs: our CUDA kernels when the model is on a CUDA GPU. */
  #mediaDevice(): 'cpu' | 'cuda' {
    return this.info.device.name.startsWith('CUDA') ? 'cuda' : 'cpu';
  }

  async #encode(image: ImageInput, signal: AbortSignal | undefined, stages: boolean) {
    const nm = this.#live();
    if (image instanceof VisionTokens) {
      if (image.modelId !== this.#id) throw new VideoLlama3Error('INVALID_ARGUMENT', 'These VisionTokens were made by another model');
      return { tokens: image, pixels: new Float32Array(0), stages: undefined };
    }
    const decoded = await decodeImage(image as Exclude<ImageInput, VisionTokens>);
    signal?.throwIfAborted();
    const p = this.info.preprocess;
    const pre = await call(() =>
      native().preprocessImage(decoded.data, decoded.width, decoded.height, {
        patchSize: this.info.vision.patchSize,
        mergeSize: 1,
        minPixels: p.imageMinPixels,
        maxPixels: p.imageMaxPixels,
        mean: p.mean,
        std: p.std,
        device: this.#mediaDevice(),
      }),
    );
    signal?.throwIfAborted();
    const handle = native().createAbortHandle();
    const onAbort = (): void => native().raiseAbort(handle);
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      const enc = await this.#scheduler.run(() => call(() => nm.encodeImage(pre.pixels, pre.gridH, pre.gridW, 1, { stages, abortHandle: handle })));
      const tokens = new VisionTokens(enc.embeddings, enc.rows, enc.cols, [pre.gridH, pre.gridW], 'image', this.#id);
      return { tokens, pixels: pre.pixels, stages: enc.stages };
    } catch (err) {
      if (signal?.aborted) throw signal.reason;
      throw err;
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
  }

  /** Vision tokens an image will take, from its header; 0 where that is not cheap to know. */
  async #imageTokensAtLeast(image: ImageInput): Promise<number> {
    if (image instanceof VisionTokens) return image.shape[0];
    const size = await imageSize(image as Exclude<ImageInput, VisionTokens>).catch(() => undefined);
    if (!size) return 0;
    const p = this.info.preprocess;
    const patch = this.info.vision.patchSize;
    try {
      const s = native().smartResize(size.height, size.width, patch, p.imageMinPixels, p.imageMaxPixels);
      return (s.height / patch) * (s.width / patch);
    } catch {
      return 0; // decoding reports what is wrong with the image
    }
  }

  /** Renders, tokenizes and encodes a prompt into decoder segments. */
  async #buildPrompt(prompt: Prompt, signal: AbortSignal | undefined, budget: number): Promise<BuiltPrompt> {
    const nm = this.#live();
    type Item = { text: string } | { tokens: VisionTokens; from: number; rows: number; placeholder: number };
    const items: Item[] = [];
    const videos: VideoTokenLayout[] = [];
    const pieces = renderPrompt(toMessages(prompt));
    // Vision tokens of the images, from their headers: a prompt that cannot fit `budget` positions
    // is refused before any image is decoded or encoded (videos stop at the first frame past it).
    const imageTokens: number[] = [];
    for (const piece of pieces) if ('image' in piece) imageTokens.push(await this.#imageTokensAtLeast(piece.image));
    let pendingImages = imageTokens.reduce((a, b) => a + b, 0);
    if (pendingImages > budget) throw tooLong(pendingImages, pendingImages, budget + 1, true);
    let encoded = 0; // vision tokens of the pieces encoded so far
    let image = 0;
    for (const piece of pieces) {
      if ('text' in piece) {
        items.push({ text: piece.text });
      } else if ('image' in piece) {
        const { tokens } = await this.#encode(piece.image, signal, false);
        items.push({ tokens, from: 0, rows: tokens.shape[0], placeholder: this.info.imageTokenId });
        pendingImages -= imageTokens[image++]!;
        encoded += tokens.shape[0];
      } else {
        // Spec §6.5: per frame "Time t.ts:" then its kept tokens, frames joined by ",".
        const tokens = await this.#encodeVideo(piece.video, piece.options, signal, budget - encoded - pendingImages, budget + 1);
        encoded += tokens.shape[0];
        const layout = tokens.video!;
        videos.push(layout);
        let from = 0;
        layout.tokensPerFrame.forEach((n, k) => {
          items.push({ text: `${k > 0 ? ',' : ''}Time ${formatTimestamp(layout.timestamps[k]!)}s:` });
          items.push({ tokens, from, rows: n, placeholder: this.info.videoTokenId });
          from += n;
        });
      }
    }
    const segments: ({ ids: Int32Array } | { embeddings: Float32Array; rows: number })[] = [];
    const ids: number[] = []; // with vision placeholder ids, as the reference's input_ids
    let visionTokens = 0;
    let text = '';
    const flush = (): void => {
      if (!text) return;
      const t = nm.tokenize(text.normalize('NFC'), true);
      segments.push({ ids: t });
      for (const id of t) ids.push(id);
      text = '';
    };
    for (const item of items) {
      if ('text' in item) {
        text += item.text; // adjacent text is tokenized as one string, as the reference does
        continue;
      }
      flush();
      if (item.rows === 0) continue;
      const cols = item.tokens.shape[1];
      segments.push({ embeddings: item.tokens.rawData().subarray(item.from * cols, (item.from + item.rows) * cols), rows: item.rows });
      visionTokens += item.rows;
      for (let i = 0; i < item.rows; i++) ids.push(item.placeholder);
    }
    flush();
    return { segments, ids, promptTokens: ids.length, visionTokens, videos };
  }

  /**
   * Encodes a video: frames sampled as the reference does, each resized to the per-frame budget,
   * encoded as its own attention segment and projected; tokens whose pixels barely changed since
   * the previous sampled frame are dropped. Frames stream from the decoder: memory holds one
   * frame's pixels plus the kept tokens.
   */
  async #encodeVideo(
    input: VideoPromptInput,
    options: VideoPartOptions,
    signal: AbortSignal | undefined,
    budget = Infinity,
    contextSize = Infinity,
  ): Promise<VisionTokens> {
    const nm = this.#live();
    if (input instanceof VisionTokens) {
      if (input.modelId !== this.#id) throw new VideoLlama3Error('INVALID_ARGUMENT', 'These VisionTokens were made by another model');
      if (!input.video) throw new VideoLlama3Error('INVALID_ARGUMENT', 'These VisionTokens are an image; pass them as an image, not a video');
      return input;
    }
    const { plan, pre } = await this.#videoPipeline(input, options, signal);
    const handle = native().createAbortHandle();
    const onAbort = (): void => native().raiseAbort(handle);
    signal?.addEventListener('abort', onAbort, { once: true });
    const kept: Float32Array[] = [];
    const tokensPerFrame: number[] = [];
    let grid: [number, number] = [0, 0];
    let cols = this.info.llm.hiddenSize;
    let least = 0; // positions this video takes so far: kept tokens, and the text of every frame after the first
    try {
      for await (const frame of plan.frames()) {
        const f = await call(() => pre.push(frame.data, frame.width, frame.height));
        if (Number.isFinite(budget)) {
          const k = tokensPerFrame.length; // frame k > 0 is preceded by its own text run (see #buildPrompt)
          least += f.kept + (k > 0 ? nm.tokenize(`,Time ${formatTimestamp(plan.timestamps[k]!)}s:`.normalize('NFC'), true).length : 0);
          if (least > budget) throw tooLong(least + contextSize - 1 - budget, least, contextSize, true);
        }
        grid = [f.gridH, f.gridW];
        const enc = await this.#scheduler.run(() => call(() => nm.encodeImage(f.pixels, f.gridH, f.gridW, 2, { abortHandle: handle })));
        cols = enc.cols;
        const out = new Float32Array(f.kept * cols);
        for (let j = 0, r = 0; j < enc.rows; j++) {
          if (f.keep[j]) out.set(enc.embeddings.subarray(j * cols, (j + 1) * cols), (r++) * cols);
        }
        kept.push(out);
        tokensPerFrame.push(f.kept);
        signal?.throwIfAborted();
      }
    } catch (err) {
      if (signal?.aborted) throw signal.reason;
      throw err;
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
    const total = tokensPerFrame.reduce((a, b) => a + b, 0);
    const data = new Float32Array(total * cols);
    let o = 0;
    for (const k of kept) {
      data.set(k, o);
      o += k.length;
    }
    return new VisionTokens(data, total, cols, grid, 'video', this.#id, { timestamps: plan.timestamps.slice(0, tokensPerFrame.length), tokensPerFrame });
  }

  /**
   * Predicts a prompt's cost without running the vision encoder: exact text and vision token
   * counts (video frames are decoded to compute the pruning masks), per-frame kept tokens and the
   * KV-cache bytes for `maxTokens` more tokens — so a server can admit or reject a request first.
   */
  async estimate(prompt: Prompt, options: { maxTokens?: number; signal?: AbortSignal } = {}): Promise<PromptEstimate> {
    checkKnownKeys('estimate', options, ['maxTokens', 'signal']);
    const maxTokens = intOption('maxTokens', options.maxTokens, 1, 32768, 512);
    const signal = signalOption('signal', options.signal);
    signal?.throwIfAborted();
    return this.#track((cancelled) => this.#estimate(prompt, maxTokens, anySignal(signal, cancelled)), signal);
  }

  async #estimate(prompt: Prompt, maxTokens: number, signal: AbortSignal | undefined): Promise<PromptEstimate> {
    const nm = this.#live();
    const p = this.info.preprocess;
    const patch = this.info.vision.patchSize;
    let text = '';
    let textTokens = 0;
    let visionTokens = 0;
    const images: PromptEstimate['images'] = [];
    const videos: VideoTokenLayout[] = [];
    for (const piece of renderPrompt(toMessages(prompt))) {
      if ('text' in piece) {
        text += piece.text;
      } else if ('image' in piece) {
        let grid: [number, number];
        if (piece.image instanceof VisionTokens) {
          grid = [piece.image.grid[0], piece.image.grid[1]];
        } else {
          const d = await decodeImage(piece.image as Exclude<ImageInput, VisionTokens>);
          const s = native().smartResize(d.height, d.width, patch, p.imageMinPixels, p.imageMaxPixels);
          grid = [s.height / patch, s.width / patch];
        }
        images.push({ tokens: grid[0] * grid[1], grid });
        visionTokens += grid[0] * grid[1];
      } else {
        const layout = piece.video instanceof VisionTokens ? piece.video.video : await this.#videoLayout(piece.video, piece.options, signal);
        if (!layout) throw new VideoLlama3Error('INVALID_ARGUMENT', 'These VisionTokens are an image; pass them as an image, not a video');
        videos.push(layout);
        layout.tokensPerFrame.forEach((n, k) => {
          text += `${k > 0 ? ',' : ''}Time ${formatTimestamp(layout.timestamps[k]!)}s:`;
          textTokens += nm.tokenize(text.normalize('NFC'), true).length;
          text = '';
          visionTokens += n;
        });
      }
    }
    if (text) textTokens += nm.tokenize(text.normalize('NFC'), true).length;
    const promptTokens = textTokens + visionTokens;
    const { layers, kvHeads, heads, hiddenSize, kvCacheType } = this.info.llm;
    const kvCacheBytes = 2 * layers * kvHeads * (hiddenSize / heads) * (kvCacheType === 'f32' ? 4 : 2) * (promptTokens + maxTokens);
    return { promptTokens, textTokens, visionTokens, images, videos, kvCacheBytes, fits: promptTokens + maxTokens <= this.info.contextSize };
  }

  /**
   * A video's sampling plan (spec §6.1) and a streaming frame preprocessor sized for it: per-frame
   * pixel budget = the model's video budget / frame count, pruning as the model and options say.
   */
  async #videoPipeline(input: Exclude<VideoPromptInput, VisionTokens>, options: VideoPartOptions, signal: AbortSignal | undefined) {
    const p = this.info.preprocess;
    const fps = numberOption('fps', options.fps, 0, 1000, p.fps, true);
    const maxFrames = intOption('maxFrames', options.maxFrames, 1, 10000, p.maxFrames);
    const pruneThreshold = numberOption('pruneThreshold', options.pruneThreshold, 0, 1000, p.pruneThreshold);
    const plan = await planVideo(input, {
      fps,
      maxFrames,
      minFrames: Math.min(p.minFrames, maxFrames),
      ...(options.autoRotate !== undefined ? { autoRotate: options.autoRotate } : {}),
      ...(this.#ffmpegPath !== undefined ? { ffmpegPath: this.#ffmpegPath } : {}),
      ...(signal ? { signal } : {}),
    });
    const patchSize = this.info.vision.patchSize;
    const size = native().videoFrameSize(plan.metadata.height, plan.metadata.width, plan.indices.length, {
      patchSize, mergeSize: 2, minPixels: p.videoMinPixels, maxPixels: p.videoMaxPixels,
    });
    const pre = native().createVideoPreprocessor({
      patchSize, mergeSize: 2, height: size.height, width: size.width, mean: p.mean, std: p.std,
      pruneThreshold: p.useTokenCompression ? pruneThreshold : 0,
      device: this.#mediaDevice(),
    });
    return { plan, pre };
  }

  /** Frame timestamps and kept tokens of a video, from its pixels (no vision encoding). */
  async #videoLayout(input: Exclude<VideoPromptInput, VisionTokens>, options: VideoPartOptions, signal: AbortSignal | undefined): Promise<VideoTokenLayout> {
    const { plan, pre } = await this.#videoPipeline(input, options, signal);
    const tokensPerFrame: number[] = [];
    for await (const frame of plan.frames()) tokensPerFrame.push((await call(() => pre.push(frame.data, frame.width, frame.height))).kept);
    return { timestamps: plan.timestamps.slice(0, tokensPerFrame.length), tokensPerFrame };
  }

  /** @internal The prompt's input ids (placeholders for vision rows) and every row's logits (parity tests). */
  async debugPrefill(prompt: Prompt): Promise<{ ids: number[]; logits: Float32Array }> {
    return this.#track(async () => {
      const { segments, ids } = await this.#buildPrompt(prompt, undefined, Infinity);
      const session = this.#live().createSession(ids.length);
      try {
        const logits = await this.#scheduler.run(() => call(() => session.evaluate(segments, { allLogits: true })));
        return { ids, logits: logits ?? new Float32Array(0) };
      } finally {
        session.dispose();
      }
    });
  }

  /**
   * Generates a reply, streamed. `for await (const chunk of model.generate(prompt))` yields text;
   * `await generation.result` gives text, tokens, usage, timings and optional log-probabilities.
   */
  generate(prompt: Prompt, options: GenerateOptions = {}): Generation {
    let cancelled = false;
    let session: NativeSession | undefined;
    const cancel = (): void => {
      cancelled = true;
      session?.abort();
    };
    // The signal as given (validated in #run), so an abort still rejects with its reason.
    const signal = typeof options === 'object' && options !== null ? (options.signal as AbortSignal | undefined) : undefined;
    return new Generation(
      (emit) => this.#track((disposing) => this.#run(prompt, options, emit, () => cancelled, (s) => (session = s), disposing), signal, cancel),
      cancel,
    );
  }

  /** Generates a reply and returns it whole (the same as awaiting `generate(...).result`). */
  async complete(prompt: Prompt, options: GenerateOptions = {}): Promise<GenerationResult> {
    return this.generate(prompt, options).result;
  }

  async #run(
    prompt: Prompt,
    options: GenerateOptions,
    emit: (chunk: string) => void,
    isCancelled: () => boolean,
    setSession: (s: NativeSession) => void,
    disposing: AbortSignal,
  ): Promise<GenerationResult> {
    const t0 = performance.now();
    if (typeof options !== 'object' || options === null) invalid('options', 'object', options);
    checkKnownKeys('generate', options, GENERATE_KEYS);
    const maxTokens = intOption('maxTokens', options.maxTokens, 1, 32768, 512);
    const sampling = {
      temperature: numberOption('temperature', options.temperature, 0, 100, 0),
      topK: intOption('topK', options.topK, 0, this.info.llm.vocabSize, 0),
      topP: numberOption('topP', options.topP, 0, 1, 1, true),
      minP: numberOption('minP', options.minP, 0, 1, 0),
      repetitionPenalty: numberOption('repetitionPenalty', options.repetitionPenalty, 0, 100, 1, true),
      // 2^53 - 1 at most: the seed travels as a JS number (reported back in result.seed).
      seed: intOption('seed', options.seed, 0, Number.MAX_SAFE_INTEGER, randomInt(0, 2 ** 48 - 1)),
      topLogprobs: intOption('topLogprobs', options.topLogprobs, 0, 20, 0),
      stopIds: this.info.eosIds,
    };
    const stop = options.stop ?? [];
    if (!Array.isArray(stop) || !stop.every((s) => typeof s === 'string' && s.length > 0)) invalid('stop', 'array of non-empty strings', stop);
    const signal = signalOption('signal', options.signal);
    const structured = structuredOption(options);
    signal?.throwIfAborted();
    const nm = this.#live();

    // 0. Structured output: the grammar's matcher (a refused schema fails here, before any work).
    const matcher = structured ? await this.#structuredEngine(nm).matcher(structured) : undefined;
    try {
      return await this.#decode(prompt, options, emit, isCancelled, setSession, disposing, t0, maxTokens, sampling, stop, signal, nm, matcher);
    } finally {
      matcher?.dispose();
    }
  }

  /** xgrammar's state for this model, made on first use. */
  #structuredEngine(nm: NativeModel): StructuredEngine {
    this.#structured ??= new StructuredEngine(() => nm.vocabulary(), this.info.llm.vocabSize, this.info.eosIds);
    return this.#structured;
  }

  async #decode(
    prompt: Prompt,
    options: GenerateOptions,
    emit: (chunk: string) => void,
    isCancelled: () => boolean,
    setSession: (s: NativeSession) => void,
    disposing: AbortSignal,
    t0: number,
    maxTokens: number,
    sampling: Parameters<NativeSession['step']>[0],
    stop: string[],
    signal: AbortSignal | undefined,
    nm: NativeModel,
    matcher: GrammarMatcher | undefined,
  ): Promise<GenerationResult> {
    // 1. Prompt: render, encode images, tokenize text pieces (refused before any vision work when
    // it cannot fit). dispose({ running: 'cancel' }) here ends the call as cancelled, with no text.
    const tv = performance.now();
    let built: BuiltPrompt;
    try {
      built = await this.#buildPrompt(prompt, anySignal(signal, disposing), this.info.contextSize - 1);
    } catch (err) {
      if (disposing.aborted && !signal?.aborted) return cancelledResult(t0, sampling.seed);
      throw err;
    }
    const { segments, promptTokens, visionTokens, videos } = built;
    const visionMs = performance.now() - tv;
    if (promptTokens + 1 > this.info.contextSize) throw tooLong(promptTokens, visionTokens, this.info.contextSize);

    // 2. Session sized to the work: prompt + maxTokens, within the context size.
    const session = nm.createSession(Math.min(this.info.contextSize, promptTokens + maxTokens));
    this.#sessions.add(session);
    setSession(session);
    const onAbort = (): void => session.abort();
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      const tp = performance.now();
      try {
        await this.#scheduler.run(() => call(() => session.evaluate(segments)));
      } catch (err) {
        if (isCancelled() && !signal?.aborted && err instanceof VideoLlama3Error && err.code === 'ABORTED') return cancelledResult(t0, sampling.seed, promptTokens, visionTokens);
        throw err;
      }
      const prefillMs = performance.now() - tp;

      // 3. Decode loop: one queued native step per token, so concurrent generations interleave.
      const decoder = new TextDecoder('utf-8', { fatal: false });
      const tokens: number[] = [];
      const logprobs: TokenLogprob[][] = [];
      const holdBack = stop.reduce((m, s) => Math.max(m, s.length - 1), 0);
      let text = '';
      let emitted = 0;
      let finishReason: FinishReason = 'length';
      let tFirst = 0;
      // Structured output: the mask of the next sample. A step samples from the logits of the
      // previous step's forward pass (which runs while this thread gets the mask ready), so the
      // mask for token t + 1 is filled after token t was accepted and goes with the step after.
      let grammarMs = 0;
      const tg = performance.now();
      let mask = matcher ? await matcher.getNextTokenBitmask() : undefined;
      grammarMs += performance.now() - tg;
      while (tokens.length < maxTokens) {
        if (isCancelled()) {
          finishReason = 'cancelled';
          break;
        }
        signal?.throwIfAborted();
        let step: { id: number; top: TokenLogprob[] };
        try {
          step = await this.#scheduler.run(() => call(() => session.step(mask ? { ...sampling, mask } : sampling)));
        } catch (err) {
          // Leaving the loop aborts the step in flight: that is a cancellation, not an error.
          if (isCancelled() && err instanceof VideoLlama3Error && err.code === 'ABORTED') {
            finishReason = 'cancelled';
            break;
          }
          throw err;
        }
        if (tokens.length === 0) tFirst = performance.now();
        if (matcher) {
          const ta = performance.now();
          if (!matcher.acceptToken(step.id)) {
            throw new VideoLlama3Error('INTERNAL', `xgrammar refused token ${step.id}, which its own mask allowed`);
          }
          grammarMs += performance.now() - ta;
        }
        tokens.push(step.id);
        if (sampling.topLogprobs > 0) logprobs.push(step.top);
        if (this.info.eosIds.includes(step.id)) {
          finishReason = 'stop';
          break;
        }
        text += decoder.decode(nm.detokenize(Int32Array.of(step.id)), { stream: true });
        const hit = stop.length ? firstStop(text, stop, Math.max(0, emitted - holdBack)) : -1;
        if (hit >= 0) {
          text = text.slice(0, hit);
          finishReason = 'stop';
          break;
        }
        const safe = text.length - holdBack;
        if (safe > emitted) {
          emit(text.slice(emitted, safe));
          emitted = safe;
        }
        if (session.position >= session.contextSize) break;
        if (matcher && tokens.length < maxTokens) {
          const tm = performance.now();
          mask = await matcher.getNextTokenBitmask();
          grammarMs += performance.now() - tm;
        }
      }
      if (finishReason !== 'stop' || stop.length === 0) text += decoder.decode();
      if (text.length > emitted) emit(text.slice(emitted));
      signal?.throwIfAborted();
      const end = performance.now();
      const decodeMs = tokens.length > 1 ? end - tFirst : 0;
      const result: GenerationResult = {
        text,
        tokens,
        finishReason,
        seed: sampling.seed,
        usage: { promptTokens, visionTokens, completionTokens: tokens.length },
        timings: {
          visionMs,
          prefillMs,
          decodeMs,
          timeToFirstTokenMs: (tFirst || end) - t0,
          totalMs: end - t0,
          prefillTokensPerSecond: prefillMs > 0 ? (promptTokens / prefillMs) * 1000 : 0,
          decodeTokensPerSecond: decodeMs > 0 ? ((tokens.length - 1) / decodeMs) * 1000 : 0,
        },
      };
      if (matcher) result.timings.grammarMs = grammarMs;
      if (sampling.topLogprobs > 0) result.logprobs = logprobs;
      if (videos.length > 0) result.videos = videos;
      return result;
    } catch (err) {
      if (signal?.aborted) throw signal.reason;
      throw err;
    } finally {
      signal?.removeEventListener('abort', onAbort);
      session.dispose(); // the KV cache (GPU memory on CUDA) goes now, not at garbage collection
      this.#sessions.delete(session);
    }
  }

  /** What the model is doing now: calls under way and the KV-cache memory their generations hold. */
  stats(): ModelStats {
    let kvCacheBytes = 0;
    for (const session of this.#sessions) kvCacheBytes += session.cacheBytes;
    return { running: this.#running.size, sequences: this.#sessions.size, kvCacheBytes };
  }

  /**
   * Frees the model's memory. New calls are refused at once with `DISPOSED`; calls already running
   * finish normally first (default), or with `{ running: 'cancel' }` end early: generations resolve
   * with `finishReason: 'cancelled'` and the text so far, `encode()` and `estimate()` reject with
   * `ABORTED`. Resolves once the memory is freed; calling it again waits for the same.
   */
  async dispose(options: DisposeOptions = {}): Promise<void> {
    checkKnownKeys('dispose', options, ['running']);
    const running = choiceOption('running', options.running, ['finish', 'cancel'] as const, 'finish');
    this.#closing = true;
    if (running === 'cancel') for (const cancel of this.#running.values()) cancel();
    await Promise.allSettled([...this.#running.keys()]);
    if (this.#disposed) return;
    this.#disposed = true;
    await this.#structured?.dispose();
    await this.#scheduler.run(async () => this.#native.dispose());
  }
}

function disposedError(): VideoLlama3Error {
  return new VideoLlama3Error('DISPOSED', 'This model was disposed; load it again with loadModel()');
}

/** The signal that fires when either does. */
function anySignal(a: AbortSignal | undefined, b: AbortSignal): AbortSignal {
  return a ? AbortSignal.any([a, b]) : b;
}

/** A generation ended by `dispose({ running: 'cancel' })` before its first token. */
function cancelledResult(t0: number, seed: number, promptTokens = 0, visionTokens = 0): GenerationResult {
  const totalMs = performance.now() - t0;
  return {
    text: '',
    tokens: [],
    finishReason: 'cancelled',
    seed,
    usage: { promptTokens, visionTokens, completionTokens: 0 },
    timings: { visionMs: 0, prefillMs: 0, decodeMs: 0, timeToFirstTokenMs: totalMs, totalMs, prefillTokensPerSecond: 0, decodeTokensPerSecond: 0 },
  };
}

function tooLong(promptTokens: number, visionTokens: number, contextSize: number, atLeast = false): VideoLlama3Error {
  return new VideoLlama3Error(
    'INVALID_ARGUMENT',
    `The prompt needs ${atLeast ? 'at least ' : ''}${promptTokens} tokens (${visionTokens} of them vision tokens) but contextSize is ${contextSize}; ` +
      'raise contextSize in loadModel(), or use fewer or smaller images, fewer video frames (maxFrames) or a lower fps',
  );
}

/** Index of the earliest stop string in `text` at or after `from`, or -1. */
function firstStop(text: string, stop: readonly string[], from: number): number {
  let best = -1;
  for (const s of stop) {
    const i = text.indexOf(s, from);
    if (i >= 0 && (best < 0 || i < best)) best = i;
  }
  return best;
}

const VIDEO_EXTENSIONS = /\.(mp4|m4v|webm|mov|mkv|avi|mpg|mpeg|ts)$/i;

/** Whether an `encode()` input is a video: decoded frames, or a path with a video extension. */
function looksLikeVideo(input: unknown): boolean {
  if (input instanceof VisionTokens) return input.source === 'video';
  if (typeof input === 'string') return VIDEO_EXTENSIONS.test(input);
  return Array.isArray(input) || (typeof input === 'object' && input !== null && Symbol.asyncIterator in input);
}
