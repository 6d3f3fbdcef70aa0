#!/usr/bin/env node
// Stands in for node-gyp when prebuildify calls `<node-gyp> rebuild --release ...`: builds the
// addon with cmake-js into build/Release, where prebuildify picks it up. The CPU variant comes
// from VL3_CPU_VARIANT (scripts/prebuildify.mjs sets it).
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
if (!args.includes('rebuild') && !args.includes('build')) {
  process.stderr.write(`cmake-js-as-node-gyp: nothing to do for '${args.join(' ')}'\n`);
  process.exit(0);
}
const res = spawnSync(process.execPath, [join(root, 'scripts', 'build-native.mjs'), '--out', join(root, 'build', 'Release')], {
  stdio: 'inherit',
  cwd: root,
});
process.exit(res.status ?? 1);
