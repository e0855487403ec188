// The Verda management API client: OAuth client credentials (refreshed before expiry, and once
// more on a 401), retries with backoff on 408/429/5xx and network faults honouring Retry-After,
// and a create that never duplicates (after a timeout or 5xx, GET by name before retrying).
// Each API call is ONE retry loop with a total deadline: the token requests, the 401 re-login and
// the create's lookup run inside its attempts, never with retries of their own.
import { OpsError, errorMessage } from '../lib/errors.js';
import { formatDuration } from '../lib/format.js';
import type { Logger } from '../lib/logger.js';
import {
  isRetryableStatus,
  isTransientNetworkError,
  networkFailureReason,
  parseRetryAfter,
  retry,
  sleep as realSleep,
  type AttemptBudget,
  type RetryOptions,
} from '../lib/retry.js';
import {
  normalizeContainerTypes,
  normalizeDeployment,
  normalizeReplicas,
  normalizeScaling,
  normalizeStatus,
  type PriceRow,
} from './normalize.js';
import type { DeploymentSpec, LiveDeployment, Replica, ScalingOptions } from './verda-types.js';

export interface VerdaClientOptions {
  /** Management API base, e.g. https://api.verda.com/v1. */
  apiUrl: string;
  clientId: string;
  clientSecret: string;
  logger: Logger;
  /** Attempts per API call at most, the first included (default 6). */
  attempts?: number;
  /**
   * Total time one API call may take, every attempt and wait included (default 60 s): no
   * attempt starts past it and each request's timeout is clipped to what is left.
   */
  deadlineMs?: number;
  baseDelayMs?: number;
  maxDelayMs?: number;
  /** Longest Retry-After honoured (default 120 s), and only while the deadline allows it. */
  maxRetryAfterMs?: number;
  /** Longest single HTTP exchange (default 60 s), clipped to what is left of the deadline. */
  requestTimeoutMs?: number;
  /**
   * Called with each credential the API hands out (access and refresh tokens) as soon as it
   * arrives, so the caller can mask it; core code never knows how.
   */
  onSecret?: (value: string) => void;
  sleep?: (ms: number) => Promise<void>;
  now?: () => number;
  fetch?: typeof fetch;
}

export const DEFAULT_API_DEADLINE_MS = 60_000;

/** A non-2xx answer: status, the documented {code, message} and what was asked. */
export class VerdaApiError extends OpsError {
  constructor(
    readonly status: number,
    readonly code: string,
    readonly detail: string,
    readonly request: string,
    readonly retryAfterMs?: number,
  ) {
    super(
      `Verda API ${request} answered ${status}${code ? ` ${code}` : ''}${detail ? `: ${detail}` : ''}`,
    );
    this.name = 'VerdaApiError';
  }
}

/** No answer at all: names the request, the URL and why (refused, DNS, TLS, timeout). */
export class VerdaNetworkError extends OpsError {
  constructor(
    readonly request: string,
    readonly url: string,
    readonly reason: string,
    cause: unknown,
  ) {
    super(`Verda API ${request} got no answer from ${url}: ${reason}`, { cause });
    this.name = 'VerdaNetworkError';
  }
}

export interface ApiResponse {
  status: number;
  body: unknown;
  /** The server's clock (Date header, epoch ms), when it sent one. */
  date: number | undefined;
}

/** A write the client made: for the summary, `changed`, and the cold-start clock. */
export interface WriteRecord {
  request: string;
  status: number;
  date: number | undefined;
  localAt: number;
}

interface Tokens {
  access: string;
  refresh: string | undefined;
  /** Local time after which the token is refreshed first. */
  refreshAt: number;
}

const isWrite = (method: string) => method !== 'GET';

export class VerdaClient {
  readonly writes: WriteRecord[] = [];
  /** The API's clock at its latest answer (Date header), for timelines on the server's time. */
  lastServerDate: number | undefined;
  private tokens: Tokens | undefined;
  private readonly base: string;
  private readonly sleep: (ms: number) => Promise<void>;
  private readonly now: () => number;
  private readonly fetch: typeof fetch;

  constructor(private readonly opts: VerdaClientOptions) {
    this.base = opts.apiUrl.replace(/\/+$/, '');
    this.fetch = opts.fetch ?? fetch;
    this.sleep = opts.sleep ?? realSleep;
    this.now = opts.now ?? Date.now;
  }

