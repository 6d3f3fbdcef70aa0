#!/usr/bin/env node
// Builds the addon from source: pinned ggml (scripts/fetch-ggml.mjs) + native/ through cmake-js.
// Usage: node scripts/build-native.mjs [--variant native|portable|sse42|avx2|avx512|amx] [--cuda]
//          [--debug] [--out <dir>] [--build-dir <cmake build dir>] [-- <extra cmake-js args>]
// Env: VL3_CPU_VARIANT, VL3_CUDA=1, VL3_CMAKE_ARGS (space-separated, e.g. "--CDCMAKE_CUDA_ARCHITECTURES=80;90").
// Output: <out>/videollama3.node (default build/Release). cmake-js works in build-cmake/<variant>
// because `node-gyp rebuild` wipes build/, and a separate tree keeps rebuilds incremental.
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, renameSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { fetchGgml } from './fetch-ggml.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);

const args = process.argv.slice(2);
const extra = args.includes('--') ? args.splice(args.indexOf('--')).slice(1) : [];
const opt = (name) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const variant = opt('--variant') ?? process.env.VL3_CPU_VARIANT ?? 'native';
const cuda = args.includes('--cuda') || process.env.VL3_CUDA === '1';
const debug = args.includes('--debug');
const outDir = resolve(root, opt('--out') ?? join('build', debug ? 'Debug' : 'Release'));
const config = debug ? 'Debug' : 'Release';
const workDir = resolve(root, opt('--build-dir') ?? join('build-cmake', `${variant}${cuda ? '-cuda' : ''}${debug ? '-debug' : ''}`));

fetchGgml();

const cmakeJs = require.resolve('cmake-js/bin/cmake-js');
const cmakeArgs = [
  cmakeJs, 'build', '--directory', root, '--out', workDir, '--config', config,
  `--CDVL3_CPU_VARIANT=${variant}`, `--CDVL3_CUDA=${cuda ? 'ON' : 'OFF'}`,
  ...(process.env.VL3_CMAKE_ARGS ? process.env.VL3_CMAKE_ARGS.split(' ').filter(Boolean) : []),
  ...extra,
];
if (debug) cmakeArgs.push('--debug');
const env = { ...process.env };
env.CMAKE_BUILD_PARALLEL_LEVEL ??= String(Math.max(1, (await import('node:os')).availableParallelism()));
process.stderr.write(`build-native: cmake-js (${variant}${cuda ? ', cuda' : ''}, ${config}) in ${workDir}\n`);
const res = spawnSync(process.execPath, cmakeArgs, { stdio: 'inherit', env, cwd: root });
if (res.status !== 0) {
  process.stderr.write(
    'build-native: the native build failed. It needs cmake >= 3.18, a C++17 compiler, git and tar ' +
      '(see README "Building from source").\n',
  );
  process.exit(res.status ?? 1);
}
mkdirSync(outDir, { recursive: true });
// Copy then rename: overwriting the file in place would crash (SIGBUS) any running process that
// has the old addon loaded; a rename gives the new build a new inode and leaves the old one mapped.
const dest = join(outDir, 'videollama3.node');
copyFileSync(join(workDir, config, 'videollama3.node'), `${dest}.tmp`);
renameSync(`${dest}.tmp`, dest);
process.stderr.write(`build-native: wrote ${join(outDir, 'videollama3.node')}\n`);
