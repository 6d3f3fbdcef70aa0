// Loads xgrammar (the constrained-decoding engine of vLLM and SGLang), as compiled to WebAssembly
// by its authors: the npm package @mlc-ai/web-xgrammar. Internal module.
//
// The package is a UMD bundle that its package.json labels an ES module, and its Node branch
// uses `require` and `__filename`, so neither `require()` nor `import()` can load it in Node. It
// is evaluated here as the CommonJS script it is, with its own `console`: xgrammar reports a
// refused schema or grammar by printing "[FATAL] file:line: message" and aborting the WebAssembly
// instance, so what it prints is kept for the error message, and an aborted instance is replaced
// by a fresh one (an abort leaves its stack and heap in an unknown state).
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import vm from 'node:vm';
import type * as XG from '@mlc-ai/web-xgrammar';

export type Xgrammar = typeof XG;

/** One evaluated copy of xgrammar: its classes and what it printed lately. */
export interface XgrammarInstance {
  readonly xg: Xgrammar;
  /** Lines xgrammar printed (stderr and stdout), most recent last; at most 50 are kept; callers may empty it. */
  readonly printed: string[];
}

const PACKAGE = '@mlc-ai/web-xgrammar';
let source: { file: string; code: string } | undefined;

/** Evaluates a fresh copy of xgrammar (its WebAssembly instance starts on first use). */
export function loadXgrammar(): XgrammarInstance {
  if (!source) {
    const file = require.resolve(PACKAGE);
    // The only dynamic import of the bundle, for Node's createRequire: a plain require serves.
    const code = readFileSync(file, 'utf8').replace("await import('module')", "require('module')");
    source = { file, code };
  }
  const printed: string[] = [];
  const keep = (...args: unknown[]): void => {
    printed.push(args.map(String).join(' '));
    if (printed.length > 50) printed.splice(0, printed.length - 50);
  };
  const quiet = { log: keep, error: keep, warn: keep, info: keep, debug: keep };
  const fn = vm.compileFunction(source.code, ['exports', 'require', 'module', '__filename', '__dirname', 'console'], {
    filename: source.file,
  });
  const mod = { exports: {} as Record<string, unknown> };
  fn.call(mod.exports, mod.exports, createRequire(source.file), mod, source.file, dirname(source.file), quiet);
  return { xg: mod.exports as unknown as Xgrammar, printed };
}

/**
 * xgrammar's own words for a failure (printed since `printed` was last emptied): its last "[FATAL] file:line: message"
 * line without the location, else the error's message.
 */
export function xgrammarMessage(instance: XgrammarInstance, err: unknown): string {
  const lines = instance.printed;
  for (let i = lines.length - 1; i >= 0; i--) {
    const m = /^\[FATAL\][^:]*:\d+:\s*(.*)$/s.exec(lines[i]!);
    if (m) return m[1]!.trim();
  }
  return err instanceof Error ? err.message : String(err);
}
