#!/usr/bin/env node
// Installs the pinned peer tools the compatibility tests and benchmarks run side by side with
// ours, into .peers/ (git-ignored). Only node-llama-cpp's JS and its CPU binary for this
// platform are fetched: no postinstall, none of its CUDA/Vulkan packages (~650 MB).
// Usage: node scripts/peers.mjs  -> prints the folder holding node_modules/node-llama-cpp
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const PEERS = {
  'node-llama-cpp': '3.21.1',
};

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
export const peersDir = join(root, '.peers');

function platformPackage() {
  const os = { linux: 'linux', darwin: 'mac', win32: 'win' }[process.platform];
  const arch = process.arch === 'arm' ? 'armv7l' : process.arch;
  if (process.platform === 'darwin' && arch === 'arm64') return '@node-llama-cpp/mac-arm64-metal';
  return os ? `@node-llama-cpp/${os}-${arch}` : undefined;
}

/** Installs the peers once; returns the folder to resolve them from. */
export function ensurePeers() {
  const version = PEERS['node-llama-cpp'];
  const stamp = join(peersDir, 'STAMP');
  const want = `node-llama-cpp@${version} ${process.platform}-${process.arch}\n`;
  if (existsSync(stamp) && readFileSync(stamp, 'utf8') === want) return peersDir;
  mkdirSync(peersDir, { recursive: true });
  writeFileSync(join(peersDir, 'package.json'), '{ "name": "vl3-peers", "private": true }\n');
  const pkgs = [`node-llama-cpp@${version}`];
  const bin = platformPackage();
  if (bin) pkgs.push(`${bin}@${version}`);
  const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
  execFileSync(npm, ['install', '--no-save', '--no-package-lock', '--ignore-scripts', '--omit=optional', '--no-audit', '--no-fund', ...pkgs], {
    cwd: peersDir,
    stdio: ['ignore', 'ignore', 'inherit'],
    shell: process.platform === 'win32',
  });
  writeFileSync(stamp, want);
  return peersDir;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  process.stdout.write(`${ensurePeers()}\n`);
}
