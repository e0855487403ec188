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
  /**
   * Total time budget in ms, counted from the first attempt: no attempt starts whose delay would
   * cross it, and each attempt's timeout (see AttemptBudget) is clipped to what is left.
   */
  deadlineMs?: number;
  /** Longest one attempt may take (clipped to the deadline); handed to fn, which must honour it. */
  attemptTimeoutMs?: number;
  sleep?: (ms: number) => Promise<void>;
  now?: () => number;
  random?: () => number;
}

/** What one attempt may spend: fn passes timeoutMs on (AbortSignal.timeout, a request timeout). */
export interface AttemptBudget {
  /** Undefined when neither a deadline nor an attempt timeout is set. */
  timeoutMs: number | undefined;
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

/**
 * Runs fn until it succeeds, the error is not retryable, attempts run out, or the next attempt
 * would start past the deadline; the last error is thrown as it was.
 */
export async function retry<T>(
  fn: (attempt: number, budget: AttemptBudget) => Promise<T>,
  opts: RetryOptions = {},
): Promise<T> {
  const {
    attempts = 5,
    retryable = () => false,
    retryAfterMs,
    onRetry,
    deadlineMs,
    attemptTimeoutMs,
    sleep: wait = sleep,
    now = Date.now,
  } = opts;
  const deadline = deadlineMs === undefined ? Infinity : now() + deadlineMs;
  for (let attempt = 1; ; attempt++) {
    const left = Math.max(0, deadline - now());
    const timeoutMs = Math.min(left, attemptTimeoutMs ?? Infinity);
    try {
      return await fn(attempt, { timeoutMs: Number.isFinite(timeoutMs) ? timeoutMs : undefined });
    } catch (err) {
      if (attempt >= attempts || !retryable(err, attempt)) throw err;
      const requested = retryAfterMs?.(err);
      const delayMs = Math.max(backoffDelay(attempt, opts), requested ?? 0);
      // An attempt that would start at or past the deadline could only time out: stop here.
      if (now() + delayMs >= deadline) throw err;
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

const causeTexts: Record<string, string> = {
  ECONNREFUSED: 'connection refused',
  ECONNRESET: 'connection reset',
  EPIPE: 'connection closed while sending',
  ETIMEDOUT: 'connection timed out',
  EHOSTUNREACH: 'host unreachable',
  ENETUNREACH: 'network unreachable',
  ENOTFOUND: 'DNS lookup failed: no such host',
  EAI_AGAIN: 'DNS lookup failed (temporary resolver failure)',
  EAI_FAIL: 'DNS lookup failed',
  UND_ERR_SOCKET: 'connection closed by the server',
  UND_ERR_CONNECT_TIMEOUT: 'timed out connecting',
  UND_ERR_HEADERS_TIMEOUT: 'timed out waiting for the answer',
  UND_ERR_BODY_TIMEOUT: 'timed out reading the answer',
};

// OpenSSL and Node TLS codes: certificate problems and handshakes that are not TLS at all.
const isTlsCode = (code: string) =>
  /^(ERR_TLS_|ERR_SSL_|CERT_|UNABLE_TO_|DEPTH_ZERO_|SELF_SIGNED_|HOSTNAME_MISMATCH)/.test(code) ||
  code === 'EPROTO';

/** The fields a Node, undici or SDK error may carry; `cause` chains to the error underneath. */
interface ErrorFields {
  code?: unknown;
  name?: unknown;
  message?: unknown;
  cause?: unknown;
}

/** The error and each cause under it, outermost first. */
function* causeChain(err: unknown): Generator<ErrorFields> {
  for (let e: unknown = err; e !== null && typeof e === 'object'; e = (e as ErrorFields).cause)
    yield e as ErrorFields;
}

/**
 * Why a request never got an answer, in words with the errno code, e.g. "connection refused
 * (ECONNREFUSED)" or "DNS lookup failed: no such host (ENOTFOUND)"; undefined when the error is
 * not a network failure. undici's `fetch failed` keeps the real error in `cause`.
 */
export function networkCause(err: unknown): string | undefined {
  for (const { code, name, message } of causeChain(err)) {
    if (name === 'TimeoutError') return 'timed out';
    if (typeof code !== 'string') continue;
    const text = causeTexts[code];
    if (text) return `${text} (${code})`;
    if (isTlsCode(code)) {
      // Certificate errors read well ("self-signed certificate"); OpenSSL's record dumps do not.
      const short = typeof message === 'string' && message.length <= 80 && message !== code;
      return `TLS error${short ? `: ${message}` : ''} (${code})`;
    }
  }
  return undefined;
}

/** networkCause, else the innermost cause's message ("fetch failed" says nothing by itself). */
export function networkFailureReason(err: unknown): string {
  const cause = networkCause(err);
  if (cause) return cause;
  let innermost: unknown = err;
  while (innermost instanceof Error && innermost.cause instanceof Error)
    innermost = innermost.cause;
  return innermost instanceof Error ? innermost.message : String(innermost);
}

/**
 * A failure before the request could reach the server (refused, no connection in time, a
 * resolver hiccup): a retry of a request that is not safe to repeat (a job submitted) is safe
 * after this, unlike after a reset or a timeout, when the server may have taken it.
 */
export function isConnectFailure(err: unknown): boolean {
  for (const { code } of causeChain(err))
    if (code === 'ECONNREFUSED' || code === 'UND_ERR_CONNECT_TIMEOUT' || code === 'EAI_AGAIN')
      return true;
  return false;
}

/** A network-level failure (reset, refused, timeout) that a retry may cure. */
export function isTransientNetworkError(err: unknown): boolean {
  for (const { code, name } of causeChain(err)) {
    if (typeof code === 'string' && transientCodes.has(code)) return true;
    if (name === 'TimeoutError') return true;
  }
  return false;
}
