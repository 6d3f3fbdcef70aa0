/**
 * `createServer()`: an OpenAI-compatible HTTP server for a loaded {@link Model}, on fastify.
 * Routes: `POST /v1/chat/completions`, `POST /v1/completions`, `GET /v1/models`, `GET /health`,
 * `GET /metrics` (Prometheus). See the README's "Serve (OpenAI-compatible)" section.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { statSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { resolve } from 'node:path';
import { PassThrough } from 'node:stream';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { VideoLlama3Error } from '../errors';
import type { GenerationResult } from '../generation';
import type { Model } from '../model';
import type { Prompt } from '../prompt';
import { checkKnownKeys, intOption, invalid, stringOption } from '../validate';
import { Admission } from './admission';
import { ApiError, ClientGone, RequestTimeout, badRequest, toApiError } from './errors';
import { loadMedia, type MediaPolicy, type MediaRef } from './media';
import { ServerMetrics, type RequestOutcome } from './metrics';
import {
  MAX_TOKENS_LIMIT,
  chatLogprobs,
  completionLogprobs,
  finishReason,
  parseChatRequest,
  parseCompletionRequest,
  toChatMessages,
  usageOf,
  type ParsedRequest,
} from './openai';

/** Options of {@link createServer}. */
export interface ServerOptions {
  /** The model id of `/v1/models` and of responses; requests naming another model get 404 (default `'videollama3'`). */
  modelName?: string;
  /** When set, `/v1/*` requests need `Authorization: Bearer <apiKey>` (compared in constant time). */
  apiKey?: string;
  /** Folder `file://` media URLs may point into (symlinks resolved); without it every `file://` URL is refused. */
  allowedMediaDir?: string;
  /** Fetch `http(s)://` media URLs (default false: refused with 400). */
  allowRemoteMedia?: boolean;
  /** Largest remote media file fetched, in bytes (default 64 MiB). */
  remoteMediaMaxBytes?: number;
  /** Longest a remote media fetch may take, in milliseconds (default 30000). */
  remoteMediaTimeoutMs?: number;
  /** Most generation requests admitted, running plus waiting (default 64); beyond it, 429 with `Retry-After`. */
  maxQueue?: number;
  /** Most generations running at once (default 4); more admitted requests wait in arrival order. */
  maxConcurrent?: number;
  /**
   * Longest a generation request may take, from arrival (queueing included), in milliseconds
   * (default 600000). Past it the generation is aborted: 504, or an error event ending the stream.
   */
  timeoutMs?: number;
  /** Largest request body, in bytes (default 32 MiB; base64 media counts). Larger: 413. */
  bodyLimitBytes?: number;
  /** Origins allowed by CORS (`'*'` for any); default none: no CORS headers, browsers refuse cross-origin calls. */
  corsOrigins?: string[];
  /** Log each request as JSON lines on stdout (fastify's pino logger; default false). */
  logRequests?: boolean;
}

/** Options of {@link VideoLlama3Server.listen}. */
export interface ListenOptions {
  /** Interface to bind (default `'127.0.0.1'`: this machine only). */
  host?: string;
  /** TCP port (default 8080; 0 picks a free one). */
  port?: number;
}

/** Where a server listens. */
export interface ServerAddress {
  host: string;
  port: number;
  /** `http://host:port`. */
  url: string;
}

/** A server made by {@link createServer}. */
export interface VideoLlama3Server {
  /** The fastify instance (for `inject()` in tests, hooks, or more routes). */
  readonly app: FastifyInstance;
  /** The model id it serves. */
  readonly modelName: string;
  /** Starts listening; resolves with the bound address. */
  listen(options?: ListenOptions): Promise<ServerAddress>;
  /**
   * Stops accepting connections (new requests on open ones get 503), lets every request in flight,
   * waiting ones included, finish, then resolves. The model is not disposed.
   */
  close(): Promise<void>;
}

