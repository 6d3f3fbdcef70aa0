export { VideoLlama3Error, type ErrorCode } from './errors';
export {
  convertModel,
  CONVERT_TYPES,
  MODEL_FILES,
  type ConvertOptions,
  type ConvertProgress,
  type ConvertResult,
  type ConvertType,
} from './convert';
export { readGgufInfo, readGgufTensor, type GgufInfo, type GgufTensorInfo, type GgufValue } from './gguf';
export { systemInfo, type SystemInfo } from './system';
export { benchmarkMatmul, type MatmulBenchmarkOptions, type MatmulBenchmarkResult } from './bench';
export {
  loadModel,
  Model,
  type EncodeOptions,
  type GenerateOptions,
  type LoadModelOptions,
  type DisposeOptions,
  type ModelInfo,
  type ModelStats,
  type ResponseFormat,
} from './model';
export {
  Generation,
  type FinishReason,
  type GenerationResult,
  type TokenLogprob,
  type Timings,
  type Usage,
} from './generation';
export { VisionTokens, type VisionSource } from './vision-tokens';
export type { ChatMessage, ContentPart, ImageInput, Prompt, RawImage } from './prompt';
export {
  createServer,
  type ListenOptions,
  type ServerAddress,
  type ServerOptions,
  type VideoLlama3Server,
} from './server/server';
export { pullModel, type HubProgress, type PullOptions, type PullResult } from './hub';
