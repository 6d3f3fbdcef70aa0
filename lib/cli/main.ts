#!/usr/bin/env node
// The `videollama3` command. Each subcommand parses its flags with node:util parseArgs.
import { parseArgs } from 'node:util';
import { benchmarkMatmul } from '../bench';
import { formatBench, runBench } from './bench';
import { pullCommand } from './pull';
import { CONVERT_TYPES, convertModel, type ConvertType } from '../convert';
import { VideoLlama3Error } from '../errors';
import { readGgufInfo } from '../gguf';
import { basename, resolve } from 'node:path';
import { loadModel, type LoadModelOptions } from '../model';
import type { ContentPart, Prompt } from '../prompt';
import { createServer } from '../server/server';
import { writeNpy } from './npy';
import { systemInfo } from '../system';
import { ProgressBar } from './progress';

const HELP = `videollama3 - VideoLLaMA 3 for Node.js

Usage: videollama3 <command> [options]

Commands:
  convert <hf-dir> <out-dir>   Convert a Hugging Face checkpoint to llm.gguf + vision.gguf
      --type <t>               ${CONVERT_TYPES.join(' | ')} (default f16)
      --threads <n>            quantization threads (default: all cores)
      --overwrite              replace an existing converted model in <out-dir>
  generate --model <dir> --prompt <text> [--image <path>]... [--video <path>]...
                               Stream a reply to stdout (images, then videos, then the text)
      --fps <f> --max-frames <n> --prune-threshold <x>
                               video sampling (defaults from the model: 1, 180, 0.1; 0 keeps all)
      --auto-rotate            apply videos' display rotation (off by default, as the reference)
      --system <text>          system message
      --max-tokens <n>         most tokens to generate (default 512)
      --temperature <t>        0 = greedy (default)
      --top-k <k> --top-p <p> --min-p <p> --repeat-penalty <r> --seed <s>
      --top-logprobs <k>       with --json: k most likely tokens per step
      --threads <n> --context-size <n>
      --device <d>             auto (default) | cpu | cuda
      --gpu-layers <n>         decoder layers on the GPU (default all)
      --json                   print one JSON object instead of streaming text
  serve --model <dir>          OpenAI-compatible HTTP server (/v1/chat/completions, /v1/completions,
                               /v1/models, /health, /metrics); SIGTERM / SIGINT drain, then exit
      --host <h>               interface to bind (default 127.0.0.1; 0.0.0.0 for every interface)
      --port <n>               TCP port (default 8080; 0 picks a free one)
      --model-name <id>        model id of /v1/models and responses (default: the folder's name)
      --api-key <key>          require Authorization: Bearer <key> on /v1/* (or VIDEOLLAMA3_API_KEY)
      --allowed-media-dir <d>  allow file:// media URLs inside this folder (default: refused)
      --allow-remote-media     fetch http(s):// media URLs (default: refused)
      --remote-media-max-bytes <n> --remote-media-timeout-ms <n>
                               limits of a remote fetch (default 67108864 bytes, 30000 ms)
      --max-queue <n>          requests admitted, running + waiting (default 64); more get 429
      --max-concurrent <n>     generations running at once (default 4)
      --timeout-ms <n>         per-request limit, queueing included (default 600000)
      --body-limit-bytes <n>   largest request body (default 33554432)
      --cors-origin <origin>   allow this browser origin (repeatable; '*' for any; default none)
      --log-requests           one JSON log line per request on stdout
      --threads <n> --context-size <n> --device <d> --gpu-layers <n>
  encode --model <dir> (--image <path> | --video <path>) --out <file.npy>
                               Write the projected vision tokens (a video's: kept tokens, frame after frame)
  pull <hf-repo> [--revision <r>] [--type <t>] [--json]
                               Download a checkpoint from the Hugging Face hub into its cache and
                               convert it once; prints the model folder
  bench --model <dir> [--image <path> | --video <path>] [--prompt <text>] [--max-tokens <n>]
        [--warmup <n>] [--reps <n>] [--concurrency <n>] [--json]
                               Per-stage times (p50/p90/max; --json: every request and percentiles),
                               tokens/s, aggregate throughput and peak RSS
  inspect <file.gguf>          Print a GGUF file's metadata and tensor table as JSON
      --arrays                 include long arrays (vocabulary, merges) in full
  info                         Print the native addon's build and device facts as JSON
  bench-matmul                 Time one ggml matrix multiply; prints JSON
      --type <t> --m <n> --n <n> --k <n> --threads <n> --reps <n>

Options:
  -h, --help                   Show this help
  -v, --version                Print the package version
`;

function fail(message: string): never {
  process.stderr.write(`videollama3: ${message}\n`);
  process.exit(2);
}