  // ---- deployments -------------------------------------------------------------------------

  /** The deployment, or undefined when it does not exist (404). */
  async getDeployment(name: string): Promise<LiveDeployment | undefined> {
    try {
      return normalizeDeployment((await this.request('GET', deploymentPath(name))).body);
    } catch (err) {
      if (err instanceof VerdaApiError && err.status === 404) return undefined;
      throw err;
    }
  }

  /**
   * Creates a deployment exactly once. The API has no idempotency key, so after a timeout, a
   * reset or a 5xx the next attempt first looks the deployment up by name (within the same
   * attempt and deadline) and only sends the POST again when it does not exist.
   */
  async createDeployment(spec: DeploymentSpec): Promise<LiveDeployment> {
    const label = 'POST /container-deployments';
    let failed: { status: number; date: number | undefined; localAt: number } | undefined;
    return this.withRetry(label, async (until) => {
      if (failed) {
        this.opts.logger.info(`checking whether ${spec.name} exists before creating it again`);
        const existing = await this.lookup(spec.name, until);
        if (existing) {
          this.opts.logger.info(
            `${spec.name} was created despite the error; not creating it again`,
          );
          this.writes.push({ request: label, ...failed });
          return existing;
        }
      }
      try {
        const res = await this.attempt('POST', '/container-deployments', spec, until);
        this.writes.push({
          request: label,
          status: res.status,
          date: res.date,
          localAt: this.now(),
        });
        return normalizeDeployment(res.body);
      } catch (err) {
        // The failed answer's Date: if the create took effect, that is when it was written.
        if (isRetryableFault(err)) {
          const status = err instanceof VerdaApiError ? err.status : 0;
          failed = { status, date: this.lastServerDate, localAt: this.now() };
        }
        throw err;
      }
    });
  }

  /** One GET of the deployment inside an attempt: undefined on 404. */
  private async lookup(name: string, until: number): Promise<LiveDeployment | undefined> {
    try {
      return normalizeDeployment(
        (await this.attempt('GET', deploymentPath(name), undefined, until)).body,
      );
    } catch (err) {
      if (err instanceof VerdaApiError && err.status === 404) return undefined;
      throw err;
    }
  }

  async patchDeployment(name: string, patch: Partial<DeploymentSpec>): Promise<LiveDeployment> {
    return normalizeDeployment((await this.request('PATCH', deploymentPath(name), patch)).body);
  }

  /** DELETE; the deletion is async (poll getDeployment until undefined). 404 counts as done. */
  async deleteDeployment(name: string, timeoutMs = 60_000): Promise<void> {
    try {
      await this.request(
        'DELETE',
        `${deploymentPath(name)}?timeout=${Math.min(300_000, Math.max(0, timeoutMs))}`,
      );
    } catch (err) {
      if (!(err instanceof VerdaApiError && err.status === 404)) throw err;
    }
  }

  async getStatus(name: string): Promise<string> {
    return normalizeStatus((await this.request('GET', `${deploymentPath(name)}/status`)).body);
  }

  async getReplicas(name: string): Promise<Replica[]> {
    return normalizeReplicas((await this.request('GET', `${deploymentPath(name)}/replicas`)).body);
  }

  async getScaling(name: string): Promise<ScalingOptions> {
    return normalizeScaling((await this.request('GET', `${deploymentPath(name)}/scaling`)).body);
  }

  async patchScaling(name: string, scaling: Partial<ScalingOptions>): Promise<ScalingOptions> {
    return normalizeScaling(
      (await this.request('PATCH', `${deploymentPath(name)}/scaling`, scaling)).body,
    );
  }

  async action(
    name: string,
    action: 'pause' | 'resume' | 'restart' | 'purge-queue',
  ): Promise<void> {
    await this.request('POST', `${deploymentPath(name)}/${action}`);
  }

  async containerTypes(currency: 'usd' | 'eur' = 'usd'): Promise<PriceRow[]> {
    return normalizeContainerTypes(
      (await this.request('GET', `/container-types?currency=${currency}`)).body,
    );
  }

  // ---- transport ---------------------------------------------------------------------------

