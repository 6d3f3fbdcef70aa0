/** Facts about the loaded native addon: ggml version, CPU variant, compute devices. */
import { native, nativePath } from './binding';

/** What the loaded addon was built with and what it can run on. */
export interface SystemInfo {
  /** Pinned ggml source: carrier package, commit and ggml version. */
  ggml: string;
  /**
   * CPU build variant: `native` (tuned for the building machine), `portable` (the architecture's
   * baseline: arm64 prebuilds), or an x86-64 one: `sse42`, `avx2`, `avx512` or `amx`.
   */
  cpuVariant: string;
  /** CPU instruction sets compiled into this build. */
  cpuFeatures: string[];
  /** ggml compute devices found at load time. */
  devices: { name: string; description: string; type: 'cpu' | 'gpu' | 'other' }[];
  /** File the addon was loaded from. */
  addonPath: string;
}

/** Loads the addon (if not yet loaded) and describes it. */
export function systemInfo(): SystemInfo {
  const info = native().buildInfo;
  return { ...info, cpuFeatures: [...info.cpuFeatures], devices: [...info.devices], addonPath: nativePath() ?? '' };
}
