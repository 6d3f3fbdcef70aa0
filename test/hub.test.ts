// Models from the Hugging Face hub, against a loopback server that answers the requests
// @huggingface/hub makes (logged in `server.log`):
//   GET /api/models/<repo>/revision/<rev>?expand=...   commit sha of a revision (404 for an unknown repo)
//   GET /api/models/<repo>/tree/<sha>?recursive=...     the file listing (size, git oid, LFS sha256)
//   GET /<repo>/resolve/<sha>/<path>                    the bytes, with Range (bytes=0-0 probes the size)
import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { existsSync, lstatSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadModel } from '../lib/model';
import { VideoLlama3Error } from '../lib/errors';
import { pullModel, type HubProgress } from '../lib/hub';
import { pullCommand } from '../lib/cli/pull';
import { makeTinyCheckpoint } from './helpers/checkpoint';

const work = mkdtempSync(join(tmpdir(), 'vl3-hub-'));
const HF_HOME = join(work, 'hf-home');
const hubDir = (repo: string): string => join(HF_HOME, 'hub', `models--${repo.replace('/', '--')}`);

type Files = Map<string, Buffer>;
interface Repo {
  refs: Map<string, string>;
  commits: Map<string, Files>;
}
/** How the server misbehaves for one file: cut the connection mid-body, send a short body cleanly, or flip the last byte. */
interface Fault {
  kind: 'cut' | 'short' | 'flip';
  /** Bytes of the file the server has: it sends no byte at or past this offset. */
  at: number;
  /** Requests of the body to fault (then it serves normally); Infinity for always. */
  times: number;
}

class FakeHub {
  readonly repos = new Map<string, Repo>();
  readonly faults = new Map<string, Fault>();
  readonly log: string[] = [];
  private server: Server | undefined;
  url = '';

  add(repo: string, files: Files, ref = 'main'): string {
    const sha = createHash('sha1').update(repo + [...files.keys()].join() + Math.random()).digest('hex');
    const r = this.repos.get(repo) ?? { refs: new Map(), commits: new Map() };
    r.commits.set(sha, files);
    r.refs.set(ref, sha);
    this.repos.set(repo, r);
    return sha;
  }