  /** One API call with auth and retries (every call here is safe to repeat but a create). */
  async request(method: string, path: string, body?: unknown): Promise<ApiResponse> {
    const label = `${method} ${path.replace(/\?.*$/, '')}`;
    const res = await this.withRetry(label, (until) => this.attempt(method, path, body, until));
    if (isWrite(method))
      this.writes.push({ request: label, status: res.status, date: res.date, localAt: this.now() });
    return res;
  }

  /**
   * The one retry loop of an API call. When it gives up on a fault a retry could have cured,
   * the error says how many attempts it made in how long and under which deadline.
   */
  private async withRetry<T>(label: string, fn: (until: number) => Promise<T>): Promise<T> {
    const startedAt = this.now();
    let attempts = 0;
    try {
      return await retry((attempt, budget) => {
        attempts = attempt;
        return fn(attemptEnd(budget));
      }, this.retryOptions(label));
    } catch (err) {
      if (err instanceof OpsError && isRetryableFault(err)) {
        const deadline = formatDuration(this.opts.deadlineMs ?? DEFAULT_API_DEADLINE_MS);
        const asked = this.retryAfter(err);
        err.message +=
          `; gave up after ${attempts} attempt${attempts === 1 ? '' : 's'} in ` +
          `${formatDuration(this.now() - startedAt)} (deadline ${deadline}` +
          `${asked === undefined ? '' : `; the API asked to wait ${formatDuration(asked)}`})`;
      }
      throw err;
    }
  }

  /**
   * One attempt: a token when needed, the request, and after a 401 one new token and the request
   * once more. Every HTTP exchange in it ends by `until` (real time, ms since the epoch).
   */
  private async attempt(
    method: string,
    path: string,
    body: unknown,
    until: number,
  ): Promise<ApiResponse> {
    const label = `${method} ${path.replace(/\?.*$/, '')}`;
    let reauthenticated = false;
    for (;;) {
      const token = await this.accessToken(until);
      try {
        return await this.send(method, path, body, { Authorization: `Bearer ${token}` }, until);
      } catch (err) {
        if (err instanceof VerdaApiError && err.status === 401 && !reauthenticated) {
          this.opts.logger.info(`${label}: 401, getting a new token and trying once more`);
          reauthenticated = true;
          await this.renewToken(until);
          continue;
        }
        throw err;
      }
    }
  }

  private retryOptions(label: string): RetryOptions {
    return {
      attempts: this.opts.attempts ?? 6,
      deadlineMs: this.opts.deadlineMs ?? DEFAULT_API_DEADLINE_MS,
      attemptTimeoutMs: this.opts.requestTimeoutMs ?? 60_000,
      baseDelayMs: this.opts.baseDelayMs ?? 1000,
      maxDelayMs: this.opts.maxDelayMs ?? 30_000,
      sleep: this.sleep,
      now: this.now,
      retryable: isRetryableFault,
      retryAfterMs: (err: unknown) => this.retryAfter(err),
      onRetry: ({ err, attempt, delayMs }) =>
        this.opts.logger.warn(
          `${label}: ${errorMessage(err)}; retry ${attempt} in ${Math.round(delayMs / 100) / 10} s`,
        ),
    };
  }

  private retryAfter(err: unknown): number | undefined {
    if (!(err instanceof VerdaApiError) || err.retryAfterMs === undefined) return undefined;
    return Math.min(err.retryAfterMs, this.opts.maxRetryAfterMs ?? 120_000);
  }

  /** One HTTP exchange, cut at `until` (and at requestTimeoutMs). */
  private async send(
    method: string,
    path: string,
    body: unknown,
    headers: Record<string, string>,
    until: number,
  ): Promise<ApiResponse> {
    const label = `${method} ${path.replace(/\?.*$/, '')}`;
    const timeoutMs = Math.max(
      1,
      Math.min(this.opts.requestTimeoutMs ?? 60_000, until - Date.now()),
    );
    let res: Response;
    let text: string;
    try {
      res = await this.fetch(`${this.base}${path}`, {
        method,
        headers: { 'Content-Type': 'application/json', Accept: 'application/json', ...headers },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        signal: AbortSignal.timeout(timeoutMs),
      });
      text = await res.text();
    } catch (err) {
      const cause = networkFailureReason(err);
      const reason =
        cause === 'timed out' ? `timed out (no answer within ${formatDuration(timeoutMs)})` : cause;
      throw new VerdaNetworkError(label, `${this.base}${path.replace(/\?.*$/, '')}`, reason, err);
    }
    let parsed: unknown = text === '' ? undefined : text;
    try {
      if (text !== '') parsed = JSON.parse(text) as unknown;
    } catch {
      // Non-JSON bodies (gateway pages) are kept as text.
    }
    const dateHeader = res.headers.get('date');
    const date = dateHeader ? Date.parse(dateHeader) : NaN;
    if (!Number.isNaN(date)) this.observeServerDate(date);
    if (!res.ok) {
      const err =
        parsed && typeof parsed === 'object'
          ? (parsed as { code?: unknown; message?: unknown })
          : {};
      const detail =
        typeof err.message === 'string'
          ? err.message
          : typeof parsed === 'string'
            ? parsed.slice(0, 200)
            : '';
      throw new VerdaApiError(
        res.status,
        typeof err.code === 'string' ? err.code : '',
        detail,
        label,
        parseRetryAfter(res.headers.get('retry-after')),
      );
    }
    return { status: res.status, body: parsed, date: Number.isNaN(date) ? undefined : date };
  }

