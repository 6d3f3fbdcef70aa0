// Reads a Hugging Face VideoLLaMA 3 checkpoint folder (either layout) into one normalized
// description: hyper-parameters, preprocessing constants, tokenizer and tensor locations.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { VideoLlama3Error } from '../errors';
import { readTextFile } from './files';
import { readCheckpointTensors, type SafetensorsEntry } from './safetensors';

/** `video_llama_3`: transformers-native; `videollama3_qwen2`: DAMO-NLP-SG remote code. */
export type CheckpointLayout = 'video_llama_3' | 'videollama3_qwen2';

export interface TextConfig {
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  vocabSize: number;
  ropeTheta: number;
  rmsNormEps: number;
  maxPositions: number;
  tieWordEmbeddings: boolean;
}

export interface VisionConfig {
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  patchSize: number;
  numChannels: number;
  layerNormEps: number;
  ropeTheta: number;
}

export interface PreprocessConfig {
  imageMean: number[];
  imageStd: number[];
  imageMinPixels: number;
  imageMaxPixels: number;
  imageMergeSize: number;
  videoMinPixels: number;
  videoMaxPixels: number;
  videoMergeSize: number;
  fps: number;
  minFrames: number;
  maxFrames: number;
  pruneThreshold: number;
  useTokenCompression: boolean;
}

export interface TokenizerData {
  /** Token strings by id, `vocabSize` long (ids without a token are `[PAD<id>]`). */
  tokens: string[];
  /** llama.cpp token types: 1 normal, 3 control, 4 user-defined, 5 unused. */
  types: number[];
  merges: string[];
  bosId: number | undefined;
  eosId: number;
  padId: number | undefined;
  /** Every id that ends generation. */
  eosIds: number[];
  chatTemplate: string | undefined;
}

export interface Checkpoint {
  dir: string;
  layout: CheckpointLayout;
  name: string;
  text: TextConfig;
  vision: VisionConfig;
  projectorType: string;
  imageTokenId: number;
  videoTokenId: number;
  preprocess: PreprocessConfig;
  tokenizer: TokenizerData;
  tensors: Map<string, SafetensorsEntry>;
}

type Json = Record<string, unknown>;

/** Largest integer a config key may hold: every count and size is stored as a 32-bit GGUF integer. */
const MAX_INT = 2 ** 31 - 1;
/** Context lengths the model loader accepts (16 to 2^24 positions: native/model/videollama3.cpp). */
const MAX_POSITIONS = 2 ** 24;
/** Vocabulary sizes accepted (the largest released vocabularies have about 256k tokens). */
const MAX_VOCAB = 2 ** 24;

function readJson(file: string, required: true): Json;
function readJson(file: string, required: false): Json | undefined;
function readJson(file: string, required: boolean): Json | undefined {
  if (!existsSync(file)) {
    if (required) throw new VideoLlama3Error('INVALID_MODEL', `${file} is missing`);
    return undefined;
  }
  const content = readTextFile(file);
  try {
    const v = JSON.parse(content) as unknown;
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error('not a JSON object');
    return v as Json;
  } catch (err) {
    throw new VideoLlama3Error('INVALID_MODEL', `${file}: not valid JSON (${(err as Error).message})`);
  }
}

/**
 * Reads `key` of `obj` as an integer from `min` (default 1) to `max` (default 2^31 - 1), or a positive number when
 * `float`, naming file and key on failure.
 */
function num(obj: Json, key: string, where: string, opts: { float?: boolean; fallback?: number; min?: number; max?: number } = {}): number {
  const v = obj[key];
  if (v === undefined || v === null) {
    if (opts.fallback !== undefined) return opts.fallback;
    throw new VideoLlama3Error('INVALID_MODEL', `${where} is missing the key "${key}"`);
  }
  const min = opts.min ?? 1;
  const max = opts.max ?? MAX_INT;
  const ok = typeof v === 'number' && Number.isFinite(v) && (opts.float ? v > 0 : Number.isInteger(v) && v >= min && v <= max);
  if (!ok) {
    throw new VideoLlama3Error(
      'INVALID_MODEL',
      `${where}: "${key}" must be ${opts.float ? 'a positive number' : `an integer between ${min} and ${max}`}, found ${JSON.stringify(v)}`,
    );
  }
  return v as number;
}

function obj(parent: Json, key: string, where: string): Json {
  const v = parent[key];
  if (typeof v !== 'object' || v === null || Array.isArray(v)) {
    throw new VideoLlama3Error('INVALID_MODEL', `${where} is missing the object "${key}"`);
  }
  return v as Json;
}

function ropeTheta(cfg: Json, where: string, fallback: number): number {
  const params = cfg.rope_parameters as Json | undefined;
  if (params && typeof params === 'object' && params.rope_theta !== undefined) {
    return num(params, 'rope_theta', `${where} rope_parameters`, { float: true });
  }
  return num(cfg, 'rope_theta', where, { float: true, fallback });
}

