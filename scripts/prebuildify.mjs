#!/usr/bin/env node
// Makes the prebuilt binaries shipped in the npm package (N-API 8, stripped):
//   prebuilds/<platform>-<arch>/videollama3-node.node      portable baseline, found by node-gyp-build
//                                                          (x86-64: SSE4.2 only, runs on any 64-bit x86)
//   prebuilds/linux-x64/variants/videollama3-node.<v>.node  avx2, avx512, amx: picked at load time
//                                                          from the CPU's flags (lib/binding.ts)
// Usage: node scripts/prebuildify.mjs [--variants avx2,avx512,amx]
// A developer build in build/Release wins over prebuilds at load time; it is moved aside
// while this runs and restored afterwards.
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);
const x64 = process.arch === 'x64';
const argIdx = process.argv.indexOf('--variants');
const variants = !x64 || process.platform !== 'linux' ? [] : (argIdx > 0 ? process.argv[argIdx + 1] : 'avx2,avx512,amx').split(',').filter(Boolean);

function run(cmd, args, env = {}) {
  const res = spawnSync(cmd, args, { stdio: 'inherit', cwd: root, env: { ...process.env, ...env } });
  if (res.status !== 0) {
    process.stderr.write(`prebuildify: ${cmd} ${args.join(' ')} failed\n`);
    process.exit(res.status ?? 1);
  }
}

const devBuild = join(root, 'build', 'Release', 'videollama3.node');
const parked = join(root, 'build', 'videollama3.dev.node');
if (existsSync(devBuild)) renameSync(devBuild, parked);
try {
  // 1. Baseline through prebuildify itself (it names, strips and places the file).
  run(process.execPath, [require.resolve('prebuildify/bin.js'), '--napi', '--strip', '--node-gyp', join(root, 'scripts', 'cmake-js-as-node-gyp.mjs')], {
    VL3_CPU_VARIANT: x64 ? 'sse42' : 'portable',
  });
  rmSync(join(root, 'build', 'Release'), { recursive: true, force: true });
  // 2. Faster x86-64 variants.
  const outDir = join(root, 'prebuilds', `${process.platform}-${process.arch}`, 'variants');
  mkdirSync(outDir, { recursive: true });
  for (const v of variants) {
    const tmp = join(root, 'build-cmake', `out-${v}`);
    run(process.execPath, [join(root, 'scripts', 'build-native.mjs'), '--variant', v, '--out', tmp]);
    const dest = join(outDir, `videollama3-node.${v}.node`);
    copyFileSync(join(tmp, 'videollama3.node'), dest);
    spawnSync('strip', ['--strip-unneeded', dest], { stdio: 'inherit' });
    process.stderr.write(`prebuildify: wrote ${dest}\n`);
  }
} finally {
  if (existsSync(parked)) {
    mkdirSync(dirname(devBuild), { recursive: true });
    renameSync(parked, devBuild);
  }
}
