// Runs a model's native jobs one at a time, in arrival order. The backend computes one graph
// at a time anyway; queueing in JS keeps waiting jobs off libuv's small thread pool, and lets
// concurrent generations interleave token by token.

/** A FIFO of async jobs that never run concurrently. */
export class Scheduler {
  private tail: Promise<unknown> = Promise.resolve();
  private pending = 0;

  /** Jobs queued or running. */
  get size(): number {
    return this.pending;
  }

  run<T>(job: () => Promise<T>): Promise<T> {
    this.pending++;
    const result = this.tail.then(job, job);
    this.tail = result.then(
      () => undefined,
      () => undefined,
    );
    return result.finally(() => {
      this.pending--;
    });
  }
}