async function convert(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      type: { type: 'string' },
      threads: { type: 'string' },
      overwrite: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(HELP);
    return;
  }
  if (positionals.length !== 2) fail('convert needs <hf-dir> and <out-dir> (see --help)');
  const [input, output] = positionals as [string, string];
  const threads = values.threads === undefined ? undefined : Number(values.threads);
  const bar = new ProgressBar('converting');
  const controller = new AbortController();
  process.once('SIGINT', () => controller.abort(new VideoLlama3Error('ABORTED', 'Interrupted')));
  const started = Date.now();
  const result = await convertModel({
    input,
    output,
    type: values.type as ConvertType | undefined,
    threads,
    overwrite: values.overwrite ?? false,
    signal: controller.signal,
    onProgress: (p) => bar.update(p.bytesDone, p.bytesTotal, `${p.file}: ${p.tensor}`),
  });
  bar.finish();
  process.stderr.write(
    `converted ${result.layout} checkpoint in ${((Date.now() - started) / 1000).toFixed(1)} s\n` +
      `  ${result.llm} (${result.tensorCount.llm} tensors)\n  ${result.vision} (${result.tensorCount.vision} tensors)\n`,
  );
}

const MODEL_FLAGS = {
  model: { type: 'string' },
  device: { type: 'string' },
  'gpu-layers': { type: 'string' },
  image: { type: 'string', multiple: true },
  video: { type: 'string', multiple: true },
  fps: { type: 'string' },
  'max-frames': { type: 'string' },
  'prune-threshold': { type: 'string' },
  'auto-rotate': { type: 'boolean' },
  prompt: { type: 'string' },
  system: { type: 'string' },
  'max-tokens': { type: 'string' },
  temperature: { type: 'string' },
  'top-k': { type: 'string' },
  'top-p': { type: 'string' },
  'min-p': { type: 'string' },
  'repeat-penalty': { type: 'string' },
  seed: { type: 'string' },
  'top-logprobs': { type: 'string' },
  threads: { type: 'string' },
  'context-size': { type: 'string' },
  out: { type: 'string' },
  json: { type: 'boolean' },
  reps: { type: 'string' },
  warmup: { type: 'string' },
  concurrency: { type: 'string' },
} as const;

function numeric(v: string | undefined, flag: string): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n)) fail(`--${flag} expects a number, got '${v}'`);
  return n;
}

/** Loads the model that --model and the loading flags name. */
function loadFromFlags(values: { model?: string; threads?: string; 'context-size'?: string; device?: string; 'gpu-layers'?: string }) {
  if (!values.model) fail('--model <dir> is required (a folder made by `videollama3 convert`)');
  return loadModel({
    model: values.model,
    threads: numeric(values.threads, 'threads'),
    contextSize: numeric(values['context-size'], 'context-size'),
    device: values.device as LoadModelOptions['device'],
    gpuLayers: values['gpu-layers'] === 'all' ? 'all' : numeric(values['gpu-layers'], 'gpu-layers'),
  });
}

async function withModel(argv: string[]) {
  const { values } = parseArgs({ args: argv, options: MODEL_FLAGS, allowPositionals: false });
  return { values, model: await loadFromFlags(values) };
}

function promptOf(values: {
  prompt?: string;
  image?: string[];
  video?: string[];
  system?: string;
  fps?: string;
  'max-frames'?: string;
  'prune-threshold'?: string;
  'auto-rotate'?: boolean;
}): Prompt {
  if (values.prompt === undefined) fail('--prompt <text> is required');
  const videoOptions = {
    fps: numeric(values.fps, 'fps'),
    maxFrames: numeric(values['max-frames'], 'max-frames'),
    pruneThreshold: numeric(values['prune-threshold'], 'prune-threshold'),
    ...(values['auto-rotate'] ? { autoRotate: true } : {}),
  };
  const content: ContentPart[] = [
    ...(values.image ?? []).map((image) => ({ type: 'image' as const, image })),
    ...(values.video ?? []).map((video) => ({ type: 'video' as const, video, ...videoOptions })),
    { type: 'text', text: values.prompt },
  ];
  return {
    messages: [
      ...(values.system !== undefined ? [{ role: 'system' as const, content: values.system }] : []),
      { role: 'user' as const, content },
    ],
  };
}

