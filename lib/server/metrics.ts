/**
 * Prometheus metrics of one server, in a prom-client registry of its own (two servers in one
 * process do not mix their numbers). Internal module.
 */
import type { Counter, Gauge, Histogram, Registry } from 'prom-client';

/** How a generation request ended, as counted by `videollama3_requests_finished_total`. */
export type RequestOutcome = 'stop' | 'length' | 'cancelled' | 'timeout' | 'rejected' | 'error';

/** The server's metrics. */
export class ServerMetrics {
  readonly registry: Registry;
  readonly finished: Counter<'outcome'>;
  readonly responses: Counter<'route' | 'status'>;
  readonly promptTokens: Counter;
  readonly visionTokens: Counter;
  readonly generatedTokens: Counter;
  readonly timeToFirstToken: Histogram;
  readonly interToken: Histogram;
  readonly vision: Histogram;
  readonly duration: Histogram;

  /** `state` is read at every scrape for the queue gauges. */
  constructor(state: () => { running: number; waiting: number }) {
    // Loaded here, not at the top: importing the library must not load the server's dependencies.
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const prom = require('prom-client') as typeof import('prom-client');
    const registers = [new prom.Registry()];
    this.registry = registers[0]!;
    prom.collectDefaultMetrics({ register: this.registry });
    new prom.Gauge({
      name: 'videollama3_queue_depth',
      help: 'Requests admitted and waiting for a generation slot',
      registers,
      collect(this: Gauge) {
        this.set(state().waiting);
      },
    });
    new prom.Gauge({
      name: 'videollama3_requests_active',
      help: 'Requests holding a generation slot (reading media, encoding, generating)',
      registers,
      collect(this: Gauge) {
        this.set(state().running);
      },
    });
    this.finished = new prom.Counter({
      name: 'videollama3_requests_finished_total',
      help: 'Generation requests by outcome: stop, length, cancelled (client left), timeout, rejected (queue full), error',
      labelNames: ['outcome'],
      registers,
    });
    this.responses = new prom.Counter({ name: 'videollama3_http_responses_total', help: 'HTTP responses by route and status', labelNames: ['route', 'status'], registers });
    this.promptTokens = new prom.Counter({ name: 'videollama3_prompt_tokens_total', help: 'Prompt tokens evaluated (vision tokens included)', registers });
    this.visionTokens = new prom.Counter({ name: 'videollama3_vision_tokens_total', help: 'Vision tokens in prompts', registers });
    this.generatedTokens = new prom.Counter({ name: 'videollama3_generated_tokens_total', help: 'Tokens generated', registers });
    this.timeToFirstToken = new prom.Histogram({
      name: 'videollama3_time_to_first_token_seconds',
      help: 'From the request arriving to its first generated token (queueing, media, vision encoding and prefill included)',
      buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120],
      registers,
    });
    this.interToken = new prom.Histogram({
      name: 'videollama3_inter_token_seconds',
      help: 'Time between consecutive text chunks of a generation (one token each, except tokens that end mid-character)',
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers,
    });
    this.vision = new prom.Histogram({
      name: 'videollama3_vision_seconds',
      help: 'Image and video decoding, preprocessing and vision encoding per request',
      buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120],
      registers,
    });
    this.duration = new prom.Histogram({
      name: 'videollama3_request_duration_seconds',
      help: 'Generation requests from arrival to the last byte',
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600],
      registers,
    });
  }
}
