/**
 * Admission control: at most `maxConcurrent` generations run, the rest wait in arrival order, and
 * beyond `maxQueue` admitted requests (running + waiting) new ones are refused with 429 and a
 * `Retry-After` estimate. Internal module.
 */
import { ApiError } from './errors';

interface Waiter {
  resolve: () => void;
  reject: (reason: unknown) => void;
}

/** Running and waiting requests of one server. */
export class Admission {
  readonly maxQueue: number;
  readonly maxConcurrent: number;
  #running = 0;
  readonly #waiting: Waiter[] = [];
  /** Moving average of how long a request holds its slot, in ms (for Retry-After). */
  #averageMs = 1000;

  constructor(maxQueue: number, maxConcurrent: number) {
    this.maxQueue = maxQueue;
    this.maxConcurrent = Math.min(maxConcurrent, maxQueue);
  }

  /** Requests generating now. */
  get running(): number {
    return this.#running;
  }

  /** Requests admitted and waiting for a slot. */
  get waiting(): number {
    return this.#waiting.length;
  }

  /**
   * Admits a request and waits for a slot; resolves with the function that gives it back (call it
   * once, when the request ends). Throws a 429 when `maxQueue` requests are admitted already, and
   * rejects with `signal.reason` when the signal fires while waiting.
   */
  async acquire(signal: AbortSignal): Promise<() => void> {
    signal.throwIfAborted();
    if (this.#running + this.#waiting.length >= this.maxQueue) {
      const seconds = Math.min(60, Math.max(1, Math.ceil(((this.#averageMs / 1000) * (this.#waiting.length + 1)) / this.maxConcurrent)));
      throw new ApiError(429, `The server is busy: ${this.maxQueue} requests are running or waiting; retry after ${seconds} s`, {
        type: 'rate_limit_error',
        code: 'rate_limit_exceeded',
        headers: { 'retry-after': String(seconds) },
      });
    }
    if (this.#running < this.maxConcurrent && this.#waiting.length === 0) {
      this.#running++;
    } else {
      await new Promise<void>((resolve, reject) => {
        const waiter: Waiter = {
          resolve: () => {
            signal.removeEventListener('abort', onAbort);
            resolve();
          },
          reject,
        };
        const onAbort = (): void => {
          const i = this.#waiting.indexOf(waiter);
          if (i >= 0) this.#waiting.splice(i, 1);
          reject(signal.reason);
        };
        signal.addEventListener('abort', onAbort, { once: true });
        this.#waiting.push(waiter);
      });
    }
    const started = performance.now();
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.#averageMs = 0.8 * this.#averageMs + 0.2 * (performance.now() - started);
      const next = this.#waiting.shift();
      if (next) next.resolve(); // the slot passes on: running stays the same
      else this.#running--;
    };
  }
}
