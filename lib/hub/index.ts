/**
 * Models from the Hugging Face hub: `pullModel()` downloads a repo's files into the standard
 * Hugging Face cache (through `@huggingface/hub`) and converts a checkpoint once; the converted
 * model is cached beside the download:
 *
 *     $HF_HUB_CACHE (default $HF_HOME/hub, ~/.cache/huggingface/hub)/models--owner--name/
 *       blobs/, snapshots/<sha>/, refs/<revision>      as huggingface_hub lays them out
 *       videollama3/<sha>/<type>/{llm,vision}.gguf     the converted model
 *
 * A repo that already holds `llm.gguf` and `vision.gguf` is used as downloaded (its snapshot folder).
 */
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { CONVERT_TYPES, MODEL_FILES, convertModel, type ConvertType } from '../convert';
import { VideoLlama3Error } from '../errors';
import { checkKnownKeys, choiceOption, invalid, signalOption, stringOption } from '../validate';
import { downloadToCache, httpStatus, networkMessage, remoteFile, type Hub, type RemoteFile } from './download';
import { hubEndpoint, hubOffline, hubToken, parseRepoId, validRevision } from './env';

export { parseRepoId } from './env';

/** Progress of {@link pullModel} (and of `loadModel` with a hub repo id). */
export interface HubProgress {
  /** `'download'`: files coming from the hub; `'convert'`: the checkpoint being converted. */
  stage: 'download' | 'convert';
  /** The file being downloaded (its path in the repo), or written (`'llm'` / `'vision'`). */
  file: string;
  /** Bytes done so far in this stage, over all its files. */
  bytesDone: number;
  /** Bytes of the stage in all. */
  bytesTotal: number;
  /** `bytesDone / bytesTotal` (1 when there is nothing to do). */
  fraction: number;
}

/** Options of {@link pullModel}. */
export interface PullOptions {
  /** Hub repo id, `owner/name`, optionally `owner/name@revision`. */
  repo: string;
  /** Branch, tag or commit (default `main`, or the `@revision` of `repo`). */
  revision?: string;
  /** Stored type of the converted weights (default `'f16'`); ignored for repos of GGUF files. */
  type?: ConvertType;
  /** Called as files download and the checkpoint converts (at most every 100 ms, and at the end). */
  onProgress?: (progress: HubProgress) => void;
  /** Cancels the pull; partial downloads stay and resume on the next pull, nothing half-converted stays. */
  signal?: AbortSignal;
}

/** What {@link pullModel} made ready. */
export interface PullResult {
  /** The folder to pass to `loadModel` (holds llm.gguf and vision.gguf). */
  dir: string;
  /** `owner/name`. */
  repo: string;
  /** The commit the model is from. */
  sha: string;
  /** The converted type, or `undefined` for a repo of GGUF files. */
  type: ConvertType | undefined;
  /** `'gguf'`: the repo's own GGUF files; `'converted'`: converted here from a checkpoint. */
  source: 'gguf' | 'converted';
  /** Whether the hub was asked (false: offline, from the cache alone). */
  online: boolean;
}

const PULL_KEYS = ['repo', 'revision', 'type', 'onProgress', 'signal'] as const;
const SHA = /^[0-9a-f]{40}$/;
/** Checkpoint files the converter reads (root of the repo). */
const CHECKPOINT_FILE = /\.(json|safetensors|jinja|txt)$/;

function loadHub(): Hub {
  try {
    // Loaded on first use: loading a local folder never pays for it.
    return require('@huggingface/hub') as Hub;
  } catch (err) {
    throw new VideoLlama3Error('INTERNAL', `Cannot load @huggingface/hub (${(err as Error).message}); reinstall videollama3-node`, { cause: err });
  }
}

function hasModel(dir: string): boolean {
  return Object.values(MODEL_FILES).every((f) => statSync(join(dir, f), { throwIfNoEntry: false })?.isFile() === true);
}

function pidAlive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Removes temp conversion folders of processes that died. */
function removeStaleTemps(dir: string): void {
  for (const name of readdirSync(dir)) {
    const m = /^\.tmp-[^-]+-(\d+)-/.exec(name);
    if (m && !pidAlive(Number(m[1]))) rmSync(join(dir, name), { recursive: true, force: true });
  }
}

