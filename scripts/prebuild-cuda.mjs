#!/usr/bin/env node
// Makes the CUDA prebuild as its own npm package, `videollama3-node-linux-x64-cuda` (node-gyp-build
// has no CUDA tag, and the binary is far too large to ship to everyone):
//   prebuilds/linux-x64-cuda/package.json
//   prebuilds/linux-x64-cuda/videollama3-node.node   ggml-cuda for sm_80/86/89 (+ sm_90 and PTX),
//                                                    CPU side AVX2, stripped
// `npm pack prebuilds/linux-x64-cuda` gives the tarball; users add it next to videollama3-node and
// lib/binding.ts loads it first (unless VL3_CUDA=0), falling back to the CPU prebuilds when it
// cannot load (no CUDA 13 runtime / cuBLAS 13 on the library path). A CUDA build also runs on the
// CPU when there is no GPU.
// Usage: node scripts/prebuild-cuda.mjs [--cuda-arch "80-real;86-real;89-real;90"] [--from <videollama3.node>]
//   --from packages an existing CUDA build instead of building (a 4-architecture build is about
//   4 CPU-hours: run it on a big builder, never in CI).
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
if (process.platform !== 'linux' || process.arch !== 'x64') {
  // The package, its name and `strip` are linux-x64 ones; elsewhere build with `npm run build:cuda`.
  process.stderr.write(`prebuild-cuda: the CUDA prebuild is made on linux-x64 only (this is ${process.platform}-${process.arch})\n`);
  process.exit(1);
}
const args = process.argv.slice(2);
const opt = (name) => (args.includes(name) ? args[args.indexOf(name) + 1] : undefined);
const archs = opt('--cuda-arch') ?? '80-real;86-real;89-real;90';
let built = opt('--from') ? resolve(opt('--from')) : undefined;
if (!built) {
  const out = join(root, 'build-cmake', 'out-cuda');
  const res = spawnSync(process.execPath, [join(root, 'scripts', 'build-native.mjs'), '--cuda', '--cuda-arch', archs,
    '--variant', 'avx2', '--build-dir', join(root, 'build-cmake', 'cuda-prebuild'), '--out', out], { stdio: 'inherit' });
  if (res.status !== 0) process.exit(res.status ?? 1);
  built = join(out, 'videollama3.node');
}
const pkgDir = join(root, 'prebuilds', 'linux-x64-cuda');
mkdirSync(pkgDir, { recursive: true });
const dest = join(pkgDir, 'videollama3-node.node');
copyFileSync(built, dest);
spawnSync('strip', ['--strip-unneeded', dest], { stdio: 'inherit' });
const version = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).version;
writeFileSync(join(pkgDir, 'package.json'), `${JSON.stringify({
  name: 'videollama3-node-linux-x64-cuda',
  version,
  description: 'CUDA build of the videollama3-node addon (Linux x64; needs the CUDA 13 runtime and cuBLAS 13 on the library path)',
  license: 'MIT',
  os: ['linux'],
  cpu: ['x64'],
  main: 'videollama3-node.node',
  files: ['videollama3-node.node'],
  videollama3: { cudaArchitectures: archs },
}, null, 2)}\n`);
process.stderr.write(`prebuild-cuda: wrote ${dest} (${(statSync(dest).size / 1e6).toFixed(1)} MB) and ${join(pkgDir, 'package.json')}\n`);
