// The Verda management API client: OAuth client credentials (refreshed before expiry, and once
// more on a 401), retries with backoff on 408/429/5xx and network faults honouring Retry-After,
// and a create that never duplicates (after a timeout or 5xx, GET by name before retrying).
// Each API call is ONE retry loop with a total deadline: the token requests, the 401 re-login and
// the create's lookup run inside its attempts, never with retries of their own.
import { z } from 'zod';
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
  isJsonObject,
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

/** What a non-2xx answer said, as VerdaApiError keeps it. */
export interface VerdaApiErrorFields {
  status: number;
  /** The documented body's `code`, or ''. */
  code: string;
  /** Its `message`, else the start of a non-JSON body, or ''. */
  detail: string;
  /** What was asked, `METHOD /path` without the query. */
  request: string;
  retryAfterMs?: number | undefined;
}

/** A non-2xx answer: status, the documented {code, message} and what was asked. */
export class VerdaApiError extends OpsError {
  readonly status: number;
  readonly code: string;
  readonly detail: string;
  readonly request: string;
  readonly retryAfterMs: number | undefined;

  constructor(f: VerdaApiErrorFields) {
    super(
      `Verda API ${f.request} answered ${f.status}${f.code ? ` ${f.code}` : ''}${f.detail ? `: ${f.detail}` : ''}`,
    );
    this.name = 'VerdaApiError';
    this.status = f.status;
    this.code = f.code;
    this.detail = f.detail;
    this.request = f.request;
    this.retryAfterMs = f.retryAfterMs;
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

/** One request as sent: method, path (with its query) and JSON body, if any. */
interface Exchange {
  method: string;
  path: string;
  body?: unknown;
}

/**
 * The token endpoint's answer (verda-api.md §1): access_token is required; a refresh token or
 * lifetime that is missing or not what the contract says is ignored (the lifetime is then 1 h).
 */
const tokenAnswer = z.looseObject({
  access_token: z.string(),
  refresh_token: z.string().optional().catch(undefined),
  expires_in: z.number().positive().optional().catch(undefined),
});

const isWrite = (method: string) => method !== 'GET';

/** `METHOD /path` without the query: how requests are named in logs, errors and writes. */
const requestLabel = (method: string, path: string): string =>
  `${method} ${path.replace(/\?.*$/, '')}`;

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
   * Creates a deployment exactly once (createOnce: no idempotency key, so a retried create looks
   * the deployment up by name first).
   */
  async createDeployment(spec: DeploymentSpec): Promise<LiveDeployment> {
    return this.createOnce({
      what: spec.name,
      exchange: { method: 'POST', path: '/container-deployments', body: spec },
      lookup: (until) => this.lookup(spec.name, until),
      parse: async (res) => normalizeDeployment(res.body),
    });
  }

  /**
   * Creates something exactly once. The API has no idempotency key, so after a timeout, a reset
   * or a 5xx the next attempt first runs `lookup` (within the same attempt and deadline) and only
   * sends the create again when that finds nothing. `parse` turns the create's answer into the
   * created thing (it may GET it, through `get`, inside the same attempt).
   */
  async createOnce<T>(create: {
    /** What is created, for the log: a name or hostname. */
    what: string;
    exchange: { method: string; path: string; body: unknown };
    lookup: (until: number) => Promise<T | undefined>;
    parse: (res: ApiResponse, until: number) => Promise<T>;
  }): Promise<T> {
    const label = requestLabel(create.exchange.method, create.exchange.path);
    let failed: { status: number; date: number | undefined; localAt: number } | undefined;
    return this.withRetry(label, async (until) => {
      if (failed) {
        this.opts.logger.info(`checking whether ${create.what} exists before creating it again`);
        const existing = await create.lookup(until);
        if (existing) {
          this.opts.logger.info(
            `${create.what} was created despite the error; not creating it again`,
          );
          this.writes.push({ request: label, ...failed });
          return existing;
        }
      }
      let res: ApiResponse;
      try {
        res = await this.attempt(create.exchange, until);
      } catch (err) {
        // The failed answer's Date: if the create took effect, that is when it was written.
        if (isRetryableFault(err)) {
          const status = err instanceof VerdaApiError ? err.status : 0;
          failed = { status, date: this.lastServerDate, localAt: this.now() };
        }
        throw err;
      }
      const written = { status: res.status, date: res.date, localAt: this.now() };
      try {
        const created = await create.parse(res, until);
        this.writes.push({ request: label, ...written });
        return created;
      } catch (err) {
        // Created, but reading it back failed: a retry must find it, never create it twice.
        if (isRetryableFault(err)) failed = written;
        throw err;
      }
    });
  }

  /** One GET inside an attempt (of createOnce's lookup or parse): no retry of its own. */
  async getWithin(path: string, until: number): Promise<ApiResponse> {
    return this.attempt({ method: 'GET', path }, until);
  }

  /** One GET of the deployment inside an attempt: undefined on 404. */
  private async lookup(name: string, until: number): Promise<LiveDeployment | undefined> {
    try {
      return normalizeDeployment((await this.getWithin(deploymentPath(name), until)).body);
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
    const label = requestLabel(method, path);
    const res = await this.withRetry(label, (until) => this.attempt({ method, path, body }, until));
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
  private async attempt(req: Exchange, until: number): Promise<ApiResponse> {
    const label = requestLabel(req.method, req.path);
    let reauthenticated = false;
    for (;;) {
      const token = await this.accessToken(until);
      try {
        return await this.send(req, { Authorization: `Bearer ${token}` }, until);
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
    req: Exchange,
    headers: Record<string, string>,
    until: number,
  ): Promise<ApiResponse> {
    const timeoutMs = Math.max(
      1,
      Math.min(this.opts.requestTimeoutMs ?? 60_000, until - Date.now()),
    );
    const { res, text } = await this.exchange(req, headers, timeoutMs);
    const parsed = parseBody(text);
    const dateHeader = res.headers.get('date');
    const date = dateHeader ? Date.parse(dateHeader) : NaN;
    if (!Number.isNaN(date)) this.observeServerDate(date);
    if (!res.ok) throw apiError(res, parsed, requestLabel(req.method, req.path));
    return { status: res.status, body: parsed, date: Number.isNaN(date) ? undefined : date };
  }

  /** The request and its whole body; no answer at all is a VerdaNetworkError saying why. */
  private async exchange(
    req: Exchange,
    headers: Record<string, string>,
    timeoutMs: number,
  ): Promise<{ res: Response; text: string }> {
    try {
      const res = await this.fetch(`${this.base}${req.path}`, {
        method: req.method,
        headers: { 'Content-Type': 'application/json', Accept: 'application/json', ...headers },
        ...(req.body === undefined ? {} : { body: JSON.stringify(req.body) }),
        signal: AbortSignal.timeout(timeoutMs),
      });
      return { res, text: await res.text() };
    } catch (err) {
      const cause = networkFailureReason(err);
      const reason =
        cause === 'timed out' ? `timed out (no answer within ${formatDuration(timeoutMs)})` : cause;
      const url = `${this.base}${req.path.replace(/\?.*$/, '')}`;
      throw new VerdaNetworkError(requestLabel(req.method, req.path), url, reason, err);
    }
  }

  observeServerDate(date: number): void {
    if (this.lastServerDate === undefined || date > this.lastServerDate) this.lastServerDate = date;
  }

  // ---- OAuth -------------------------------------------------------------------------------

  private async accessToken(until: number): Promise<string> {
    const tokens =
      this.tokens && this.now() < this.tokens.refreshAt
        ? this.tokens
        : await this.renewToken(until);
    return tokens.access;
  }

  /** Refresh with the refresh token when there is one; on 400/401 redo client credentials. */
  private async renewToken(until: number): Promise<Tokens> {
    const refresh = this.tokens?.refresh;
    this.tokens = undefined;
    if (refresh) {
      try {
        this.tokens = await this.tokenRequest(
          { grant_type: 'refresh_token', refresh_token: refresh },
          until,
        );
        return this.tokens;
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
    return this.tokens;
  }

  /** One token request, no retry of its own: the API call's attempt is what is retried. */
  private async tokenRequest(body: Record<string, string>, until: number): Promise<Tokens> {
    const token: Exchange = { method: 'POST', path: '/oauth2/token', body };
    const res = await this.send(token, {}, until).catch((err: unknown) => {
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
    const answer = tokenAnswer.safeParse(res.body);
    if (!answer.success) throw new OpsError('Verda token response has no access_token');
    const t = answer.data;
    // Masked before anything else can see them: these are credentials as good as the secret.
    this.opts.onSecret?.(t.access_token);
    if (t.refresh_token !== undefined) this.opts.onSecret?.(t.refresh_token);
    const ttlMs = (t.expires_in ?? 3600) * 1000;
    // Refresh early: GO uses 30 s; short-lived tokens refresh at 90 % of their life.
    const margin = Math.min(30_000, ttlMs / 10);
    return {
      access: t.access_token,
      refresh: t.refresh_token,
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

/** JSON when it parses; a non-JSON body (a gateway's page) is kept as text, an empty one is none. */
function parseBody(text: string): unknown {
  if (text === '') return undefined;
  try {
    const parsed: unknown = JSON.parse(text);
    return parsed;
  } catch {
    return text;
  }
}

/** A non-2xx answer: the documented {code, message} when the body has them, else its text. */
function apiError(res: Response, parsed: unknown, request: string): VerdaApiError {
  const fields = isJsonObject(parsed) ? parsed : {};
  const detail =
    typeof fields.message === 'string'
      ? fields.message
      : typeof parsed === 'string'
        ? parsed.slice(0, 200)
        : '';
  return new VerdaApiError({
    status: res.status,
    code: typeof fields.code === 'string' ? fields.code : '',
    detail,
    request,
    retryAfterMs: parseRetryAfter(res.headers.get('retry-after')),
  });
}