const SERVER_KEYS = [
  'modelName',
  'apiKey',
  'allowedMediaDir',
  'allowRemoteMedia',
  'remoteMediaMaxBytes',
  'remoteMediaTimeoutMs',
  'maxQueue',
  'maxConcurrent',
  'timeoutMs',
  'bodyLimitBytes',
  'corsOrigins',
  'logRequests',
] as const;

const MiB = 1024 * 1024;

function sha256(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest();
}

/** A text/event-stream response, started (status and headers sent) at its first event. */
class EventStream {
  readonly #reply: FastifyReply;
  readonly #signal: AbortSignal;
  #stream: PassThrough | undefined;

  /** `signal` (the request's) ends a wait for a slow client. */
  constructor(reply: FastifyReply, signal: AbortSignal) {
    this.#reply = reply;
    this.#signal = signal;
  }

  get started(): boolean {
    return this.#stream !== undefined;
  }

  /** Writes `data: <json>\n\n`, waiting while the client reads slower than we write. */
  async send(data: unknown): Promise<void> {
    if (!this.#stream) {
      this.#stream = new PassThrough();
      this.#reply.code(200).header('content-type', 'text/event-stream; charset=utf-8').header('cache-control', 'no-cache').header('x-accel-buffering', 'no');
      void this.#reply.send(this.#stream);
    }
    const s = this.#stream;
    if (s.destroyed || s.writableEnded) return;
    if (!s.write(`data: ${typeof data === 'string' ? data : JSON.stringify(data)}\n\n`) && !this.#signal.aborted) {
      await new Promise<void>((done) => {
        const finish = (): void => {
          s.off('drain', finish);
          s.off('close', finish);
          this.#signal.removeEventListener('abort', finish);
          done();
        };
        s.on('drain', finish);
        s.on('close', finish);
        this.#signal.addEventListener('abort', finish);
      });
    }
  }

  /** Sends `data: [DONE]` and ends the response. */
  async done(): Promise<void> {
    await this.send('[DONE]');
    this.#stream?.end();
  }
}

/**
 * Creates an OpenAI-compatible HTTP server for `model` (not listening yet: call `listen()`).
 * Generations of concurrent requests interleave on the one model; see {@link ServerOptions} for
 * the limits.
 * @throws VideoLlama3Error INVALID_ARGUMENT for bad options.
 * @example
 * const model = await loadModel({ model: './vl3-2b-q8' });
 * const server = createServer(model, { modelName: 'vl3-2b-q8' });
 * console.log((await server.listen({ port: 8080 })).url);
 */
