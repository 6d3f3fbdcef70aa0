/**
 * OpenAI's wire format: validating `/v1/chat/completions` and `/v1/completions` bodies and mapping
 * them to a library prompt and {@link GenerateOptions}; building response and chunk objects from a
 * {@link GenerationResult}. Unknown fields are ignored, as OpenAI's server does; known fields this
 * server cannot honour are refused with a 400 naming them. Internal module.
 */
import { randomInt } from 'node:crypto';
import type { FinishReason, GenerationResult, TokenLogprob } from '../generation';
import type { GenerateOptions, ResponseFormat } from '../model';
import type { ChatMessage, ContentPart } from '../prompt';
import { badRequest } from './errors';
import { describeValue, parseMediaUrl, type MediaPolicy, type MediaRef } from './media';

/** The library's most tokens per generation. */
export const MAX_TOKENS_LIMIT = 32768;
/** Top log-probabilities asked of the model whenever log-probabilities are wanted (the chosen token's is looked up in them). */
const LOGPROB_CANDIDATES = 20;
/** OpenAI's stand-in log-probability of a chosen token outside the top 20. */
const UNLIKELY_LOGPROB = -9999;

/** A message part before its media is read. */
type PendingPart =
  | { type: 'text'; text: string }
  | { type: 'image'; ref: MediaRef }
  | { type: 'video'; ref: MediaRef; fps?: number; maxFrames?: number; pruneThreshold?: number };

/** A chat message before its media is read. */
export interface PendingMessage {
  role: ChatMessage['role'];
  content: string | PendingPart[];
}

/** A validated request. */
export interface ParsedRequest {
  /** The `model` field, when given. */
  model: string | undefined;
  stream: boolean;
  /** `stream_options.include_usage`: a last chunk with usage and no choices. */
  includeUsage: boolean;
  /** Whether log-probabilities are returned, and how many alternatives per token. */
  logprobs: { top: number } | undefined;
  /** Options for `model.generate()`, without the signal. */
  generate: Omit<GenerateOptions, 'signal'>;
  /** Chat messages (`/v1/chat/completions`) or a text prompt (`/v1/completions`). */
  prompt: { messages: PendingMessage[] } | { text: string };
  /** Every media reference, in order. */
  media: MediaRef[];
}

type Body = Record<string, unknown>;

function expected(param: string, what: string, value: unknown): never {
  throw badRequest(param, `Expected ${what} for ${param} but received ${describeValue(value)}`);
}

/** A field, with null read as absent (as OpenAI does). */
function field(body: Body, key: string): unknown {
  const v = body[key];
  return v === null ? undefined : v;
}

function intField(body: Body, key: string, min: number, max: number): number | undefined {
  const v = field(body, key);
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) expected(key, `integer between ${min} and ${max}`, v);
  return v;
}

function numberField(body: Body, key: string, min: number, max: number, param = key): number | undefined {
  const v = field(body, key);
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max) expected(param, `number between ${min} and ${max}`, v);
  return v;
}

function boolField(body: Body, key: string): boolean | undefined {
  const v = field(body, key);
  if (v === undefined) return undefined;
  if (typeof v !== 'boolean') expected(key, 'boolean', v);
  return v;
}

