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
