// One file of a hub repo into the standard Hugging Face cache, resumably:
//   <storage>/blobs/<etag>              the bytes (etag: LFS sha256, else the git blob sha1)
//   <storage>/blobs/<etag>.incomplete   while downloading; a later attempt resumes it with HTTP Range
//   <storage>/snapshots/<sha>/<path>    a relative symlink to the blob (a copy where links fail)
// @huggingface/hub's downloadFileToCacheDir restarts partial files from zero and does not check the
// length it received, so this writes the cache itself, with the library's file info and range blobs.
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { copyFile, lstat, mkdir, open, rename, rm, stat, symlink, truncate } from 'node:fs/promises';
import { dirname, join, relative } from 'node:path';
import type * as HubModule from '@huggingface/hub';
import { VideoLlama3Error } from '../errors';

export type Hub = typeof HubModule;

/** A file of a repo listing at one commit. */
export interface RemoteFile {
  path: string;
  size: number;
  /** Blob name in the cache: the LFS sha256, else the git blob id. */
  etag: string;
  /** How to check the bytes: the LFS sha256 or the git blob sha1. */
  check: { algo: 'sha256' | 'git-sha1'; hex: string } | undefined;
}

/** Turns a listing entry into a {@link RemoteFile}. */
export function remoteFile(entry: HubModule.ListFileEntry): RemoteFile {
  const lfs = entry.lfs?.oid;
  const oid = entry.oid;
  const etag = lfs ?? oid ?? entry.xetHash;
  if (!etag || !/^[0-9a-f]{40,64}$/.test(etag)) {
    throw new VideoLlama3Error('IO_ERROR', `The hub's listing gives no usable id for ${entry.path}; try again later, or report it to the hub`);
  }
  return {
    path: entry.path,
    size: entry.lfs?.size ?? entry.size,
    etag,
    check: lfs ? { algo: 'sha256', hex: lfs } : oid ? { algo: 'git-sha1', hex: oid } : undefined,
  };
}

export interface DownloadContext {
  hub: Hub;
  repo: string;
  /** The commit the file is read at. */
  sha: string;
  hubUrl: string;
  accessToken: string | undefined;
  /** `<cache>/models--owner--name`. */
  storage: string;
  signal: AbortSignal | undefined;
  /** Bytes of this file on disk so far (resumed bytes included). */
  onBytes: (done: number) => void;
}

/** Consecutive attempts that add no byte before a download gives up. */
const MAX_ATTEMPTS = 5;
/** A response that sends nothing for this long is dropped and the download resumed. */
const STALL_MS = 60_000;