/** Folders in the cache for one repo. */
class RepoCache {
  constructor(readonly storage: string) {}

  converted(sha: string, type: ConvertType): string {
    return join(this.storage, 'videollama3', sha, type);
  }

  snapshot(sha: string): string {
    return join(this.storage, 'snapshots', sha);
  }

  /** The commit a revision named last time, from refs/<revision>. */
  readRef(revision: string): string | undefined {
    if (SHA.test(revision)) return revision;
    try {
      const sha = readFileSync(join(this.storage, 'refs', ...revision.split('/')), 'utf8').trim();
      return SHA.test(sha) ? sha : undefined;
    } catch {
      return undefined;
    }
  }

  writeRef(revision: string, sha: string): void {
    if (revision === sha) return;
    const file = join(this.storage, 'refs', ...revision.split('/'));
    try {
      mkdirSync(join(file, '..'), { recursive: true });
      const tmp = `${file}.${process.pid}.tmp`;
      writeFileSync(tmp, sha);
      renameSync(tmp, file);
    } catch (err) {
      throw new VideoLlama3Error('IO_ERROR', `Cannot write ${file}: ${(err as Error).message}; check the permissions of ${this.storage}`, { cause: err });
    }
  }

  /** A ready model for `sha` from the cache alone: the converted one of `type`, else the repo's GGUF files. */
  ready(sha: string, type: ConvertType): { dir: string; source: 'gguf' | 'converted' } | undefined {
    const conv = this.converted(sha, type);
    if (hasModel(conv)) return { dir: conv, source: 'converted' };
    const snap = this.snapshot(sha);
    if (hasModel(snap)) return { dir: snap, source: 'gguf' };
    return undefined;
  }
}

/**
 * Downloads a hub repo (`owner/name[@revision]`) into the Hugging Face cache and makes it ready to
 * load: a checkpoint is converted once (kept per commit and type), a repo of `llm.gguf` +
 * `vision.gguf` is used as is. Reads HF_ENDPOINT, HF_TOKEN (or the `huggingface-cli login` token),
 * HF_HOME / HF_HUB_CACHE and HF_HUB_OFFLINE. Offline (HF_HUB_OFFLINE=1, or the hub unreachable), a
 * model already in the cache for the revision is used.
 * @throws VideoLlama3Error INVALID_ARGUMENT for bad options; IO_ERROR naming the repo when it is not on
 * the hub, cannot be reached, or a download fails; the converter's codes when the checkpoint is bad.
 */
