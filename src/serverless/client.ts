// The Verda management API client: OAuth client credentials (refreshed before expiry, and once
// more on a 401), retries with backoff on 408/429/5xx and network faults honouring Retry-After,
// and a create that never duplicates (after a timeout or 5xx, GET by name before retrying).
import { OpsError, errorMessage } from '../lib/errors.js';
import type { Logger } from '../lib/logger.js';
import {
  isRetryableStatus,
  isTransientNetworkError,
  parseRetryAfter,
  retry,
  sleep as realSleep,
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
  /** Attempts per request, the first included (default 6). */
  attempts?: number;
  baseDelayMs?: number;
  maxDelayMs?: number;
  /** Longest Retry-After honoured (default 120 s); longer requests wait this long. */
  maxRetryAfterMs?: number;
  requestTimeoutMs?: number;
  sleep?: (ms: number) => Promise<void>;
  now?: () => number;
}

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

  constructor(private readonly opts: VerdaClientOptions) {
    this.base = opts.apiUrl.replace(/\/+$/, '');
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
   * reset or a 5xx the deployment is looked up by name before the POST is sent again.
   */
  async createDeployment(spec: DeploymentSpec): Promise<LiveDeployment> {
    const attempts = this.opts.attempts ?? 6;
    for (let attempt = 1; ; attempt++) {
      try {
        const res = await this.request('POST', '/container-deployments', spec, { retry: false });
        return normalizeDeployment(res.body);
      } catch (err) {
        if (!isRetryableFault(err) || attempt >= attempts) throw err;
        // The failed answer's Date: if the create took effect, that is when it was written.
        const failedAt = { date: this.lastServerDate, localAt: this.now() };
        this.opts.logger.warn(
          `create of ${spec.name} failed (${errorMessage(err)}); checking whether it exists before retrying`,
        );
        const existing = await this.getDeployment(spec.name);
        if (existing) {
          this.opts.logger.info(
            `${spec.name} was created despite the error; not creating it again`,
          );
          const status = err instanceof VerdaApiError ? err.status : 0;
          this.writes.push({ request: 'POST /container-deployments', status, ...failedAt });
          return existing;
        }
        await this.sleep(this.delayFor(err, attempt));
      }
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

  /**
   * One API call with auth, retries (when `retry`, the default: every call here is safe to
   * repeat except a create) and one fresh token after a 401.
   */
  async request(
    method: string,
    path: string,
    body?: unknown,
    opts: { retry?: boolean } = {},
  ): Promise<ApiResponse> {
    const label = `${method} ${path.replace(/\?.*$/, '')}`;
    const res = await retry(
      async () => {
        let reauthenticated = false;
        for (;;) {
          const token = await this.accessToken();
          try {
            return await this.send(method, path, body, { Authorization: `Bearer ${token}` });
          } catch (err) {
            if (err instanceof VerdaApiError && err.status === 401 && !reauthenticated) {
              this.opts.logger.info(`${label}: 401, getting a new token and trying once more`);
              reauthenticated = true;
              await this.renewToken();
              continue;
            }
            throw err;
          }
        }
      },
      this.retryOptions(label, opts.retry ?? true),
    );
    if (isWrite(method))
      this.writes.push({ request: label, status: res.status, date: res.date, localAt: this.now() });
    return res;
  }

  private retryOptions(label: string, enabled: boolean) {
    return {
      attempts: enabled ? (this.opts.attempts ?? 6) : 1,
      baseDelayMs: this.opts.baseDelayMs ?? 1000,
      maxDelayMs: this.opts.maxDelayMs ?? 30_000,
      sleep: this.sleep,
      retryable: isRetryableFault,
      retryAfterMs: (err: unknown) => this.retryAfter(err),
      onRetry: ({ err, attempt, delayMs }: { err: unknown; attempt: number; delayMs: number }) =>
        this.opts.logger.warn(
          `${label}: ${errorMessage(err)}; retry ${attempt} in ${Math.round(delayMs / 100) / 10} s`,
        ),
    };
  }

  private retryAfter(err: unknown): number | undefined {
    if (!(err instanceof VerdaApiError) || err.retryAfterMs === undefined) return undefined;
    return Math.min(err.retryAfterMs, this.opts.maxRetryAfterMs ?? 120_000);
  }

  private delayFor(err: unknown, attempt: number): number {
    const base = this.opts.baseDelayMs ?? 1000;
    const backoff = Math.min(this.opts.maxDelayMs ?? 30_000, base * 2 ** (attempt - 1));
    return Math.max(backoff, this.retryAfter(err) ?? 0);
  }

  private async send(
    method: string,
    path: string,
    body: unknown,
    headers: Record<string, string>,
  ): Promise<ApiResponse> {
    const label = `${method} ${path.replace(/\?.*$/, '')}`;
    const res = await fetch(`${this.base}${path}`, {
      method,
      headers: { 'Content-Type': 'application/json', Accept: 'application/json', ...headers },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      signal: AbortSignal.timeout(this.opts.requestTimeoutMs ?? 60_000),
    });
    const text = await res.text();
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

  private async accessToken(): Promise<string> {
    if (!this.tokens || this.now() >= this.tokens.refreshAt) await this.renewToken();
    return (this.tokens as Tokens).access;
  }

  /** Refresh with the refresh token when there is one; on 400/401 redo client credentials. */
  private async renewToken(): Promise<void> {
    const refresh = this.tokens?.refresh;
    this.tokens = undefined;
    if (refresh) {
      try {
        this.tokens = await this.tokenRequest({
          grant_type: 'refresh_token',
          refresh_token: refresh,
        });
        return;
      } catch (err) {
        if (!(err instanceof VerdaApiError && (err.status === 400 || err.status === 401)))
          throw err;
        this.opts.logger.debug('refresh token refused; using client credentials');
      }
    }
    this.tokens = await this.tokenRequest({
      grant_type: 'client_credentials',
      client_id: this.opts.clientId,
      client_secret: this.opts.clientSecret,
    });
  }

  private async tokenRequest(body: Record<string, string>): Promise<Tokens> {
    const res = await retry(
      () => this.send('POST', '/oauth2/token', body, {}),
      this.retryOptions('POST /oauth2/token', true),
    ).catch((err: unknown) => {
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

/** 408/429/5xx answers and network faults (resets, timeouts) may be retried. */
export function isRetryableFault(err: unknown): boolean {
  if (err instanceof VerdaApiError) return isRetryableStatus(err.status);
  return (
    isTransientNetworkError(err) || (err instanceof TypeError && /fetch failed/.test(err.message))
  );
}
