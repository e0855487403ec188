export interface RetryOptions {
  /** Attempts in all, the first included. */
  attempts?: number;
  baseDelayMs?: number;
  maxDelayMs?: number;
  /** 0..1: the share of each delay that is randomised (0.5 = ±50 %). */
  jitter?: number;
  /** Whether this error may be retried; the default retries nothing. */
  retryable?: (err: unknown, attempt: number) => boolean;
  /** A server-requested wait (Retry-After) in ms, which replaces the backoff when longer. */
  retryAfterMs?: (err: unknown) => number | undefined;
  onRetry?: (info: { err: unknown; attempt: number; delayMs: number }) => void;
  sleep?: (ms: number) => Promise<void>;
  random?: () => number;
}

export const sleep = (ms: number): Promise<void> =>
  new Promise((resolve) => setTimeout(resolve, ms));

/** Exponential backoff with jitter, capped, honouring Retry-After. */
export function backoffDelay(
  attempt: number,
  opts: Pick<RetryOptions, 'baseDelayMs' | 'maxDelayMs' | 'jitter' | 'random'> = {},
): number {
  const { baseDelayMs = 500, maxDelayMs = 30_000, jitter = 0.5, random = Math.random } = opts;
  const exp = Math.min(maxDelayMs, baseDelayMs * 2 ** (attempt - 1));
  return Math.max(0, Math.round(exp * (1 - jitter + 2 * jitter * random())));
}

/** Runs fn until it succeeds, the error is not retryable, or attempts run out (last error thrown). */
export async function retry<T>(
  fn: (attempt: number) => Promise<T>,
  opts: RetryOptions = {},
): Promise<T> {
  const {
    attempts = 5,
    retryable = () => false,
    retryAfterMs,
    onRetry,
    sleep: wait = sleep,
  } = opts;
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn(attempt);
    } catch (err) {
      if (attempt >= attempts || !retryable(err, attempt)) throw err;
      const requested = retryAfterMs?.(err);
      const delayMs = Math.max(backoffDelay(attempt, opts), requested ?? 0);
      onRetry?.({ err, attempt, delayMs });
      await wait(delayMs);
    }
  }
}

/** Parses a Retry-After header (seconds or an HTTP date) into milliseconds from now. */
export function parseRetryAfter(
  value: string | null | undefined,
  now = Date.now(),
): number | undefined {
  if (!value) return undefined;
  const trimmed = value.trim();
  if (/^\d+(\.\d+)?$/.test(trimmed)) return Math.round(Number(trimmed) * 1000);
  const date = Date.parse(trimmed);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}

/** HTTP statuses that are safe to retry for idempotent requests. */
export function isRetryableStatus(status: number): boolean {
  return status === 408 || status === 429 || status >= 500;
}

const transientCodes = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'EPIPE',
  'ETIMEDOUT',
  'EAI_AGAIN',
  'UND_ERR_SOCKET',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
]);

/** A network-level failure (reset, refused, timeout) that a retry may cure. */
export function isTransientNetworkError(err: unknown): boolean {
  for (let e: unknown = err; e && typeof e === 'object'; e = (e as { cause?: unknown }).cause) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && transientCodes.has(code)) return true;
    if ((e as { name?: unknown }).name === 'TimeoutError') return true;
  }
  return false;
}