export async function pullModel(options: PullOptions): Promise<PullResult> {
  checkKnownKeys('pullModel', options, PULL_KEYS);
  const id = stringOption('repo', options.repo);
  const ref = parseRepoId(id);
  if (!ref) invalid('repo', "Hugging Face repo id 'owner/name' or 'owner/name@revision'", id);
  let revision = options.revision === undefined ? undefined : stringOption('revision', options.revision);
  if (revision !== undefined && !validRevision(revision)) invalid('revision', 'branch, tag or commit name', revision);
  if (ref.revision !== undefined && revision !== undefined && ref.revision !== revision) {
    throw new VideoLlama3Error('INVALID_ARGUMENT', `${id} names revision ${ref.revision} but revision is ${revision}; give the revision once`);
  }
  revision = revision ?? ref.revision ?? 'main';
  const type = choiceOption('type', options.type, CONVERT_TYPES, 'f16');
  const signal = signalOption('signal', options.signal);
  if (options.onProgress !== undefined && typeof options.onProgress !== 'function') invalid('onProgress', 'function', options.onProgress);
  const onProgress = options.onProgress;
  signal?.throwIfAborted();

  const repo = ref.repo;
  const hub = loadHub();
  const hubUrl = hubEndpoint();
  const cache = new RepoCache(join(resolve(hub.getHFHubCachePath()), hub.getRepoFolderName({ name: repo, type: 'model' })));
  const label = `${repo}@${revision}`;

  const fromCache = (why: string): PullResult => {
    const sha = cache.readRef(revision);
    const found = sha === undefined ? undefined : cache.ready(sha, type);
    if (!sha || !found) {
      throw new VideoLlama3Error(
        'IO_ERROR',
        `${why}, and the cache (${cache.storage}) has no model for ${label}${sha ? ` (commit ${sha})` : ''} of type ${type}; ` +
          `connect to the hub and pull it once (\`npx videollama3 pull ${repo}${revision === 'main' ? '' : ` --revision ${revision}`}${type === 'f16' ? '' : ` --type ${type}`}\`)`,
      );
    }
    return { dir: found.dir, repo, sha, type: found.source === 'gguf' ? undefined : type, source: found.source, online: false };
  };
  if (hubOffline()) return fromCache('HF_HUB_OFFLINE is set');

  const accessToken = hubToken();
  const apiFetch: typeof fetch = (input, init) => fetch(input, { ...init, signal: signal ? AbortSignal.any([signal, AbortSignal.timeout(60_000)]) : AbortSignal.timeout(60_000) });
  const hubError = (err: unknown, what: string): VideoLlama3Error => {
    if (err instanceof VideoLlama3Error) return err;
    const status = httpStatus(err, hub);
    // The hub's own words (its JSON `error`), without the URL trailer @huggingface/hub appends.
    const said = (err as { data?: { error?: unknown; message?: unknown } }).data;
    const msg = String(said?.error ?? said?.message ?? (err as Error).message ?? err);
    if (status === 404 || status === 401) {
      const noRev = status === 404 && /\brev/i.test(msg);
      return new VideoLlama3Error(
        'IO_ERROR',
        noRev
          ? `The hub (${hubUrl}) has no revision ${revision} of ${repo}: ${msg}; check the branch, tag or commit`
          : `The hub (${hubUrl}) has no model repo ${repo} (HTTP ${status}); check the name, or for a private or gated repo set HF_TOKEN to a token with access`,
        { cause: err },
      );
    }
    if (status === 403) {
      return new VideoLlama3Error('IO_ERROR', `The hub (${hubUrl}) refused ${what} of ${repo} (HTTP 403): ${msg}; accept the repo's terms on its page and set HF_TOKEN`, { cause: err });
    }
    return new VideoLlama3Error('IO_ERROR', `The hub (${hubUrl}) failed ${what} of ${label} (HTTP ${status}): ${msg}; try again later`, { cause: err });
  };

  let sha: string;
  try {
    const info = await hub.modelInfo({ name: repo, revision, hubUrl, accessToken, fetch: apiFetch, additionalFields: ['sha'] });
    sha = String((info as { sha?: unknown }).sha ?? '');
    if (!SHA.test(sha)) throw new VideoLlama3Error('IO_ERROR', `The hub (${hubUrl}) gave no commit id for ${label}; try again later`);
  } catch (err) {
    if (signal?.aborted) throw signal.reason;
    if (httpStatus(err, hub) !== undefined || err instanceof VideoLlama3Error) throw hubError(err, 'the revision');
    return fromCache(`The hub (${hubUrl}) cannot be reached (${networkMessage(err)})`);
  }
  cache.writeRef(revision, sha);
  const done = cache.ready(sha, type);
  if (done) return { dir: done.dir, repo, sha, type: done.source === 'gguf' ? undefined : type, source: done.source, online: true };

  let files: RemoteFile[];
  try {
    const listed: RemoteFile[] = [];
    for await (const e of hub.listFiles({ repo, revision: sha, hubUrl, accessToken, fetch: apiFetch })) {
      if (e.type === 'file') listed.push(remoteFile(e));
    }
    files = listed;
  } catch (err) {
    if (signal?.aborted) throw signal.reason;
    throw hubError(err, 'the file listing');
  }
  const names = new Set(files.map((f) => f.path));
  const gguf = names.has(MODEL_FILES.llm) && names.has(MODEL_FILES.vision);
  const wanted = gguf
    ? files.filter((f) => f.path === MODEL_FILES.llm || f.path === MODEL_FILES.vision)
    : files.filter((f) => !f.path.includes('/') && CHECKPOINT_FILE.test(f.path));
  if (!gguf && (!names.has('config.json') || !wanted.some((f) => f.path.endsWith('.safetensors')))) {
    throw new VideoLlama3Error(
      'UNSUPPORTED_MODEL',
      `${label} holds neither ${MODEL_FILES.llm} + ${MODEL_FILES.vision} nor a safetensors checkpoint with config.json; pass a VideoLLaMA 3 repo`,
    );
  }

  // Download.
  const total = wanted.reduce((s, f) => s + f.size, 0);
  let doneBefore = 0;
  let last = 0;
  const report = (p: Omit<HubProgress, 'fraction'>, force: boolean): void => {
    if (!onProgress) return;
    const now = Date.now();
    if (!force && now - last < 100) return;
    last = now;
    onProgress({ ...p, fraction: p.bytesTotal > 0 ? p.bytesDone / p.bytesTotal : 1 });
  };
  const storage = cache.storage;
  for (const f of wanted) {
    await downloadToCache(
      { hub, repo, sha, hubUrl, accessToken, storage, signal, onBytes: (n) => report({ stage: 'download', file: f.path, bytesDone: doneBefore + n, bytesTotal: total }, false) },
      f,
    );
    doneBefore += f.size;
    report({ stage: 'download', file: f.path, bytesDone: doneBefore, bytesTotal: total }, true);
  }
  const snap = cache.snapshot(sha);
  if (gguf) return { dir: snap, repo, sha, type: undefined, source: 'gguf', online: true };

  // Convert into a temp folder beside the final one, then rename it into place.
  const final = cache.converted(sha, type);
  const parent = join(final, '..');
  let tmp: string;
  try {
    mkdirSync(parent, { recursive: true });
    removeStaleTemps(parent);
    tmp = mkdtempSync(join(parent, `.tmp-${type}-${process.pid}-`));
  } catch (err) {
    throw new VideoLlama3Error('IO_ERROR', `Cannot create ${parent}: ${(err as Error).message}; check the permissions of ${storage}`, { cause: err });
  }
  try {
    await convertModel({
      input: snap,
      output: tmp,
      type,
      signal,
      onProgress: onProgress && ((p) => report({ stage: 'convert', file: p.file, bytesDone: p.bytesDone, bytesTotal: p.bytesTotal }, p.bytesDone === p.bytesTotal)),
    });
    try {
      renameSync(tmp, final);
    } catch (err) {
      // Another process finished the same conversion first: use its result.
      if (!hasModel(final)) {
        throw new VideoLlama3Error('IO_ERROR', `Cannot move the converted model to ${final}: ${(err as Error).message}; check the permissions of ${storage}`, { cause: err });
      }
    }
  } catch (err) {
    if (signal?.aborted) throw signal.reason;
    if (err instanceof VideoLlama3Error && err.code !== 'IO_ERROR' && err.code !== 'INTERNAL') {
      throw new VideoLlama3Error(err.code, `Converting ${repo}@${sha.slice(0, 12)}: ${err.message}`, { cause: err });
    }
    throw err;
  } finally {
    if (existsSync(tmp)) rmSync(tmp, { recursive: true, force: true });
  }
  return { dir: final, repo, sha, type, source: 'converted', online: true };
}

