// GGUF metadata of the two output files. The LLM file follows llama.cpp's `qwen2` conventions
// exactly, so it loads unchanged in llama.cpp and node-llama-cpp; the vision file uses the
// `vl3.*` keys documented in native/model/README.md. Key strings come from the native table.
import { VideoLlama3Error } from '../errors';
import type { NativeKv } from '../binding';
import type { Checkpoint } from './checkpoint';
import { FILE_TYPE, type ConvertType } from './plan';

type Keys = Record<string, string>;

function keyOf(keys: Keys, id: string): string {
  const k = keys[id];
  if (!k) throw new VideoLlama3Error('INTERNAL', `GGUF key table has no entry ${id}`);
  return k;
}

/** Metadata of `llm.gguf` (architecture qwen2). */
export function llmMetadata(ck: Checkpoint, keys: Keys, type: ConvertType): NativeKv[] {
  const k = (id: string): string => keyOf(keys, id);
  const t = ck.text;
  const tok = ck.tokenizer;
  const kvs: NativeKv[] = [
    { key: k('architecture'), type: 'str', value: 'qwen2' },
    { key: k('name'), type: 'str', value: ck.name },
    { key: k('fileType'), type: 'u32', value: FILE_TYPE[type] },
    { key: k('quantVersion'), type: 'u32', value: 2 },
    { key: k('contextLength'), type: 'u32', value: t.maxPositions },
    { key: k('embeddingLength'), type: 'u32', value: t.hiddenSize },
    { key: k('blockCount'), type: 'u32', value: t.numLayers },
    { key: k('feedForwardLength'), type: 'u32', value: t.intermediateSize },
    { key: k('headCount'), type: 'u32', value: t.numHeads },
    { key: k('headCountKv'), type: 'u32', value: t.numKvHeads },
    { key: k('ropeFreqBase'), type: 'f32', value: t.ropeTheta },
    { key: k('rmsEps'), type: 'f32', value: t.rmsNormEps },
    { key: k('tokModel'), type: 'str', value: 'gpt2' },
    { key: k('tokPre'), type: 'str', value: 'qwen2' },
    { key: k('tokTokens'), type: 'str[]', value: tok.tokens },
    { key: k('tokTypes'), type: 'i32[]', value: tok.types },
    { key: k('tokMerges'), type: 'str[]', value: tok.merges },
    { key: k('tokEos'), type: 'u32', value: tok.eosId },
    { key: k('tokAddBos'), type: 'bool', value: false },
    { key: k('eosIds'), type: 'i32[]', value: tok.eosIds },
  ];
  if (tok.bosId !== undefined) kvs.push({ key: k('tokBos'), type: 'u32', value: tok.bosId });
  if (tok.padId !== undefined) kvs.push({ key: k('tokPad'), type: 'u32', value: tok.padId });
  if (tok.chatTemplate !== undefined) kvs.push({ key: k('chatTemplate'), type: 'str', value: tok.chatTemplate });
  return kvs;
}

/** Metadata of `vision.gguf`: encoder and projector hyper-parameters, preprocessing constants. */
export function visionMetadata(ck: Checkpoint, keys: Keys, type: ConvertType): NativeKv[] {
  const k = (id: string): string => keyOf(keys, id);
  const v = ck.vision;
  const p = ck.preprocess;
  return [
    { key: k('architecture'), type: 'str', value: 'videollama3-vision' },
    { key: k('name'), type: 'str', value: ck.name },
    { key: k('fileType'), type: 'u32', value: FILE_TYPE[type] },
    { key: k('sourceLayout'), type: 'str', value: ck.layout },
    { key: k('visionEmbeddingLength'), type: 'u32', value: v.hiddenSize },
    { key: k('visionFeedForwardLength'), type: 'u32', value: v.intermediateSize },
    { key: k('visionBlockCount'), type: 'u32', value: v.numLayers },
    { key: k('visionHeadCount'), type: 'u32', value: v.numHeads },
    { key: k('visionLayerNormEps'), type: 'f32', value: v.layerNormEps },
    { key: k('visionPatchSize'), type: 'u32', value: v.patchSize },
    { key: k('visionChannels'), type: 'u32', value: v.numChannels },
    { key: k('visionRopeTheta'), type: 'f32', value: v.ropeTheta },
    { key: k('projectorType'), type: 'str', value: ck.projectorType },
    { key: k('projectorOutput'), type: 'u32', value: ck.text.hiddenSize },
    { key: k('imageMean'), type: 'f32[]', value: p.imageMean },
    { key: k('imageStd'), type: 'f32[]', value: p.imageStd },
    { key: k('imageMinPixels'), type: 'u32', value: p.imageMinPixels },
    { key: k('imageMaxPixels'), type: 'u32', value: p.imageMaxPixels },
    { key: k('imageMergeSize'), type: 'u32', value: p.imageMergeSize },
    { key: k('videoMinPixels'), type: 'u32', value: p.videoMinPixels },
    { key: k('videoMaxPixels'), type: 'u32', value: p.videoMaxPixels },
    { key: k('videoMergeSize'), type: 'u32', value: p.videoMergeSize },
    { key: k('videoFps'), type: 'f32', value: p.fps },
    { key: k('videoMinFrames'), type: 'u32', value: p.minFrames },
    { key: k('videoMaxFrames'), type: 'u32', value: p.maxFrames },
    { key: k('videoPruneThreshold'), type: 'f32', value: p.pruneThreshold },
    { key: k('videoUseCompression'), type: 'bool', value: p.useTokenCompression },
    { key: k('imageTokenId'), type: 'u32', value: ck.imageTokenId },
    { key: k('videoTokenId'), type: 'u32', value: ck.videoTokenId },
  ];
}
