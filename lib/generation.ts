/** Streaming generation: an AsyncIterable of text chunks with a `.result` promise. */

/**
 * Why generation ended: an end-of-sequence token or stop string (with structured output also the
 * grammar's end: the value is complete), `maxTokens` or the context size (`'length'`: a structured
 * value is then cut short, invalid), or the consumer left the loop.
 */
export type FinishReason = 'stop' | 'length' | 'cancelled';

/** One (token id, log-probability) pair. */
export interface TokenLogprob {
  id: number;
  logprob: number;
}

/** Token counts of a generation. */
export interface Usage {
  /** Prompt positions, vision tokens included. */
  promptTokens: number;
  /** Of which vision tokens. */
  visionTokens: number;
  /** Generated tokens (an end-of-sequence token included). */
  completionTokens: number;
}

/** Per-stage wall times in milliseconds. */
export interface Timings {
  /** Image decoding, preprocessing and vision encoding. */
  visionMs: number;
  /** Evaluating the prompt. */
  prefillMs: number;
  /** Generating tokens after the first. */
  decodeMs: number;
  /** From the call to the first generated token. */
  timeToFirstTokenMs: number;
  /** The whole call. */
  totalMs: number;
  /** Prompt positions per second during prefill. */
  prefillTokensPerSecond: number;
  /** Generated tokens per second after the first. */
  decodeTokensPerSecond: number;
  /**
   * Structured output only: time on the JavaScript thread in xgrammar (accepting each token and
   * filling the next token mask), over the whole generation; the mask's application in the
   * native sampler is part of decoding.
   */
  grammarMs?: number;
}

/** What a finished generation returns. */
export interface GenerationResult {
  /** The generated text (stop strings and end-of-sequence tokens excluded). */
  text: string;
  /** Generated token ids, in order. */
  tokens: number[];
  finishReason: FinishReason;
  /** The sampling seed used: the `seed` option, or the random one drawn for this call. */
  seed: number;
  usage: Usage;
  timings: Timings;
  /** Per generated token, the `topLogprobs` most likely tokens before sampling (when asked for). */
  logprobs?: TokenLogprob[][];
  /** Per video in the prompt: sampled frame timestamps (seconds) and tokens kept per frame. */
  videos?: { timestamps: number[]; tokensPerFrame: number[] }[];
}

/**
 * A running generation. Iterate it for text chunks (always whole UTF-8 characters), or await
 * `result`. Leaving a `for await` loop early cancels it (`finishReason: 'cancelled'`).
 */
export class Generation implements AsyncIterable<string> {
  /** Resolves when generation ends; rejects on error, or with `signal.reason` when aborted. */
  readonly result: Promise<GenerationResult>;
  readonly #chunks: string[] = [];
  #done = false;
  #error: unknown = undefined;
  #wake: (() => void) | undefined;
  readonly #cancel: () => void;

  /** @internal Created by `Model.generate()`: `run` receives an `emit` for chunks. */
  constructor(run: (emit: (chunk: string) => void) => Promise<GenerationResult>, cancel: () => void) {
    this.#cancel = cancel;
    this.result = run((chunk) => {
      this.#chunks.push(chunk);
      this.#notify();
    }).then(
      (r) => {
        this.#done = true;
        this.#notify();
        return r;
      },
      (err: unknown) => {
        this.#done = true;
        this.#error = err;
        this.#notify();
        throw err;
      },
    );
    // Consumers that only iterate must not leave an unhandled rejection behind.
    this.result.catch(() => undefined);
  }

  #notify(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }

  [Symbol.asyncIterator](): AsyncIterator<string> {
    return {
      next: async (): Promise<IteratorResult<string>> => {
        for (;;) {
          const chunk = this.#chunks.shift();
          if (chunk !== undefined) return { value: chunk, done: false };
          if (this.#done) {
            if (this.#error !== undefined) throw this.#error;
            return { value: undefined, done: true };
          }
          await new Promise<void>((resolve) => (this.#wake = resolve));
        }
      },
      return: async (): Promise<IteratorResult<string>> => {
        if (!this.#done) this.#cancel();
        return { value: undefined, done: true };
      },
    };
  }
}
