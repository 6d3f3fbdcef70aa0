// Hugging Face hub settings: repo ids, and the environment variables the hub's own clients read.
import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { VideoLlama3Error } from '../errors';

/** The public hub, used when HF_ENDPOINT is not set. */
export const DEFAULT_ENDPOINT = 'https://huggingface.co';

/** `owner/name`, optionally `@revision`. Names as the hub allows them: letters, digits, `-`, `_`, `.`. */
const REPO_ID = /^([A-Za-z0-9][A-Za-z0-9._-]*)\/([A-Za-z0-9][A-Za-z0-9._-]*)(?:@(.+))?$/;

/** A hub repo id split into its parts. */
export interface RepoRef {
  /** `owner/name`. */
  repo: string;
  /** The revision after `@`, if one was given. */
  revision: string | undefined;
}

/** Parses `owner/name[@revision]`; undefined when `value` does not look like a hub repo id. */
export function parseRepoId(value: string): RepoRef | undefined {
  const m = REPO_ID.exec(value);
  if (!m) return undefined;
  const [, owner, name, revision] = m as unknown as [string, string, string, string | undefined];
  for (const part of [owner, name]) {
    if (part.includes('..') || part.includes('--') || part.endsWith('.') || part.length > 96) return undefined;
  }
  if (revision !== undefined && !validRevision(revision)) return undefined;
  return { repo: `${owner}/${name}`, revision };
}

/** A branch, tag or commit name usable in a URL path and as a file name under `refs/`. */
export function validRevision(revision: string): boolean {
  return (
    revision.length > 0 &&
    revision.length <= 255 &&
    !/[\s\\:*?"<>|~^\0]/.test(revision) &&
    !revision.split('/').some((p) => p === '' || p === '.' || p === '..')
  );
}

/** The hub's address: HF_ENDPOINT, else https://huggingface.co (no trailing slash). */
export function hubEndpoint(): string {
  const raw = process.env.HF_ENDPOINT?.trim() || DEFAULT_ENDPOINT;
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new VideoLlama3Error('INVALID_ARGUMENT', `HF_ENDPOINT=${JSON.stringify(raw)} is not a URL; set it to the hub's address, e.g. ${DEFAULT_ENDPOINT}`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new VideoLlama3Error('INVALID_ARGUMENT', `HF_ENDPOINT=${JSON.stringify(raw)} must be an http:// or https:// URL`);
  }
  return raw.replace(/\/+$/, '');
}

/** Whether HF_HUB_OFFLINE asks for no network (1, true, yes, on; as huggingface_hub reads it). */
export function hubOffline(): boolean {
  return ['1', 'true', 'yes', 'on'].includes((process.env.HF_HUB_OFFLINE ?? '').trim().toLowerCase());
}

/** HF_HOME, else $XDG_CACHE_HOME/huggingface, else ~/.cache/huggingface. */
function hfHome(): string {
  return process.env.HF_HOME || join(process.env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'huggingface');
}

/**
 * The access token: HF_TOKEN, else HUGGING_FACE_HUB_TOKEN, else the file `huggingface-cli login`
 * writes (HF_TOKEN_PATH, default $HF_HOME/token). Undefined when there is none.
 */
export function hubToken(): string | undefined {
  let token = process.env.HF_TOKEN?.trim() || process.env.HUGGING_FACE_HUB_TOKEN?.trim();
  let from = process.env.HF_TOKEN ? 'HF_TOKEN' : 'HUGGING_FACE_HUB_TOKEN';
  if (!token) {
    const file = process.env.HF_TOKEN_PATH || join(hfHome(), 'token');
    try {
      token = readFileSync(file, 'utf8').trim();
      from = file;
    } catch {
      return undefined;
    }
    if (!token) return undefined;
  }
  if (!token.startsWith('hf_')) {
    throw new VideoLlama3Error('INVALID_ARGUMENT', `The Hugging Face token in ${from} does not start with "hf_"; set HF_TOKEN to a token from https://huggingface.co/settings/tokens`);
  }
  return token;
}
