// Structured output for one model: xgrammar's TokenizerInfo built from the model's vocabulary,
// compiled grammars (an LRU of a few), and a matcher per generation. Internal module.
import type { CompiledGrammar, GrammarCompiler, GrammarMatcher, TokenizerInfo } from '@mlc-ai/web-xgrammar';
import { VideoLlama3Error } from '../errors';
import { loadXgrammar, xgrammarMessage, type XgrammarInstance } from './xgrammar';

/** What a generation is constrained to (validated options; see GenerateOptions). */
export interface StructuredSpec {
  kind: 'json_schema' | 'json_object' | 'grammar';
  /** The schema as JSON text, or the EBNF grammar; empty for json_object. */
  source: string;
  /** The option named in errors: `responseFormat.schema` or `grammar`. */
  option: string;
}

/** The model's vocabulary as the native addon gives it (NativeModel.vocabulary()). */
export interface Vocabulary {
  bytes: Buffer;
  offsets: Uint32Array;
  special: Uint8Array;
}

/** Compiled grammars kept per model. */
const CACHE_SIZE = 8;
/**
 * Whitespace xgrammar allows between JSON elements (anyWhitespace with a bound): room for
 * pretty-printed JSON, not for a model that only emits spaces until maxTokens.
 */
const MAX_WHITESPACE = 24;

/** GPT-2's bytes_to_unicode: the printable character that stands for each byte in byte-level BPE. */
function byteLevelAlphabet(): string[] {
  const out = new Array<string>(256);
  let next = 256;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
    out[b] = String.fromCodePoint(printable ? b : next++);
  }
  return out;
}

/**
 * The vocabulary in xgrammar's "byte_level" encoding: each token's bytes as byte-level
 * characters; control tokens (and unused ones) as "" so that xgrammar never allows them, except
 * the stop tokens, which it allows once the grammar can end.
 */
export function encodedVocabulary(v: Vocabulary): string[] {
  const alphabet = byteLevelAlphabet();
  const n = v.special.length;
  const out = new Array<string>(n);
  for (let i = 0; i < n; i++) {
    if (v.special[i]) {
      out[i] = '';
      continue;
    }
    let s = '';
    for (let k = v.offsets[i]!; k < v.offsets[i + 1]!; k++) s += alphabet[v.bytes[k]!];
    out[i] = s;
  }
  return out;
}

interface EngineState {
  instance: XgrammarInstance;
  info: TokenizerInfo;
  compiler: GrammarCompiler;
  grammars: Map<string, CompiledGrammar>;
}

export class StructuredEngine {
  readonly #vocabulary: () => Vocabulary;
  readonly #vocabSize: number;
  readonly #stopIds: number[];
  #state: Promise<EngineState> | undefined;
  #encoded: string[] | undefined;
  /** Compiles run one at a time (xgrammar's calls are synchronous WebAssembly anyway). */
  #queue: Promise<unknown> = Promise.resolve();

  /** `vocabSize`: the logits' length (at least the tokenizer's size); `stopIds`: the end-of-sequence ids. */
  constructor(vocabulary: () => Vocabulary, vocabSize: number, stopIds: number[]) {
    this.#vocabulary = vocabulary;
    this.#vocabSize = vocabSize;
    this.#stopIds = stopIds;
  }

  #start(): Promise<EngineState> {
    this.#state ??= (async () => {
      const instance = loadXgrammar();
      this.#encoded ??= encodedVocabulary(this.#vocabulary());
      const info = await instance.xg.TokenizerInfo.createTokenizerInfo(this.#encoded, 'byte_level', false, this.#vocabSize, this.#stopIds);
      const compiler = await instance.xg.GrammarCompiler.createGrammarCompiler(info, false);
      return { instance, info, compiler, grammars: new Map() };
    })();
    this.#state.catch(() => (this.#state = undefined));
    return this.#state;
  }

  /** A matcher at the start of `spec`'s grammar (compiled once, then cached). */
  matcher(spec: StructuredSpec): Promise<GrammarMatcher> {
    const run = this.#queue.then(async () => {
      const state = await this.#start();
      const compiled = await this.#compile(state, spec);
      return state.instance.xg.GrammarMatcher.createGrammarMatcher(compiled);
    });
    this.#queue = run.catch(() => undefined);
    return run;
  }

  async #compile(state: EngineState, spec: StructuredSpec): Promise<CompiledGrammar> {
    const key = `${spec.kind}\0${spec.source}`;
    const hit = state.grammars.get(key);
    if (hit) {
      state.grammars.delete(key); // most recently used last
      state.grammars.set(key, hit);
      return hit;
    }
    state.instance.printed.length = 0;
    let compiled: CompiledGrammar;
    try {
      if (spec.kind === 'grammar') {
        compiled = await state.compiler.compileGrammar(spec.source, 'root');
      } else {
        // json_object: any object. strictMode false lets properties the schema does not name
        // through (xgrammar's strict mode would allow only `{}` here).
        const schema = spec.kind === 'json_object' ? '{"type":"object"}' : spec.source;
        compiled = await state.compiler.compileJSONSchema(schema, true, undefined, undefined, spec.kind === 'json_schema', MAX_WHITESPACE);
      }
    } catch (err) {
      // An abort leaves the instance unusable: later calls start a fresh one. Running
      // generations keep their matchers of the old one.
      const message = xgrammarMessage(state.instance, err);
      this.#state = undefined;
      throw new VideoLlama3Error('INVALID_ARGUMENT', `xgrammar refused ${spec.option}: ${message}`);
    }
    state.grammars.set(key, compiled);
    while (state.grammars.size > CACHE_SIZE) {
      const [oldest, grammar] = state.grammars.entries().next().value as [string, CompiledGrammar];
      state.grammars.delete(oldest);
      grammar.dispose(); // a matcher made from it holds its own reference
    }
    return compiled;
  }

  /** Frees xgrammar's objects of this model. */
  async dispose(): Promise<void> {
    const state = this.#state;
    this.#state = undefined;
    const s = await state?.catch(() => undefined);
    if (!s) return;
    for (const g of s.grammars.values()) g.dispose();
    s.grammars.clear();
    s.compiler.dispose();
    s.info.dispose();
  }
}
