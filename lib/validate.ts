// Option validation with messages that say what was expected and what was received.
import { VideoLlama3Error } from './errors';

function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'number' || typeof value === 'boolean' || value === null || value === undefined) {
    return String(value);
  }
  if (Array.isArray(value)) return 'an array';
  return `a ${typeof value}`;
}

/** Throws INVALID_ARGUMENT: `Expected <what> for <name> but received <value>`. */
export function invalid(name: string, what: string, value: unknown): never {
  throw new VideoLlama3Error('INVALID_ARGUMENT', `Expected ${what} for ${name} but received ${describe(value)}`);
}

/** An integer in [min, max]; `undefined` gives `fallback`. */
export function intOption(name: string, value: unknown, min: number, max: number, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    invalid(name, `integer between ${min} and ${max}`, value);
  }
  return value;
}

/** One of `choices`; `undefined` gives `fallback`. */
export function choiceOption<T extends string>(name: string, value: unknown, choices: readonly T[], fallback: T): T {
  if (value === undefined) return fallback;
  if (typeof value !== 'string' || !(choices as readonly string[]).includes(value)) {
    invalid(name, `one of ${choices.map((c) => `'${c}'`).join(', ')}`, value);
  }
  return value as T;
}

/** A non-empty string. */
export function stringOption(name: string, value: unknown): string {
  if (typeof value !== 'string' || value.length === 0) invalid(name, 'non-empty string', value);
  return value;
}

/** Edit distance (insertions, deletions, substitutions), case-insensitive. */
function distance(a: string, b: string): number {
  a = a.toLowerCase();
  b = b.toLowerCase();
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur.push(Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1)));
    }
    prev = cur;
  }
  return prev[b.length]!;
}

/**
 * Rejects an `options` that is not an object (`null`, an array, a primitive) and keys of it not in
 * `known` (catches misspelled options, suggesting the closest).
 */
export function checkKnownKeys(where: string, options: unknown, known: readonly string[]): asserts options is object {
  if (typeof options !== 'object' || options === null || Array.isArray(options)) invalid(`the options of ${where}`, 'options object', options);
  for (const key of Object.keys(options)) {
    if (!known.includes(key)) {
      const hint = known.find((k) => distance(k, key) <= Math.max(1, Math.floor(k.length / 4)));
      throw new VideoLlama3Error(
        'INVALID_ARGUMENT',
        `Unknown option '${key}' for ${where}${hint ? ` (did you mean '${hint}'?)` : ''}; known options: ${known.join(', ')}`,
      );
    }
  }
}

/**
 * An AbortSignal or undefined. Checked by shape rather than `instanceof`, so signals of another realm
 * (a vm context, an Electron renderer) work; a plain `{ aborted: false }` does not.
 */
export function signalOption(name: string, value: unknown): AbortSignal | undefined {
  if (value === undefined) return undefined;
  const s = value as Partial<AbortSignal> | null;
  if (
    typeof s !== 'object' ||
    s === null ||
    typeof s.aborted !== 'boolean' ||
    typeof s.addEventListener !== 'function' ||
    typeof s.removeEventListener !== 'function' ||
    typeof s.throwIfAborted !== 'function'
  ) {
    invalid(name, 'AbortSignal', value);
  }
  return value as AbortSignal;
}