  async start(): Promise<void> {
    this.server = createServer((req, res) => this.handle(req, res));
    await new Promise<void>((r) => this.server!.listen(0, '127.0.0.1', r));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  async stop(): Promise<void> {
    const s = this.server;
    this.server = undefined;
    if (!s) return;
    s.closeAllConnections();
    await new Promise<void>((r) => s.close(() => r()));
  }

  private json(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
    res.writeHead(status, { 'Content-Type': 'application/json', ...headers });
    res.end(JSON.stringify(body));
  }

  private find(repo: string, rev: string): { sha: string; files: Files } | undefined {
    const r = this.repos.get(repo);
    const sha = r?.refs.get(rev) ?? (r?.commits.has(rev) ? rev : undefined);
    return sha ? { sha, files: r!.commits.get(sha)! } : undefined;
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const u = new URL(req.url!, this.url);
    const path = decodeURIComponent(u.pathname);
    this.log.push(`${req.method} ${path}${req.headers.range ? ` [${req.headers.range}]` : ''}`);
    let m = /^\/api\/models\/([^/]+\/[^/]+)\/revision\/(.+)$/.exec(path);
    if (m && req.method === 'GET') {
      if (!this.repos.has(m[1]!)) return this.json(res, 404, { error: 'Repository not found' }, { 'X-Error-Code': 'RepoNotFound' });
      const c = this.find(m[1]!, m[2]!);
      if (!c) return this.json(res, 404, { error: `Invalid rev id: ${m[2]}` }, { 'X-Error-Code': 'RevisionNotFound' });
      return this.json(res, 200, { _id: 'x', id: m[1], sha: c.sha, private: false, siblings: [...c.files.keys()].map((rfilename) => ({ rfilename })) });
    }
    m = /^\/api\/models\/([^/]+\/[^/]+)\/tree\/([^/]+)$/.exec(path);
    if (m && req.method === 'GET') {
      const c = this.find(m[1]!, m[2]!);
      if (!c) return this.json(res, 404, { error: 'Repository not found' }, { 'X-Error-Code': 'RepoNotFound' });
      return this.json(
        res,
        200,
        [...c.files].map(([p, data]) => ({
          type: 'file',
          path: p,
          size: data.length,
          oid: gitOid(data),
          ...(isLfs(p) && { lfs: { oid: sha256(data), size: data.length, pointerSize: 134 } }),
        })),
      );
    }
    m = /^\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(path);
    if (m && (req.method === 'GET' || req.method === 'HEAD')) {
      const c = this.find(m[1]!, m[2]!);
      const data = c?.files.get(m[3]!);
      if (!c || !data) return this.json(res, 404, { error: 'Entry not found' }, { 'X-Error-Code': 'EntryNotFound' });
      const etag = `"${isLfs(m[3]!) ? sha256(data) : gitOid(data)}"`;
      const headers: Record<string, string> = { 'Content-Type': 'application/octet-stream', ETag: etag, 'X-Repo-Commit': c.sha, 'Accept-Ranges': 'bytes' };
      const r = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
      const start = r ? Number(r[1]) : 0;
      const end = r && r[2] ? Math.min(Number(r[2]), data.length - 1) : data.length - 1;
      if (start > end) {
        res.writeHead(416, { 'Content-Range': `bytes */${data.length}` });
        return void res.end();
      }
      const fault = this.faults.get(`${m[1]}/${m[3]}`);
      const probe = r !== null && start === 0 && end === 0;
      const faulty = req.method === 'GET' && fault !== undefined && !probe && fault.times > 0 && end >= fault.at;
      if (faulty) fault.times--;
      // A short body that ends cleanly has no Content-Length: the framing says the file is shorter than listed.
      const length = faulty && fault.kind === 'short' ? {} : { 'Content-Length': String(end - start + 1) };
      res.writeHead(r ? 206 : 200, { ...headers, ...(r && { 'Content-Range': `bytes ${start}-${end}/${data.length}` }), ...length });
      if (req.method === 'HEAD') return void res.end();
      if (!faulty) return void res.end(data.subarray(start, end + 1));
      if (fault.kind === 'flip') {
        const body = Buffer.from(data.subarray(start, end + 1));
        body[body.length - 1]! ^= 1;
        return void res.end(body);
      }
      const part = data.subarray(start, Math.max(start, fault.at));
      // A FIN after the bytes (not a reset, which may drop bytes in flight): the body ends short of its Content-Length.
      if (fault.kind === 'cut') res.write(part, () => res.socket?.end());
      else res.end(part);
      return;
    }
    this.json(res, 404, { error: `no route ${path}` });
  }
}

function sha256(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}
function gitOid(b: Buffer): string {
  return createHash('sha1').update(`blob ${b.length}\0`).update(b).digest('hex');
}
function isLfs(p: string): boolean {
  return p.endsWith('.safetensors') || p.endsWith('.gguf');
}
function readDir(dir: string): Files {
  return new Map(readdirSync(dir).map((f) => [f, readFileSync(join(dir, f))]));
}
function tinyCheckpoint(name: string, seed: number): Files {
  const dir = join(work, name);
  makeTinyCheckpoint(dir, { layout: 'video_llama_3', tied: true, dtype: 'F32', values: 'normal', text: { layers: 2 }, seed });
  writeFileSync(join(dir, 'preprocessor_config.json'), JSON.stringify({ min_pixels: 8 * 196, max_pixels: 64 * 196 }));
  writeFileSync(join(dir, 'README.md'), '# not downloaded\n');
  return readDir(dir);
}
async function rejection(p: Promise<unknown>): Promise<VideoLlama3Error> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(VideoLlama3Error);
  return err as VideoLlama3Error;
}