async function generate(argv: string[]): Promise<void> {
  const { values, model } = await withModel(argv);
  const controller = new AbortController();
  process.once('SIGINT', () => controller.abort(new VideoLlama3Error('ABORTED', 'Interrupted')));
  const gen = model.generate(promptOf(values), {
    maxTokens: numeric(values['max-tokens'], 'max-tokens'),
    temperature: numeric(values.temperature, 'temperature'),
    topK: numeric(values['top-k'], 'top-k'),
    topP: numeric(values['top-p'], 'top-p'),
    minP: numeric(values['min-p'], 'min-p'),
    repetitionPenalty: numeric(values['repeat-penalty'], 'repeat-penalty'),
    seed: numeric(values.seed, 'seed'),
    topLogprobs: numeric(values['top-logprobs'], 'top-logprobs'),
    signal: controller.signal,
  });
  if (values.json) {
    const r = await gen.result;
    process.stdout.write(
      `${JSON.stringify({
        text: r.text, tokens: r.tokens, finishReason: r.finishReason, logprobs: r.logprobs ?? [], usage: r.usage,
        timings: r.timings, ...(r.videos ? { videos: r.videos } : {}),
      })}\n`,
    );
  } else {
    for await (const chunk of gen) process.stdout.write(chunk);
    process.stdout.write('\n');
  }
  await model.dispose();
}

async function encode(argv: string[]): Promise<void> {
  const { values, model } = await withModel(argv);
  const inputs = [...(values.image ?? []), ...(values.video ?? [])];
  if (inputs.length !== 1) fail('encode needs exactly one --image <path> or --video <path>');
  if (!values.out) fail('encode needs --out <file.npy>');
  const tokens = await model.encode(inputs[0] as string, {
    kind: values.video ? 'video' : 'image',
    ...(values.video
      ? { fps: numeric(values.fps, 'fps'), maxFrames: numeric(values['max-frames'], 'max-frames'), pruneThreshold: numeric(values['prune-threshold'], 'prune-threshold') }
      : {}),
  });
  writeNpy(values.out, await tokens.data(), tokens.shape);
  process.stderr.write(`wrote ${values.out}: ${tokens.shape[0]} x ${tokens.shape[1]} float32\n`);
  await model.dispose();
}

async function bench(argv: string[]): Promise<void> {
  const t0 = performance.now();
  const { values, model } = await withModel(argv);
  const loadMs = performance.now() - t0;
  const reps = numeric(values.reps, 'reps') ?? 3;
  const warmup = numeric(values.warmup, 'warmup') ?? 1;
  const concurrency = numeric(values.concurrency, 'concurrency') ?? 1;
  for (const [name, v, max] of [['reps', reps, 1000], ['warmup', warmup, 100], ['concurrency', concurrency, 256]] as const) {
    if (!Number.isInteger(v) || v < (name === 'warmup' ? 0 : 1) || v > max) fail(`--${name} must be an integer between ${name === 'warmup' ? 0 : 1} and ${max}`);
  }
  const prompt = promptOf({ ...values, prompt: values.prompt ?? (values.video ? 'Describe the video in detail.' : 'Describe the image in detail.') });
  const report = await runBench(model, { prompt, maxTokens: numeric(values['max-tokens'], 'max-tokens') ?? 64, warmup, reps, concurrency }, (r, ms) => {
    if (!values.json) process.stderr.write(`round ${r + 1}/${reps}: ${(ms / 1000).toFixed(2)} s\n`);
  });
  const facts = {
    model: values.model,
    threads: model.info.threads,
    device: model.info.device,
    loadMs,
    peakRssMiB: Math.round(process.resourceUsage().maxRSS / 1024),
    weightBytes: model.info.weightBytes,
    system: systemInfo(),
  };
  if (values.json) process.stdout.write(`${JSON.stringify({ ...facts, ...report })}\n`);
  else process.stdout.write(`${formatBench(report)}\nload ${loadMs.toFixed(0)} ms, peak RSS ${facts.peakRssMiB} MiB, ${facts.threads} threads on ${facts.device.name}\n`);
  await model.dispose();
}

