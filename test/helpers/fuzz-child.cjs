// The child process of test/fuzz.test.ts: runs a plan of fuzz cases against the compiled library
// (dist/), one after another, and prints one JSON line per event on stdout:
//
//   { start: i, timeoutMs }                       case i begins
//   { i, case, outcome, code?, stage?, name?, message?, ms }   case i ended
//   { unhandled, message, during }                an uncaught exception / unhandled rejection
//                                                 during (or just after) case `during`
//   { done: true }                                every case ran; the process should now exit by itself
//
// outcome: 'ok' (the call succeeded), 'typed' (a VideoLlama3Error with a known code, or exactly the
// abort signal's reason), 'untyped' (anything else) or 'unsettled' (the call did not settle within
// its timeoutMs: the case is abandoned and the next one starts). A native crash kills this process;
// the parent sees the signal and knows, from the last `start`, which case did it.
//
// Usage: node fuzz-child.cjs <plan.json> <first case index>. The same file is the entry point of the
// worker threads of the `worker` cases (category "worker termination").
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const { Worker, isMainThread, parentPort, threadId, workerData } = require('node:worker_threads');

const planFile = isMainThread ? process.argv[2] : workerData.planFile;
const plan = JSON.parse(fs.readFileSync(planFile, 'utf8'));
const lib = require(plan.dist);

const CODES = new Set([
  'INVALID_ARGUMENT', 'INVALID_MODEL', 'UNSUPPORTED_MODEL', 'IO_ERROR', 'ABORTED',
  'OUT_OF_MEMORY', 'DISPOSED', 'ADDON_NOT_FOUND', 'DEVICE_UNAVAILABLE', 'INTERNAL',
]);

/** The error's code when it is typed (or one of this case's abort reasons), else undefined. */
function typedCode(err, reasons) {
  if (reasons && reasons.has(err)) return 'signal.reason';
  if (err instanceof lib.VideoLlama3Error && typeof err.code === 'string' && CODES.has(err.code)) return err.code;
  return undefined;
}