const hub = new FakeHub();
const saved = { ...process.env };
let ckpt: Files;

beforeAll(async () => {
  for (const k of ['HF_TOKEN', 'HUGGING_FACE_HUB_TOKEN', 'HF_HUB_CACHE', 'HUGGINGFACE_HUB_CACHE', 'HF_HUB_OFFLINE', 'HF_TOKEN_PATH']) delete process.env[k];
  process.env.HF_HOME = HF_HOME;
  ckpt = tinyCheckpoint('ckpt-a', 1);
  await hub.start();
  process.env.HF_ENDPOINT = hub.url;
});
afterAll(async () => {
  await hub.stop();
  process.env = saved;
  rmSync(work, { recursive: true, force: true });
});

describe('models from the Hugging Face hub', () => {
  let shaA = '';
  let convertedA = '';

  it('downloads a checkpoint, converts it once into the cache, and the model generates', async () => {
    shaA = hub.add('test/tiny', ckpt);
    const events: HubProgress[] = [];
    const model = await loadModel({ model: 'test/tiny', type: 'f32', threads: 2, contextSize: 256, onProgress: (p) => void ('file' in p && events.push(p)) });
    try {
      const r = await model.complete('hello', { maxTokens: 4 });
      expect(r.tokens.length).toBeGreaterThan(0);
    } finally {
      await model.dispose();
    }
    const storage = hubDir('test/tiny');
    convertedA = join(storage, 'videollama3', shaA, 'f32');
    expect(existsSync(join(convertedA, 'llm.gguf')) && existsSync(join(convertedA, 'vision.gguf'))).toBe(true);
    expect(readdirSync(join(storage, 'videollama3', shaA))).toEqual(['f32']); // no temp folder left
    expect(readFileSync(join(storage, 'refs', 'main'), 'utf8')).toBe(shaA);
    // The standard layout: snapshot entries are links to content-addressed blobs; README.md is not fetched.
    const snap = join(storage, 'snapshots', shaA);
    expect(readdirSync(snap).sort()).toEqual([...ckpt.keys()].filter((f) => f !== 'README.md').sort());
    expect(lstatSync(join(snap, 'model.safetensors')).isSymbolicLink()).toBe(true);
    expect(readFileSync(join(storage, 'blobs', sha256(ckpt.get('model.safetensors')!)))).toEqual(ckpt.get('model.safetensors'));
    expect(readdirSync(join(storage, 'blobs')).filter((f) => f.endsWith('.incomplete'))).toEqual([]);
    // Progress: downloads up to the total, then the conversion.
    const dl = events.filter((e) => e.stage === 'download');
    expect(dl.at(-1)!.bytesDone).toBe(dl.at(-1)!.bytesTotal);
    expect(events.some((e) => e.stage === 'convert' && e.bytesDone === e.bytesTotal)).toBe(true);
    expect(events.findIndex((e) => e.stage === 'convert')).toBe(dl.length); // all downloads come first

    // A second load converts nothing and downloads nothing: one revision lookup.
    hub.log.length = 0;
    const again = await pullModel({ repo: 'test/tiny', type: 'f32' });
    expect(again).toMatchObject({ dir: convertedA, sha: shaA, source: 'converted', online: true });
    expect(hub.log.every((l) => l.startsWith('GET /api/models/test/tiny/revision/main'))).toBe(true);
  });

  it('resumes a download the server cuts off, with a Range request, to the same bytes', async () => {
    const file = ckpt.get('model.safetensors')!;
    const sha = hub.add('test/flaky', ckpt);
    const half = Math.floor(file.length / 2);
    // Within one pull: the first body is cut mid-file, the retry asks for the rest.
    hub.faults.set('test/flaky/model.safetensors', { kind: 'cut', at: half, times: 1 });
    hub.log.length = 0;
    const r = await pullModel({ repo: 'test/flaky', type: 'f32' });
    expect(hub.log).toContain(`GET /test/flaky/resolve/${sha}/model.safetensors [bytes=${half}-${file.length - 1}]`);
    const blob = join(hubDir('test/flaky'), 'blobs', sha256(file));
    expect(readFileSync(blob).equals(file)).toBe(true);
    expect(existsSync(join(r.dir, 'llm.gguf'))).toBe(true);

    // Across pulls: a pull that gives up leaves the partial file, and the next one resumes it.
    const sha2 = hub.add('test/flaky', new Map([...ckpt, ['model.safetensors', Buffer.concat([file, Buffer.from('more bytes')])]]));
    const file2 = hub.repos.get('test/flaky')!.commits.get(sha2)!.get('model.safetensors')!;
    hub.faults.set('test/flaky/model.safetensors', { kind: 'cut', at: half, times: 6 });
    const err = await rejection(pullModel({ repo: 'test/flaky', type: 'f32' }));
    expect(err.code).toBe('IO_ERROR');
    expect(err.message).toContain('run again to resume');
    const incomplete = join(hubDir('test/flaky'), 'blobs', `${sha256(file2)}.incomplete`);
    expect(statSync(incomplete).size).toBe(half);
    hub.faults.delete('test/flaky/model.safetensors');
    hub.log.length = 0;
    await pullModel({ repo: 'test/flaky', type: 'f32' });
    expect(hub.log).toContain(`GET /test/flaky/resolve/${sha2}/model.safetensors [bytes=${half}-${file2.length - 1}]`);
    expect(readFileSync(join(hubDir('test/flaky'), 'blobs', sha256(file2))).equals(file2)).toBe(true);
    expect(existsSync(incomplete)).toBe(false);
  }, 30_000);

  it('names the repo when the hub has no such repo (IO_ERROR)', async () => {
    const err = await rejection(loadModel({ model: 'nobody/missing-model' }));
    expect(err.code).toBe('IO_ERROR');
    expect(err.message).toContain('nobody/missing-model');
    expect(err.message).toContain('HF_TOKEN');
    const rev = await rejection(pullModel({ repo: 'test/tiny@no-such-branch' }));
    expect(rev.code).toBe('IO_ERROR');
    expect(rev.message).toContain('no-such-branch');
    // Options are checked before any request.
    expect((await rejection(loadModel({ model: 'test/tiny', type: 'q5' as never }))).code).toBe('INVALID_ARGUMENT');
    expect((await rejection(loadModel({ model: work, revision: 'main' }))).code).toBe('INVALID_ARGUMENT');
    expect((await rejection(pullModel({ repo: 'test/tiny@a', revision: 'b' }))).code).toBe('INVALID_ARGUMENT');
  });

  it('fails clearly on a file shorter than listed, leaving no cache entry under a final name', async () => {
    const file = ckpt.get('model.safetensors')!;
    const sha = hub.add('test/broken', ckpt);
    const at = Math.floor(file.length / 3);
    hub.faults.set('test/broken/model.safetensors', { kind: 'short', at, times: Infinity });
    const err = await rejection(pullModel({ repo: 'test/broken', type: 'f32' }));
    expect(err.code).toBe('IO_ERROR');
    expect(err.message).toContain('test/broken');
    expect(err.message).toContain(`stopped at ${at} of ${file.length} bytes`);
    const storage = hubDir('test/broken');
    expect(existsSync(join(storage, 'videollama3'))).toBe(false);
    expect(existsSync(join(storage, 'blobs', sha256(file)))).toBe(false);
    expect(existsSync(join(storage, 'snapshots', sha, 'model.safetensors'))).toBe(false);
    expect(statSync(join(storage, 'blobs', `${sha256(file)}.incomplete`)).size).toBe(at); // kept to resume
    // Bytes that do not match the listed checksum are dropped, not stored.
    hub.faults.set('test/broken/model.safetensors', { kind: 'flip', at: 0, times: 1 });
    const sum = await rejection(pullModel({ repo: 'test/broken', type: 'f32' }));
    expect(sum.message).toContain('checksum');
    expect(readdirSync(join(storage, 'blobs')).some((f) => f.startsWith(sha256(file)))).toBe(false);
  }, 30_000);

  it('converts a new commit into a new entry and leaves the old one as it was', async () => {
    const before = readFileSync(join(convertedA, 'llm.gguf'));
    const mtime = statSync(join(convertedA, 'llm.gguf')).mtimeMs;
    const shaB = hub.add('test/tiny', tinyCheckpoint('ckpt-b', 2));
    const r = await pullModel({ repo: 'test/tiny', type: 'f32' });
    expect(r.sha).toBe(shaB);
    expect(r.dir).toBe(join(hubDir('test/tiny'), 'videollama3', shaB, 'f32'));
    expect(readFileSync(join(r.dir, 'llm.gguf')).equals(before)).toBe(false);
    expect(readFileSync(join(convertedA, 'llm.gguf')).equals(before)).toBe(true);
    expect(statSync(join(convertedA, 'llm.gguf')).mtimeMs).toBe(mtime);
    // The old commit is still there by its sha.
    expect((await pullModel({ repo: `test/tiny@${shaA}`, type: 'f32' })).dir).toBe(convertedA);
  });

  it('uses the cache without the hub: HF_HUB_OFFLINE=1, or the hub unreachable', async () => {
    const online = await pullModel({ repo: 'test/tiny', type: 'f32' });
    await hub.stop();
    try {
      process.env.HF_HUB_OFFLINE = '1';
      const model = await loadModel({ model: 'test/tiny', type: 'f32', threads: 2, contextSize: 256 });
      await model.dispose();
      expect(await pullModel({ repo: 'test/tiny', type: 'f32' })).toMatchObject({ dir: online.dir, online: false });
      const none = await rejection(pullModel({ repo: 'test/tiny', type: 'q8_0' }));
      expect(none.code).toBe('IO_ERROR');
      expect(none.message).toContain('HF_HUB_OFFLINE');
      delete process.env.HF_HUB_OFFLINE;
      expect(await pullModel({ repo: 'test/tiny', type: 'f32' })).toMatchObject({ dir: online.dir, online: false });
      const down = await rejection(pullModel({ repo: 'test/never-pulled' }));
      expect(down.message).toContain('cannot be reached');
    } finally {
      delete process.env.HF_HUB_OFFLINE;
      await hub.start();
      process.env.HF_ENDPOINT = hub.url;
    }
  });

  it('downloads a repo of llm.gguf + vision.gguf as is, and `pull` prints where it is', async () => {
    const files: Files = new Map([
      ['llm.gguf', readFileSync(join(convertedA, 'llm.gguf'))],
      ['vision.gguf', readFileSync(join(convertedA, 'vision.gguf'))],
      ['config.json', Buffer.from('{}')],
    ]);
    const sha = hub.add('test/gguf', files);
    hub.log.length = 0;
    const r = await pullModel({ repo: 'test/gguf' });
    expect(r).toMatchObject({ source: 'gguf', sha, type: undefined, dir: join(hubDir('test/gguf'), 'snapshots', sha) });
    expect(readdirSync(r.dir).sort()).toEqual(['llm.gguf', 'vision.gguf']);
    expect(existsSync(join(hubDir('test/gguf'), 'videollama3'))).toBe(false);
    expect(hub.log.some((l) => l.includes('config.json'))).toBe(false);
    const model = await loadModel({ model: 'test/gguf', threads: 2, contextSize: 256 });
    await model.dispose();

    const out: string[] = [];
    const write = process.stdout.write;
    process.stdout.write = ((s: string) => (out.push(String(s)), true)) as typeof process.stdout.write;
    let code: number;
    try {
      code = await pullCommand(['test/tiny', '--type', 'f32']);
    } finally {
      process.stdout.write = write;
    }
    expect(code).toBe(0);
    expect(out.join('').trim()).toBe((await pullModel({ repo: 'test/tiny', type: 'f32' })).dir);
  });
});
