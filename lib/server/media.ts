/**
 * Media URLs of requests: `data:` URLs (base64), `file://` paths inside one allowed folder, and
 * `http(s)://` URLs when remote media is allowed (fetched with a size and time limit). Checks that
 * need no I/O run when the request is parsed ({@link parseMediaUrl}); reading happens once the
 * request is admitted ({@link loadMedia}). Internal module.
 */
import { realpath, stat } from 'node:fs/promises';
import { isAbsolute, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ApiError, badRequest } from './errors';

/** Where media may come from. */
export interface MediaPolicy {
  /** Absolute folder `file://` URLs must point into; undefined refuses every `file://` URL. */
  allowedMediaDir: string | undefined;
  /** Whether `http(s)://` URLs are fetched. */
  allowRemoteMedia: boolean;
  /** Largest remote file fetched, in bytes. */
  remoteMediaMaxBytes: number;
  /** Longest a remote fetch may take, in milliseconds. */
  remoteMediaTimeoutMs: number;
}

/** A media reference of a request, checked but not read yet. */
export interface MediaRef {
  kind: 'image' | 'video';
  /** The request field it came from, for error messages. */
  param: string;
  source: { type: 'data'; bytes: Buffer } | { type: 'file'; path: string } | { type: 'remote'; url: URL };
}

const BASE64 = /^[A-Za-z0-9+/\-_]*={0,2}$/;

/** A value for an error message: strings shortened (data URLs can be megabytes). */
export function describeValue(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.length > 80 ? `${value.slice(0, 77)}...` : value);
  if (typeof value === 'number' || typeof value === 'boolean' || value === null || value === undefined) return String(value);
  if (Array.isArray(value)) return 'an array';
  return `a ${typeof value}`;
}

/**
 * Refuses bytes that are not JPEG, PNG, WebP or GIF (the formats the model decodes) from their
 * signature, so the error names the field; the decoder checks the rest.
 */
function checkImageBytes(bytes: Buffer, param: string): void {
  const at = (offset: number, magic: string): boolean => bytes.subarray(offset, offset + magic.length).toString('latin1') === magic;
  const ok = at(0, '\xff\xd8\xff') || at(0, '\x89PNG\r\n\x1a\n') || at(0, 'GIF87a') || at(0, 'GIF89a') || (at(0, 'RIFF') && at(8, 'WEBP'));
  if (!ok) throw badRequest(param, `The bytes of ${param} are not a JPEG, PNG, WebP or GIF image`, 'invalid_media');
}

/** Whether `child` is `dir` or inside it (both absolute). */
function inside(dir: string, child: string): boolean {
  const rel = relative(dir, child);
  return rel === '' || (!rel.startsWith('..') && !isAbsolute(rel));
}

/** Checks a media URL against the policy and decodes `data:` URLs. Throws a 400 naming `param`. */
export function parseMediaUrl(url: unknown, kind: 'image' | 'video', param: string, policy: MediaPolicy): MediaRef {
  if (typeof url !== 'string' || url.length === 0) {
    throw badRequest(param, `Expected a non-empty URL string for ${param} but received ${describeValue(url)}`);
  }
  const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(url)?.[1]?.toLowerCase();
  if (scheme === 'data') {
    const comma = url.indexOf(',');
    const meta = comma < 0 ? '' : url.slice(5, comma);
    if (comma < 0 || !/;base64$/i.test(meta)) {
      throw badRequest(param, `Expected a base64 data URL (data:<media type>;base64,<data>) for ${param} but received ${describeValue(url)}`);
    }
    const data = url.slice(comma + 1).replace(/\s+/g, '');
    if (!BASE64.test(data)) throw badRequest(param, `The data URL of ${param} is not valid base64`);
    const bytes = Buffer.from(data, 'base64');
    if (bytes.length === 0) throw badRequest(param, `The ${kind} of ${param} is empty (0 bytes)`, 'invalid_media');
    if (kind === 'image') checkImageBytes(bytes, param);
    return { kind, param, source: { type: 'data', bytes } };
  }
  if (scheme === 'file') {
    if (policy.allowedMediaDir === undefined) {
      throw badRequest(param, `file:// URLs are refused for ${param}: the server was started without an allowed media folder (--allowed-media-dir)`, 'media_not_allowed');
    }
    let path: string;
    try {
      path = resolve(fileURLToPath(url));
    } catch {
      throw badRequest(param, `Expected an absolute file:// URL (file:///path/to/file) for ${param} but received ${describeValue(url)}`);
    }
    if (!inside(policy.allowedMediaDir, path)) {
      throw badRequest(param, `The file of ${param} is outside the allowed media folder`, 'media_not_allowed');
    }
    return { kind, param, source: { type: 'file', path } };
  }
  if (scheme === 'http' || scheme === 'https') {
    if (!policy.allowRemoteMedia) {
      throw badRequest(param, `Remote media URLs are refused for ${param}: the server was started without --allow-remote-media`, 'media_not_allowed');
    }
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      throw badRequest(param, `Expected a valid URL for ${param} but received ${describeValue(url)}`);
    }
    return { kind, param, source: { type: 'remote', url: parsed } };
  }
  throw badRequest(param, `Expected a data:, file:// or http(s):// URL for ${param} but received ${describeValue(url)}`);
}