function isObject(v: unknown): v is Body {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Fields both endpoints share: model, stream, sampling, stop, penalties, n. */
function parseCommon(body: Body, defaultMaxTokens: number): Omit<ParsedRequest, 'logprobs' | 'prompt' | 'media'> & { generate: GenerateOptions } {
  const model = field(body, 'model');
  if (model !== undefined && typeof model !== 'string') expected('model', 'string', model);
  const stream = boolField(body, 'stream') ?? false;
  const streamOptions = field(body, 'stream_options');
  let includeUsage = false;
  if (streamOptions !== undefined) {
    if (!stream) throw badRequest('stream_options', 'stream_options is only allowed when stream is true');
    if (!isObject(streamOptions)) expected('stream_options', 'object', streamOptions);
    const inc = field(streamOptions, 'include_usage');
    if (inc !== undefined && typeof inc !== 'boolean') expected('stream_options.include_usage', 'boolean', inc);
    includeUsage = inc === true;
  }
  const maxTokens = intField(body, 'max_completion_tokens', 1, MAX_TOKENS_LIMIT) ?? intField(body, 'max_tokens', 1, MAX_TOKENS_LIMIT) ?? defaultMaxTokens;
  let temperature = numberField(body, 'temperature', 0, 2) ?? 1; // OpenAI's default
  const topP = numberField(body, 'top_p', 0, 1);
  if (topP === 0) temperature = 0; // keeping nothing but the most likely token is greedy decoding
  const topK = intField(body, 'top_k', 0, Number.MAX_SAFE_INTEGER);
  const minP = numberField(body, 'min_p', 0, 1);
  const repetitionPenalty = field(body, 'repetition_penalty');
  if (repetitionPenalty !== undefined && (typeof repetitionPenalty !== 'number' || !Number.isFinite(repetitionPenalty) || repetitionPenalty <= 0 || repetitionPenalty > 100)) {
    expected('repetition_penalty', 'number greater than 0 and at most 100', repetitionPenalty);
  }
  const seed = intField(body, 'seed', 0, Number.MAX_SAFE_INTEGER);
  for (const key of ['presence_penalty', 'frequency_penalty']) {
    const v = numberField(body, key, -2, 2);
    if (v !== undefined && v !== 0) {
      throw badRequest(key, `${key} is not supported by this server (only 0); use repetition_penalty (1 = off) instead`, 'unsupported_parameter');
    }
  }
  const n = intField(body, 'n', 1, 128);
  if (n !== undefined && n !== 1) throw badRequest('n', 'Only n = 1 is supported by this server', 'unsupported_parameter');
  const logitBias = field(body, 'logit_bias');
  if (logitBias !== undefined) {
    if (!isObject(logitBias)) expected('logit_bias', 'object', logitBias);
    if (Object.keys(logitBias).length > 0) throw badRequest('logit_bias', 'logit_bias is not supported by this server', 'unsupported_parameter');
  }
  const generate: GenerateOptions = { maxTokens, temperature };
  if (topP !== undefined && topP > 0) generate.topP = topP;
  if (topK !== undefined) generate.topK = topK;
  if (minP !== undefined) generate.minP = minP;
  if (repetitionPenalty !== undefined) generate.repetitionPenalty = repetitionPenalty as number;
  // Without a seed, sampling differs per request, as OpenAI's does; greedy decoding needs none.
  if (seed !== undefined) generate.seed = seed;
  else if (temperature > 0) generate.seed = randomInt(0, 2 ** 47);
  const stop = parseStop(field(body, 'stop'));
  if (stop.length > 0) generate.stop = stop;
  return { model: model as string | undefined, stream, includeUsage, generate };
}

function parseStop(v: unknown): string[] {
  if (v === undefined) return [];
  const list = typeof v === 'string' ? [v] : v;
  if (!Array.isArray(list) || list.length > 4 || !list.every((s) => typeof s === 'string' && s.length > 0)) {
    expected('stop', 'a non-empty string or an array of at most 4 non-empty strings', v);
  }
  return list as string[];
}

/**
 * OpenAI's `response_format` as the library's `responseFormat`: `json_object`, or `json_schema`
 * with its schema in `json_schema.schema` (constrained decoding: lib/structured/).
 */
function parseResponseFormat(v: unknown): ResponseFormat | undefined {
  if (v === undefined || v === null) return undefined;
  if (!isObject(v)) expected('response_format', 'object { type }', v);
  const type = v.type;
  if (type === 'text') return undefined;
  if (type === 'json_object') return { type: 'json_object' };
  if (type === 'json_schema') {
    const js = v.json_schema;
    if (!isObject(js)) expected('response_format.json_schema', 'object { name, schema }', js);
    const schema = js.schema;
    if (!isObject(schema) && typeof schema !== 'boolean') expected('response_format.json_schema.schema', 'JSON Schema object', schema);
    return { type: 'json_schema', schema: schema as Record<string, unknown> | boolean };
  }
  expected('response_format.type', "'text', 'json_object' or 'json_schema'", type);
}

function refuseTools(body: Body): void {
  for (const key of ['tools', 'functions']) {
    const v = field(body, key);
    if (v === undefined) continue;
    if (!Array.isArray(v)) expected(key, 'array', v);
    if (v.length > 0) throw badRequest(key, `${key} (function calling) is not supported by this server`, 'unsupported_parameter');
  }
}

/** Per-video sampling options from an object (`fps`, `max_frames`, `prune_threshold`). */
function videoOptions(obj: Body, param: string, into: { fps?: number; maxFrames?: number; pruneThreshold?: number }): void {
  const fps = field(obj, 'fps');
  if (fps !== undefined) {
    if (typeof fps !== 'number' || !Number.isFinite(fps) || fps <= 0 || fps > 1000) expected(`${param}.fps`, 'number greater than 0 and at most 1000', fps);
    into.fps = fps;
  }
  const maxFrames = field(obj, 'max_frames');
  if (maxFrames !== undefined) {
    if (typeof maxFrames !== 'number' || !Number.isInteger(maxFrames) || maxFrames < 1 || maxFrames > 10000) {
      expected(`${param}.max_frames`, 'integer between 1 and 10000', maxFrames);
    }
    into.maxFrames = maxFrames;
  }
  const prune = field(obj, 'prune_threshold');
  if (prune !== undefined) {
    if (typeof prune !== 'number' || !Number.isFinite(prune) || prune < 0 || prune > 1000) expected(`${param}.prune_threshold`, 'number between 0 and 1000', prune);
    into.pruneThreshold = prune;
  }
}

const PART_TYPES = "'text', 'image_url', 'video_url' or 'input_video'";

function parsePart(p: unknown, param: string, policy: MediaPolicy, media: MediaRef[]): PendingPart {
  if (!isObject(p)) expected(param, 'content part object { type, ... }', p);
  const type = p.type;
  switch (type) {
    case 'text': {
      if (typeof p.text !== 'string') expected(`${param}.text`, 'string', p.text);
      return { type: 'text', text: p.text };
    }
    case 'image_url': {
      const img = p.image_url;
      const url = typeof img === 'string' ? img : isObject(img) ? img.url : expected(`${param}.image_url`, 'object { url }', img);
      const ref = parseMediaUrl(url, 'image', `${param}.image_url${typeof img === 'string' ? '' : '.url'}`, policy);
      media.push(ref);
      return { type: 'image', ref };
    }
    case 'video_url':
    case 'input_video': {
      // vLLM: { type: 'video_url', video_url: { url } }. llama.cpp: { type: 'input_video',
      // input_video: { url } or { data: <base64>, format } }. fps / max_frames / prune_threshold
      // on the inner object or on the part.
      const key = type === 'input_video' && p.input_video !== undefined ? 'input_video' : 'video_url';
      const inner = p[key];
      const innerParam = `${param}.${key}`;
      let url: unknown;
      let urlParam = `${innerParam}.url`;
      const part: PendingPart & { type: 'video' } = { type: 'video', ref: undefined as unknown as MediaRef };
      if (typeof inner === 'string') {
        url = inner;
        urlParam = innerParam;
      } else if (isObject(inner)) {
        if (inner.url !== undefined || key === 'video_url') {
          url = inner.url;
        } else {
          const data = inner.data;
          if (typeof data !== 'string' || data.length === 0) expected(`${innerParam}.data`, 'base64 string', data);
          const format = inner.format === undefined || inner.format === null ? 'mp4' : inner.format;
          if (typeof format !== 'string' || !/^[a-z0-9.+-]+$/i.test(format)) expected(`${innerParam}.format`, "video format such as 'mp4'", format);
          url = `data:video/${format};base64,${data}`;
          urlParam = `${innerParam}.data`;
        }
        videoOptions(inner, innerParam, part);
      } else {
        expected(innerParam, key === 'video_url' ? 'object { url }' : 'object { url } or { data, format }', inner);
      }
      videoOptions(p, param, part);
      part.ref = parseMediaUrl(url, 'video', urlParam, policy);
      media.push(part.ref);
      return part;
    }
    case 'input_audio':
    case 'audio_url':
    case 'file':
      throw badRequest(`${param}.type`, `Content parts of type '${type}' are not supported by this model (use ${PART_TYPES})`, 'unsupported_parameter');
    default:
      return expected(`${param}.type`, PART_TYPES, type);
  }
}

/** Validates a `/v1/chat/completions` body. */
export function parseChatRequest(body: unknown, policy: MediaPolicy, defaultMaxTokens: number): ParsedRequest {
  if (!isObject(body)) expected('body', 'JSON object', body);
  const messages = body.messages;
  if (!Array.isArray(messages) || messages.length === 0) expected('messages', 'non-empty array of messages', messages);
  const media: MediaRef[] = [];
  const out: PendingMessage[] = messages.map((m: unknown, i): PendingMessage => {
    const at = `messages[${i}]`;
    if (!isObject(m)) expected(at, 'message object { role, content }', m);
    const role = m.role === 'developer' ? 'system' : m.role;
    if (role === 'tool' || role === 'function') throw badRequest(`${at}.role`, `Messages of role '${role}' are not supported by this server (no function calling)`, 'unsupported_parameter');
    if (role !== 'system' && role !== 'user' && role !== 'assistant') expected(`${at}.role`, "'system', 'developer', 'user' or 'assistant'", m.role);
    const toolCalls = m.tool_calls;
    if (Array.isArray(toolCalls) && toolCalls.length > 0) throw badRequest(`${at}.tool_calls`, 'tool_calls are not supported by this server', 'unsupported_parameter');
    const content = m.content;
    if ((content === undefined || content === null) && role === 'assistant') return { role, content: '' };
    if (typeof content === 'string') return { role, content };
    if (!Array.isArray(content)) expected(`${at}.content`, 'string or array of content parts', content);
    return { role, content: content.map((p: unknown, j) => parsePart(p, `${at}.content[${j}]`, policy, media)) };
  });
  const responseFormat = parseResponseFormat(field(body, 'response_format'));
  refuseTools(body);
  const common = parseCommon(body, defaultMaxTokens);
  if (responseFormat) common.generate.responseFormat = responseFormat;
  const logprobs = boolField(body, 'logprobs') ?? false;
  const top = intField(body, 'top_logprobs', 0, 20);
  if (top !== undefined && !logprobs) throw badRequest('top_logprobs', 'top_logprobs needs logprobs set to true');
  if (logprobs) common.generate.topLogprobs = LOGPROB_CANDIDATES;
  return { ...common, logprobs: logprobs ? { top: top ?? 0 } : undefined, prompt: { messages: out }, media };
}

/** Validates a `/v1/completions` body (a text prompt; OpenAI's default of 16 tokens). */
export function parseCompletionRequest(body: unknown): ParsedRequest {
  if (!isObject(body)) expected('body', 'JSON object', body);
  let prompt = body.prompt;
  if (Array.isArray(prompt) && prompt.length === 1 && typeof prompt[0] === 'string') prompt = prompt[0];
  if (typeof prompt !== 'string') expected('prompt', 'string (token arrays and batches of prompts are not supported)', prompt);
  if (boolField(body, 'echo')) throw badRequest('echo', 'echo is not supported by this server', 'unsupported_parameter');
  const suffix = field(body, 'suffix');
  if (suffix !== undefined && suffix !== '') throw badRequest('suffix', 'suffix is not supported by this server', 'unsupported_parameter');
  const bestOf = intField(body, 'best_of', 1, 128);
  if (bestOf !== undefined && bestOf !== 1) throw badRequest('best_of', 'Only best_of = 1 is supported by this server', 'unsupported_parameter');
  const common = parseCommon(body, 16);
  const responseFormat = parseResponseFormat(field(body, 'response_format')); // as vLLM takes it here too
  if (responseFormat) common.generate.responseFormat = responseFormat;
  const logprobs = intField(body, 'logprobs', 0, 5);
  if (logprobs !== undefined) common.generate.topLogprobs = LOGPROB_CANDIDATES;
  return { ...common, logprobs: logprobs !== undefined ? { top: logprobs } : undefined, prompt: { text: prompt }, media: [] };
}

/** Library chat messages, with each media reference replaced by what {@link loadMedia} read. */
export function toChatMessages(messages: PendingMessage[], loaded: Map<MediaRef, string | Buffer>): ChatMessage[] {
  return messages.map((m) => ({
    role: m.role,
    content:
      typeof m.content === 'string'
        ? m.content
        : m.content.map((p): ContentPart => {
            if (p.type === 'text') return p;
            if (p.type === 'image') return { type: 'image', image: loaded.get(p.ref)! };
            const part: ContentPart = { type: 'video', video: loaded.get(p.ref)! };
            if (p.fps !== undefined) part.fps = p.fps;
            if (p.maxFrames !== undefined) part.maxFrames = p.maxFrames;
            if (p.pruneThreshold !== undefined) part.pruneThreshold = p.pruneThreshold;
            return part;
          }),
  }));
}

// ------------------------------------------------------------------------------------------------
// Responses

/** OpenAI's finish_reason of a library finish reason. */
export function finishReason(reason: FinishReason): 'stop' | 'length' {
  return reason === 'length' ? 'length' : 'stop';
}

/** OpenAI's usage object. */
export function usageOf(r: GenerationResult): { prompt_tokens: number; completion_tokens: number; total_tokens: number } {
  return { prompt_tokens: r.usage.promptTokens, completion_tokens: r.usage.completionTokens, total_tokens: r.usage.promptTokens + r.usage.completionTokens };
}

/** One token of OpenAI's chat `logprobs.content`. */
export interface ChatTokenLogprob {
  token: string;
  logprob: number;
  bytes: number[];
  top_logprobs: { token: string; logprob: number; bytes: number[] }[];
}

/** Text of one token (a cache shared by a server, as `model.detokenize` goes through the addon). */
export type TokenText = (id: number) => string;

/**
 * Generated tokens with their log-probabilities, the end-of-sequence token that ended generation
 * left out (its text is not in the reply). Each step's candidates are the model's 20 most likely
 * tokens; a chosen token outside them gets OpenAI's -9999.
 */
function tokenSteps(r: GenerationResult, eosIds: readonly number[]): { id: number; logprob: number; top: TokenLogprob[] }[] {
  const steps = r.tokens.map((id, i) => {
    const top = r.logprobs?.[i] ?? [];
    return { id, logprob: top.find((t) => t.id === id)?.logprob ?? UNLIKELY_LOGPROB, top };
  });
  const last = r.tokens[r.tokens.length - 1];
  if (r.finishReason === 'stop' && last !== undefined && eosIds.includes(last)) steps.pop();
  return steps;
}

/** OpenAI's chat `logprobs` object: `{ content: [...] }`. */
export function chatLogprobs(r: GenerationResult, top: number, text: TokenText, eosIds: readonly number[]): { content: ChatTokenLogprob[]; refusal: null } {
  const entry = (id: number, logprob: number) => {
    const token = text(id);
    return { token, logprob, bytes: [...Buffer.from(token, 'utf8')] };
  };
  return {
    content: tokenSteps(r, eosIds).map((s) => ({ ...entry(s.id, s.logprob), top_logprobs: s.top.slice(0, top).map((t) => entry(t.id, t.logprob)) })),
    refusal: null,
  };
}

/** OpenAI's legacy completions `logprobs` object. */
export function completionLogprobs(
  r: GenerationResult,
  top: number,
  text: TokenText,
  eosIds: readonly number[],
): { tokens: string[]; token_logprobs: number[]; top_logprobs: Record<string, number>[]; text_offset: number[] } {
  const steps = tokenSteps(r, eosIds);
  let offset = 0;
  const out = { tokens: [] as string[], token_logprobs: [] as number[], top_logprobs: [] as Record<string, number>[], text_offset: [] as number[] };
  for (const s of steps) {
    const token = text(s.id);
    out.tokens.push(token);
    out.token_logprobs.push(s.logprob);
    out.top_logprobs.push(Object.fromEntries(s.top.slice(0, top).map((t) => [text(t.id), t.logprob])));
    out.text_offset.push(Math.min(offset, r.text.length));
    offset += token.length;
  }
  return out;
}
