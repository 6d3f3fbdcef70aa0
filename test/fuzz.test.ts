// Fuzz suite (reliability): hostile model files, checkpoints, non-regular files, stalled frame
// sources, worker terminations and out-of-range options. Each case must end in success or a typed
// error (a VideoLlama3Error with a known code, or exactly the abort signal's reason), settle within
// a bound, and never kill the process.
//
// The cases run in child processes (test/helpers/fuzz-child.cjs, on the compiled dist/), so that a
// native crash shows as the child's death by a signal instead of taking vitest down. The parent
// makes every mutated file up front from a seeded PRNG and hands the child a plan (JSON); the
// child prints one line per case. A child that dies is restarted after the case that killed it,
// so one crash does not hide the cases after it.
//
//   VL3_FUZZ_SEED=<n>   another seed (the seed is printed with every failure)
//   VL3_FUZZ_SOAK=<n>   n times as many random cases (a longer soak; default 1, ~30 s in all)
//   VL3_FUZZ_LOG=<file> appends every case's result to <file>, one JSON line each
import { execFileSync, spawn } from 'node:child_process';
import {
  appendFileSync, closeSync, constants, copyFileSync, existsSync, linkSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync,
  rmSync, symlinkSync, writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { convertModel } from '../lib/index';
import { makeTinyCheckpoint } from './helpers/checkpoint';
import { GGUF_TYPE, ggufLayout, setNumber } from './helpers/gguf';

const DIST = join(__dirname, '..', 'dist', 'index.js');
const HAVE_DIST = existsSync(DIST);
const CHILD = join(__dirname, 'helpers', 'fuzz-child.cjs');
const IMAGE = join(__dirname, 'fixtures', 'images', 'chelsea_palette_226x150.png');

/** A non-negative integer from the environment, or `fallback`. */
function envInt(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isSafeInteger(n) || n < 0) throw new Error(`${name} must be a non-negative integer, got ${raw}`);
  return n;
}
const SEED = envInt('VL3_FUZZ_SEED', 0x5eed_f022) >>> 0;
const SOAK = Math.max(1, envInt('VL3_FUZZ_SOAK', 1));
/** Default bound for one case (the child abandons it and reports 'unsettled'). */
const CASE_TIMEOUT_MS = 10_000;
/**
 * Address-space limit of a child: a hostile value that makes the library allocate tens of GB then
 * fails there (as a typed OUT_OF_MEMORY, or a crash the suite reports) instead of pushing the
 * shared machine out of memory.
 */
const CHILD_MEMORY_KB = 6 * 1024 * 1024;
/** Children restarted at most this often per category (each restart skips the case that killed it). */
const MAX_RESTARTS = 12;

// ---------------------------------------------------------------------------------------------
// Seeded randomness

/** mulberry32: small, fast, and the same sequence for the same seed everywhere. */
class Rng {
  #s: number;
  constructor(seed: number) {
    this.#s = seed >>> 0;
  }
  next(): number {
    this.#s = (this.#s + 0x6d2b79f5) >>> 0;
    let t = this.#s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  /** An integer in [lo, hi]. */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(0, xs.length - 1)]!;
  }
  /** `k` elements in random order, distinct while `k` <= xs.length. */
  sample<T>(xs: readonly T[], k: number): T[] {
    const out: T[] = [];
    while (out.length < k) {
      const pool = [...xs];
      for (let i = pool.length - 1; i > 0; i--) {
        const j = this.int(0, i);
        [pool[i], pool[j]] = [pool[j]!, pool[i]!];
      }
      out.push(...pool.slice(0, k - out.length));
    }
    return out;
  }
}

/** Each category draws from its own stream, so adding cases to one leaves the others unchanged. */
function rngFor(category: string): Rng {
  let h = 0x811c9dc5;
  for (const ch of category) h = Math.imul(h ^ ch.charCodeAt(0), 0x01000193);
  return new Rng(SEED ^ h);
}

// ---------------------------------------------------------------------------------------------
// Plans: what the child runs. Values JSON cannot hold travel as markers (see fuzz-child.cjs).

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
const M = {
  NaN: { $fz: 'NaN' },
  Inf: { $fz: 'Inf' },
  NegInf: { $fz: '-Inf' },
  NegZero: { $fz: '-0' },
  undefined: { $fz: 'undefined' },
  image: { $fz: 'image' },
  fn: { $fz: 'fn' },
  fresh: { $fz: 'fresh' },
  fakeSignal: { $fz: 'fakeSignal' },
  signal: { $fz: 'signal' },
  abortedSignal: { $fz: 'abortedSignal' },
  frames: (n: number, w: number, h: number): Json => ({ $fz: 'frames', n, w, h }),
  bytes: (n: number): Json => ({ $fz: 'bytes', n }),
} as const;

type Api =
  | 'loadModel' | 'complete' | 'generate' | 'encode' | 'estimate' | 'tokenize' | 'detokenize' | 'convertModel'
  | 'benchmarkMatmul' | 'readGgufInfo' | 'readGgufTensor' | 'dispose';

type FuzzCase = { name: string; timeoutMs?: number } & (
  | { op: 'load'; dir: string }
  | { op: 'convert'; input: string }
  | { op: 'call'; api: Api; args: Json[] }
  | { op: 'stall'; api: string; good: number; abortMs: number; ret: string }
  | { op: 'worker'; job: string; killMs: number; exitMs?: number }
  | { op: 'serve' }
  | { op: 'selftest'; what: 'typed' | 'untyped' | 'hang' | 'unhandled' | 'crash' | 'block' | 'ok' }
);

type Outcome = 'ok' | 'typed' | 'untyped' | 'unsettled' | 'crashed';
interface CaseResult {
  i: number;
  case: string;
  outcome: Outcome;
  code?: string;
  stage?: string;
  name?: string;
  message?: string;
  stack?: string;
  ms?: number;
}

/** JSON.stringify silently turns NaN and Infinity into null: refuse them (use the markers). */
function planJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) => {
    if (typeof v === 'number' && !Number.isFinite(v)) throw new Error(`fuzz plan holds ${v}; use a marker`);
    return v;
  });
}

// ---------------------------------------------------------------------------------------------
// Fixtures

