// The Verda emulator: an HTTP server on 127.0.0.1 that implements ../shared/verda-api.md strictly
// (OAuth tokens that expire, container deployments, scaling, status over emulated time, prices)
// plus a second server standing in for https://containers.datacrunch.io/<name>, where an emulated
// ComfyUI answers its health path only when the deployment is healthy and only with the inference
// key. Faults are injected by rule. Used by tests, the sandbox and benchmarks.
//
// Choices where the contract leaves room (documented for the client):
// - POST /container-deployments answers 201; GET bodies omit `scaling` (like GO) and `status`;
//   container `image` is an object {image, last_updated_at} unless `variants.imageAsString`.
// - A duplicate deployment name is a 400 invalid_request (the real code is undocumented).
// - A deployment with min 0 reports `healthy` with no replicas once its image is pulled; the first
//   inference request asks for a replica, which serves after `coldStartMs`. Until then the
//   endpoint answers 503 service_unavailable at once (the real one queues the request).
// - DELETE answers 202 at once; the deployment reports the unknown status `deleting` until it is
//   gone (404) after `deleteMs`. Replicas that are starting have the status `starting`.
// - Responses carry `Date` in emulated time, so clients measuring on the API clock see it.
//
// Not emulated: async inference (Prefer: respond-async, /status and /result), SSE streaming,
// job deployments, held (queued) synchronous requests, cpu/gpu utilisation triggers (validated,
// not acted on), concurrent_requests_per_replica and the request TTL (validated only), image
// pulls and registry logins (credentials only have to exist), ?projectId=, billing, and the
// staging quirks beyond accepting a form-encoded token request.
import { randomBytes } from 'node:crypto';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  computeResources,
  containerTypes,
  defaultCatalog,
  type ComputeModel,
} from './verda-catalog.js';
import { EmulatedClock } from './verda-clock.js';
import { FaultTable, type VerdaFault } from './verda-faults.js';
import {
  EmulatedDeployment,
  containerName,
  defaultDelays,
  type VerdaDelays,
} from './verda-state.js';
import {
  ApiError,
  envNamePattern,
  invalid,
  validateContainer,
  validateCreate,
  validatePatch,
  validateScaling,
  type ContainerSpec,
  type EnvVar,
  type ValidationContext,
} from './verda-validate.js';

export type { VerdaFault } from './verda-faults.js';
export type { VerdaDelays } from './verda-state.js';
export { EmulatedClock } from './verda-clock.js';

export interface VerdaEmulatorOptions {
  /** Access token lifetime in emulated seconds (default 3600). */
  tokenTtlSeconds?: number;
  /** Refresh token lifetime in emulated seconds (default 24 h). */
  refreshTtlSeconds?: number;
  /** Emulated ms per real ms (default 1; 0 freezes the clock). Ignored when `clock` is given. */
  timeScale?: number;
  /** Emulated ms added before each request is handled: deterministic time for child processes. */
  tickPerRequestMs?: number;
  clock?: EmulatedClock;
  delays?: Partial<VerdaDelays>;
  clientId?: string;
  clientSecret?: string;
  inferenceKey?: string;
  /** Generic secrets, file secrets and registry credentials that already exist. */
  secrets?: string[];
  fileSecrets?: string[];
  registryCredentials?: string[];
  catalog?: ComputeModel[];
  /** Documented response variants the client must tolerate. */
  variants?: { imageAsString?: boolean; includeScaling?: boolean; createStatus?: 200 | 201 };
}

export interface LoggedRequest {
  host: 'api' | 'inference';
  method: string;
  /** Path after /v1 (api) or the full path (inference), without the query. */
  path: string;
  query: string;
  status: number;
  /** Emulated time the request was handled (epoch ms). */
  at: number;
}

export interface DeploymentState {
  name: string;
  status: string;
  paused: boolean;
  isSpot: boolean;
  compute: { name: string; size: number };
  image: string;
  containerNames: string[];
  scaling: EmulatedDeployment['scaling'];
  replicas: { id: string; status: string }[];
  queueLength: number;
  purges: number;
}

