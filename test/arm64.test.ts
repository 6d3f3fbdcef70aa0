// The linux-arm64 prebuilds (cross-compiled by `npm run prebuildify -- --arch arm64`), run by an
// arm64 Node under user-mode emulation (qemu-aarch64): load, tokenize, image parity against the
// reference (transformers) and greedy generation, for the armv8-a baseline and the dotprod variant.
// Runs where the emulator and the cross toolchain are installed (.ci/run installs both); slow, not
// wrong: ggml's NEON kernels must give the reference's numbers as the x86 build does.
import { execFile, execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { convertModel, loadModel } from '../lib/index';
import { chooseVariant, pickCpuVariant } from '../lib/binding';
import { REFERENCE_DIR, REPO_ROOT, referenceCases, relativeError } from './helpers/reference';

const ROOT = join(__dirname, '..');
const SYSROOT = '/usr/aarch64-linux-gnu';
const onPath = (tool: string): boolean => {
  try {
    execFileSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
};
const canEmulate =
  process.platform === 'linux' && process.arch === 'x64' && existsSync(join(ROOT, 'dist', 'index.js')) && existsSync(SYSROOT) &&
  onPath('qemu-aarch64') && onPath('aarch64-linux-gnu-g++') && process.env.VL3_OFFLINE !== '1';
const LOGPROB_TOLERANCE = 1e-3; // as test/parity.test.ts
const STAGE_TOLERANCE = 1e-4;
const CONFIG = 'tiny-a';
const CASES = ['photo', 'multi'];

describe('arm64 variant selection (lib/binding.ts)', () => {
  it('picks dotprod where the CPU has the dot-product instructions, else the baseline', () => {
    expect(pickCpuVariant(new Set(['asimddp']), 'arm64')).toBe('dotprod');
    expect(pickCpuVariant(new Set(), 'arm64')).toBeUndefined();
    expect(pickCpuVariant(new Set(['avx2', 'fma', 'f16c', 'bmi2']), 'arm64')).toBeUndefined();
    expect(chooseVariant('baseline', new Set(['asimddp']), 'arm64')).toBeUndefined();
  });
});

const CHILD = `
const lib = require(${JSON.stringify(join(ROOT, 'dist', 'index.js'))});
const [modelDir, casesJson] = process.argv.slice(2);
(async () => {
  const info = lib.systemInfo();
  const model = await lib.loadModel({ model: modelDir, threads: 2 });
  const out = { arch: process.arch, addonPath: info.addonPath, cpuFeatures: info.cpuFeatures, tokens: model.tokenize('Hello, wörld! 你好 <|im_end|>'), cases: {} };
  for (const c of JSON.parse(casesJson)) {
    const stages = await Promise.all(c.images.map((f) => model.encodeWithStages(f)));
    const projector = stages.flatMap((s) => Array.from(s.stages.projector.data));
    const r = await model.complete({ text: c.text, images: c.images }, { maxTokens: c.maxTokens, topLogprobs: 5 });
    out.cases[c.name] = { projector, tokens: r.tokens, logprobs: r.logprobs };
  }
  await model.dispose();
  console.log(JSON.stringify(out));
})().catch((e) => { console.error(e); process.exit(1); });
`;

describe.skipIf(!canEmulate)('linux-arm64 prebuilds under qemu-aarch64', () => {
  const work = mkdtempSync(join(tmpdir(), 'vl3-arm64-'));
  const modelDir = join(work, 'model');
  let runtime: { node: string; nodePath: string };
  const cases = canEmulate ? referenceCases(CONFIG).filter((c) => CASES.includes(c.manifest.case)) : [];

  beforeAll(async () => {
    // Incremental: seconds when the cross builds are up to date, a few minutes from scratch.
    execFileSync(process.execPath, [join(ROOT, 'scripts', 'prebuildify.mjs'), '--arch', 'arm64'], { cwd: ROOT, stdio: ['ignore', 'ignore', 'inherit'] });
    runtime = JSON.parse(execFileSync(process.execPath, [join(ROOT, 'scripts', 'arm64-runtime.mjs')], { encoding: 'utf8' })) as typeof runtime;
    await convertModel({ input: join(REFERENCE_DIR, CONFIG, 'hf-native'), output: modelDir, type: 'f32' });
  }, 900_000);
  afterAll(() => rmSync(work, { recursive: true, force: true }));

  const runArm64 = (variant: 'baseline' | 'dotprod'): Promise<{
    arch: string;
    addonPath: string;
    cpuFeatures: string[];
    tokens: number[];
    cases: Record<string, { projector: number[]; tokens: number[]; logprobs: { id: number; logprob: number }[][] }>;
  }> => {
    const file = join(work, 'child.cjs');
    writeFileSync(file, CHILD);
    const spec = cases.map((c) => ({
      name: c.manifest.case,
      text: c.manifest.prompt_text ?? 'Describe the image.',
      images: (c.manifest.images ?? []).map((i) => join(REPO_ROOT, i.file)),
      maxTokens: c.manifest.max_new_tokens,
    }));
    // qemu's default CPU ("max") has the dot-product instructions; VL3_CPU_VARIANT picks the build.
    const env: NodeJS.ProcessEnv = { ...process.env, PREBUILDS_ONLY: '1', NODE_PATH: runtime.nodePath, VL3_CPU_VARIANT: variant };
    delete env.VL3_ADDON_PATH;
    return new Promise((resolve, reject) => {
      execFile('qemu-aarch64', ['-L', SYSROOT, runtime.node, file, modelDir, JSON.stringify(spec)], { env, timeout: 600_000, maxBuffer: 64 << 20 }, (err, stdout, stderr) =>
        err ? reject(new Error(`${err.message} (signal ${String(err.signal)})\n${stderr}`)) : resolve(JSON.parse(stdout)),
      );
    });
  };

  for (const variant of ['baseline', 'dotprod'] as const) {
    it(`${variant}: loads, tokenizes as on x64, and matches the reference on images`, async () => {
      const r = await runArm64(variant);
      expect(r.arch).toBe('arm64');
      expect(r.addonPath).toContain(variant === 'baseline' ? join('linux-arm64', 'videollama3-node.node') : 'videollama3-node.dotprod.node');
      expect(r.cpuFeatures).toContain('neon');
      const x64 = await loadModel({ model: modelDir, threads: 1 });
      try {
        expect(r.tokens).toEqual(x64.tokenize('Hello, wörld! 你好 <|im_end|>'));
      } finally {
        await x64.dispose();
      }
      for (const c of cases) {
        const where = `${variant} ${CONFIG}/${c.manifest.case}`;
        const ours = r.cases[c.manifest.case]!;
        expect(relativeError(ours.projector, c.stage('projector') as Float32Array), `${where}: projector`).toBeLessThanOrEqual(STAGE_TOLERANCE);
        expect(ours.tokens, `${where}: greedy tokens`).toEqual(c.manifest.greedy.tokens);
        ours.logprobs.forEach((step, i) => {
          const refStep = c.manifest.greedy.top5[i]!;
          expect(step.map((t) => t.id), `${where}: top-5 ids at step ${i}`).toEqual(refStep.map((t) => t.id));
          step.forEach((t, j) => expect(Math.abs(t.logprob - refStep[j]!.logprob), `${where}: top-5 logprob ${j} at step ${i}`).toBeLessThanOrEqual(LOGPROB_TOLERANCE));
        });
      }
    }, 600_000);
  }
});
