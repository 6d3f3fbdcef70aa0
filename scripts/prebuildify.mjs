#!/usr/bin/env node
// Makes the prebuilt binaries shipped in the npm package (N-API 8, stripped):
//   prebuilds/<platform>-<arch>/videollama3-node.node      portable baseline, found by node-gyp-build
//                                                          (x86-64: SSE4.2 only, runs on any 64-bit x86)
//   prebuilds/linux-x64/variants/videollama3-node.<v>.node  avx2, avx512, amx: picked at load time
//                                                          from the CPU's flags (lib/binding.ts)
//   prebuilds/linux-arm64/videollama3-node.node             armv8-a (NEON), any 64-bit Arm
//   prebuilds/linux-arm64/variants/videollama3-node.dotprod.node  armv8.2-a + dot product (Cortex-A55/
//                                                          A76 and later, Graviton 2+, Ampere), picked
//                                                          from the CPU's hwcaps
// Usage: node scripts/prebuildify.mjs [--variants avx2,avx512,amx]
//        node scripts/prebuildify.mjs --arch arm64   (cross-compiled on linux-x64 with Debian's
//                                                    g++-aarch64-linux-gnu; scripts/toolchains/)
// A developer build in build/Release wins over prebuilds at load time; it is moved aside
// while this runs and restored afterwards.
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);
const archIdx = process.argv.indexOf('--arch');
const targetArch = archIdx > 0 ? process.argv[archIdx + 1] : process.arch;
if (targetArch !== process.arch) {
  crossArm64();
  process.exit(0);
}
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

/**
 * linux-arm64 prebuilds from a linux-x64 machine: ggml's NEON kernels, armv8-a baseline and an
 * armv8.2-a+dotprod variant (ggml's int8 dot products). Each goes through build-native.mjs with
 * the cross toolchain file, in its own build tree (incremental reruns).
 */
function crossArm64() {
  if (targetArch !== 'arm64' || process.platform !== 'linux' || process.arch !== 'x64') {
    process.stderr.write(`prebuildify: cross-compiling is set up for linux-x64 -> linux-arm64 only (asked: ${process.arch} -> ${targetArch})\n`);
    process.exit(1);
  }
  const toolchain = join(root, 'scripts', 'toolchains', 'linux-arm64.cmake');
  const dir = join(root, 'prebuilds', 'linux-arm64');
  const builds = [
    { name: 'baseline', march: 'armv8-a', dest: join(dir, 'videollama3-node.node') },
    { name: 'dotprod', march: 'armv8.2-a+dotprod', dest: join(dir, 'variants', 'videollama3-node.dotprod.node') },
  ];
  for (const b of builds) {
    const tmp = join(root, 'build-cmake', `linux-arm64-${b.name}-out`);
    run(process.execPath, [join(root, 'scripts', 'build-native.mjs'), '--variant', 'portable', '--build-dir', join('build-cmake', `linux-arm64-${b.name}`), '--out', tmp], {
      VL3_CMAKE_ARGS: `--CDCMAKE_TOOLCHAIN_FILE=${toolchain} --CDGGML_CPU_ARM_ARCH=${b.march}`,
    });
    mkdirSync(dirname(b.dest), { recursive: true });
    copyFileSync(join(tmp, 'videollama3.node'), b.dest);
    spawnSync('aarch64-linux-gnu-strip', ['--strip-unneeded', b.dest], { stdio: 'inherit' });
    process.stderr.write(`prebuildify: wrote ${b.dest}\n`);
  }
}

const devBuild = join(root, 'build', 'Release', 'videollama3.node');
const parked = join(root, 'build', 'videollama3.dev.node');
if (existsSync(devBuild)) renameSync(devBuild, parked);
try {
  // 1. Baseline through prebuildify itself (it names, strips and places the file).
  // prebuildify spawns --node-gyp itself: a script that is executable through its #! line, but on
  // Windows (through cmd.exe) only with node named in front of it.
  const nodeGyp = join(root, 'scripts', 'cmake-js-as-node-gyp.mjs');
  const nodeGypCommand = process.platform === 'win32' ? `"${process.execPath}" "${nodeGyp}"` : nodeGyp;
  run(process.execPath, [require.resolve('prebuildify/bin.js'), '--napi', '--strip', '--node-gyp', nodeGypCommand], {
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
