// The published tarball: `npm pack`, then `npm install <tarball>` into an empty project loads
// the prebuilt binary without compiling, through both require() and import.
// Slow (it builds the baseline prebuild, ~1.5 CPU-minutes): runs when CI=true or VL3_PACK_TEST=1.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const root = join(__dirname, '..');
const enabled = process.env.CI === 'true' || process.env.VL3_PACK_TEST === '1';
const work = mkdtempSync(join(tmpdir(), 'vl3-pack-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

function sh(cmd: string, args: string[], cwd: string, env: NodeJS.ProcessEnv = {}): string {
  return execFileSync(cmd, args, { cwd, env: { ...process.env, ...env }, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

describe.skipIf(!enabled || process.platform !== 'linux' || process.arch !== 'x64')('npm package', () => {
  it('installs from the tarball and loads the prebuilt binary with require and import', () => {
    const prebuilt = join(root, 'prebuilds', 'linux-x64', 'videollama3-node.node');
    if (!existsSync(prebuilt)) sh(process.execPath, ['scripts/prebuildify.mjs', '--variants', ''], root);
    const tarball = sh('npm', ['pack', '--json', '--pack-destination', work], root);
    const file = join(work, (JSON.parse(tarball) as { filename: string }[])[0]!.filename);
    const app = join(work, 'app');
    sh('mkdir', ['-p', app], work);
    writeFileSync(join(app, 'package.json'), '{ "name": "app", "private": true }');
    // No compiler may be needed: make one unusable for this install.
    const log = sh('npm', ['install', '--no-audit', '--no-fund', '--foreground-scripts', file], app, { CXX: '/bin/false', CC: '/bin/false' });
    expect(log).not.toMatch(/cmake-js|build-native/);
    const pkg = join(app, 'node_modules', 'videollama3-node');
    expect(existsSync(join(pkg, 'build'))).toBe(false);
    expect(readdirSync(join(pkg, 'deps', 'ggml'))).toContain('LICENSE');
    const cjs = sh(process.execPath, ['-e', "const v=require('videollama3-node');console.log(JSON.stringify(v.systemInfo()))"], app);
    const info = JSON.parse(cjs) as { addonPath: string; cpuVariant: string };
    expect(info.addonPath).toContain(join('node_modules', 'videollama3-node', 'prebuilds', 'linux-x64'));
    const esm = sh(process.execPath, ['--input-type=module', '-e', "import { systemInfo, convertModel } from 'videollama3-node'; console.log(typeof convertModel, systemInfo().cpuVariant)"], app);
    expect(esm.trim()).toMatch(/^function (sse42|avx2|avx512|amx)$/);
    const help = sh(join(app, 'node_modules', '.bin', 'videollama3'), ['--help'], app);
    expect(help).toContain('convert <hf-dir> <out-dir>');
  }, 900_000);
});
