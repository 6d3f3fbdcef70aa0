// `videollama3 bench`: end-to-end timings of a loaded model for benchmarking harnesses: warm-up
// runs, repetitions, concurrent requests, images or a video, per-stage percentiles (JSON or a table).
import type { GenerationResult, Timings } from '../generation';
import type { Model } from '../model';
import type { Prompt } from '../prompt';

/** What `videollama3 bench` runs. */
export interface BenchPlan {
  prompt: Prompt;
  maxTokens: number;
  /** Untimed runs first (load, caches, page faults). */
  warmup: number;
  /** Timed rounds. */
  reps: number;
  /** Requests started together in each round. */
  concurrency: number;
}

/** Percentiles of one measured quantity over every request of every round. */
export interface Spread {
  mean: number;
  min: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
}

/** The result `videollama3 bench --json` prints. */
export interface BenchReport {
  plan: { maxTokens: number; warmup: number; reps: number; concurrency: number };
  /** Per request: the library's own per-stage timings (milliseconds, tokens/s). */
  timings: Record<Stage, Spread>;
  usage: { promptTokens: number; visionTokens: number; completionTokens: Spread };
  /** Per round: generated tokens of all its requests over the round's wall time. */
  aggregateTokensPerSecond: Spread;
  /** Every request's raw numbers, round by round. */
  rounds: { wallMs: number; requests: { timings: Timings; completionTokens: number; finishReason: string }[] }[];
}

/** The stages of {@link Timings} every generation reports. */
const STAGES = ['visionMs', 'prefillMs', 'timeToFirstTokenMs', 'decodeMs', 'totalMs', 'prefillTokensPerSecond', 'decodeTokensPerSecond'] as const;
type Stage = (typeof STAGES)[number];

/** Nearest-rank percentile of sorted values. */
function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

function spread(values: readonly number[]): Spread {
  const s = [...values].sort((a, b) => a - b);
  const mean = s.reduce((a, b) => a + b, 0) / Math.max(1, s.length);
  return { mean, min: s[0] ?? 0, p50: percentile(s, 50), p90: percentile(s, 90), p99: percentile(s, 99), max: s[s.length - 1] ?? 0 };
}

/** Runs the plan on `model`; `onRound` hears of each timed round as it ends. */
export async function runBench(model: Model, plan: BenchPlan, onRound?: (round: number, wallMs: number) => void): Promise<BenchReport> {
  const options = { maxTokens: plan.maxTokens, temperature: 0 };
  for (let i = 0; i < plan.warmup; i++) await model.complete(plan.prompt, options);
  const rounds: BenchReport['rounds'] = [];
  let last: GenerationResult | undefined;
  for (let r = 0; r < plan.reps; r++) {
    const t0 = performance.now();
    const results = await Promise.all(Array.from({ length: plan.concurrency }, () => model.complete(plan.prompt, options)));
    const wallMs = performance.now() - t0;
    last = results[results.length - 1];
    rounds.push({ wallMs, requests: results.map((x) => ({ timings: x.timings, completionTokens: x.usage.completionTokens, finishReason: x.finishReason })) });
    onRound?.(r, wallMs);
  }
  const requests = rounds.flatMap((r) => r.requests);
  const timings = Object.fromEntries(STAGES.map((k) => [k, spread(requests.map((q) => q.timings[k]))])) as Record<Stage, Spread>;
  return {
    plan: { maxTokens: plan.maxTokens, warmup: plan.warmup, reps: plan.reps, concurrency: plan.concurrency },
    timings,
    usage: {
      promptTokens: last?.usage.promptTokens ?? 0,
      visionTokens: last?.usage.visionTokens ?? 0,
      completionTokens: spread(requests.map((q) => q.completionTokens)),
    },
    aggregateTokensPerSecond: spread(rounds.map((r) => (r.requests.reduce((a, q) => a + q.completionTokens, 0) / r.wallMs) * 1000)),
    rounds,
  };
}

/** The report as a terminal table: one line per stage, p50 / p90 / max. */
export function formatBench(report: BenchReport): string {
  const row = (name: string, s: Spread, unit: string): string =>
    `${name.padEnd(26)} ${s.p50.toFixed(1).padStart(10)} ${s.p90.toFixed(1).padStart(10)} ${s.max.toFixed(1).padStart(10)}  ${unit}`;
  const t = report.timings;
  const { plan, usage } = report;
  return [
    `${plan.reps} rounds x ${plan.concurrency} concurrent, ${plan.warmup} warm-up; prompt ${usage.promptTokens} tokens (${usage.visionTokens} vision), up to ${plan.maxTokens} generated`,
    `${'stage'.padEnd(26)} ${'p50'.padStart(10)} ${'p90'.padStart(10)} ${'max'.padStart(10)}`,
    row('vision', t.visionMs, 'ms'),
    row('prefill', t.prefillMs, 'ms'),
    row('time to first token', t.timeToFirstTokenMs, 'ms'),
    row('decode', t.decodeMs, 'ms'),
    row('total', t.totalMs, 'ms'),
    row('prefill rate', t.prefillTokensPerSecond, 'tok/s'),
    row('decode rate (per request)', t.decodeTokensPerSecond, 'tok/s'),
    row('aggregate generation', report.aggregateTokensPerSecond, 'tok/s (generated tokens of a round / its wall time)'),
  ].join('\n');
}