function describeError(err) {
  const name = err && typeof err === 'object' && 'name' in err ? String(err.name) : typeof err;
  const message = err && typeof err === 'object' && 'message' in err ? String(err.message) : String(err);
  const stack = err && typeof err === 'object' && typeof err.stack === 'string' ? err.stack.split('\n').slice(1, 4).join(' | ') : undefined;
  return { name, message: message.slice(0, 600), ...(stack ? { stack } : {}) };
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const emit = (event) => process.stdout.write(`${JSON.stringify(event)}\n`);

let freshCount = 0;
/** A new, empty folder under the plan's work folder (conversion outputs). */
function freshDir() {
  const dir = path.join(plan.work, `fresh-${process.pid}-${threadId}-${freshCount++}`);
  fs.mkdirSync(dir, { recursive: true });
  return dir;
}

/** `n` decoded RGB frames of `w`x`h`, 0.5 s apart, with a deterministic pattern. */
function frames(n, w, h) {
  const out = [];
  for (let k = 0; k < n; k++) {
    const data = new Uint8Array(w * h * 3);
    for (let j = 0; j < data.length; j++) data[j] = (j * 7 + k * 31) & 0xff;
    out.push({ data, width: w, height: h, timestamp: k * 0.5 });
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Arguments: JSON from the parent, with markers { $fz: ... } for what JSON cannot hold.

function decode(v, ctx) {
  if (Array.isArray(v)) return v.map((x) => decode(x, ctx));
  if (v !== null && typeof v === 'object') {
    if (typeof v.$fz === 'string') return marker(v, ctx);
    const out = {};
    for (const [k, x] of Object.entries(v)) out[k] = decode(x, ctx);
    return out;
  }
  return v;
}

function marker(m, ctx) {
  switch (m.$fz) {
    case 'NaN': return NaN;
    case 'Inf': return Infinity;
    case '-Inf': return -Infinity;
    case '-0': return -0;
    case 'undefined': return undefined;
    case 'image': return plan.image;
    case 'fn': return () => {};
    case 'fresh': return freshDir();
    case 'frames': return frames(m.n, m.w, m.h);
    case 'bytes': return new Uint8Array(m.n).fill(128);
    case 'fakeSignal': return { aborted: false }; // not an AbortSignal: must be refused
    case 'signal': return new AbortController().signal; // never aborted
    case 'abortedSignal': {
      const reason = new Error('fuzz: aborted before the call');
      ctx.reasons.add(reason);
      return AbortSignal.abort(reason);
    }
    default: throw new Error(`fuzz-child: unknown marker ${m.$fz}`);
  }
}

// ---------------------------------------------------------------------------------------------
// The library calls.

let sharedModel;
/** One model loaded once per process, for the cases that need a working model. */
function shared() {
  sharedModel ??= lib.loadModel({ model: plan.model, threads: 1 });
  return sharedModel;
}

/**
 * Loads `dir`; if that works, runs a short generation with an image and one with a video (decoded
 * frames: the video preprocessing constants come from the model too), then disposes. Throws the
 * first untyped error of the steps, else the first typed one.
 */
async function loadAndRun(dir, stage) {
  stage.at = 'loadModel';
  // A small context: hostile preprocessing constants that blow a prompt up to thousands of vision
  // tokens are refused before the vision encoder runs (else one case could take many seconds).
  const m = await lib.loadModel({ model: dir, threads: 1, contextSize: 512 });
  const failures = [];
  const steps = {
    'complete(image)': () => m.complete({ text: 'hi', images: [plan.image] }, { maxTokens: 2 }),
    'complete(video)': () => m.complete({ text: 'hi', videos: [frames(3, 56, 42)] }, { maxTokens: 2 }),
  };
  for (const [at, step] of Object.entries(steps)) {
    try {
      await step();
    } catch (err) {
      failures.push({ at, err });
    }
  }
  stage.at = 'dispose';
  await m.dispose();
  const first = failures.find((f) => !typedCode(f.err)) ?? failures[0];
  if (first) {
    stage.at = first.at;
    throw first.err;
  }
}

/** The APIs of `call` cases; `a` are the decoded arguments. */
const API = {
  loadModel: async (a) => {
    const m = await lib.loadModel(...a);
    await m.complete('hi', { maxTokens: 1 });
    await m.dispose();
  },
  complete: async (a) => (await shared()).complete(...a),
  generate: async (a) => {
    const gen = (await shared()).generate(...a);
    for await (const _ of gen);
    return gen.result;
  },
  encode: async (a) => (await shared()).encode(...a),
  estimate: async (a) => (await shared()).estimate(...a),
  tokenize: async (a) => (await shared()).tokenize(...a),
  detokenize: async (a) => (await shared()).detokenize(...a),
  convertModel: async (a) => {
    const r = await lib.convertModel(...a);
    fs.rmSync(path.dirname(r.llm), { recursive: true, force: true });
  },
  benchmarkMatmul: (a) => lib.benchmarkMatmul(...a),
  readGgufInfo: (a) => lib.readGgufInfo(...a),
  readGgufTensor: (a) => lib.readGgufTensor(...a),
  /** dispose(options) on a fresh model while a generation runs on it. */
  dispose: async (a) => {
    const m = await lib.loadModel({ model: plan.model, threads: 1 });
    const running = m.complete({ text: 'hi', images: [plan.image] }, { maxTokens: 4 });
    running.catch(() => undefined);
    await m.dispose(...a);
    await running;
  },
};

// ---------------------------------------------------------------------------------------------
// Stalled frame sources (category "stalled iterables").

/** Yields `good` frames, then never answers next() again. `ret`: how its return() behaves. */
function stalledFrames(good, ret) {
  const list = frames(good, 56, 42);
  const iterator = {
    next: () => (list.length ? Promise.resolve({ done: false, value: list.shift() }) : new Promise(() => {})),
  };
  if (ret === 'stall') iterator.return = () => new Promise(() => {});
  if (ret === 'throw') iterator.return = () => { throw new Error('fuzz: return() throws'); };
  if (ret === 'reject') iterator.return = () => Promise.reject(new Error('fuzz: return() rejects'));
  if (ret === 'ok') iterator.return = () => Promise.resolve({ done: true, value: undefined });
  return { [Symbol.asyncIterator]: () => iterator };
}

const STALL_API = {
  encode: (m, src, signal) => m.encode(src, { signal }),
  encodeVideo: (m, src, signal) => m.encode(src, { signal, kind: 'video' }),
  complete: (m, src, signal) => m.complete({ text: 'hi', videos: [src] }, { signal, maxTokens: 2 }),
  completeMessages: (m, src, signal) =>
    m.complete({ messages: [{ role: 'user', content: [{ type: 'video', video: src }, { type: 'text', text: 'hi' }] }] }, { signal, maxTokens: 2 }),
  completeWithImage: (m, src, signal) => m.complete({ text: 'hi', images: [plan.image], videos: [src] }, { signal, maxTokens: 2 }),
  generate: async (m, src, signal) => {
    const gen = m.generate({ text: 'hi', videos: [src] }, { signal, maxTokens: 2 });
    for await (const _ of gen);
    return gen.result;
  },
  estimate: (m, src, signal) => m.estimate({ text: 'hi', videos: [src] }, { signal }),
};

async function stallCase(c) {
  const m = await shared();
  const reason = new Error(`fuzz: aborted after ${c.abortMs} ms`);
  const controller = new AbortController();
  let timer;
  if (c.abortMs < 0) controller.abort(reason);
  else timer = setTimeout(() => controller.abort(reason), c.abortMs);
  try {
    await STALL_API[c.api](m, stalledFrames(c.good, c.ret), controller.signal);
    return { outcome: 'untyped', name: 'resolved', message: 'the call resolved although its frame source never ends' };
  } catch (err) {
    if (err === reason) return { outcome: 'typed', code: 'signal.reason' };
    const d = describeError(err);
    return { outcome: 'untyped', ...d, message: `expected exactly signal.reason, got ${d.name}: ${d.message}` };
  } finally {
    clearTimeout(timer);
  }
}

// ---------------------------------------------------------------------------------------------
// Worker termination (category "worker termination"): the worker side loops one job forever.

const WORKER_JOBS = {
  loadModel: async () => (await lib.loadModel({ model: plan.model, threads: 1 })).dispose(),
  readGgufInfo: () => lib.readGgufInfo(path.join(plan.model, 'llm.gguf')),
  readGgufTensor: () => lib.readGgufTensor(path.join(plan.model, 'llm.gguf'), 'token_embd.weight'),
  tokenize: async (m, k) => m.tokenize(`hello fuzz ${k} <|im_start|>`),
  encode: (m) => m.encode(plan.image),
  encodeVideo: (m) => m.encode(frames(3, 56, 42)),
  complete: (m) => m.complete({ text: 'hi', images: [plan.image] }, { maxTokens: 4 }),
  generate: async (m) => {
    const gen = m.generate({ text: 'hi', images: [plan.image] }, { maxTokens: 4 });
    for await (const _ of gen);
  },
  estimate: (m) => m.estimate({ text: 'hi', images: [plan.image], videos: [frames(3, 56, 42)] }),
  convertModel: async (m, k, out) => {
    const dir = path.join(out, String(k));
    await lib.convertModel({ input: plan.checkpoint, output: dir, type: k % 2 ? 'q8_0' : 'f32' });
    fs.rmSync(dir, { recursive: true, force: true });
  },
  benchmarkMatmul: () => lib.benchmarkMatmul({ type: 'q8_0', m: 4, n: 256, k: 256, reps: 2 }),
  dispose: async () => {
    const own = await lib.loadModel({ model: plan.model, threads: 1 });
    const running = own.complete({ text: 'hi', images: [plan.image] }, { maxTokens: 4 });
    running.catch(() => undefined);
    await own.dispose({ running: 'cancel' });
    await running;
  },
};
const NEEDS_MODEL = new Set(['tokenize', 'encode', 'encodeVideo', 'complete', 'generate', 'estimate']);

async function workerMain() {
  const { job, exitMs } = workerData;
  const report = (err) => {
    if (!typedCode(err)) parentPort.postMessage(describeError(err));
  };
  const out = freshDir();
  let model;
  try {
    if (NEEDS_MODEL.has(job)) model = await lib.loadModel({ model: plan.model, threads: 1 });
  } catch (err) {
    report(err);
    return;
  }
  // The kill and exit delays count from here, so they land while the job runs, not during start-up.
  parentPort.postMessage('ready');
  if (typeof exitMs === 'number') setTimeout(() => process.exit(0), exitMs); // ends this thread only
  for (let k = 0; ; k++) {
    try {
      await WORKER_JOBS[job](model, k, out);
    } catch (err) {
      report(err);
    }
    await new Promise((resolve) => setImmediate(resolve)); // lets timers (process.exit) run
  }
}

/** Starts a worker looping `c.job`, terminates it after `c.killMs`; reports what it posted. */
async function workerCase(c) {
  const worker = new Worker(__filename, { workerData: { planFile, job: c.job, exitMs: c.exitMs } });
  const problems = [];
  let ready;
  const started = new Promise((resolve) => (ready = resolve));
  worker.on('message', (m) => (m === 'ready' ? ready() : problems.push(m)));
  worker.on('error', (err) => problems.push({ ...describeError(err), name: `uncaught in worker: ${describeError(err).name}` }));
  const exited = new Promise((resolve) => worker.once('exit', resolve));
  await Promise.race([started, exited]);
  await sleep(c.killMs);
  await worker.terminate();
  await exited;
  if (problems.length) return { outcome: 'untyped', ...problems[0] };
  return { outcome: 'ok' };
}

/** After the workers: this process must still serve a generation, on a fresh and on the shared model. */
async function serveCase() {
  const m = await lib.loadModel({ model: plan.model, threads: 1 });
  const r = await m.complete({ text: 'hi', images: [plan.image] }, { maxTokens: 4 });
  await m.dispose();
  const s = await (await shared()).complete('hello', { maxTokens: 4 });
  if (r.tokens.length < 1 || s.tokens.length < 1) return { outcome: 'untyped', name: 'no tokens', message: 'a generation returned no tokens' };
  return { outcome: 'ok' };
}

/** Misbehaviours the parent must catch (its own test: a harness that cannot fail proves nothing). */
async function selfTest(what) {
  switch (what) {
    case 'typed': throw new lib.VideoLlama3Error('INVALID_ARGUMENT', 'fuzz self-test');
    case 'untyped': throw new TypeError('fuzz self-test');
    case 'hang': return new Promise(() => {});
    case 'unhandled': Promise.reject(new Error('fuzz self-test: nobody handles this')); return undefined;
    case 'crash': process.kill(process.pid, 'SIGSEGV'); return new Promise(() => {});
    case 'block': for (;;); // the event loop never turns again
    default: return undefined;
  }
}

// ---------------------------------------------------------------------------------------------
// The case loop.

async function runCase(c, ctx, stage) {
  switch (c.op) {
    case 'load': return loadAndRun(c.dir, stage);
    case 'convert': {
      const out = freshDir();
      try {
        stage.at = 'convertModel';
        await lib.convertModel({ input: c.input, output: out, type: 'f32' });
        await loadAndRun(out, stage);
      } finally {
        fs.rmSync(out, { recursive: true, force: true });
      }
      return undefined;
    }
    case 'call': {
      stage.at = c.api;
      await API[c.api](decode(c.args, ctx));
      return undefined;
    }
    case 'stall': return stallCase(c);
    case 'worker': return workerCase(c);
    case 'serve': return serveCase();
    case 'selftest': return selfTest(c.what);
    default: throw new Error(`fuzz-child: unknown op ${c.op}`);
  }
}

/** Lets readers blocked opening one of the plan's FIFOs go: a writer comes and goes at once. */
async function unblockFifos() {
  for (let round = 0; round < 3; round++) {
    for (const fifo of plan.fifos) {
      try {
        fs.closeSync(fs.openSync(fifo, fs.constants.O_WRONLY | fs.constants.O_NONBLOCK));
      } catch {
        // ENXIO: nobody is reading it.
      }
    }
    await sleep(20);
  }
}

let current = -1;
async function main() {
  process.on('uncaughtException', (err) => emit({ unhandled: 'uncaughtException', ...describeError(err), during: current }));
  process.on('unhandledRejection', (err) => emit({ unhandled: 'unhandledRejection', ...describeError(err), during: current }));
  for (let i = Number(process.argv[3] ?? 0); i < plan.cases.length; i++) {
    const c = plan.cases[i];
    const timeoutMs = c.timeoutMs ?? plan.timeoutMs;
    current = i;
    emit({ start: i, timeoutMs });
    const t0 = performance.now();
    const ctx = { reasons: new Set() };
    const stage = { at: undefined };
    let timer;
    const late = new Promise((resolve) => {
      timer = setTimeout(() => resolve({ outcome: 'unsettled', message: `did not settle within ${timeoutMs} ms` }), timeoutMs);
    });
    const work = Promise.resolve()
      .then(() => runCase(c, ctx, stage))
      .then(
        (r) => r ?? { outcome: 'ok' },
        (err) => {
          const code = typedCode(err, ctx.reasons);
          return code ? { outcome: 'typed', code } : { outcome: 'untyped', ...describeError(err) };
        },
      );
    const r = await Promise.race([work, late]);
    clearTimeout(timer);
    emit({ i, case: c.name, ...r, ...(stage.at && r.outcome !== 'ok' ? { stage: stage.at } : {}), ms: Math.round(performance.now() - t0) });
    // A turn of the event loop, so that a rejection the case left unhandled is reported as its own.
    await new Promise((resolve) => setImmediate(resolve));
  }
  current = -1;
  await unblockFifos();
  if (sharedModel) {
    const m = await sharedModel.catch(() => undefined);
    let timer;
    await Promise.race([m?.dispose(), new Promise((resolve) => (timer = setTimeout(resolve, 5000)))]);
    clearTimeout(timer);
  }
  emit({ done: true }); // then exit by itself: a handle or thread left behind shows as a hang
}

if (isMainThread) main();
else workerMain();
