#!/usr/bin/env node
// The `videollama3` command. Each subcommand parses its flags with node:util parseArgs.
import { parseArgs } from 'node:util';
import { benchmarkMatmul } from '../bench';
import { CONVERT_TYPES, convertModel, type ConvertType } from '../convert';
import { VideoLlama3Error } from '../errors';
import { readGgufInfo } from '../gguf';
import { systemInfo } from '../system';
import { ProgressBar } from './progress';

const HELP = `videollama3 - VideoLLaMA 3 for Node.js

Usage: videollama3 <command> [options]

Commands:
  convert <hf-dir> <out-dir>   Convert a Hugging Face checkpoint to llm.gguf + vision.gguf
      --type <t>               ${CONVERT_TYPES.join(' | ')} (default f16)
      --threads <n>            quantization threads (default: all cores)
      --overwrite              replace an existing converted model in <out-dir>
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
