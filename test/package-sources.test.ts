// The published tarball configures on every platform a source install may run on
// (scripts/check-package-sources.mjs: CMake configure + generate of the packed files, per platform).
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';

const ROOT = join(__dirname, '..');
type Guard = {
  packedFiles(): string[];
  checkPackageSources(files: string[], targets?: string[]): { target: string; error: string }[];
  TARGETS: Record<string, string[]>;
};
let guard: Guard;
let files: string[];

describe.skipIf(!existsSync(join(ROOT, 'deps', 'ggml', 'ggml', 'CMakeLists.txt')))('packed sources configure on every platform', () => {
  beforeAll(async () => {
    guard = (await import(join(ROOT, 'scripts', 'check-package-sources.mjs'))) as Guard;
    files = guard.packedFiles();
  });

  it('linux x64/arm64, macOS arm64/x64 and Windows x64 configure from the tarball alone', () => {
    expect(Object.keys(guard.TARGETS)).toEqual(['linux-x64', 'linux-arm64', 'darwin-arm64', 'darwin-x64', 'win32-x64']);
    expect(guard.checkPackageSources(files)).toEqual([]);
  });

  it('fails, naming the file, when an enabled backend source is left out of the tarball', () => {
    const arm = 'deps/ggml/ggml/src/ggml-cpu/arch/arm/quants.c';
    const x86 = 'deps/ggml/ggml/src/ggml-cpu/arch/x86/quants.c';
    expect(files).toContain(arm);
    expect(files).toContain(x86);
    const noArm = guard.checkPackageSources(files.filter((f) => f !== arm), ['darwin-arm64', 'linux-arm64', 'darwin-x64']);
    expect(noArm.map((f) => f.target)).toEqual(['darwin-arm64', 'linux-arm64']);
    expect(noArm[0]!.error).toContain('ggml-cpu/arch/arm/quants.c');
    const noX86 = guard.checkPackageSources(files.filter((f) => f !== x86), ['win32-x64', 'darwin-arm64']);
    expect(noX86.map((f) => f.target)).toEqual(['win32-x64']);
  });
});
