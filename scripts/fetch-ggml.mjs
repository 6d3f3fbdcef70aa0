#!/usr/bin/env node
// Fetches the pinned ggml source into deps/ggml (git-ignored), verified end to end:
// npm tarball sha512 -> git bundle -> pinned commit -> `git archive ggml LICENSE`.
// ggml is compiled from this source into the addon; none of it is committed here.
// Re-running is a no-op once deps/ggml/STAMP matches the pin.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
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

export function fetchGgml({ quiet = false } = {}) {
  if (existsSync(stampFile) && readFileSync(stampFile, 'utf8') === stamp) return dest;
  const log = quiet ? () => {} : (m) => process.stderr.write(`fetch-ggml: ${m}\n`);
  const work = mkdtempSync(join(tmpdir(), 'vl3-ggml-'));
  try {
    log(`npm pack ${GGML_PIN.carrier}`);
    const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
    const packed = JSON.parse(String(run(npm, ['pack', GGML_PIN.carrier, '--json', '--pack-destination', work], { shell: process.platform === 'win32' })));
    const tarball = join(work, packed[0].filename);
    const digest = 'sha512-' + createHash('sha512').update(readFileSync(tarball)).digest('base64');
    if (digest !== GGML_PIN.integrity) {
      throw new Error(`fetch-ggml: ${GGML_PIN.carrier} tarball integrity mismatch (got ${digest}); refusing to build from it`);
    }
    run('tar', ['-xzf', tarball, '-C', work, 'package/llama/gitRelease.bundle']);
    const bare = join(work, 'llama.git');
    run('git', ['clone', '--quiet', '--bare', join(work, 'package/llama/gitRelease.bundle'), bare]);
    const head = String(run('git', ['--git-dir', bare, 'rev-parse', 'HEAD'])).trim();
    if (head !== GGML_PIN.commit) throw new Error(`fetch-ggml: bundle HEAD is ${head}, expected ${GGML_PIN.commit}`);
    const staging = join(work, 'ggml');
    mkdirSync(staging);
    const archive = join(work, 'ggml.tar');
    run('git', ['--git-dir', bare, 'archive', '--format=tar', '-o', archive, GGML_PIN.commit, 'ggml', 'LICENSE']);
    run('tar', ['-xf', archive, '-C', staging]);
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