/**
 * For `loadModel`: when `model` is not an existing path and looks like a hub repo id, pulls it and
 * returns the folder to load; otherwise undefined (a local folder: `type` and `revision` must be unset).
 */
export async function hubModelFolder(
  model: string,
  options: { type?: ConvertType; revision?: string; signal?: AbortSignal; onProgress?: (p: HubProgress) => void },
): Promise<string | undefined> {
  const local = existsSync(resolve(model));
  if (local || !parseRepoId(model)) {
    for (const key of ['type', 'revision'] as const) {
      if (options[key] !== undefined) {
        throw new VideoLlama3Error(
          'INVALID_ARGUMENT',
          `${key} applies to Hugging Face repo ids (owner/name); ${local ? `${model} is a local path` : `${JSON.stringify(model)} is not a repo id`}, so leave ${key} out`,
        );
      }
    }
    return undefined;
  }
  try {
    const r = await pullModel({ repo: model, type: options.type, revision: options.revision, signal: options.signal, onProgress: options.onProgress });
    return r.dir;
  } catch (err) {
    if (err instanceof VideoLlama3Error && err.code === 'IO_ERROR' && err.message.includes('has no model repo')) {
      throw new VideoLlama3Error('IO_ERROR', `Model folder ${resolve(model)} does not exist, and ${err.message[0]!.toLowerCase()}${err.message.slice(1)}`, { cause: err });
    }
    throw err;
  }
}