/**
 * Reads a media reference: a path the model reads itself (after resolving symlinks, which must
 * stay inside the allowed folder), or the bytes.
 */
export async function loadMedia(ref: MediaRef, policy: MediaPolicy, signal: AbortSignal): Promise<string | Buffer> {
  const { source, param } = ref;
  if (source.type === 'data') return source.bytes;
  if (source.type === 'file') {
    const dir = await realpath(policy.allowedMediaDir!).catch(() => {
      throw badRequest(param, 'The allowed media folder does not exist', 'invalid_media');
    });
    const real = await realpath(source.path).catch(() => {
      throw badRequest(param, `The file of ${param} does not exist`, 'invalid_media');
    });
    if (!inside(dir, real)) throw badRequest(param, `The file of ${param} is outside the allowed media folder`, 'media_not_allowed');
    const st = await stat(real);
    if (!st.isFile()) throw badRequest(param, `The file of ${param} is not a regular file`, 'invalid_media');
    if (st.size === 0) throw badRequest(param, `The ${ref.kind} of ${param} is empty (0 bytes)`, 'invalid_media');
    return real;
  }
  return fetchLimited(source.url, ref, policy, signal);
}

async function fetchLimited(url: URL, ref: MediaRef, policy: MediaPolicy, signal: AbortSignal): Promise<Buffer> {
  const { param } = ref;
  const max = policy.remoteMediaMaxBytes;
  const timeout = AbortSignal.timeout(policy.remoteMediaTimeoutMs);
  const both = AbortSignal.any([signal, timeout]);
  const failed = (why: string): never => {
    throw badRequest(param, `Fetching the ${ref.kind} of ${param} failed: ${why}`, 'invalid_media');
  };
  const tooLarge = (): never => {
    throw badRequest(param, `The ${ref.kind} of ${param} is larger than the server's limit of ${max} bytes`, 'invalid_media');
  };
  try {
    const res = await fetch(url, { signal: both, redirect: 'follow' });
    if (!res.ok) {
      await res.body?.cancel().catch(() => undefined);
      failed(`HTTP ${res.status}`);
    }
    const declared = Number(res.headers.get('content-length') ?? NaN);
    if (Number.isFinite(declared) && declared > max) {
      await res.body?.cancel().catch(() => undefined);
      tooLarge();
    }
    const chunks: Buffer[] = [];
    let total = 0;
    if (res.body) {
      const reader = res.body.getReader();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        total += value.byteLength;
        if (total > max) {
          await reader.cancel().catch(() => undefined);
          tooLarge();
        }
        chunks.push(Buffer.from(value.buffer, value.byteOffset, value.byteLength));
      }
    }
    if (total === 0) throw badRequest(param, `The ${ref.kind} of ${param} is empty (0 bytes)`, 'invalid_media');
    const bytes = Buffer.concat(chunks, total);
    if (ref.kind === 'image') checkImageBytes(bytes, param);
    return bytes;
  } catch (err) {
    if (signal.aborted) throw signal.reason;
    if (timeout.aborted) failed(`no answer within ${policy.remoteMediaTimeoutMs} ms`);
    if (err instanceof ApiError) throw err;
    const cause = (err as { cause?: { message?: unknown } } | undefined)?.cause?.message;
    return failed(typeof cause === 'string' ? cause : err instanceof Error ? err.message : String(err));
  }
}