async function serve(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    allowPositionals: false,
    options: {
      model: { type: 'string' },
      'model-name': { type: 'string' },
      host: { type: 'string' },
      port: { type: 'string' },
      'api-key': { type: 'string' },
      'allowed-media-dir': { type: 'string' },
      'allow-remote-media': { type: 'boolean' },
      'remote-media-max-bytes': { type: 'string' },
      'remote-media-timeout-ms': { type: 'string' },
      'max-queue': { type: 'string' },
      'max-concurrent': { type: 'string' },
      'timeout-ms': { type: 'string' },
      'body-limit-bytes': { type: 'string' },
      'cors-origin': { type: 'string', multiple: true },
      'log-requests': { type: 'boolean' },
      threads: { type: 'string' },
      'context-size': { type: 'string' },
      device: { type: 'string' },
      'gpu-layers': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(HELP);
    return;
  }
  const model = await loadFromFlags(values);
  const apiKey = values['api-key'] ?? (process.env.VIDEOLLAMA3_API_KEY || undefined);
  const server = createServer(model, {
    modelName: values['model-name'] ?? basename(resolve(values.model ?? '.')),
    apiKey,
    allowedMediaDir: values['allowed-media-dir'],
    allowRemoteMedia: values['allow-remote-media'] ?? false,
    remoteMediaMaxBytes: numeric(values['remote-media-max-bytes'], 'remote-media-max-bytes'),
    remoteMediaTimeoutMs: numeric(values['remote-media-timeout-ms'], 'remote-media-timeout-ms'),
    maxQueue: numeric(values['max-queue'], 'max-queue'),
    maxConcurrent: numeric(values['max-concurrent'], 'max-concurrent'),
    timeoutMs: numeric(values['timeout-ms'], 'timeout-ms'),
    bodyLimitBytes: numeric(values['body-limit-bytes'], 'body-limit-bytes'),
    corsOrigins: values['cors-origin'],
    logRequests: values['log-requests'] ?? false,
  });
  const address = await server.listen({ host: values.host ?? '127.0.0.1', port: numeric(values.port, 'port') ?? 8080 });
  process.stderr.write(
    `videollama3: serving ${server.modelName} at ${address.url}/v1 (${model.info.device.name}${apiKey ? ', API key required' : ''}); Ctrl-C stops\n`,
  );
  let stopping = false;
  const stop = (signal: NodeJS.Signals): void => {
    if (stopping) {
      process.stderr.write(`videollama3: ${signal} again, exiting without waiting\n`);
      process.exit(130);
    }
    stopping = true;
    process.stderr.write(`videollama3: ${signal}: finishing requests in flight (send it again to exit now)\n`);
    server
      .close()
      .then(() => model.dispose())
      .then(
        () => process.exit(0),
        (err: unknown) => {
          process.stderr.write(`videollama3: error while stopping: ${(err as Error)?.message ?? String(err)}\n`);
          process.exit(1);
        },
      );
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

async function inspect(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { arrays: { type: 'boolean' } },
  });
  if (positionals.length !== 1) fail('inspect needs one <file.gguf>');
  const info = await readGgufInfo(positionals[0] as string);
  if (!values.arrays) {
    for (const [k, v] of Object.entries(info.metadata)) {
      if (Array.isArray(v) && v.length > 16) info.metadata[k] = `[${v.length} items]`;
    }
  }
  process.stdout.write(`${JSON.stringify(info, null, 2)}\n`);
}

async function main(): Promise<void> {
  const [command, ...rest] = process.argv.slice(2);
  switch (command) {
    case undefined:
    case '-h':
    case '--help':
    case 'help':
      process.stdout.write(HELP);
      return;
    case '-v':
    case '--version':
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      process.stdout.write(`${(require('../../package.json') as { version: string }).version}\n`);
      return;
    case 'convert':
      return convert(rest);
    case 'inspect':
      return inspect(rest);
    case 'generate':
      return generate(rest);
    case 'encode':
      return encode(rest);
    case 'serve':
      return serve(rest);
    case 'bench':
      return bench(rest);
    case 'pull':
      process.exitCode = await pullCommand(rest);
      return;
    case 'bench-matmul': {
      const { values } = parseArgs({
        args: rest,
        options: Object.fromEntries(['type', 'm', 'n', 'k', 'threads', 'reps'].map((k) => [k, { type: 'string' as const }])),
      });
      const num = (v: string | boolean | undefined): number | undefined => (typeof v === 'string' ? Number(v) : undefined);
      const r = await benchmarkMatmul({
        type: typeof values.type === 'string' ? values.type : undefined,
        m: num(values.m), n: num(values.n), k: num(values.k), threads: num(values.threads), reps: num(values.reps),
      });
      const info = systemInfo();
      process.stdout.write(`${JSON.stringify({ ...values, ...r, cpuVariant: info.cpuVariant, addon: info.addonPath })}\n`);
      return;
    }
    case 'info':
      process.stdout.write(`${JSON.stringify(systemInfo(), null, 2)}\n`);
      return;
    default:
      fail(`unknown command '${command}' (see --help)`);
  }
}

main().catch((err: unknown) => {
  if (err instanceof VideoLlama3Error) fail(`${err.message} [${err.code}]`);
  if (err instanceof TypeError && (err as NodeJS.ErrnoException).code?.startsWith('ERR_PARSE_ARGS')) fail(err.message);
  process.stderr.write(`videollama3: unexpected error: ${(err as Error)?.stack ?? String(err)}\n`);
  process.exit(1);
});