function readText(cfg: Json, where: string, tie: unknown): TextConfig {
  const text: TextConfig = {
    hiddenSize: num(cfg, 'hidden_size', where),
    intermediateSize: num(cfg, 'intermediate_size', where),
    numLayers: num(cfg, 'num_hidden_layers', where, { max: 512 }), // the loader's limit
    numHeads: num(cfg, 'num_attention_heads', where),
    numKvHeads: num(cfg, 'num_key_value_heads', where, { fallback: cfg.num_attention_heads as number }),
    vocabSize: num(cfg, 'vocab_size', where, { max: MAX_VOCAB }),
    ropeTheta: ropeTheta(cfg, where, 1e6),
    rmsNormEps: num(cfg, 'rms_norm_eps', where, { float: true, fallback: 1e-6 }),
    maxPositions: num(cfg, 'max_position_embeddings', where, { fallback: 32768, min: 16, max: MAX_POSITIONS }), // as the loader
    tieWordEmbeddings: tie === undefined ? false : tie === true,
  };
  if (text.hiddenSize % text.numHeads !== 0 || text.numHeads % text.numKvHeads !== 0) {
    throw new VideoLlama3Error(
      'INVALID_MODEL',
      `${where}: hidden_size ${text.hiddenSize}, num_attention_heads ${text.numHeads} and num_key_value_heads ${text.numKvHeads} are inconsistent`,
    );
  }
  return text;
}

function readVision(cfg: Json, where: string): VisionConfig {
  const vision: VisionConfig = {
    hiddenSize: num(cfg, 'hidden_size', where),
    intermediateSize: num(cfg, 'intermediate_size', where),
    numLayers: num(cfg, 'num_hidden_layers', where, { max: 256 }), // the loader's limit
    numHeads: num(cfg, 'num_attention_heads', where),
    patchSize: num(cfg, 'patch_size', where, { fallback: 14 }),
    numChannels: num(cfg, 'num_channels', where, { fallback: 3 }),
    layerNormEps: num(cfg, 'layer_norm_eps', where, { float: true, fallback: 1e-6 }),
    ropeTheta: ropeTheta(cfg, where, 10000),
  };
  if (vision.hiddenSize % vision.numHeads !== 0 || (vision.hiddenSize / vision.numHeads) % 4 !== 0) {
    throw new VideoLlama3Error(
      'INVALID_MODEL',
      `${where}: vision head size ${vision.hiddenSize}/${vision.numHeads} must be a whole multiple of 4 (2-D RoPE)`,
    );
  }
  return vision;
}

/** Preprocessing constants; absent files or keys fall back to the released models' values (spec §5-6). */
function readPreprocess(dir: string, layout: CheckpointLayout, patchSize: number): PreprocessConfig {
  const image = readJson(join(dir, 'preprocessor_config.json'), false) ?? {};
  const video = readJson(join(dir, 'video_preprocessor_config.json'), false) ?? {};
  const processor = readJson(join(dir, 'processor_config.json'), false) ?? {};
  const where = `${dir}/preprocessor_config.json`;
  const f1 = patchSize;
  const f2 = patchSize * 2;
  const size = (image.size ?? {}) as Json;
  const vsize = (video.size ?? {}) as Json;
  const tokenBudget = layout === 'videollama3_qwen2';
  // Pixels are divided by the std: it must be positive.
  const meanStd = (v: unknown, key: string, positive: boolean): number[] => {
    if (v === undefined) return [0.5, 0.5, 0.5];
    const ok = (x: unknown): boolean => typeof x === 'number' && Number.isFinite(x) && (!positive || x > 0);
    if (!Array.isArray(v) || v.length !== 3 || !v.every(ok)) {
      throw new VideoLlama3Error(
        'INVALID_MODEL',
        `${where}: "${key}" must be an array of 3 ${positive ? 'positive' : 'finite'} numbers, found ${JSON.stringify(v)}`,
      );
    }
    return v as number[];
  };
  const minTokens = num(image, 'min_tokens', where, { fallback: 16 });
  const maxTokens = num(image, 'max_tokens', where, { fallback: 16384 });
  return {
    imageMean: meanStd(image.image_mean, 'image_mean', false),
    imageStd: meanStd(image.image_std, 'image_std', true),
    imageMinPixels: tokenBudget
      ? minTokens * f1 * f1
      : num(image, 'min_pixels', where, { fallback: num(size, 'shortest_edge', where, { fallback: 16 * f1 * f1 }) }),
    imageMaxPixels: tokenBudget
      ? maxTokens * f1 * f1
      : num(image, 'max_pixels', where, { fallback: num(size, 'longest_edge', where, { fallback: 16384 * f1 * f1 }) }),
    imageMergeSize: 1,
    videoMinPixels: tokenBudget ? minTokens * f2 * f2 : num(vsize, 'shortest_edge', where, { fallback: 16 * f2 * f2 }),
    videoMaxPixels: tokenBudget ? maxTokens * f2 * f2 : num(vsize, 'longest_edge', where, { fallback: 16384 * f2 * f2 }),
    videoMergeSize: 2,
    fps: num(video, 'fps', where, { float: true, fallback: num(processor, 'fps', where, { float: true, fallback: 1 }) }),
    minFrames: num(video, 'min_frames', where, { fallback: 4 }),
    maxFrames: num(video, 'max_frames', where, { fallback: 180 }),
    pruneThreshold: 0.1,
    useTokenCompression: video.use_token_compression === undefined ? true : video.use_token_compression === true,
  };
}

