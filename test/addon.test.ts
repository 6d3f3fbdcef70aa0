// The native addon loads, reports how it was built, and exports the one GGUF name table.
import { describe, expect, it, vi } from 'vitest';
import { chooseVariant, native, pickCpuVariant } from '../lib/binding';
import { systemInfo } from '../lib/index';

describe('native addon', () => {
  it('reports the pinned ggml and a CPU device', () => {
    const info = systemInfo();
    expect(info.ggml).toBe('node-llama-cpp@3.21.1 80fb11ac73e66d89eae2c6a91d8a77428fa733ed ggml 0.23.0');
    expect(['native', 'sse42', 'avx2', 'avx512', 'amx']).toContain(info.cpuVariant);
    expect(info.devices.some((d) => d.type === 'cpu')).toBe(true);
    expect(info.addonPath).toMatch(/\.node$/);
  });

  it('exports the tensor table with both layouts and every key the converter uses', () => {
    const { tensors, keys } = native().names;
    expect(new Set(tensors.map((t) => t.gguf)).size).toBe(tensors.length);
    for (const t of tensors) {
      expect(t.hfOrig, t.gguf).toBe(
        t.hfNative
          .replace(/^model\.vision_model\./, 'model.vision_encoder.')
          .replace(/^model\.projector\./, 'model.mm_projector.')
          .replace(/^model\.language_model\./, 'model.'),
      );
    }
    for (const id of ['architecture', 'tokTokens', 'chatTemplate', 'visionPatchSize', 'videoPruneThreshold', 'imageTokenId']) {
      expect(keys[id], id).toMatch(/^[a-z0-9_.]+$/);
    }
  });

  it('picks the best prebuilt CPU variant from the processor flags', () => {
    const base = ['sse4_2', 'avx', 'avx2', 'fma', 'f16c', 'bmi2'];
    const avx512 = [...base, 'avx512f', 'avx512bw', 'avx512dq', 'avx512vl', 'avx512cd', 'avx512vbmi', 'avx512_vnni'];
    expect(pickCpuVariant(new Set(['sse4_2']))).toBeUndefined();
    expect(pickCpuVariant(new Set(base))).toBe('avx2');
    expect(pickCpuVariant(new Set(avx512))).toBe('avx512');
    expect(pickCpuVariant(new Set([...avx512, 'avx512_bf16', 'avx_vnni', 'amx_tile', 'amx_int8', 'amx_bf16']))).toBe('amx');
  });

  it('never honours a forced variant the CPU cannot run (that would be SIGILL)', () => {
    const base = new Set(['sse4_2', 'avx', 'avx2', 'fma', 'f16c', 'bmi2']);
    const warn = vi.spyOn(process, 'emitWarning').mockImplementation(() => undefined);
    try {
      expect(chooseVariant('amx', base)).toBe('avx2');
      expect(chooseVariant('avx2', base)).toBe('avx2');
      expect(chooseVariant('baseline', base)).toBeUndefined();
      expect(chooseVariant('bogus', base)).toBe('avx2');
      expect(warn.mock.calls.map((c) => String(c[0]))).toEqual([
        expect.stringContaining('VL3_CPU_VARIANT=amx needs CPU features this processor lacks'),
        expect.stringContaining('VL3_CPU_VARIANT=bogus is not one of'),
      ]);
    } finally {
      warn.mockRestore();
    }
  });

  it('rejects wrong argument types with a coded error instead of crashing', async () => {
    const b = native();
    expect(() => b.writeGguf(1 as never, [], [])).toThrow(/expects a string and two arrays/);
    expect(() => b.readGguf(undefined as never)).toThrow(/file path/);
    expect(() =>
      b.writeGguf('/tmp/x.gguf', [{ key: 'k', type: 'nope' as never, value: 1 }], []),
    ).toThrow(/Unknown metadata type/);
    expect(() =>
      b.writeGguf('/tmp/x.gguf', [], [{ name: 't', shape: [3], type: 'q4_K', file: '/nonexistent', offset: 0, byteLength: 12, dtype: 'F32' }]).promise.catch(() => {}),
    ).not.toThrow();
    await expect(
      b.writeGguf('/tmp/x.gguf', [], [{ name: 't', shape: [3], type: 'q4_K', file: '/nonexistent', offset: 0, byteLength: 12, dtype: 'F32' }]).promise,
    ).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  });
});
