#!/usr/bin/env node
// Builds the addon from source: pinned ggml (scripts/fetch-ggml.mjs) + native/ through cmake-js.
// Usage: node scripts/build-native.mjs [--variant native|portable|sse42|avx2|avx512|amx] [--cuda]
//          [--cuda-arch <list>] [--debug] [--out <dir>] [--build-dir <cmake build dir>] [-- <extra cmake-js args>]
// Env: VL3_CPU_VARIANT, VL3_CUDA=1, VL3_CUDA_ARCHS (e.g. "80;86;89;90"), CUBLAS_ROOT, VL3_CMAKE_ARGS
// (space-separated extra cmake-js arguments).
// CUDA builds need nvcc (CUDA 12/13 toolkit) and cuBLAS: CUBLAS_ROOT, else the toolkit's own, else
// the pip wheel `nvidia-cublas` installed into .cuda-deps/ (python3 -m pip, once). GPU architectures:
// --cuda-arch, else the GPU of this machine (nvidia-smi), else sm_80/86/89/90 (the prebuild set).
// Output: <out>/videollama3.node (default build/Release). cmake-js works in build-cmake/<variant>
// because `node-gyp rebuild` wipes build/, and a separate tree keeps rebuilds incremental.
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, realpathSync, renameSync } from 'node:fs';
import { createRequire } from 'node:module';
import { delimiter, dirname, join, resolve } from 'node:path';
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
const cudaArgs = cuda ? cudaCmakeArgs() : [];
const outDir = resolve(root, opt('--out') ?? join('build', debug ? 'Debug' : 'Release'));
const config = debug ? 'Debug' : 'Release';
const workDir = resolve(root, opt('--build-dir') ?? join('build-cmake', `${variant}${cuda ? '-cuda' : ''}${debug ? '-debug' : ''}`));

fetchGgml();

/** cmake-js arguments of a CUDA build: architectures and where cuBLAS is. */
function cudaCmakeArgs() {
  const defaultNvcc = process.platform === 'win32'
    ? (process.env.CUDA_PATH ? [join(process.env.CUDA_PATH, 'bin', 'nvcc.exe')] : [])
    : ['/usr/local/cuda/bin/nvcc'];
  const nvcc = process.env.CUDACXX ?? findOnPath('nvcc') ?? defaultNvcc.find((p) => existsSync(p));
  if (!nvcc) fail('--cuda needs nvcc from the CUDA toolkit (12 or 13) on PATH or in CUDACXX');
  const toolkit = resolve(dirname(realpathSync(nvcc)), '..');
  let cublas = process.env.CUBLAS_ROOT;
  if (!cublas && !existsSync(join(toolkit, 'include', 'cublas_v2.h'))) {
    // The pip wheel's layout (lib/libcublas.so.13) is what CMakeLists.txt knows: Linux only.
    if (process.platform !== 'linux') fail(`the CUDA toolkit at ${toolkit} has no cuBLAS; install it or set CUBLAS_ROOT`);
    const deps = join(root, '.cuda-deps');
    const wheel = join(deps, 'nvidia', 'cu13');
    if (!existsSync(join(wheel, 'include', 'cublas_v2.h'))) {
      process.stderr.write('build-native: the CUDA toolkit has no cuBLAS; installing the pip wheel nvidia-cublas into .cuda-deps/\n');
      const pip = spawnSync('python3', ['-m', 'pip', 'install', '--no-deps', '--target', deps, 'nvidia-cublas'], { stdio: 'inherit' });
      if (pip.status !== 0) fail('could not install nvidia-cublas with pip; install cuBLAS and set CUBLAS_ROOT');
    }
    cublas = wheel;
  }
  let archs = opt('--cuda-arch') ?? process.env.VL3_CUDA_ARCHS;
  if (!archs) {
    const smi = spawnSync('nvidia-smi', ['--query-gpu=compute_cap', '--format=csv,noheader'], { encoding: 'utf8' });
    const caps = smi.status === 0 ? [...new Set(smi.stdout.trim().split(/\s+/).filter(Boolean).map((c) => c.replace('.', '')))] : [];
    archs = caps.length > 0 ? caps.join(';') : '80-real;86-real;89-real;90';
  }
  process.stderr.write(`build-native: CUDA architectures ${archs}${cublas ? `, cuBLAS from ${cublas}` : ''}\n`);
  return [`--CDCMAKE_CUDA_ARCHITECTURES=${archs}`, `--CDCMAKE_CUDA_COMPILER=${nvcc}`, ...(cublas ? [`--CDCUBLAS_ROOT=${cublas}`] : [])];
}