/** `id` if it is a token id of a `vocabSize` vocabulary; otherwise INVALID_MODEL naming file and key. */
function tokenIdOf(id: unknown, key: string, where: string, vocabSize: number): number {
  if (typeof id !== 'number' || !Number.isInteger(id) || id < 0 || id >= vocabSize) {
    throw new VideoLlama3Error(
      'INVALID_MODEL',
      `${where}: "${key}" must be a token id between 0 and ${vocabSize - 1} (vocab_size ${vocabSize}), found ${JSON.stringify(id)}`,
    );
  }
  return id;
}

function readTokenizer(dir: string, text: TextConfig, config: Json): TokenizerData {
  const tokFile = join(dir, 'tokenizer.json');
  const tok = readJson(tokFile, true);
  const tokConfig = readJson(join(dir, 'tokenizer_config.json'), false) ?? {};
  const model = tok.model as Json | undefined;
  if (!model || model.type !== 'BPE' || typeof model.vocab !== 'object' || model.vocab === null) {
    throw new VideoLlama3Error('UNSUPPORTED_MODEL', `${tokFile}: expected a byte-level BPE tokenizer (model.type "BPE")`);
  }
  const tokens: (string | undefined)[] = new Array(text.vocabSize);
  const types = new Array<number>(text.vocabSize).fill(1);
  const byContent = new Map<string, number>();
  const place = (id: unknown, content: string): number => {
    if (typeof id !== 'number' || !Number.isInteger(id) || id < 0) {
      throw new VideoLlama3Error('INVALID_MODEL', `${tokFile}: token ${JSON.stringify(content)} has an invalid id`);
    }
    if (id >= text.vocabSize) {
      throw new VideoLlama3Error(
        'INVALID_MODEL',
        `${tokFile}: token ${JSON.stringify(content)} has id ${id}, beyond the model's vocab_size ${text.vocabSize}`,
      );
    }
    // An added token may repeat a vocabulary entry, but one id is one token and one token one id.
    const other = tokens[id];
    if (other !== undefined && other !== content) {
      throw new VideoLlama3Error(
        'INVALID_MODEL',
        `${tokFile}: tokens ${JSON.stringify(other)} and ${JSON.stringify(content)} both have id ${id}; fix the file or download it again`,
      );
    }
    const otherId = byContent.get(content);
    if (otherId !== undefined && otherId !== id) {
      throw new VideoLlama3Error(
        'INVALID_MODEL',
        `${tokFile}: token ${JSON.stringify(content)} has two ids, ${otherId} and ${id}; fix the file or download it again`,
      );
    }
    tokens[id] = content;
    byContent.set(content, id);
    return id;
  };
  for (const [content, id] of Object.entries(model.vocab as Record<string, unknown>)) place(id, content);
  const added = Array.isArray(tok.added_tokens) ? (tok.added_tokens as Json[]) : [];
  for (const t of added) {
    const content = String(t.content);
    const id = place(t.id, content);
    const looksSpecial = content.startsWith('<|') && content.endsWith('|>');
    types[id] = t.special === true || looksSpecial ? 3 : 4;
  }
  for (let id = 0; id < tokens.length; id++) {
    if (tokens[id] === undefined) {
      tokens[id] = `[PAD${id}]`;
      types[id] = 5;
    }
  }
  const rawMerges = Array.isArray(model.merges) ? (model.merges as unknown[]) : [];
  const merges = rawMerges.map((m) => (Array.isArray(m) ? m.join(' ') : String(m)));

  const tokenId = (v: unknown): number | undefined => {
    const content = typeof v === 'string' ? v : typeof v === 'object' && v !== null ? (v as Json).content : undefined;
    return typeof content === 'string' ? byContent.get(content) : undefined;
  };
  const configFile = join(dir, 'config.json');
  const genFile = join(dir, 'generation_config.json');
  /** The numbers of `v` (one or a list), each checked to be a token id. */
  const idsOf = (v: unknown, key: string, where: string): number[] =>
    [v].flat().filter((x) => typeof x === 'number').map((x) => tokenIdOf(x, key, where, text.vocabSize));
  const textCfg = (config.text_config as Json | undefined) ?? config;
  const cfgEos = textCfg.eos_token_id ?? config.eos_token_id;
  const cfgEosIds = idsOf(cfgEos, 'eos_token_id', configFile);
  const eosId = tokenId(tokConfig.eos_token) ?? (typeof cfgEos === 'number' ? cfgEos : byContent.get('<|im_end|>'));
  if (eosId === undefined) {
    throw new VideoLlama3Error('INVALID_MODEL', `${dir}: cannot tell the end-of-sequence token (no eos_token in tokenizer_config.json)`);
  }
  const gen = readJson(genFile, false) ?? {};
  const eosIds = new Set<number>([eosId, ...idsOf(gen.eos_token_id, 'eos_token_id', genFile), ...cfgEosIds]);
  const endOfText = byContent.get('<|endoftext|>');
  if (endOfText !== undefined) eosIds.add(endOfText);

  let chatTemplate: string | undefined;
  if (typeof tokConfig.chat_template === 'string') chatTemplate = tokConfig.chat_template;
  else if (existsSync(join(dir, 'chat_template.jinja'))) chatTemplate = readTextFile(join(dir, 'chat_template.jinja'));
  else {
    const ct = readJson(join(dir, 'chat_template.json'), false);
    if (typeof ct?.chat_template === 'string') chatTemplate = ct.chat_template;
  }
  const bos = textCfg.bos_token_id ?? config.bos_token_id;
  return {
    tokens: tokens as string[],
    types,
    merges,
    bosId: typeof bos === 'number' ? tokenIdOf(bos, 'bos_token_id', configFile, text.vocabSize) : undefined,
    eosId,
    padId: tokenId(tokConfig.pad_token) ?? endOfText,
    eosIds: [...eosIds],
    chatTemplate,
  };
}