  observeServerDate(date: number): void {
    if (this.lastServerDate === undefined || date > this.lastServerDate) this.lastServerDate = date;
  }

  // ---- OAuth -------------------------------------------------------------------------------

  private async accessToken(until: number): Promise<string> {
    if (!this.tokens || this.now() >= this.tokens.refreshAt) await this.renewToken(until);
    return (this.tokens as Tokens).access;
  }

  /** Refresh with the refresh token when there is one; on 400/401 redo client credentials. */
  private async renewToken(until: number): Promise<void> {
    const refresh = this.tokens?.refresh;
    this.tokens = undefined;
    if (refresh) {
      try {
        this.tokens = await this.tokenRequest(
          { grant_type: 'refresh_token', refresh_token: refresh },
          until,
        );
        return;
      } catch (err) {
        if (!(err instanceof VerdaApiError && (err.status === 400 || err.status === 401)))
          throw err;
        this.opts.logger.debug('refresh token refused; using client credentials');
      }
    }
    this.tokens = await this.tokenRequest(
      {
        grant_type: 'client_credentials',
        client_id: this.opts.clientId,
        client_secret: this.opts.clientSecret,
      },
      until,
    );
  }

  /** One token request, no retry of its own: the API call's attempt is what is retried. */
  private async tokenRequest(body: Record<string, string>, until: number): Promise<Tokens> {
    const res = await this.send('POST', '/oauth2/token', body, {}, until).catch((err: unknown) => {
      if (
        err instanceof VerdaApiError &&
        err.status === 401 &&
        body.grant_type === 'client_credentials'
      ) {
        throw new OpsError(
          'Verda refused the client credentials (401): check verda-client-id and verda-client-secret',
          { cause: err },
        );
      }
      throw err;
    });
    const t = (res.body ?? {}) as {
      access_token?: unknown;
      refresh_token?: unknown;
      expires_in?: unknown;
    };
    if (typeof t.access_token !== 'string')
      throw new OpsError('Verda token response has no access_token');
    // Masked before anything else can see them: these are credentials as good as the secret.
    this.opts.onSecret?.(t.access_token);
    if (typeof t.refresh_token === 'string') this.opts.onSecret?.(t.refresh_token);
    const ttlMs =
      (typeof t.expires_in === 'number' && t.expires_in > 0 ? t.expires_in : 3600) * 1000;
    // Refresh early: GO uses 30 s; short-lived tokens refresh at 90 % of their life.
    const margin = Math.min(30_000, ttlMs / 10);
    return {
      access: t.access_token,
      refresh: typeof t.refresh_token === 'string' ? t.refresh_token : undefined,
      refreshAt: this.now() + ttlMs - margin,
    };
  }
}

export function deploymentPath(name: string): string {
  return `/container-deployments/${encodeURIComponent(name)}`;
}

/**
 * 408/429/5xx answers and network faults a retry may cure (refused, reset, timeout); a host that
 * does not resolve or a TLS failure is not retried.
 */
export function isRetryableFault(err: unknown): boolean {
  if (err instanceof VerdaApiError) return isRetryableStatus(err.status);
  return isTransientNetworkError(err);
}

/** The real time an attempt must end by (no deadline and no timeout: never). */
const attemptEnd = (budget: AttemptBudget): number =>
  budget.timeoutMs === undefined ? Infinity : Date.now() + budget.timeoutMs;
