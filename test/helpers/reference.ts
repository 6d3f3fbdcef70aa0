// Reads the reference fixtures written by tools/reference/make_fixtures.py (transformers 5.18).
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { readSafetensorsHeader } from '../../lib/convert/safetensors';
import { origName, writeSafetensors } from './checkpoint';

export const REFERENCE_DIR = join(__dirname, '..', 'fixtures', 'reference');
export const REPO_ROOT = join(__dirname, '..', '..');

export interface StageInfo {
  file: string;
  dtype: 'f32' | 'u8' | 'i32';
  shape: number[];
}

export interface CaseManifest {
  config: string;
  case: string;
  images?: { file: string; grid_thw: number[]; resized_size: number[]; decoded_size: number[] }[];
  video?: { file: string; fps: number; sampled_rgb_sha256: string[]; pyav_equal: boolean; pyav_frame_count: number };
  frame_indices?: number[];
  timestamps?: number[];
  tokens_per_frame?: number;
  kept_per_frame?: number[];
  grid_thw?: number[];
  input_ids: number[];
  stages: Record<string, StageInfo>;
  greedy: { tokens: number[]; top5: { id: number; logprob: number }[][]; top2_gap?: number[] };
  max_new_tokens: number;
  prompt_text?: string;
}

export interface ReferenceCase {
  dir: string;
  manifest: CaseManifest;
  stage(name: string): Float32Array | Uint8Array | Int32Array;
}

/** Tiny model configurations with fixtures (tiny-a, tiny-b, ...). */
export function referenceConfigs(): string[] {
  if (!existsSync(REFERENCE_DIR)) return [];
  return readdirSync(REFERENCE_DIR, { withFileTypes: true })
    .filter((d) => d.isDirectory() && existsSync(join(REFERENCE_DIR, d.name, 'hf-native')))
    .map((d) => d.name)
    .sort();
}

export function referenceCases(config: string): ReferenceCase[] {
  const dir = join(REFERENCE_DIR, config);
  return readdirSync(dir, { withFileTypes: true })
    .filter((d) => d.isDirectory() && existsSync(join(dir, d.name, 'manifest.json')))
    .map((d) => {
      const caseDir = join(dir, d.name);
      const manifest = JSON.parse(readFileSync(join(caseDir, 'manifest.json'), 'utf8')) as CaseManifest;
      return {
        dir: caseDir,
        manifest,
        stage(name: string) {
          const info = manifest.stages[name];
          if (!info) throw new Error(`${caseDir}: no stage ${name}`);
          const buf = readFileSync(join(caseDir, info.file));
          const ab = buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength);
          if (info.dtype === 'u8') return new Uint8Array(ab);
          if (info.dtype === 'i32') return new Int32Array(ab);
          return new Float32Array(ab);
        },
      };
    });
}

/** max|a−b| / max(|b|, 1e-6): the relative error used for stage comparisons. */
export function relativeError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) return Number.POSITIVE_INFINITY;
  let diff = 0;
  let scale = 1e-6;
  for (let i = 0; i < a.length; i++) {
    diff = Math.max(diff, Math.abs(a[i]! - b[i]!));
    scale = Math.max(scale, Math.abs(b[i]!));
  }
  return diff / scale;
}

/**
 * Writes a full original-layout checkpoint into `outDir`: hf-orig's configs and tokenizer plus
 * hf-native's weights renamed (spec §3.2) — the fixtures store those weights only once.
 */
export function materializeOrig(config: string, outDir: string): string {
  const src = join(REFERENCE_DIR, config);
  mkdirSync(outDir, { recursive: true });
  for (const f of readdirSync(join(src, 'hf-orig'))) copyFileSync(join(src, 'hf-orig', f), join(outDir, f));
  const file = join(src, 'hf-native', 'model.safetensors');
  const bytes = readFileSync(file);
  const tensors = readSafetensorsHeader(file).map((e) => ({
    name: origName(e.name),
    dtype: e.dtype,
    shape: e.shape,
    data: bytes.subarray(e.offset, e.offset + e.byteLength),
  }));
  writeSafetensors(join(outDir, 'model.safetensors'), tensors);
  return outDir;
}