/**
 * Folders of this run, made by beforeAll (so that a run filtering out every test leaves nothing
 * behind): the work folder, the tiny checkpoint, the same in two shards (with
 * model.safetensors.index.json), and the model converted from it.
 */
const dirs = { work: '', hf: '', hfSharded: '', model: '' };
const base = { llm: Buffer.alloc(0), vision: Buffer.alloc(0), safetensors: Buffer.alloc(0) };
/** Every FIFO made, so leftover readers can be let go at the end. */
const allFifos: string[] = [];

function linkOrCopy(src: string, dst: string): void {
  try {
    linkSync(src, dst);
  } catch {
    copyFileSync(src, dst);
  }
}

/** A model folder holding `bytes` as `file`.gguf and the good other file. */
function modelVariant(dir: string, file: 'llm' | 'vision', bytes: Buffer): string {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, `${file}.gguf`), bytes);
  const other = file === 'llm' ? 'vision' : 'llm';
  linkOrCopy(join(dirs.model, `${other}.gguf`), join(dir, `${other}.gguf`));
  return dir;
}

/**
 * A checkpoint folder like `from` whose files named in `leaveOut` are missing (the caller makes
 * them) and those in `write` have the given contents.
 */
function checkpointVariant(dir: string, leaveOut: string[], write?: Record<string, Buffer>, from = dirs.hf): string {
  mkdirSync(dir, { recursive: true });
  for (const f of readdirSync(from)) {
    if (leaveOut.includes(f)) continue;
    if (write?.[f]) writeFileSync(join(dir, f), write[f]);
    else linkOrCopy(join(from, f), join(dir, f)); // never written to: a hard link is a safe copy
  }
  return dir;
}

/** Lets every reader blocked opening one of `fifos` go (a writer comes and goes at once). */
function unblockFifos(fifos: readonly string[]): void {
  for (const fifo of fifos) {
    try {
      closeSync(openSync(fifo, constants.O_WRONLY | constants.O_NONBLOCK));
    } catch {
      // ENXIO: nobody reads it. ENOENT: already removed.
    }
  }
}

function fmt(v: number): string {
  if (Object.is(v, -0)) return '-0';
  return Number.isSafeInteger(v) && Math.abs(v) >= 65536 ? `0x${v.toString(16)}` : String(v);
}

// ---------------------------------------------------------------------------------------------
// Running a plan

interface ChildRun {
  results: CaseResult[];
  problems: string[];
  inFlight: number | undefined;
  done: boolean;
  code: number | null;
  signal: NodeJS.Signals | null;
  killed: string | undefined;
  stderr: string;
}

/**
 * Runs the plan's cases from `from` in one child; kills it when it stops answering: `graceMs` past
 * a case's own bound (the child reports a case that overruns it, unless its event loop is blocked).
 */