export function createServer(model: Model, options: ServerOptions = {}): VideoLlama3Server {
  if (typeof model !== 'object' || model === null || typeof (model as Partial<Model>).generate !== 'function') invalid('model', 'a Model from loadModel()', model);
  checkKnownKeys('createServer', options, SERVER_KEYS);
  const modelName = options.modelName === undefined ? 'videollama3' : stringOption('modelName', options.modelName);
  const apiKeyHash = options.apiKey === undefined ? undefined : sha256(stringOption('apiKey', options.apiKey));
  let allowedMediaDir: string | undefined;
  if (options.allowedMediaDir !== undefined) {
    allowedMediaDir = resolve(stringOption('allowedMediaDir', options.allowedMediaDir));
    if (!statSync(allowedMediaDir, { throwIfNoEntry: false })?.isDirectory()) {
      throw new VideoLlama3Error('INVALID_ARGUMENT', `allowedMediaDir ${allowedMediaDir} is not an existing folder`);
    }
  }
  if (options.allowRemoteMedia !== undefined && typeof options.allowRemoteMedia !== 'boolean') invalid('allowRemoteMedia', 'boolean', options.allowRemoteMedia);
  if (options.logRequests !== undefined && typeof options.logRequests !== 'boolean') invalid('logRequests', 'boolean', options.logRequests);
  const corsOrigins = options.corsOrigins ?? [];
  if (!Array.isArray(corsOrigins) || !corsOrigins.every((o) => typeof o === 'string' && o.length > 0)) invalid('corsOrigins', 'array of non-empty strings', corsOrigins);
  const policy: MediaPolicy = {
    allowedMediaDir,
    allowRemoteMedia: options.allowRemoteMedia ?? false,
    remoteMediaMaxBytes: intOption('remoteMediaMaxBytes', options.remoteMediaMaxBytes, 1, 2 ** 32, 64 * MiB),
    remoteMediaTimeoutMs: intOption('remoteMediaTimeoutMs', options.remoteMediaTimeoutMs, 1, 3_600_000, 30_000),
  };
  const maxQueue = intOption('maxQueue', options.maxQueue, 1, 100_000, 64);
  const maxConcurrent = intOption('maxConcurrent', options.maxConcurrent, 1, 1024, 4);
  const timeoutMs = intOption('timeoutMs', options.timeoutMs, 1, 86_400_000, 600_000);
  const bodyLimitBytes = intOption('bodyLimitBytes', options.bodyLimitBytes, 1, 2 ** 31 - 1, 32 * MiB);
  const defaultMaxTokens = Math.min(MAX_TOKENS_LIMIT, model.info.contextSize);
  const eosIds = model.info.eosIds;

  const admission = new Admission(maxQueue, maxConcurrent);
  const metrics = new ServerMetrics(() => ({ running: admission.running, waiting: admission.waiting }));
  const inFlight = new Set<Promise<unknown>>();
  const texts = new Map<number, string>();
  const tokenText = (id: number): string => {
    let t = texts.get(id);
    if (t === undefined) texts.set(id, (t = model.detokenize([id])));
    return t;
  };

  // Loaded here, not at the top: importing the library must not load the server's dependencies.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const fastify = (require('fastify') as typeof import('fastify')).default;
  const app = fastify({ bodyLimit: bodyLimitBytes, logger: options.logRequests ?? false, return503OnClosing: true, forceCloseConnections: 'idle' });

  const sendError = (reply: FastifyReply, e: ApiError): FastifyReply => reply.code(e.status).headers(e.headers).send(e.body());

  // Bodies are JSON whatever their Content-Type says (`curl -d` sends form-urlencoded), as
  // llama.cpp's server reads them.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'string' }, (_request, body, done) => {
    try {
      done(null, JSON.parse(body as string));
    } catch (err) {
      done(badRequest(null, `Could not parse the JSON body of the request: ${(err as Error).message}`, 'invalid_json'), undefined);
    }
  });

  app.addHook('onRequest', async (request, reply) => {
    const origin = request.headers.origin;
    if (origin !== undefined && corsOrigins.length > 0 && (corsOrigins.includes('*') || corsOrigins.includes(origin))) {
      reply.header('access-control-allow-origin', corsOrigins.includes('*') ? '*' : origin).header('vary', 'Origin');
    }
    if (apiKeyHash && request.method !== 'OPTIONS' && request.url.startsWith('/v1/')) {
      const m = /^Bearer\s+(\S+)\s*$/i.exec(request.headers.authorization ?? '');
      if (!m || !timingSafeEqual(sha256(m[1]!), apiKeyHash)) {
        return sendError(
          reply,
          new ApiError(401, m ? 'Incorrect API key provided' : 'Missing API key: send the header Authorization: Bearer <key>', {
            code: 'invalid_api_key',
            headers: { 'www-authenticate': 'Bearer' },
          }),
        );
      }
    }
    return undefined;
  });
  app.addHook('onResponse', async (request, reply) => {
    metrics.responses.inc({ route: request.routeOptions.url ?? 'unmatched', status: String(reply.statusCode) });
  });
  app.setErrorHandler((err: FastifyError, request, reply) => {
    const status = err.statusCode ?? 500;
    let e: ApiError;
    if ((err as unknown) instanceof ApiError) {
      e = err as unknown as ApiError;
    } else if (err.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
      e = new ApiError(413, `The request body is larger than the server's limit of ${bodyLimitBytes} bytes`, { code: 'request_too_large' });
    } else if (status === 400) {
      e = badRequest(null, `Could not parse the JSON body of the request: ${err.message}`, 'invalid_json');
    } else if (status < 500) {
      e = new ApiError(status, err.message);
    } else {
      request.log.error(err);
      e = new ApiError(500, 'Internal server error', { code: 'internal_error' });
    }
    return sendError(reply, e);
  });
  app.setNotFoundHandler((request, reply) =>
    sendError(reply, new ApiError(404, `No route ${request.method} ${request.url.split('?')[0]}`, { code: 'not_found' })),
  );
  if (corsOrigins.length > 0) {
    app.options('/*', async (_request, reply) =>
      reply
        .code(204)
        .header('access-control-allow-methods', 'GET, POST, OPTIONS')
        .header('access-control-allow-headers', 'authorization, content-type')
        .header('access-control-max-age', '600')
        .send(),
    );
  }

  const modelCard = () => ({ id: modelName, object: 'model' as const, created: startedAt, owned_by: 'videollama3-node', max_model_len: model.info.contextSize });
  const startedAt = Math.floor(Date.now() / 1000);
  app.get('/health', async () => ({ status: 'ok', model: modelName, running: admission.running, waiting: admission.waiting }));
  app.get('/metrics', async (_request, reply) => reply.header('content-type', metrics.registry.contentType).send(await metrics.registry.metrics()));
  app.get('/v1/models', async () => ({ object: 'list', data: [modelCard()] }));
  app.get('/v1/models/:id', async (request, reply) => {
    const { id } = request.params as { id: string };
    if (id !== modelName) return sendError(reply, new ApiError(404, `The model '${id}' does not exist`, { param: 'model', code: 'model_not_found' }));
    return modelCard();
  });

  /** Reads the request's media and builds the library prompt. */
  async function promptOf(parsed: ParsedRequest, signal: AbortSignal): Promise<Prompt> {
    if ('text' in parsed.prompt) return parsed.prompt.text;
    const loaded = new Map<MediaRef, string | Buffer>();
    for (const ref of parsed.media) loaded.set(ref, await loadMedia(ref, policy, signal));
    return { messages: toChatMessages(parsed.prompt.messages, loaded) };
  }

  async function generation(kind: 'chat' | 'completion', request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> {
    const arrived = performance.now();
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(new RequestTimeout(timeoutMs)), timeoutMs);
    const onClose = (): void => {
      if (!reply.raw.writableFinished) controller.abort(new ClientGone());
    };
    reply.raw.once('close', onClose);
    const events = new EventStream(reply, controller.signal);
    let parsed: ParsedRequest | undefined;
    let release: (() => void) | undefined;
    let outcome: RequestOutcome = 'error';
    try {
      parsed = kind === 'chat' ? parseChatRequest(request.body, policy, defaultMaxTokens) : parseCompletionRequest(request.body);
      if (parsed.model !== undefined && parsed.model !== modelName) {
        throw new ApiError(404, `The model '${parsed.model}' does not exist; this server serves '${modelName}'`, { param: 'model', code: 'model_not_found' });
      }
      release = await admission.acquire(controller.signal);
      const prompt = await promptOf(parsed, controller.signal);
      const id = `${kind === 'chat' ? 'chatcmpl' : 'cmpl'}-${randomBytes(12).toString('hex')}`;
      const created = Math.floor(Date.now() / 1000);
      const base = { id, object: kind === 'chat' ? 'chat.completion.chunk' : 'text_completion', created, model: modelName };
      const usageNull = parsed.includeUsage ? { usage: null } : {};
      const chunk = (delta: { role?: 'assistant'; content?: string } | string, finish: string | null = null, logprobs: unknown = null) =>
        typeof delta === 'string' && kind === 'completion'
          ? { ...base, choices: [{ index: 0, text: delta, logprobs, finish_reason: finish }], ...usageNull }
          : { ...base, choices: [{ index: 0, delta, logprobs, finish_reason: finish }], ...usageNull };

      const calledAt = performance.now();
      const gen = model.generate(prompt, { ...parsed.generate, signal: controller.signal });
      let last = 0;
      for await (const text of gen) {
        const now = performance.now();
        if (last > 0) metrics.interToken.observe((now - last) / 1000);
        last = now;
        if (!parsed.stream) continue;
        if (!events.started && kind === 'chat') await events.send(chunk({ role: 'assistant', content: '' }));
        await events.send(chunk(kind === 'chat' ? { content: text } : text));
      }
      const r: GenerationResult = await gen.result;
      const finish = finishReason(r.finishReason);
      const logprobs = parsed.logprobs
        ? kind === 'chat'
          ? chatLogprobs(r, parsed.logprobs.top, tokenText, eosIds)
          : completionLogprobs(r, parsed.logprobs.top, tokenText, eosIds)
        : null;
      metrics.timeToFirstToken.observe((calledAt - arrived + r.timings.timeToFirstTokenMs) / 1000);
      metrics.promptTokens.inc(r.usage.promptTokens);
      metrics.visionTokens.inc(r.usage.visionTokens);
      metrics.generatedTokens.inc(r.usage.completionTokens);
      if (r.usage.visionTokens > 0) metrics.vision.observe(r.timings.visionMs / 1000);
      outcome = finish;
      if (parsed.stream) {
        if (!events.started && kind === 'chat') await events.send(chunk({ role: 'assistant', content: '' }));
        // Log-probabilities come whole with the last chunk: the library reports them per result.
        await events.send(chunk(kind === 'chat' ? {} : '', finish, logprobs));
        if (parsed.includeUsage) await events.send({ ...base, choices: [], usage: usageOf(r) });
        await events.done();
        return reply;
      }
      const choice =
        kind === 'chat'
          ? { index: 0, message: { role: 'assistant', content: r.text, refusal: null }, logprobs, finish_reason: finish }
          : { index: 0, text: r.text, logprobs, finish_reason: finish };
      return reply.send({ id, object: kind === 'chat' ? 'chat.completion' : 'text_completion', created, model: modelName, choices: [choice], usage: usageOf(r) });
    } catch (err) {
      if (err instanceof ClientGone) {
        outcome = 'cancelled';
        if (events.started) await events.done();
        else reply.hijack(); // nobody to answer
        return reply;
      }
      const e = toApiError(err, { media: (parsed?.media.length ?? 0) > 0 });
      outcome = e.status === 429 ? 'rejected' : e.status === 504 ? 'timeout' : 'error';
      if (e.status >= 500 && e.status !== 504) request.log.error(err);
      if (!events.started) return sendError(reply, e);
      await events.send(e.body());
      await events.done();
      return reply;
    } finally {
      clearTimeout(timer);
      release?.();
      reply.raw.off('close', onClose);
      metrics.finished.inc({ outcome });
      metrics.duration.observe((performance.now() - arrived) / 1000);
    }
  }

  const tracked = (kind: 'chat' | 'completion') => (request: FastifyRequest, reply: FastifyReply) => {
    const p = generation(kind, request, reply);
    inFlight.add(p);
    const forget = (): void => void inFlight.delete(p);
    p.then(forget, forget);
    return p;
  };
  app.post('/v1/chat/completions', tracked('chat'));
  app.post('/v1/completions', tracked('completion'));

  let closing: Promise<void> | undefined;
  return {
    app,
    modelName,
    async listen(listen: ListenOptions = {}): Promise<ServerAddress> {
      checkKnownKeys('listen', listen, ['host', 'port']);
      const host = listen.host === undefined ? '127.0.0.1' : stringOption('host', listen.host);
      const port = intOption('port', listen.port, 0, 65535, 8080);
      await app.listen({ host, port });
      const addr = app.server.address() as AddressInfo;
      const shown = addr.family === 'IPv6' || addr.address.includes(':') ? `[${addr.address}]` : addr.address;
      return { host: addr.address, port: addr.port, url: `http://${shown}:${addr.port}` };
    },
    close(): Promise<void> {
      closing ??= (async () => {
        const closed = app.close();
        // A keep-alive connection busy when close() was called turns idle once its response ends;
        // close it then rather than after the keep-alive timeout.
        const sweep = setInterval(() => app.server.closeIdleConnections(), 50);
        try {
          await closed;
          await Promise.allSettled([...inFlight]);
        } finally {
          clearInterval(sweep);
        }
      })();
      return closing;
    },
  };
}