function wait(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((res, rej) => {
    const t = setTimeout(done, ms);
    function done(): void {
      signal?.removeEventListener('abort', onAbort);
      res();
    }
    function onAbort(): void {
      clearTimeout(t);
      rej(signal!.reason);
    }
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

async function sizeOf(path: string): Promise<number | undefined> {
  try {
    const st = await stat(path);
    return st.isFile() ? st.size : undefined;
  } catch {
    return undefined;
  }
}

/** Points `pointer` at `blob` (a relative symlink; a copy where the file system has none). */
async function linkBlob(blob: string, pointer: string): Promise<void> {
  await mkdir(dirname(pointer), { recursive: true });
  await rm(pointer, { force: true });
  try {
    await symlink(relative(dirname(pointer), blob), pointer);
  } catch {
    const tmp = `${pointer}.copying-${process.pid}`;
    await copyFile(blob, tmp);
    await rename(tmp, pointer);
  }
}

async function digest(path: string, check: NonNullable<RemoteFile['check']>, size: number): Promise<string> {
  const h = createHash(check.algo === 'sha256' ? 'sha256' : 'sha1');
  if (check.algo === 'git-sha1') h.update(`blob ${size}\0`);
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) h.update(chunk as Buffer);
  return h.digest('hex');
}

/** Whether an error is the hub answering with an HTTP error (as opposed to the network failing). */
export function httpStatus(err: unknown, hub: Hub): number | undefined {
  return err instanceof hub.HubApiError ? err.statusCode : undefined;
}

/** What went wrong on the wire, for messages. */
export function networkMessage(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const cause = (err as Error & { cause?: unknown }).cause;
  return cause instanceof Error && cause.message ? `${err.message} (${cause.message})` : err.message;
}

/**
 * Makes `<storage>/snapshots/<sha>/<file.path>` hold the file's bytes, downloading what is missing.
 * Interrupted downloads are resumed (in this call, up to {@link MAX_ATTEMPTS} tries without progress,
 * and by later calls from the `.incomplete` file). The file gets its final name only once its length
 * and checksum match the listing.
 * @returns the snapshot path.
 */
export async function downloadToCache(ctx: DownloadContext, file: RemoteFile): Promise<string> {
  const pointer = join(ctx.storage, 'snapshots', ctx.sha, ...file.path.split('/'));
  const blob = join(ctx.storage, 'blobs', file.etag);
  const where = `${file.path} of ${ctx.repo}@${ctx.sha.slice(0, 12)}`;
  const ioError = (what: string, err: unknown): VideoLlama3Error =>
    new VideoLlama3Error('IO_ERROR', `Cannot ${what} for ${where}: ${(err as Error).message}; check the disk and the permissions of ${ctx.storage}`, { cause: err });

  if ((await sizeOf(pointer)) === file.size) {
    ctx.onBytes(file.size);
    return pointer;
  }
  if ((await sizeOf(blob)) === file.size) {
    await linkBlob(blob, pointer).catch((err) => {
      throw ioError('link the cached blob', err);
    });
    ctx.onBytes(file.size);
    return pointer;
  }
  const incomplete = `${blob}.incomplete`;
  try {
    await mkdir(dirname(blob), { recursive: true });
    const st = await lstat(incomplete).catch(() => undefined);
    if (st && (!st.isFile() || st.size > file.size)) await rm(incomplete, { force: true });
  } catch (err) {
    throw ioError('prepare the cache folder', err);
  }

  let info: HubModule.FileDownloadInfoOutput | null | undefined;
  let rangeIgnored = false;
  // Passes the caller's signal, times out a request that gets no answer, and notices a server that answers a resumed request with the whole file.
  const fetcher: typeof fetch = async (input, init) => {
    const headers = new Headers(init?.headers);
    const range = /^bytes=(\d+)-/.exec(headers.get('range') ?? '');
    // Until the headers come: no answer for STALL_MS aborts the request (the body has its own stall timer).
    const slow = new AbortController();
    const timer = setTimeout(() => slow.abort(new Error(`no answer for ${STALL_MS / 1000} s`)), STALL_MS);
    let res: Response;
    try {
      res = await fetch(input, { ...init, signal: ctx.signal ? AbortSignal.any([ctx.signal, slow.signal]) : slow.signal });
    } finally {
      clearTimeout(timer);
    }
    if (range && Number(range[1]) > 0 && res.status === 200) {
      rangeIgnored = true;
      await res.body?.cancel().catch(() => undefined);
      throw new Error('the server ignored the byte range');
    }
    return res;
  };

  let fruitless = 0;
  for (;;) {
    ctx.signal?.throwIfAborted();
    let have = (await sizeOf(incomplete)) ?? 0;
    const before = have;
    ctx.onBytes(have);
    let failure: unknown;
    try {
      info ??= await ctx.hub.fileDownloadInfo({
        repo: ctx.repo,
        path: file.path,
        revision: ctx.sha,
        hubUrl: ctx.hubUrl,
        accessToken: ctx.accessToken,
        fetch: fetcher,
      });
      if (!info) {
        throw new VideoLlama3Error('IO_ERROR', `The hub lists ${where} but does not serve it (HTTP 404); try again later`);
      }
      if (info.size !== file.size) {
        throw new VideoLlama3Error('IO_ERROR', `The hub serves ${info.size} bytes for ${where} but lists ${file.size}; try again later`);
      }
      if (have < file.size) {
        const remote = await ctx.hub.downloadFile({
          repo: ctx.repo,
          path: file.path,
          revision: ctx.sha,
          hubUrl: ctx.hubUrl,
          accessToken: ctx.accessToken,
          fetch: fetcher,
          downloadInfo: info,
        });
        if (!remote) throw new VideoLlama3Error('IO_ERROR', `The hub lists ${where} but does not serve it (HTTP 404); try again later`);
        const reader = remote.slice(have).stream().getReader();
        const out = await open(incomplete, 'a').catch((err) => {
          throw ioError('write the download', err);
        });
        let stalled = false;
        let timer: NodeJS.Timeout | undefined;
        const arm = (): void => {
          clearTimeout(timer);
          timer = setTimeout(() => {
            stalled = true;
            void reader.cancel().catch(() => undefined);
          }, STALL_MS);
        };
        try {
          arm();
          for (;;) {
            const { done, value } = await reader.read();
            if (done) break;
            arm();
            if (have + value.byteLength > file.size) {
              throw new VideoLlama3Error('IO_ERROR', `The hub sent more than the ${file.size} bytes it lists for ${where}; try again later`);
            }
            await out.write(value).catch((err) => {
              throw ioError('write the download', err);
            });
            have += value.byteLength;
            ctx.onBytes(have);
          }
          if (stalled) throw new Error(`no data for ${STALL_MS / 1000} s`);
        } finally {
          clearTimeout(timer);
          await out.close().catch(() => undefined);
          reader.releaseLock();
        }
      }
    } catch (err) {
      failure = err;
    }
    if (ctx.signal?.aborted) throw ctx.signal.reason;
    if (failure === undefined && have === file.size) break;
    if (rangeIgnored) {
      // Start again from zero, once: a server without ranges cannot resume.
      rangeIgnored = false;
      await truncate(incomplete, 0).catch(() => undefined);
      if (fruitless++ >= MAX_ATTEMPTS) throw new VideoLlama3Error('IO_ERROR', `The server ignores byte ranges, so ${where} cannot be resumed; try again later`);
      continue;
    }
    if (failure instanceof VideoLlama3Error) {
      if (failure.message.includes('more than')) await rm(incomplete, { force: true });
      throw failure;
    }
    const status = httpStatus(failure, ctx.hub);
    if (status !== undefined && status !== 408 && status !== 429 && status < 500) {
      throw new VideoLlama3Error('IO_ERROR', `The hub refused ${where} (HTTP ${status}): ${(failure as Error).message}${status === 401 || status === 403 ? '; set HF_TOKEN to a token with access to the repo' : ''}`, { cause: failure });
    }
    fruitless = have > before ? 1 : fruitless + 1;
    if (fruitless >= MAX_ATTEMPTS) {
      const why = failure === undefined ? 'the connection ended early' : networkMessage(failure);
      throw new VideoLlama3Error(
        'IO_ERROR',
        `Download of ${where} stopped at ${have} of ${file.size} bytes (${why}); run again to resume it from ${incomplete}`,
        { cause: failure },
      );
    }
    await wait(Math.min(4000, 250 * 2 ** (fruitless - 1)), ctx.signal);
  }

  if (file.check) {
    const got = await digest(incomplete, file.check, file.size).catch((err) => {
      throw ioError('read the download back', err);
    });
    if (got !== file.check.hex) {
      await rm(incomplete, { force: true });
      throw new VideoLlama3Error('IO_ERROR', `Downloaded ${where} does not match the hub's checksum (${file.check.algo} ${got}, expected ${file.check.hex}); run again to download it anew`);
    }
  }
  try {
    await rename(incomplete, blob);
    await linkBlob(blob, pointer);
  } catch (err) {
    throw ioError('store the download', err);
  }
  return pointer;
}
