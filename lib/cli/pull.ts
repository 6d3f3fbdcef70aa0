// `videollama3 pull <hf-repo> [--revision R] [--type T]`: download (and convert) a hub model into the
// Hugging Face cache; prints the folder to pass to --model / loadModel on stdout.
import { parseArgs } from 'node:util';
import { CONVERT_TYPES, type ConvertType } from '../convert';
import { VideoLlama3Error } from '../errors';
import { pullModel } from '../hub';
import { ProgressBar } from './progress';

export const PULL_HELP = `Usage: videollama3 pull <hf-repo> [--revision <r>] [--type <t>]

Download a VideoLLaMA 3 model from the Hugging Face hub into the Hugging Face cache and convert it
once; prints the converted model's folder (for --model or loadModel). <hf-repo> is owner/name,
optionally owner/name@revision. A repo holding llm.gguf + vision.gguf is downloaded as is.

Options:
  --revision <r>   branch, tag or commit (default main)
  --type <t>       ${CONVERT_TYPES.join(' | ')} (default f16)
  --json           print { dir, repo, sha, type, source } as JSON instead of the folder
  -h, --help       show this help

Environment: HF_ENDPOINT (hub address), HF_TOKEN (private or gated repos), HF_HOME / HF_HUB_CACHE
(cache location), HF_HUB_OFFLINE=1 (use the cache only).
`;

/** Runs `videollama3 pull`; resolves to the process exit code (0 ok, 1 failure, 2 usage, 130 interrupted). */
export async function pullCommand(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        revision: { type: 'string' },
        type: { type: 'string' },
        json: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (err) {
    process.stderr.write(`videollama3: ${(err as Error).message} (see videollama3 pull --help)\n`);
    return 2;
  }
  const { values, positionals } = parsed;
  if (values.help) {
    process.stdout.write(PULL_HELP);
    return 0;
  }
  if (positionals.length !== 1) {
    process.stderr.write('videollama3: pull needs one <hf-repo>, e.g. videollama3 pull DAMO-NLP-SG/VideoLLaMA3-2B (see --help)\n');
    return 2;
  }
  if (values.type !== undefined && !(CONVERT_TYPES as readonly string[]).includes(values.type)) {
    process.stderr.write(`videollama3: --type must be one of ${CONVERT_TYPES.join(', ')}, not ${JSON.stringify(values.type)}\n`);
    return 2;
  }
  const controller = new AbortController();
  const onSigint = (): void => controller.abort(new VideoLlama3Error('ABORTED', 'Interrupted; run the same pull again to resume'));
  process.once('SIGINT', onSigint);
  const bars = { download: new ProgressBar('downloading'), convert: new ProgressBar('converting') };
  let stage: keyof typeof bars | undefined;
  try {
    const r = await pullModel({
      repo: positionals[0]!,
      revision: values.revision,
      type: values.type as ConvertType | undefined,
      signal: controller.signal,
      onProgress: (p) => {
        if (stage !== p.stage) bars[stage ?? p.stage].finish();
        stage = p.stage;
        bars[p.stage].update(p.bytesDone, p.bytesTotal, p.file);
      },
    });
    if (stage) bars[stage].finish();
    if (values.json) process.stdout.write(`${JSON.stringify(r)}\n`);
    else {
      if (!r.online) process.stderr.write(`offline: using the cached model of ${r.repo} at ${r.sha}\n`);
      process.stdout.write(`${r.dir}\n`);
    }
    return 0;
  } catch (err) {
    if (stage) bars[stage].finish();
    const msg = err instanceof Error ? err.message : String(err);
    process.stderr.write(`videollama3: ${msg}\n`);
    return controller.signal.aborted ? 130 : err instanceof VideoLlama3Error && err.code === 'INVALID_ARGUMENT' ? 2 : 1;
  } finally {
    process.removeListener('SIGINT', onSigint);
  }
}