/** The first `name` on PATH (`;`-separated on Windows, where it also tries PATHEXT: nvcc.exe). */
function findOnPath(name) {
  const exts = process.platform === 'win32' ? ['', ...(process.env.PATHEXT ?? '.EXE;.CMD;.BAT').split(';').filter(Boolean)] : [''];
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (!dir) continue;
    for (const ext of exts) {
      const file = join(dir.replace(/^"(.*)"$/, '$1'), name + ext);
      if (existsSync(file)) return file;
    }
  }
  return undefined;
}

function fail(message) {
  process.stderr.write(`build-native: ${message}\n`);
  process.exit(1);
}

const cmakeJs = require.resolve('cmake-js/bin/cmake-js');
const cmakeArgs = [
  cmakeJs, 'build', '--directory', root, '--out', workDir, '--config', config,
  `--CDVL3_CPU_VARIANT=${variant}`, `--CDVL3_CUDA=${cuda ? 'ON' : 'OFF'}`, ...cudaArgs,
  ...(process.env.VL3_CMAKE_ARGS ? process.env.VL3_CMAKE_ARGS.split(' ').filter(Boolean) : []),
  ...extra,
];
if (debug) cmakeArgs.push('--debug');
const env = { ...process.env };
env.CMAKE_BUILD_PARALLEL_LEVEL ??= String(Math.max(1, (await import('node:os')).availableParallelism()));
process.stderr.write(`build-native: cmake-js (${variant}${cuda ? ', cuda' : ''}, ${config}) in ${workDir}\n`);
const res = spawnSync(process.execPath, cmakeArgs, { stdio: 'inherit', env, cwd: root });
if (res.status !== 0) {
  const compiler = { win32: 'Visual Studio 2022 (or its Build Tools) with the C++ workload', darwin: 'the Xcode command line tools (clang)' }[process.platform] ?? 'a C++17 compiler';
  process.stderr.write(
    `build-native: the native build failed. It needs cmake >= 3.18, ${compiler}, git and tar ` +
      '(see README "Building from source").\n',
  );
  process.exit(res.status ?? 1);
}
mkdirSync(outDir, { recursive: true });
// Copy then rename: overwriting the file in place would crash (SIGBUS) any running process that
// has the old addon loaded; a rename gives the new build a new inode and leaves the old one mapped.
const dest = join(outDir, 'videollama3.node');
// cmake-js puts the addon in <workDir>/<config>: through CMAKE_LIBRARY_OUTPUT_DIRECTORY on Linux and
// macOS, through the Visual Studio generator's per-config folder on Windows (a single-config
// generator such as Ninja there leaves it in <workDir> itself).
const built = [join(workDir, config, 'videollama3.node'), join(workDir, 'videollama3.node')].find((p) => existsSync(p));
if (!built) fail(`the build left no videollama3.node in ${join(workDir, config)}`);
copyFileSync(built, `${dest}.tmp`);
try {
  renameSync(`${dest}.tmp`, dest);
} catch (err) {
  // Windows will not replace a DLL that a process has loaded, but lets it be renamed aside.
  if (process.platform !== 'win32' || !existsSync(dest)) throw err;
  renameSync(dest, `${dest}.${Date.now()}.old`);
  renameSync(`${dest}.tmp`, dest);
}
process.stderr.write(`build-native: wrote ${join(outDir, 'videollama3.node')}\n`);