/** Reads and validates a checkpoint folder. Throws INVALID_MODEL / UNSUPPORTED_MODEL naming the file. */
export function readCheckpoint(dir: string): Checkpoint {
  if (!existsSync(dir)) throw new VideoLlama3Error('IO_ERROR', `Checkpoint folder ${dir} does not exist`);
  const configFile = join(dir, 'config.json');
  const config = readJson(configFile, true);
  const modelType = config.model_type;
  let layout: CheckpointLayout;
  let text: TextConfig;
  let vision: VisionConfig;
  let projectorType: string;
  let imageTokenId: number;
  let videoTokenId: number;
  const tokenKey = (key: string, fallback: number): number =>
    tokenIdOf(config[key] ?? fallback, key, configFile, text.vocabSize);
  if (modelType === 'video_llama_3') {
    layout = 'video_llama_3';
    const tc = obj(config, 'text_config', configFile);
    text = readText(tc, `${configFile} text_config`, config.tie_word_embeddings ?? tc.tie_word_embeddings);
    vision = readVision(obj(config, 'vision_config', configFile), `${configFile} vision_config`);
    projectorType = 'mlp2x_gelu';
    imageTokenId = tokenKey('image_token_id', 151655);
    videoTokenId = tokenKey('video_token_id', 151656);
  } else if (modelType === 'videollama3_qwen2') {
    layout = 'videollama3_qwen2';
    text = readText(config, configFile, config.tie_word_embeddings);
    vision = readVision(obj(config, 'vision_encoder_config', configFile), `${configFile} vision_encoder_config`);
    projectorType = typeof config.mm_projector_type === 'string' ? config.mm_projector_type : 'mlp2x_gelu';
    imageTokenId = tokenKey('image_token_index', 151665);
    videoTokenId = imageTokenId; // the original code uses <image> for frames too
  } else {
    throw new VideoLlama3Error(
      'UNSUPPORTED_MODEL',
      `${configFile}: model_type ${JSON.stringify(modelType)} is not a VideoLLaMA 3 checkpoint ` +
        '(expected "video_llama_3" (transformers) or "videollama3_qwen2" (DAMO-NLP-SG remote code))',
    );
  }
  if (projectorType !== 'mlp2x_gelu') {
    throw new VideoLlama3Error('UNSUPPORTED_MODEL', `${configFile}: projector type ${projectorType} is not supported (expected mlp2x_gelu)`);
  }
  const name = typeof config._name_or_path === 'string' && config._name_or_path ? config._name_or_path : 'VideoLLaMA3';
  return {
    dir,
    layout,
    name,
    text,
    vision,
    projectorType,
    imageTokenId,
    videoTokenId,
    preprocess: readPreprocess(dir, layout, vision.patchSize),
    tokenizer: readTokenizer(dir, text, config),
    tensors: readCheckpointTensors(dir),
  };
}
