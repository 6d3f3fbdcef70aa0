#!/usr/bin/env node
// Guards source installs on platforms we cannot build on here: the files the published tarball
// holds (`npm pack --dry-run`) are copied to a temporary folder, and CMake configures and generates
// the project there for each platform, as a cross build with this machine's gcc (configure only:
// nothing is compiled). CMake stops at generation when a source file that an enabled backend lists
// is missing, or when a backend left on by default (Metal, BLAS on Apple) has no sources shipped.
// What this cannot see: MSVC- and Apple-clang-specific branches (there is no cl.exe or Apple SDK
// here), and whether the code compiles there.
// Usage: node scripts/check-package-sources.mjs [--without <packed path>]...   (exit 1 on failure)
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

/** Platforms a source install must configure on, with the CMake switches that describe each. */
export const TARGETS = {
  'linux-x64': [],
  'linux-arm64': ['-DCMAKE_SYSTEM_NAME=Linux', '-DCMAKE_SYSTEM_PROCESSOR=aarch64', '-DVL3_CPU_VARIANT=portable'],
  // CMake's Darwin platform files want install_name_tool, which only matters when linking.
  'darwin-arm64': ['-DCMAKE_SYSTEM_NAME=Darwin', '-DCMAKE_SYSTEM_PROCESSOR=arm64', '-DCMAKE_INSTALL_NAME_TOOL=/bin/true'],
  'darwin-x64': ['-DCMAKE_SYSTEM_NAME=Darwin', '-DCMAKE_SYSTEM_PROCESSOR=x86_64', '-DCMAKE_INSTALL_NAME_TOOL=/bin/true'],
  'win32-x64': ['-DCMAKE_SYSTEM_NAME=Windows', '-DCMAKE_SYSTEM_PROCESSOR=AMD64'],
};

/** The files `npm pack` would publish, relative to the package root. */
export function packedFiles() {
  const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
  const out = execFileSync(npm, ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], shell: process.platform === 'win32' });
  return JSON.parse(out)[0].files.map((f) => f.path);
}

/**
 * Configures the project made of `files` (copied from the checkout) for every target; returns the
 * targets that failed, each with the lines of CMake's error.
 */
export function checkPackageSources(files, targets = Object.keys(TARGETS)) {
  const dir = mkdtempSync(join(tmpdir(), 'vl3-package-sources-'));
  try {
    const src = join(dir, 'package');
    for (const f of files) {
      mkdirSync(dirname(join(src, f)), { recursive: true });
      copyFileSync(join(root, f), join(src, f));
    }
    const failures = [];
    for (const t of targets) {
      const args = [
        '-S', src, '-B', join(dir, `cfg-${t}`), '-DVL3_BUILD_ADDON=OFF', '-DCMAKE_TRY_COMPILE_TARGET_TYPE=STATIC_LIBRARY',
        '-DCMAKE_C_COMPILER=gcc', '-DCMAKE_CXX_COMPILER=g++', ...TARGETS[t],
      ];
      const res = spawnSync('cmake', args, { encoding: 'utf8' });
      if (res.status !== 0) {
        const log = `${res.stdout}\n${res.stderr}`.split('\n');
        const i = log.findIndex((l) => l.includes('CMake Error'));
        failures.push({ target: t, error: (i >= 0 ? log.slice(i, i + 6) : log.slice(-6)).join('\n').trim() });
      }
    }
    return failures;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const without = process.argv.flatMap((a, i, all) => (all[i - 1] === '--without' ? [a] : []));
  const files = packedFiles().filter((f) => !without.includes(f));
  const failures = checkPackageSources(files);
  for (const f of failures) process.stderr.write(`check-package-sources: ${f.target}: the packed sources do not configure\n${f.error}\n\n`);
  if (failures.length > 0) process.exit(1);
  process.stdout.write(`check-package-sources: ${files.length} packed files configure for ${Object.keys(TARGETS).join(', ')}\n`);
}