export interface VerdaEmulator {
  /** Management API base, …/v1. */
  apiUrl: string;
  /** Inference host; a deployment's endpoint is `${inferenceBaseUrl}/${name}`. */
  inferenceBaseUrl: string;
  clientId: string;
  clientSecret: string;
  inferenceKey: string;
  clock: EmulatedClock;
  /** Moves emulated time forward. */
  advance(ms: number): void;
  now(): number;
  addFault(fault: VerdaFault): void;
  clearFaults(): void;
  requests(): LoggedRequest[];
  /** Write requests to the management API (POST/PATCH/PUT/DELETE), the token endpoint excluded. */
  writes(): LoggedRequest[];
  clearRequests(): void;
  deployments(): DeploymentState[];
  /** Queued (not in-progress) messages for a deployment: drives queue-load scaling. */
  setQueueLength(name: string, queued: number): void;
  /** Revokes every access token (refresh tokens stay valid). */
  revokeTokens(): void;
  /** Every access and refresh token handed out so far (for tests that check they are masked). */
  issuedTokens(): string[];
  /** An access token got over HTTP with the client credentials, as a client would get it. */
  token(): Promise<string>;
  stop(): Promise<void>;
}

interface Token {
  expiresAt: number;
  revoked: boolean;
}

const writeMethods = new Set(['POST', 'PATCH', 'PUT', 'DELETE']);

