import { InputError } from './errors.js';

/**
 * Where inputs come from: the Actions runtime (core.getInput), CLI flags or a test's map.
 * Returns '' for an input that was not given, like core.getInput.
 */
export type InputSource = (name: string) => string;

export function inputsFromRecord(record: Record<string, string | undefined>): InputSource {
  return (name) => (record[name] ?? '').trim();
}

/** Reads typed inputs from a source; every bad value throws an InputError naming the input. */
export class Inputs {
  constructor(private readonly source: InputSource) {}

  raw(name: string): string {
    return this.source(name).trim();
  }

  required(name: string, expected = 'a non-empty value'): string {
    const value = this.raw(name);
    if (value === '') throw new InputError(name, value, expected);
    return value;
  }

  /** A required input whose value is a secret: the error never repeats what was given. */
  secret(name: string, expected = 'a non-empty secret'): string {
    const value = this.raw(name);
    if (value === '') throw new InputError(name, '', expected);
    return value;
  }

  optional(name: string): string | undefined {
    const value = this.raw(name);
    return value === '' ? undefined : value;
  }

  int(name: string, opts: { min?: number; max?: number; default?: number } = {}): number {
    const value = this.raw(name);
    const { min = Number.MIN_SAFE_INTEGER, max = Number.MAX_SAFE_INTEGER } = opts;
    if (value === '' && opts.default !== undefined) return opts.default;
    const expected = `an integer from ${min} to ${max}`;
    if (!/^[+-]?\d+$/.test(value)) throw new InputError(name, value, expected);
    const n = Number(value);
    if (!Number.isSafeInteger(n) || n < min || n > max) throw new InputError(name, value, expected);
    return n;
  }

  optionalInt(name: string, opts: { min?: number; max?: number } = {}): number | undefined {
    return this.raw(name) === '' ? undefined : this.int(name, opts);
  }

  number(name: string, opts: { min?: number; max?: number; default?: number } = {}): number {
    const value = this.raw(name);
    if (value === '' && opts.default !== undefined) return opts.default;
    const { min = -Infinity, max = Infinity } = opts;
    const n = Number(value);
    if (value === '' || !Number.isFinite(n) || n < min || n > max) {
      throw new InputError(name, value, `a number from ${min} to ${max}`);
    }
    return n;
  }

  oneOf<T extends string>(name: string, allowed: readonly T[], fallback?: T): T {
    const value = this.raw(name);
    if (value === '' && fallback !== undefined) return fallback;
    const known = allowed.find((a) => a === value);
    if (known === undefined) throw new InputError(name, value, `one of ${allowed.join(', ')}`);
    return known;
  }

  /** YAML 1.2 core booleans, like core.getBooleanInput. */
  boolean(name: string, fallback = false): boolean {
    const value = this.raw(name);
    if (value === '') return fallback;
    if (['true', 'True', 'TRUE'].includes(value)) return true;
    if (['false', 'False', 'FALSE'].includes(value)) return false;
    throw new InputError(name, value, 'true or false');
  }

  /** One item per line (commas also separate); blank lines and # comments dropped. */
  list(name: string): string[] {
    return splitList(this.raw(name));
  }

  /**
   * A duration such as 90s, 15m, 1h30m or a plain number of seconds; returns milliseconds, at
   * most MAX_DURATION_MS (Node's timers overflow above it and fire at once).
   */
  duration(name: string, fallback?: string): number {
    const value = this.raw(name) || fallback || '';
    const ms = parseDuration(value);
    if (ms === undefined || ms > MAX_DURATION_MS)
      throw new InputError(
        name,
        value,
        `a duration such as 90s, 15m or 1h30m, at most ${MAX_DURATION_TEXT} (${MAX_DURATION_MS} ms)`,
      );
    return ms;
  }

  /** A size such as 16MiB, 1.5GiB, 5MB or a plain number of bytes; 'auto' gives undefined. */
  size(
    name: string,
    opts: { min?: number; max?: number; allowAuto?: boolean } = {},
  ): number | undefined {
    const value = this.raw(name);
    if (opts.allowAuto && (value === '' || value === 'auto')) return undefined;
    const bytes = parseSize(value);
    const { min = 0, max = Number.MAX_SAFE_INTEGER } = opts;
    const range = `from ${formatSizeLimit(min)} to ${formatSizeLimit(max)}`;
    const expected = `a size such as 16MiB or 1GiB ${range}${opts.allowAuto ? ", or 'auto'" : ''}`;
    if (bytes === undefined || bytes < min || bytes > max)
      throw new InputError(name, value, expected);
    return bytes;
  }
}

export function splitList(value: string): string[] {
  return value
    .split(/[\n,]/)
    .map((line) => line.replace(/(^|\s)#.*$/, '').trim())
    .filter((line) => line !== '');
}

/** The longest timer Node can set (2^31-1 ms, about 24.8 days); a longer one fires at once. */
export const MAX_DURATION_MS = 2 ** 31 - 1;
const MAX_DURATION_TEXT = '24d20h31m23s';

const durationUnits: Record<string, number> = {
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
};

export function parseDuration(value: string): number | undefined {
  const text = value.trim();
  if (/^\d+(\.\d+)?$/.test(text)) return Math.round(Number(text) * 1000);
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/gy;
  let total = 0;
  let consumed = 0;
  for (let match = re.exec(text); match; match = re.exec(text)) {
    total += Number(match[1]) * (durationUnits[match[2] ?? ''] ?? NaN);
    consumed = re.lastIndex;
  }
  if (text === '' || consumed !== text.length || !Number.isFinite(total)) return undefined;
  return Math.round(total);
}

const sizeUnits: Record<string, number> = {
  '': 1,
  b: 1,
  k: 1e3,
  kb: 1e3,
  kib: 2 ** 10,
  m: 1e6,
  mb: 1e6,
  mib: 2 ** 20,
  g: 1e9,
  gb: 1e9,
  gib: 2 ** 30,
  t: 1e12,
  tb: 1e12,
  tib: 2 ** 40,
};

export function parseSize(value: string): number | undefined {
  const match = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i.exec(value.trim());
  if (!match) return undefined;
  const unit = sizeUnits[(match[2] ?? '').toLowerCase()];
  if (unit === undefined) return undefined;
  return Math.round(Number(match[1]) * unit);
}

function formatSizeLimit(bytes: number): string {
  if (bytes >= 2 ** 30 && bytes % 2 ** 30 === 0) return `${bytes / 2 ** 30}GiB`;
  if (bytes >= 2 ** 20 && bytes % 2 ** 20 === 0) return `${bytes / 2 ** 20}MiB`;
  return `${bytes} bytes`;
}