function runChild(planFile: string, from: number, fifos: readonly string[], graceMs: number): Promise<ChildRun> {
  return new Promise((resolve) => {
    // The shell only sets the limit (where the system lets it): `exec` makes node the very process
    // spawned, so its exit signal is ours to see.
    const child = spawn('/bin/sh', ['-c', `ulimit -v ${CHILD_MEMORY_KB} 2>/dev/null; exec "$0" "$@"`, process.execPath, CHILD, planFile, String(from)], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const run: ChildRun = { results: [], problems: [], inFlight: undefined, done: false, code: null, signal: null, killed: undefined, stderr: '' };
    let watchdog: NodeJS.Timeout | undefined;
    const arm = (ms: number, why: string): void => {
      clearTimeout(watchdog);
      watchdog = setTimeout(() => {
        run.killed = why;
        unblockFifos(fifos);
        child.kill('SIGKILL');
      }, ms);
    };
    arm(60_000, 'started no case within 60 s');
    child.stderr.on('data', (d: Buffer) => {
      run.stderr = (run.stderr + d.toString()).slice(-4000);
    });
    createInterface({ input: child.stdout }).on('line', (line) => {
      let ev: Record<string, unknown>;
      try {
        ev = JSON.parse(line) as Record<string, unknown>;
      } catch {
        run.problems.push(`child printed a non-JSON line: ${line.slice(0, 300)}`);
        return;
      }
      if (typeof ev.start === 'number') {
        run.inFlight = ev.start;
        // The child reports an unsettled case itself; silence past that means its event loop is blocked.
        arm(Number(ev.timeoutMs) + graceMs, `case ${ev.start} blocked the event loop (no timer ran)`);
      } else if (typeof ev.i === 'number') {
        run.results.push(ev as unknown as CaseResult);
        run.inFlight = undefined;
        arm(60_000, 'started no case within 60 s');
      } else if (ev.unhandled) {
        run.problems.push(`${String(ev.unhandled)} during (or just after) case ${String(ev.during)}: ${String(ev.name)}: ${String(ev.message)}`);
      } else if (ev.done) {
        run.done = true;
        arm(15_000, 'did not exit within 15 s of its last case (a handle or thread left behind)');
      }
    });
    child.on('close', (code, signal) => {
      clearTimeout(watchdog);
      run.code = code;
      run.signal = signal;
      resolve(run);
    });
  });
}

/** Runs every case, restarting the child after a case that killed or blocked it. */
async function runPlan(
  category: string,
  cases: FuzzCase[],
  fifos: readonly string[] = [],
  graceMs = 5000,
): Promise<{ results: CaseResult[]; problems: string[] }> {
  const planFile = join(dirs.work, `plan-${category}.json`);
  writeFileSync(planFile, planJson({ dist: DIST, model: dirs.model, checkpoint: dirs.hf, image: IMAGE, work: join(dirs.work, `out-${category}`), timeoutMs: CASE_TIMEOUT_MS, fifos, cases }));
  const results: CaseResult[] = [];
  const problems: string[] = [];
  let from = 0;
  for (let restarts = 0; from < cases.length; restarts++) {
    const run = await runChild(planFile, from, fifos, graceMs);
    results.push(...run.results);
    problems.push(...run.problems);
    const clean = run.done && run.code === 0 && run.signal === null && !run.killed;
    if (clean) break;
    const how = run.killed ? `killed by the test: it ${run.killed}` : `died: exit code ${String(run.code)}, signal ${String(run.signal)}`;
    const stderr = run.stderr.trim() ? `; stderr: ${run.stderr.trim().split('\n').slice(-6).join(' | ')}` : '';
    if (run.inFlight !== undefined) {
      results.push({ i: run.inFlight, case: cases[run.inFlight]!.name, outcome: run.killed ? 'unsettled' : 'crashed', message: `the child ${how}${stderr}` });
    } else {
      problems.push(`the child ${how} ${run.done ? 'after its last case' : 'between cases'}${stderr}`);
    }
    if (run.done) break;
    from = (run.inFlight ?? Math.max(from - 1, ...run.results.map((r) => r.i))) + 1;
    if (restarts >= MAX_RESTARTS && from < cases.length) {
      problems.push(`gave up after ${MAX_RESTARTS} restarts; cases ${from}..${cases.length - 1} did not run`);
      break;
    }
  }
  unblockFifos(fifos);
  return { results, problems };
}

/** Runs a category and asserts: every case reported, none untyped, unsettled or crashed, no process-level problem. */
async function expectAllTyped(category: string, cases: FuzzCase[], fifos: readonly string[] = []): Promise<void> {
  // Random draws can repeat a mutation (more so in a soak): number the repeats.
  const seen = new Set<string>();
  for (const [i, c] of cases.entries()) {
    if (seen.has(c.name)) c.name = `${c.name} (#${i})`;
    seen.add(c.name);
  }
  const t0 = performance.now();
  const { results, problems } = await runPlan(category, cases, fifos);
  const log = process.env.VL3_FUZZ_LOG;
  if (log) appendFileSync(log, results.map((r) => `${JSON.stringify({ category, seed: SEED, ...r })}\n`).join(''));
  const seconds = ((performance.now() - t0) / 1000).toFixed(1);
  const count = (o: Outcome): number => results.filter((r) => r.outcome === o).length;
  const codes = new Map<string, number>();
  for (const r of results) if (r.code) codes.set(r.code, (codes.get(r.code) ?? 0) + 1);
  console.log(
    `fuzz ${category}: ${cases.length} cases in ${seconds} s (seed ${SEED}, soak ${SOAK}): ok ${count('ok')}, typed ${count('typed')} ` +
      `(${[...codes].map(([c, n]) => `${c} ${n}`).join(', ')}), untyped ${count('untyped')}, unsettled ${count('unsettled')}, crashed ${count('crashed')}`,
  );
  const bad = results.filter((r) => r.outcome === 'untyped' || r.outcome === 'unsettled' || r.outcome === 'crashed');
  const missing = cases.length - new Set(results.map((r) => r.i)).size;
  const report = [
    `fuzz ${category}: seed ${SEED} (VL3_FUZZ_SEED=${SEED}), soak ${SOAK}: ${bad.length} of ${cases.length} cases failed` +
      (missing ? `, ${missing} did not run` : ''),
    ...bad.map((r) =>
      `  [${r.i}] ${r.case}: ${r.outcome}${r.stage ? ` in ${r.stage}` : ''}` +
        `${r.name ? ` ${r.name}:` : ''} ${r.message ?? ''}${r.stack ? ` (at ${r.stack})` : ''}`.trimEnd(),
    ),
    ...problems.map((p) => `  ${p}`),
  ].join('\n');
  expect(bad.length + problems.length + missing, report).toBe(0);
}

// ---------------------------------------------------------------------------------------------
// Category 1 and 2: GGUF files

const FLOAT_VALUES = [NaN, Infinity, -Infinity, -1, 0, -0, 1, 2 ** 31, 1e30, 1e-30];
const INT_VALUES = [-1, 0, 1, 2, 3, 2 ** 31, 2 ** 31 - 1, 2 ** 32 - 1, 65536, 1e6];
const BOOL_VALUES = [0, 1, 2, 255];
const NUMERIC: ReadonlySet<number> = new Set([
  GGUF_TYPE.u8, GGUF_TYPE.i8, GGUF_TYPE.u16, GGUF_TYPE.i16, GGUF_TYPE.u32, GGUF_TYPE.i32, GGUF_TYPE.f32,
  GGUF_TYPE.bool, GGUF_TYPE.u64, GGUF_TYPE.i64, GGUF_TYPE.f64,
]);

/** Where the tensor table ends (the data section starts at the next alignment boundary). */
function headerEnd(buf: Buffer): number {
  const { tensors } = ggufLayout(buf);
  return Math.max(...tensors.map((t) => t.typeOffset)) + 12;
}

function ggufMetadataCases(root: string, rng: Rng): FuzzCase[] {
  const cases: FuzzCase[] = [];
  const add = (name: string, file: 'llm' | 'vision', bytes: Buffer): void => {
    cases.push({ name, op: 'load', dir: modelVariant(join(root, String(cases.length)), file, bytes) });
  };
  for (const file of ['llm', 'vision'] as const) {
    const good = base[file];
    // Every numeric key (for arrays: a random element) gets every value of its type's hostile list;
    // a soak adds random bit patterns.
    for (const slot of ggufLayout(good).kvs) {
      const type = slot.type === GGUF_TYPE.arr ? slot.elementType! : slot.type;
      if (!NUMERIC.has(type) || slot.count === 0) continue;
      const float = type === GGUF_TYPE.f32 || type === GGUF_TYPE.f64;
      const values = [...(float ? FLOAT_VALUES : type === GGUF_TYPE.bool ? BOOL_VALUES : INT_VALUES)];
      for (let n = 0; n < 3 * (SOAK - 1); n++) {
        const bits = rng.int(0, 2 ** 32 - 1);
        values.push(float ? new Float32Array(new Uint32Array([bits]).buffer)[0]! : bits);
      }
      for (const value of values) {
        const index = slot.type === GGUF_TYPE.arr ? rng.int(0, slot.count! - 1) : 0;
        const bytes = Buffer.from(good);
        setNumber(bytes, slot, value, index);
        add(`${file}.gguf ${slot.key}${slot.type === GGUF_TYPE.arr ? `[${index}]` : ''} = ${fmt(value)}`, file, bytes);
      }
    }
    // Random bytes anywhere in the header (magic, counts, key lengths, types, tensor table).
    const end = headerEnd(good);
    for (let n = 0; n < 16 * SOAK; n++) {
      const bytes = Buffer.from(good);
      const flips: string[] = [];
      for (let k = rng.int(1, 3); k > 0; k--) {
        const at = rng.chance(0.3) ? rng.int(0, 40) : rng.int(0, end - 1);
        bytes[at] = rng.chance(0.5) ? bytes[at]! ^ (1 << rng.int(0, 7)) : rng.int(0, 255);
        flips.push(`@${at}=0x${bytes[at]!.toString(16)}`);
      }
      add(`${file}.gguf byte flips ${flips.join(' ')}`, file, bytes);
    }
    // Truncations: inside the fixed header, in the metadata, at the end of the tensor table, in the data.
    const cuts = new Set([0, 7, 23, end, good.length - 1]);
    for (let n = 0; n < 4 * SOAK; n++) cuts.add(rng.chance(0.5) ? rng.int(24, end - 1) : rng.int(end, good.length - 2));
    for (const cut of cuts) add(`${file}.gguf truncated to ${cut} of ${good.length} bytes`, file, good.subarray(0, cut));
  }
  return cases;
}

/** ggml type ids of special interest: q8_K (no vec_dot of its own), the integer and f64 types, ids past the enum. */
const SPECIAL_TYPES = [15, 24, 25, 26, 27, 28, 41, 42, 100, 2 ** 31, 2 ** 32 - 1];

function ggufTensorCases(root: string, rng: Rng): FuzzCase[] {
  const cases: FuzzCase[] = [];
  const add = (name: string, file: 'llm' | 'vision', bytes: Buffer): void => {
    cases.push({ name, op: 'load', dir: modelVariant(join(root, String(cases.length)), file, bytes) });
  };
  for (const file of ['llm', 'vision'] as const) {
    const good = base[file];
    const { tensors } = ggufLayout(good);
    // Every tensor's type field gets other ggml type ids.
    for (const t of tensors) {
      for (let s = 0; s < 2 * SOAK; s++) {
        let type = t.type;
        while (type === t.type) type = rng.chance(0.4) ? rng.pick(SPECIAL_TYPES) : rng.int(0, 40);
        const bytes = Buffer.from(good);
        bytes.writeUInt32LE(type >>> 0, t.typeOffset);
        add(`${file}.gguf ${t.name} type ${t.type} -> ${fmt(type)}`, file, bytes);
      }
    }
    // Each listed special type once on a random 2-D weight (the tensors a matmul reads).
    const weights = tensors.filter((t) => t.dims.length >= 2);
    for (const type of SPECIAL_TYPES) {
      const t = rng.pick(weights);
      if (t.type === type) continue;
      const bytes = Buffer.from(good);
      bytes.writeUInt32LE(type >>> 0, t.typeOffset);
      add(`${file}.gguf weight ${t.name} type ${t.type} -> ${fmt(type)} (special)`, file, bytes);
    }
    // Dimensions (u64, just before the type field): zero, one, off by one, doubled, huge.
    for (let n = 0; n < 4 * SOAK; n++) {
      const t = rng.pick(tensors);
      const d = rng.int(0, t.dims.length - 1);
      const old = t.dims[d]!;
      const value = rng.pick([0n, 1n, BigInt(old + 1), BigInt(old * 2), 2n ** 32n, 2n ** 40n, 2n ** 63n, 2n ** 64n - 1n]);
      if (value === BigInt(old)) continue;
      const bytes = Buffer.from(good);
      bytes.writeBigUInt64LE(value, t.typeOffset - 8 * (t.dims.length - d));
      add(`${file}.gguf ${t.name} dim ${d} ${old} -> ${value}`, file, bytes);
    }
  }
  return cases;
}

// ---------------------------------------------------------------------------------------------
// Category 3: safetensors

type SafetensorsHeader = Record<string, { dtype: Json; shape: Json; data_offsets: Json } | Json>;

function safetensorsCases(root: string, rng: Rng): FuzzCase[] {
  const good = base.safetensors;
  const len = Number(good.readBigUInt64LE(0));
  const json = good.subarray(8, 8 + len);
  const data = good.subarray(8 + len);
  const header = JSON.parse(json.toString('utf8')) as SafetensorsHeader;
  const names = Object.keys(header).filter((k) => k !== '__metadata__');
  const entry = (h: SafetensorsHeader, name: string): { dtype: Json; shape: Json; data_offsets: Json } =>
    h[name] as { dtype: Json; shape: Json; data_offsets: Json };
  /** The file with header `h`, padded to 8 bytes as the format's writers do. */
  const withHeader = (h: unknown): Buffer => {
    let text = JSON.stringify(h);
    text += ' '.repeat((8 - (Buffer.byteLength(text) % 8)) % 8);
    const prefix = Buffer.alloc(8);
    prefix.writeBigUInt64LE(BigInt(Buffer.byteLength(text)));
    return Buffer.concat([prefix, Buffer.from(text), data]);
  };
  const edit = (fn: (h: SafetensorsHeader) => void): Buffer => {
    const h = JSON.parse(json.toString('utf8')) as SafetensorsHeader;
    fn(h);
    return withHeader(h);
  };

  const variants: [string, Buffer][] = [];
  for (let round = 0; round < 2 * SOAK; round++) {
    for (let n = 0; n < 6; n++) {
      const bytes = Buffer.from(good);
      const flips: string[] = [];
      for (let k = rng.int(1, 3); k > 0; k--) {
        const at = 8 + rng.int(0, len - 1);
        bytes[at] = rng.chance(0.7) ? rng.int(0x20, 0x7e) : rng.int(0, 255);
        flips.push(`@${at}=0x${bytes[at]!.toString(16)}`);
      }
      variants.push([`header byte flips ${flips.join(' ')}`, bytes]);
    }
    for (let n = 0; n < 5; n++) {
      const name = rng.pick(names);
      const dtype = rng.pick<Json>(['F16', 'BF16', 'I8', 'U8', 'I16', 'I32', 'I64', 'U64', 'F64', 'BOOL', 'F8_E4M3', 'F8_E5M2', 'f32', '', 'F32 ', 7, null, ['F32']]);
      variants.push([`${name} dtype -> ${JSON.stringify(dtype)}`, edit((h) => (entry(h, name).dtype = dtype))]);
    }
    for (let n = 0; n < 5; n++) {
      const name = rng.pick(names);
      const shape = entry(header, name).shape as number[];
      const mutations: [string, Json][] = [
        ['first dim doubled', [shape[0]! * 2, ...shape.slice(1)]],
        ['last dim dropped', shape.slice(0, -1)],
        ['a dim of 1 added', [...shape, 1]],
        ['empty', []],
        ['negative', [-shape[0]!, ...shape.slice(1)]],
        ['2^53', [2 ** 53, ...shape.slice(1)]],
        ['huge product', [2 ** 31, 2 ** 31, 2 ** 31]],
        ['fractional', [shape[0]! + 0.5, ...shape.slice(1)]],
        ['strings', shape.map(String)],
        ['zero', [0, ...shape.slice(1)]],
        ['not an array', shape[0]!],
      ];
      const [what, value] = rng.pick(mutations);
      variants.push([`${name} shape ${what}`, edit((h) => (entry(h, name).shape = value))]);
    }
    for (let n = 0; n < 5; n++) {
      const name = rng.pick(names);
      const [a, b] = entry(header, name).data_offsets as [number, number];
      const mutations: [string, Json][] = [
        ['swapped', [b, a]],
        ['empty range', [a, a]],
        ['past the end', [a, data.length + 8]],
        ['far past the end', [2 ** 60, 2 ** 60 + (b - a)]],
        ['negative', [-8, b]],
        ['one byte long', [a, b + 1]],
        ['overlapping its neighbour', [Math.max(0, a - 4), b - 4]],
        ['strings', [String(a), String(b)]],
        ['one number', [a]],
        ['null', null],
        ['2^64', [a, 2 ** 64]],
      ];
      const [what, value] = rng.pick(mutations);
      variants.push([`${name} data_offsets ${what}`, edit((h) => (entry(h, name).data_offsets = value))]);
    }
    {
      const name = rng.pick(names);
      variants.push([`${name} removed`, edit((h) => delete h[name])]);
      variants.push([`unknown tensor added`, edit((h) => (h['model.fuzz.extra'] = { dtype: 'F32', shape: [2], data_offsets: [0, 8] }))]);
      const meta = rng.pick<Json>([5, null, 'pt', [], { format: 1 }, { format: 'pt', extra: { nested: true } }]);
      variants.push([`__metadata__ -> ${JSON.stringify(meta)}`, edit((h) => (h.__metadata__ = meta))]);
      const whole = rng.pick(['null', '[]', '"x"', '5', '{', '', '{"a":']);
      const prefix = Buffer.alloc(8);
      prefix.writeBigUInt64LE(BigInt(Buffer.byteLength(whole)));
      variants.push([`header is ${JSON.stringify(whole)}`, Buffer.concat([prefix, Buffer.from(whole), data])]);
    }
    for (const value of rng.sample([len + 8, len - 1, 0, 7, 1, good.length, 2 ** 53, 2 ** 63, 2 ** 64 - 1], 3)) {
      const bytes = Buffer.from(good);
      bytes.writeBigUInt64LE(BigInt.asUintN(64, BigInt(value)), 0);
      variants.push([`length prefix ${len} -> ${fmt(value)}`, bytes]);
    }
    for (const cut of new Set([rng.int(0, 7), rng.int(8, 8 + len - 1), 8 + len, rng.int(8 + len + 1, good.length - 2), good.length - 1])) {
      variants.push([`truncated to ${cut} of ${good.length} bytes`, good.subarray(0, cut)]);
    }
  }
  return variants.map(([name, bytes], i) => ({
    name: `model.safetensors ${name}`,
    op: 'convert' as const,
    input: checkpointVariant(join(root, String(i)), [], { 'model.safetensors': bytes }),
  }));
}

// ---------------------------------------------------------------------------------------------
// Category 4: non-regular files

type Special = 'fifo' | 'devzero' | 'dir';

/** Makes `path` a FIFO, a link to /dev/zero, or a folder. */
function makeSpecial(kind: Special, path: string): string {
  if (kind === 'fifo') {
    execFileSync('mkfifo', [path]);
    allFifos.push(path);
  } else if (kind === 'devzero') {
    symlinkSync('/dev/zero', path);
  } else {
    mkdirSync(path);
  }
  return path;
}

function nonRegularCases(root: string): { cases: FuzzCase[]; fifos: string[] } {
  const cases: FuzzCase[] = [];
  const before = allFifos.length;
  const TIMEOUT = 5000; // must fail fast, not merely eventually
  const CHECKPOINT_FILES = ['model.safetensors', 'config.json', 'tokenizer.json', 'tokenizer_config.json', 'preprocessor_config.json', 'generation_config.json'];
  for (const kind of ['fifo', 'devzero', 'dir'] as const) {
    const dir = join(root, kind);
    mkdirSync(dir);
    let n = 0;
    /** A fresh special file (each case its own, so one blocked reader cannot hold up another case). */
    const special = (suffix = ''): string => makeSpecial(kind, join(dir, `s${n++}${suffix}`));
    for (const file of ['llm', 'vision'] as const) {
      const model = join(dir, `model-${file}`);
      const other = file === 'llm' ? 'vision' : 'llm';
      mkdirSync(model);
      makeSpecial(kind, join(model, `${file}.gguf`));
      linkOrCopy(join(dirs.model, `${other}.gguf`), join(model, `${other}.gguf`));
      cases.push({ name: `${kind} as ${file}.gguf: loadModel`, op: 'load', dir: model, timeoutMs: TIMEOUT });
    }
    const call = (what: string, api: Api, args: Json[]): void => {
      cases.push({ name: `${kind} as ${what}: ${api}`, op: 'call', api, args, timeoutMs: TIMEOUT });
    };
    call('the path', 'readGgufInfo', [special('.gguf')]);
    call('the path', 'readGgufTensor', [special('.gguf'), 'token_embd.weight']);
    call('an image', 'encode', [special('.png')]);
    call('an image', 'complete', [{ text: 'hi', images: [special('.jpg')] }, { maxTokens: 2 }]);
    call('an image', 'estimate', [{ text: 'hi', images: [special('.png')] }]);
    call('a video', 'encode', [special('.mp4'), { kind: 'video' }]);
    call('a video (no extension)', 'encode', [special(), { kind: 'video' }]);
    call('a video', 'complete', [{ text: 'hi', videos: [special('.webm')] }, { maxTokens: 2 }]);
    call('a video', 'estimate', [{ text: 'hi', videos: [special('.mkv')] }]);
    call('the checkpoint folder', 'convertModel', [{ input: special(), output: M.fresh, type: 'f32' }]);
    call('the output folder', 'convertModel', [{ input: dirs.hf, output: special(), type: 'f32' }]);
    for (const f of CHECKPOINT_FILES) {
      const ck = checkpointVariant(join(dir, `ck-${f}`), [f]);
      makeSpecial(kind, join(ck, f));
      cases.push({ name: `${kind} as ${f}: convertModel`, op: 'convert', input: ck, timeoutMs: TIMEOUT });
    }
    for (const f of ['model-00002-of-00002.safetensors', 'model.safetensors.index.json']) {
      const ck = checkpointVariant(join(dir, `sharded-${f}`), [f], undefined, dirs.hfSharded);
      makeSpecial(kind, join(ck, f));
      cases.push({ name: `${kind} as ${f} of a sharded checkpoint: convertModel`, op: 'convert', input: ck, timeoutMs: TIMEOUT });
    }
  }
  return { cases, fifos: allFifos.slice(before) };
}

// ---------------------------------------------------------------------------------------------
// Category 5: stalled frame sources

const STALL_APIS = ['encode', 'encodeVideo', 'complete', 'completeMessages', 'completeWithImage', 'generate', 'estimate'];

function stallCases(rng: Rng): FuzzCase[] {
  const cases: FuzzCase[] = [];
  for (let n = 0; n < 3 * STALL_APIS.length * SOAK; n++) {
    const api = STALL_APIS[n % STALL_APIS.length]!;
    const good = rng.int(0, 2);
    const abortMs = rng.chance(0.15) ? -1 : rng.int(0, 200); // -1: aborted before the call
    const ret = rng.pick(['none', 'stall', 'throw', 'reject', 'ok']);
    cases.push({
      name: `${api}: ${good} frames then stall, return() ${ret}, abort ${abortMs < 0 ? 'before the call' : `after ${abortMs} ms`}`,
      op: 'stall', api, good, abortMs, ret,
      timeoutMs: Math.max(abortMs, 0) + 2000, // rejects with signal.reason within 2 s of the abort
    });
  }
  return cases;
}

// ---------------------------------------------------------------------------------------------
// Category 6: worker termination

const WORKER_JOBS = [
  'loadModel', 'readGgufInfo', 'readGgufTensor', 'tokenize', 'encode', 'encodeVideo', 'complete', 'generate', 'estimate',
  'convertModel', 'benchmarkMatmul', 'dispose',
];

function workerCases(rng: Rng): FuzzCase[] {
  const cases: FuzzCase[] = [];
  for (let s = 0; s < SOAK; s++) {
    for (const job of WORKER_JOBS) {
      const killMs = rng.int(10, 300);
      cases.push({ name: `worker looping ${job}, terminated after ${killMs} ms`, op: 'worker', job, killMs, timeoutMs: killMs + 10_000 });
      const exitMs = rng.int(0, 250);
      const killAfter = rng.int(10, 300);
      cases.push({
        name: `worker looping ${job}, process.exit() in it after ${exitMs} ms, terminated after ${killAfter} ms`,
        op: 'worker', job, exitMs, killMs: killAfter, timeoutMs: killAfter + 10_000,
      });
    }
  }
  cases.push({ name: 'the process still serves generations after every worker', op: 'serve' });
  return cases;
}

// ---------------------------------------------------------------------------------------------
// Category 7: out-of-range options

/** JSON-like junk for any option (plus a fake `{ aborted: false }` signal). */
const JUNK: Json[] = [M.NaN, M.Inf, M.NegInf, M.NegZero, -1, 0, 1, 1.5, 1e9, 2 ** 53, '', 'x', null, [], {}, true, false, M.fakeSignal, [1, 2], { a: 1 }];
/** What may stand where an options object belongs. */
const NOT_OPTIONS: Json[] = [null, 5, [], 'x', true, [{ maxTokens: 1 }]];
const SIGNALS: Json[] = [M.signal, M.abortedSignal, M.fakeSignal];
const BENCH_TYPES = ['f32', 'f16', 'bf16', 'q8_0', 'q4_0', 'q4_K', 'q6_K', 'i32', 'f64', 'iq2_xxs', 'q8_K', 'nonsense'];
const BENCH_DIMS: Json[] = [1, 2, 7, 16, 32, 33, 64, 256, 0, -1, 1.5, M.NaN, 70_000, '', null];

/** Valid-ish values per option, mixed with JUNK (valid ones stay small: the cases must be quick). */
const OPTIONS: Record<'load' | 'generate' | 'encode' | 'estimate' | 'convert' | 'bench', Record<string, Json[]>> = {
  load: {
    threads: [1, 2, 256, 257], contextSize: [16, 15, 512, 1 << 20, (1 << 20) + 1], device: ['cpu', 'auto', 'cuda', 'CPU', 'gpu'],
    gpuLayers: ['all', 0, 2, 100_000, 100_001, 'none'], onProgress: [M.fn], signal: SIGNALS,
  },
  generate: {
    maxTokens: [1, 2, 3, 32_769], temperature: [0, 0.7, 100, 101], topK: [0, 1, 40, 264, 265], topP: [1, 0.5, 1e-9],
    minP: [0, 0.05, 1], repetitionPenalty: [1, 1.3, 100, 1e-9], seed: [0, 7, Number.MAX_SAFE_INTEGER], stop: [[], ['x'], ['\n'], [''], ['a', 1], 'x'],
    topLogprobs: [0, 1, 20, 21], signal: SIGNALS,
  },
  encode: {
    fps: [0.5, 1, 2, 1000, 1001], maxFrames: [1, 2, 10_000, 10_001], pruneThreshold: [0, 0.1, 1000, 1001], autoRotate: [true, false],
    kind: ['image', 'video', 'audio'], signal: SIGNALS,
  },
  estimate: { maxTokens: [1, 512, 32_768, 32_769], signal: SIGNALS },
  convert: {
    type: ['f32', 'f16', 'bf16', 'q8_0', 'q4_k_m', 'q4_0', 'F16', 'nonsense'], threads: [1, 2, 1024, 1025], overwrite: [true, false],
    onProgress: [M.fn], signal: SIGNALS,
  },
  bench: { type: BENCH_TYPES, m: BENCH_DIMS, n: BENCH_DIMS, k: BENCH_DIMS, threads: [1, 2, 0, 513], reps: [1, 2, 0, 1001] },
};

/**
 * `base` with 1-3 of `spec`'s options set to one of its values or to junk, sometimes with a
 * misspelled key too; or, a third of the time, 1-4 options all from `spec` (valid or just out of
 * range), so that the extreme values that pass validation reach the native code.
 */
function fuzzOptions(rng: Rng, spec: Record<string, Json[]>, baseOptions: Record<string, Json>): { [key: string]: Json } {
  const out: { [key: string]: Json } = { ...baseOptions };
  const keys = Object.keys(spec);
  if (rng.chance(1 / 3)) {
    for (const key of rng.sample(keys, Math.min(keys.length, rng.int(1, 4)))) out[key] = rng.pick(spec[key]!);
    return out;
  }
  for (const key of rng.sample(keys, Math.min(keys.length, rng.int(1, 3)))) out[key] = rng.chance(0.4) ? rng.pick(spec[key]!) : rng.pick(JUNK);
  if (rng.chance(0.05)) out[`${rng.pick(keys)}s`] = 1;
  return out;
}

const PROMPTS: Json[] = [
  'hi',
  { text: 'hi', images: [M.image] },
  { text: 'hi', videos: [M.frames(3, 56, 42)] },
  { messages: [{ role: 'system', content: 'be brief' }, { role: 'user', content: [{ type: 'image', image: M.image }, { type: 'text', text: 'hi' }] }] },
];
/** Malformed prompts, images and raw pixels. */
const BAD_PROMPTS: Json[] = [
  null, 5, [], { text: 5 }, { messages: [] }, { messages: [{ role: 'robot', content: 'x' }] }, { text: 'x', images: 'nope' },
  { text: 'x', images: [null] }, { text: 'x', images: [{}] }, { text: 'x', videos: [[]] }, { text: 'x', videos: [[{}]] },
  { text: 'x', images: [{ data: M.bytes(12), width: 2, height: 2, channels: 3 }] },
  { text: 'x', images: [{ data: M.bytes(12), width: 2, height: 2, channels: 2 }] },
  { text: 'x', images: [{ data: M.bytes(12), width: 1e9, height: 1, channels: 3 }] },
  { text: 'x', images: [{ data: M.bytes(3000), width: 1, height: 1000, channels: 3 }] },
  { text: 'x', images: [{ data: M.bytes(12), width: 4, height: 1, channels: 3 }] },
  { text: 'x', videos: [M.frames(2, 1, 1)] },
  { text: 'x', videos: [M.frames(1, 2000, 1)] },
];

function optionCases(rng: Rng): FuzzCase[] {
  const cases: FuzzCase[] = [];
  const call = (api: Api, args: Json[]): void => {
    cases.push({ name: `${api}(${args.map((a) => JSON.stringify(a)).join(', ')})`.replaceAll(dirs.work, '<work>'), op: 'call', api, args });
  };
  const N = 24 * SOAK;
  for (let n = 0; n < N; n++) {
    call('loadModel', [fuzzOptions(rng, OPTIONS.load, { model: dirs.model, threads: 1 })]);
    const prompt = rng.chance(0.15) ? rng.pick(BAD_PROMPTS) : rng.pick(PROMPTS);
    call(rng.chance(0.7) ? 'complete' : 'generate', [prompt, fuzzOptions(rng, OPTIONS.generate, { maxTokens: 2 })]);
    const input = rng.pick<Json>([M.image, M.image, M.frames(3, 56, 42), M.frames(1, 28, 28), { data: M.bytes(48), width: 4, height: 4, channels: 3 }]);
    call('encode', [input, fuzzOptions(rng, OPTIONS.encode, {})]);
    call('estimate', [rng.chance(0.2) ? rng.pick(BAD_PROMPTS) : rng.pick(PROMPTS), fuzzOptions(rng, OPTIONS.estimate, {})]);
    call('benchmarkMatmul', [fuzzOptions(rng, OPTIONS.bench, { type: rng.pick(BENCH_TYPES), m: rng.pick(BENCH_DIMS), n: 32, k: 256, threads: 1, reps: 1 })]);
    call('tokenize', [rng.pick<Json>(['hi', '', '<|im_start|>x<|im_end|>', 'é\u0301', 5, null, [], {}]), rng.pick<Json>([M.undefined, ...NOT_OPTIONS, {}, { special: true }, { special: false }, { special: 'x' }, { speciall: true }])]);
    call('detokenize', [rng.pick<Json>([[1, 2], [], [-1], [2 ** 31 - 1], [1e9], [263], [264], [265], [1.5], [M.NaN], 'x', null, [null], {}, [[1]], [-(2 ** 31)]])]);
    if (n % 2 === 0) {
      const opts = fuzzOptions(rng, OPTIONS.convert, { input: dirs.hf, output: M.fresh, type: 'f32' });
      call('convertModel', [opts]);
      call('readGgufInfo', [rng.pick<Json>([join(dirs.model, 'llm.gguf'), join(dirs.model, 'vision.gguf'), '', 5, null, [], {}, '/nonexistent/x.gguf', IMAGE, dirs.model, join(dirs.hf, 'model.safetensors')])]);
      call('readGgufTensor', [join(dirs.model, rng.pick(['llm.gguf', 'vision.gguf'])), rng.pick<Json>(['token_embd.weight', 'v.patch_embd.weight', 'nope', '', 5, null])]);
      call('dispose', [rng.pick<Json>([M.undefined, {}, { running: 'cancel' }, { running: 'finish' }, { running: 'x' }, { runing: 'cancel' }, ...NOT_OPTIONS])]);
    }
  }
  // Every weight type with valid dimensions (the native benchmark must refuse what it cannot run),
  // and again with a row length that is no multiple of the quantization block.
  for (const type of BENCH_TYPES) {
    call('benchmarkMatmul', [{ type, m: rng.int(1, 4), n: 32, k: 256, threads: 1, reps: 1 }]);
    call('benchmarkMatmul', [{ type, m: 1, n: rng.pick([1, 7, 32]), k: rng.pick([1, 31, 33, 100, 255]), threads: 1, reps: 1 }]);
  }
  // The options argument itself not an object, for every API that takes one.
  for (const bad of NOT_OPTIONS) {
    call('loadModel', [bad]);
    call('complete', ['hi', bad]);
    call('generate', ['hi', bad]);
    call('encode', [M.image, bad]);
    call('estimate', ['hi', bad]);
    call('convertModel', [bad]);
    call('tokenize', ['hi', bad]);
    call('benchmarkMatmul', [bad]);
    call('dispose', [bad]);
  }
  return cases;
}

// ---------------------------------------------------------------------------------------------
// The suite

// POSIX only: the cases use FIFOs, /dev/zero and /bin/sh.
describe.skipIf(!HAVE_DIST || process.platform === 'win32')('fuzz (children on dist/, built by npm install / npm run build:ts)', () => {
  beforeAll(async () => {
    dirs.work = mkdtempSync(join(tmpdir(), 'vl3-fuzz-'));
    dirs.hf = join(dirs.work, 'hf');
    dirs.hfSharded = join(dirs.work, 'hf-sharded');
    dirs.model = join(dirs.work, 'model');
    const tiny = { layout: 'video_llama_3', tied: true, dtype: 'F32', values: 'normal', text: { layers: 2 } } as const;
    const preprocessor = JSON.stringify({ min_pixels: 8 * 196, max_pixels: 64 * 196 });
    makeTinyCheckpoint(dirs.hf, tiny);
    writeFileSync(join(dirs.hf, 'preprocessor_config.json'), preprocessor);
    makeTinyCheckpoint(dirs.hfSharded, { ...tiny, shards: 2 });
    writeFileSync(join(dirs.hfSharded, 'preprocessor_config.json'), preprocessor);
    await convertModel({ input: dirs.hf, output: dirs.model, type: 'f32' });
    base.llm = readFileSync(join(dirs.model, 'llm.gguf'));
    base.vision = readFileSync(join(dirs.model, 'vision.gguf'));
    base.safetensors = readFileSync(join(dirs.hf, 'model.safetensors'));
  });
  afterAll(() => {
    unblockFifos(allFifos);
    if (dirs.work) rmSync(dirs.work, { recursive: true, force: true });
  });

  const TIMEOUT = 180_000 * SOAK;
  /** A folder for one category's files, removed when it is done. */
  const scratch = (category: string): string => {
    const dir = join(dirs.work, category);
    mkdirSync(dir, { recursive: true });
    return dir;
  };
  const done = (category: string): void => {
    rmSync(join(dirs.work, category), { recursive: true, force: true });
    rmSync(join(dirs.work, `out-${category}`), { recursive: true, force: true });
  };

  it('the harness itself reports typed and untyped errors, hangs, blocked event loops, crashes and unhandled rejections', async () => {
    const what = ['typed', 'untyped', 'hang', 'crash', 'ok', 'block', 'unhandled', 'ok'] as const;
    const cases: FuzzCase[] = what.map((w, i) => ({ name: `self-test ${w} #${i}`, op: 'selftest', what: w, timeoutMs: 300 }));
    const { results, problems } = await runPlan('self-test', cases, [], 1000);
    const outcome = (i: number): Outcome | undefined => results.find((r) => r.i === i)?.outcome;
    expect(what.map((_, i) => outcome(i))).toEqual(['typed', 'untyped', 'unsettled', 'crashed', 'ok', 'unsettled', 'ok', 'ok']);
    expect(results.find((r) => r.i === 3)?.message).toContain('signal SIGSEGV');
    expect(results.find((r) => r.i === 5)?.message).toContain('blocked the event loop');
    expect(problems.join('\n')).toContain('unhandledRejection during (or just after) case 6');
    done('self-test');
  });

  it('mutated GGUF metadata: every numeric key, byte flips, truncations', async () => {
    await expectAllTyped('gguf-metadata', ggufMetadataCases(scratch('gguf-metadata'), rngFor('gguf-metadata')));
    done('gguf-metadata');
  }, TIMEOUT);

  it('mutated GGUF tensor types and dimensions', async () => {
    await expectAllTyped('gguf-tensors', ggufTensorCases(scratch('gguf-tensors'), rngFor('gguf-tensors')));
    done('gguf-tensors');
  }, TIMEOUT);

  it('mutated safetensors: header bytes, dtypes, shapes, offsets, length prefix, truncations', async () => {
    await expectAllTyped('safetensors', safetensorsCases(scratch('safetensors'), rngFor('safetensors')));
    done('safetensors');
  }, TIMEOUT);

  it('non-regular files (FIFO, /dev/zero, folder) wherever a file is read', async () => {
    const { cases, fifos } = nonRegularCases(scratch('non-regular'));
    await expectAllTyped('non-regular', cases, fifos);
    unblockFifos(fifos);
    done('non-regular');
  }, TIMEOUT);

  it('stalled frame sources reject with signal.reason soon after the abort', async () => {
    await expectAllTyped('stalled-iterables', stallCases(rngFor('stalled-iterables')));
    done('stalled-iterables');
  }, TIMEOUT);

  it('terminating a worker during every async API (and process.exit() in it) leaves the process serving', async () => {
    await expectAllTyped('worker-termination', workerCases(rngFor('worker-termination')));
    done('worker-termination');
  }, TIMEOUT);

  it('out-of-range options and malformed arguments of every API', async () => {
    await expectAllTyped('options', optionCases(rngFor('options')));
    done('options');
  }, TIMEOUT);
});