export async function startVerdaEmulator(opts: VerdaEmulatorOptions = {}): Promise<VerdaEmulator> {
  const clock = opts.clock ?? new EmulatedClock({ timeScale: opts.timeScale ?? 1 });
  const delays: VerdaDelays = { ...defaultDelays, ...opts.delays };
  const tokenTtl = opts.tokenTtlSeconds ?? 3600;
  const refreshTtl = opts.refreshTtlSeconds ?? 86_400;
  const clientId = opts.clientId ?? `emu-client-${randomBytes(6).toString('hex')}`;
  const clientSecret = opts.clientSecret ?? `emu-secret-${randomBytes(16).toString('hex')}`;
  const inferenceKey = opts.inferenceKey ?? `dc_${randomBytes(20).toString('hex')}`;
  const catalog = opts.catalog ?? defaultCatalog;
  const variants = {
    imageAsString: false,
    includeScaling: false,
    createStatus: 201,
    ...opts.variants,
  };
  const secrets = new Set(opts.secrets ?? []);
  const fileSecrets = new Set(opts.fileSecrets ?? []);
  const registryCredentials = new Set(opts.registryCredentials ?? []);
  const ctx: ValidationContext = { catalog, secrets, fileSecrets, registryCredentials };
  const accessTokens = new Map<string, Token>();
  const refreshTokens = new Map<string, Token>();
  const issued: string[] = [];
  const deployments = new Map<string, EmulatedDeployment>();
  const faults = new FaultTable();
  let log: LoggedRequest[] = [];
  let inferenceBaseUrl = '';

  const endpointOf = (name: string) => `${inferenceBaseUrl}/${name}`;

  /** A deployment that is gone after its async delete is removed here, lazily. */
  function live(name: string): EmulatedDeployment | undefined {
    const dep = deployments.get(name);
    if (dep?.deletingAt !== undefined && clock.now() >= dep.deletingAt + delays.deleteMs) {
      deployments.delete(name);
      return undefined;
    }
    if (dep) dep.stuckStatus = faults.stuckStatus(name);
    return dep;
  }

  function existing(name: string): EmulatedDeployment {
    const dep = live(name);
    if (!dep) throw new ApiError(404, 'not_found', `container deployment ${name} not found`);
    return dep;
  }

  function issueTokens(): Record<string, unknown> {
    const access = `emu-at-${randomBytes(18).toString('hex')}`;
    const refresh = `emu-rt-${randomBytes(18).toString('hex')}`;
    accessTokens.set(access, { expiresAt: clock.now() + tokenTtl * 1000, revoked: false });
    refreshTokens.set(refresh, { expiresAt: clock.now() + refreshTtl * 1000, revoked: false });
    issued.push(access, refresh);
    return {
      access_token: access,
      refresh_token: refresh,
      scope: 'cloud-api-v1',
      token_type: 'Bearer',
      expires_in: tokenTtl,
    };
  }

  function tokenEndpoint(body: Record<string, unknown>): Record<string, unknown> {
    const grant = body.grant_type;
    if (grant === 'client_credentials') {
      if (body.client_id !== clientId || body.client_secret !== clientSecret) {
        throw new ApiError(401, 'unauthorized_request', 'invalid client credentials');
      }
      return issueTokens();
    }
    if (grant === 'refresh_token') {
      const token =
        typeof body.refresh_token === 'string' ? refreshTokens.get(body.refresh_token) : undefined;
      if (!token || token.revoked || token.expiresAt <= clock.now()) {
        throw new ApiError(401, 'unauthorized_request', 'invalid or expired refresh token');
      }
      refreshTokens.delete(body.refresh_token as string);
      return issueTokens();
    }
    throw invalid('grant_type must be client_credentials or refresh_token');
  }

  function bearer(req: IncomingMessage): string | undefined {
    const header = req.headers.authorization ?? '';
    const match = /^Bearer\s+(\S+)$/i.exec(header);
    return match?.[1];
  }

  function authenticate(req: IncomingMessage): void {
    const presented = bearer(req);
    const token = presented ? accessTokens.get(presented) : undefined;
    if (!token || token.revoked)
      throw new ApiError(401, 'unauthorized_request', 'invalid access token');
    if (token.expiresAt <= clock.now())
      throw new ApiError(401, 'unauthorized_request', 'access token expired');
  }

  function state(dep: EmulatedDeployment): DeploymentState {
    const now = clock.now();
    dep.reconcile(now);
    const first = dep.spec.containers[0];
    return {
      name: dep.name,
      status: dep.status(now),
      paused: dep.paused,
      isSpot: dep.spec.is_spot,
      compute: dep.spec.compute,
      image: first?.image ?? '',
      containerNames: dep.spec.containers.map((c) => c.name ?? ''),
      scaling: dep.scaling,
      replicas: dep.replicas.map((r) => ({
        id: r.id,
        status: r.readyAt <= now ? 'running' : 'starting',
      })),
      queueLength: dep.queueLength,
      purges: dep.purges,
    };
  }

  const deploymentBody = (dep: EmulatedDeployment) =>
    dep.toResponse(endpointOf(dep.name), {
      imageAsString: variants.imageAsString,
      includeScaling: variants.includeScaling,
    });

  function containerFor(dep: EmulatedDeployment, body: Record<string, unknown>): ContainerSpec {
    const name = body.container_name;
    const container = dep.spec.containers.find((c) => c.name === name);
    if (typeof name !== 'string' || !container)
      throw invalid(`container_name "${String(name)}" is not a container of ${dep.name}`);
    return container;
  }

  function envList(v: unknown): EnvVar[] {
    // Reuse the container validator for the variables alone.
    const c = validateContainer({ image: 'x:1', exposed_port: 1, env: v }, 'body', ctx, false);
    return c.env;
  }

  /** The management API router; returns [status, body] or throws ApiError. */
  async function api(
    method: string,
    path: string,
    query: URLSearchParams,
    body: unknown,
    req: IncomingMessage,
  ): Promise<[number, unknown]> {
    const seg = path.split('/').filter(Boolean);
    if (method === 'POST' && path === '/oauth2/token') return [200, tokenEndpoint(asObject(body))];
    authenticate(req);
    const now = clock.now();
    const [root, name, sub, extra] = seg;
    if (extra !== undefined) throw new ApiError(404, 'not_found', `no route ${method} ${path}`);
    switch (root) {
      case 'container-deployments':
        if (name === undefined) {
          if (method === 'GET')
            return [200, [...deployments.keys()].map(live).filter(isDefined).map(deploymentBody)];
          if (method === 'POST') {
            const spec = validateCreate(body, ctx);
            if (live(spec.name))
              throw invalid(`a container deployment named ${spec.name} already exists`);
            spec.containers.forEach((c, i) => (c.name = containerName(c.image, i)));
            const dep = new EmulatedDeployment(spec, now, delays);
            deployments.set(spec.name, dep);
            return [variants.createStatus, deploymentBody(dep)];
          }
          break;
        }
        return deploymentRoute(method, existing(name), sub, query, body, now);
      case 'serverless-compute-resources':
        if (method === 'GET' && name === undefined) return [200, computeResources(catalog)];
        break;
      case 'container-types': {
        if (method !== 'GET' || name !== undefined) break;
        const currency = (query.get('currency') ?? 'usd').toLowerCase();
        if (currency !== 'usd' && currency !== 'eur') throw invalid('currency must be usd or eur');
        return [200, containerTypes(catalog, currency)];
      }
      case 'secrets':
      case 'file-secrets':
      case 'container-registry-credentials':
        return namedResource(root, method, name, body, now);
    }
    throw new ApiError(404, 'not_found', `no route ${method} ${path}`);
  }

  function namedResource(
    kind: string,
    method: string,
    name: string | undefined,
    body: unknown,
    now: number,
  ): [number, unknown] {
    const set =
      kind === 'secrets' ? secrets : kind === 'file-secrets' ? fileSecrets : registryCredentials;
    const createdAt = new Date(now).toISOString();
    if (name === undefined && method === 'GET') {
      return [
        200,
        [...set].map((n) =>
          kind === 'container-registry-credentials'
            ? { name: n, created_at: createdAt }
            : {
                name: n,
                created_at: createdAt,
                secret_type: kind === 'secrets' ? 'generic' : 'file-secret',
              },
        ),
      ];
    }
    if (name === undefined && method === 'POST') {
      const b = asObject(body);
      if (typeof b.name !== 'string' || b.name === '') throw invalid('name is required');
      if (set.has(b.name)) throw invalid(`${b.name} already exists`);
      if (kind === 'secrets' && typeof b.value !== 'string') throw invalid('value is required');
      if (kind === 'container-registry-credentials' && typeof b.type !== 'string')
        throw invalid('type is required');
      set.add(b.name);
      return [201, {}];
    }
    if (name !== undefined && method === 'DELETE') {
      if (!set.delete(name)) throw new ApiError(404, 'not_found', `${name} not found`);
      return [200, {}];
    }
    throw new ApiError(404, 'not_found', `no route ${method} /${kind}`);
  }

  function deploymentRoute(
    method: string,
    dep: EmulatedDeployment,
    sub: string | undefined,
    query: URLSearchParams,
    body: unknown,
    now: number,
  ): [number, unknown] {
    const route = `${method} ${sub ?? ''}`;
    switch (route) {
      case 'GET ':
        return [200, deploymentBody(dep)];
      case 'PATCH ': {
        const patch = validatePatch(body, dep.spec, ctx);
        const imageChanged =
          patch.containers?.some((c, i) => c.image !== dep.spec.containers[i]?.image) ?? false;
        const needsRollout =
          patch.containers !== undefined ||
          patch.compute !== undefined ||
          patch.is_spot !== undefined;
        dep.spec = { ...dep.spec, ...patch };
        if (imageChanged) dep.imageUpdatedAt = now;
        if (needsRollout) dep.restartRollout('update', now, imageChanged);
        return [200, deploymentBody(dep)];
      }
      case 'DELETE ': {
        const timeout = query.get('timeout');
        if (timeout !== null && !(/^\d+$/.test(timeout) && Number(timeout) <= 300_000)) {
          throw invalid('timeout must be an integer from 0 to 300000 (ms)');
        }
        dep.deletingAt ??= now;
        return [202, undefined];
      }
      case 'GET status':
        dep.reconcile(now);
        return [200, { status: dep.status(now) }];
      case 'GET replicas':
        dep.reconcile(now);
        return [
          200,
          {
            list: dep.replicas.map((r) => ({
              id: r.id,
              status: r.readyAt <= now ? 'running' : 'starting',
              started_at: new Date(r.startedAt).toISOString(),
            })),
          },
        ];
      case 'GET scaling':
        return [200, dep.scaling];
      case 'PATCH scaling':
        dep.reconcile(now);
        dep.spec = { ...dep.spec, scaling: validateScaling(body, dep.scaling) };
        dep.reconcile(now);
        return [200, dep.scaling];
      case 'POST pause':
        dep.paused = true;
        dep.replicas = [];
        return [204, undefined];
      case 'POST resume':
        if (dep.paused) {
          dep.paused = false;
          dep.restartRollout('resume', now, false);
        }
        return [204, undefined];
      case 'POST restart':
        dep.paused = false;
        dep.restartRollout('resume', now, false);
        return [204, undefined];
      case 'POST purge-queue':
        dep.setQueueLength(0, now);
        dep.purges += 1;
        return [204, undefined];
      case 'GET environment-variables':
        return [200, dep.spec.containers.map((c) => ({ container_name: c.name, env: c.env }))];
      case 'POST environment-variables':
      case 'PATCH environment-variables':
      case 'DELETE environment-variables':
        return envRoute(method, dep, asObject(body), now);
    }
    throw new ApiError(
      404,
      'not_found',
      `no route ${method} /container-deployments/${dep.name}/${sub ?? ''}`,
    );
  }

  function envRoute(
    method: string,
    dep: EmulatedDeployment,
    body: Record<string, unknown>,
    now: number,
  ): [number, unknown] {
    const container = containerFor(dep, body);
    if (method === 'DELETE') {
      const names = body.env;
      if (
        !Array.isArray(names) ||
        names.some((n) => typeof n !== 'string' || !envNamePattern.test(n))
      ) {
        throw invalid('env must be an array of variable names');
      }
      container.env = container.env.filter((e) => !names.includes(e.name));
    } else {
      const vars = envList(body.env);
      for (const v of vars) {
        const at = container.env.findIndex((e) => e.name === v.name);
        if (method === 'POST' && at >= 0)
          throw invalid(`variable ${v.name} already exists; use PATCH`);
        if (method === 'PATCH' && at < 0)
          throw invalid(`variable ${v.name} does not exist; use POST`);
        if (at >= 0) container.env[at] = v;
        else container.env.push(v);
      }
    }
    dep.restartRollout('update', now, false);
    const entry = { container_name: container.name, env: container.env };
    // The documented variants: POST and DELETE answer an array, PATCH one object.
    return [
      method === 'PATCH' ? 200 : method === 'POST' ? 201 : 200,
      method === 'PATCH' ? entry : [entry],
    ];
  }

  function inference(req: IncomingMessage, path: string): [number, unknown, string] {
    const [, name = '', ...rest] = path.split('/');
    const dep = live(name);
    if (!dep) return [404, { code: 'not_found', message: `no deployment ${name}` }, 'json'];
    if (bearer(req) !== inferenceKey)
      return [
        401,
        { code: 'unauthorized_request', message: 'a valid inference API key is required' },
        'json',
      ];
    const now = clock.now();
    const status = dep.status(now);
    if (status !== 'healthy' && status !== 'version_updating') {
      return [503, { code: 'service_unavailable', message: `deployment is ${status}` }, 'json'];
    }
    dep.lastInferenceAt = now;
    if (dep.readyReplicas(now).length === 0) {
      return [
        503,
        { code: 'service_unavailable', message: 'no replica is ready yet (cold start)' },
        'json',
      ];
    }
    // The emulated ComfyUI behind the deployment.
    const container = dep.spec.containers[0];
    const target = `/${rest.join('/')}`;
    const healthPath = container?.healthcheck?.path ?? '/health';
    if (target === healthPath) return [200, 'OK', 'text'];
    if (target === '/system_stats')
      return [
        200,
        { system: { comfyui_version: 'emulated' }, devices: [{ name: dep.spec.compute.name }] },
        'json',
      ];
    if (target === '/') return [200, '<!doctype html><title>ComfyUI</title>', 'html'];
    return [404, '404: Not Found', 'text'];
  }

  function record(
    host: 'api' | 'inference',
    method: string,
    path: string,
    query: string,
    status: number,
    at: number,
  ): void {
    log.push({ host, method, path, query, status, at });
  }

  function handler(host: 'api' | 'inference') {
    return async (req: IncomingMessage, res: ServerResponse) => {
      if (opts.tickPerRequestMs) clock.advance(opts.tickPerRequestMs);
      const at = clock.now();
      const url = new URL(req.url ?? '/', 'http://emulator');
      const method = req.method ?? 'GET';
      const raw = await readBody(req);
      let path = url.pathname;
      const send = (
        status: number,
        body: unknown,
        type: 'json' | 'text' | 'html' = 'json',
        headers: Record<string, string> = {},
      ) => {
        record(host, method, path, url.search, status, at);
        res.setHeader('Date', new Date(at).toUTCString());
        for (const [k, v] of Object.entries(headers)) res.setHeader(k, v);
        if (body === undefined) {
          res.writeHead(status).end();
          return;
        }
        const text = type === 'json' ? JSON.stringify(body) : String(body);
        res
          .writeHead(status, {
            'Content-Type':
              type === 'json'
                ? 'application/json'
                : `text/${type === 'html' ? 'html' : 'plain'}; charset=utf-8`,
          })
          .end(text);
      };
      try {
        if (host === 'api') {
          if (!path.startsWith('/v1/')) throw new ApiError(404, 'not_found', `no route ${path}`);
          path = path.slice(3);
        }
        const fault = faults.match(
          host,
          method,
          host === 'api' ? path : `/${path.split('/').slice(2).join('/')}`,
        );
        if (fault?.kind === 'reset') {
          record(host, method, path, url.search, 0, at);
          req.socket.destroy();
          return;
        }
        if (fault?.kind === 'http') {
          const headers: Record<string, string> =
            fault.retryAfterSeconds !== undefined
              ? { 'Retry-After': String(fault.retryAfterSeconds) }
              : {};
          const code =
            fault.status === 429
              ? 'rate_limited'
              : fault.status >= 500
                ? fault.status === 503
                  ? 'service_unavailable'
                  : 'server_error'
                : 'invalid_request';
          send(fault.status, { code, message: `injected fault: ${fault.status}` }, 'json', headers);
          return;
        }
        if (fault?.kind === 'revoke-token' || fault?.kind === 'expire-token') {
          const token = accessTokens.get(bearer(req) ?? '');
          if (token) {
            if (fault.kind === 'revoke-token') token.revoked = true;
            else token.expiresAt = at;
          }
        }
        if (host === 'inference') {
          const [status, body, type] = inference(req, path);
          send(status, body, type as 'json');
          return;
        }
        const body = parseBody(raw, req.headers['content-type']);
        const [status, result] = await api(method, path, url.searchParams, body, req);
        if (fault?.kind === 'http-after-handling') {
          send(fault.status, {
            code: 'server_error',
            message: 'gateway timeout (injected after the request was handled)',
          });
          return;
        }
        send(status, result);
      } catch (err) {
        if (err instanceof ApiError) send(err.status, { code: err.code, message: err.message });
        else
          send(500, {
            code: 'server_error',
            message: err instanceof Error ? err.message : String(err),
          });
      }
    };
  }

  const apiServer = http.createServer((req, res) => void handler('api')(req, res));
  const inferenceServer = http.createServer((req, res) => void handler('inference')(req, res));
  const apiPort = await listen(apiServer);
  const inferencePort = await listen(inferenceServer);
  inferenceBaseUrl = `http://127.0.0.1:${inferencePort}`;

  return {
    apiUrl: `http://127.0.0.1:${apiPort}/v1`,
    inferenceBaseUrl,
    clientId,
    clientSecret,
    inferenceKey,
    clock,
    advance: (ms) => clock.advance(ms),
    now: () => clock.now(),
    addFault: (fault) => faults.add(fault),
    clearFaults: () => faults.clear(),
    requests: () => [...log],
    writes: () =>
      log.filter(
        (r) => r.host === 'api' && writeMethods.has(r.method) && r.path !== '/oauth2/token',
      ),
    clearRequests: () => {
      log = [];
    },
    deployments: () => [...deployments.keys()].map(live).filter(isDefined).map(state),
    setQueueLength: (name, queued) => {
      existing(name).setQueueLength(queued, clock.now());
    },
    revokeTokens: () => {
      for (const token of accessTokens.values()) token.revoked = true;
    },
    issuedTokens: () => [...issued],
    token: async () => {
      const res = await fetch(`http://127.0.0.1:${apiPort}/v1/oauth2/token`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({
          grant_type: 'client_credentials',
          client_id: clientId,
          client_secret: clientSecret,
        }),
      });
      return ((await res.json()) as { access_token: string }).access_token;
    },
    stop: async () => {
      await Promise.all([close(apiServer), close(inferenceServer)]);
    },
  };
}

function isDefined<T>(v: T | undefined): v is T {
  return v !== undefined;
}

function asObject(v: unknown): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v))
    throw invalid('the request body must be a JSON object');
  return v as Record<string, unknown>;
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/** JSON bodies, and form-encoded ones on the token endpoint (GO's staging fallback). */
function parseBody(raw: string, contentType: string | undefined): unknown {
  if (raw.trim() === '') return undefined;
  if ((contentType ?? '').includes('application/x-www-form-urlencoded')) {
    return Object.fromEntries(new URLSearchParams(raw));
  }
  try {
    return JSON.parse(raw) as unknown;
  } catch {
    throw invalid('the request body is not valid JSON');
  }
}

function listen(server: http.Server): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port));
  });
}

function close(server: http.Server): Promise<void> {
  return new Promise((resolve) => {
    server.closeAllConnections();
    server.close(() => resolve());
  });
}
