// The Verda client and the waiter against the in-process emulator. Sleeps are replaced by moving
// the emulator's clock, so backoff and waits cost no real time and are recorded exactly.
import { afterEach, describe, expect, it } from '@jest/globals';
import { memoryLogger } from '../../src/lib/logger.js';
import {
  VerdaApiError,
  VerdaClient,
  VerdaNetworkError,
  type VerdaClientOptions,
} from '../../src/serverless/client.js';
import { normalizeReplicas, normalizeStatus } from '../../src/serverless/normalize.js';
import { waitUntilServing, WaitTimeoutError } from '../../src/serverless/wait.js';
import { exampleDeployment } from '../../src/sandbox/verda-examples.js';
import {
  startVerdaEmulator,
  type VerdaEmulator,
  type VerdaEmulatorOptions,
} from '../../src/sandbox/verda.js';

let emu: VerdaEmulator;
afterEach(async () => {
  await emu?.stop();
});

async function setup(
  opts: VerdaEmulatorOptions = {},
  clientOpts: Partial<VerdaClientOptions> = {},
) {
  emu = await startVerdaEmulator({
    timeScale: 0,
    delays: { initializingMs: 2_000, imagePullingMs: 8_000, coldStartMs: 20_000 },
    ...opts,
  });
  const sleeps: number[] = [];
  let local = 1_000_000;
  const logger = memoryLogger();
  const client = new VerdaClient({
    apiUrl: emu.apiUrl,
    clientId: emu.clientId,
    clientSecret: emu.clientSecret,
    logger,
    sleep: async (ms) => {
      sleeps.push(ms);
      emu.advance(ms);
      local += ms;
    },
    now: () => local,
    ...clientOpts,
  });
  return { client, sleeps, logger, advanceLocal: (ms: number) => (local += ms), now: () => local };
}

const spec = (name = 'unit') => exampleDeployment(name);

const tokenRequests = () => emu.requests().filter((r) => r.path === '/oauth2/token').length;

describe('VerdaClient', () => {
  it('tolerates the documented variants: image string, scaling in the body, create 200', async () => {
    const { client } = await setup({
      variants: { imageAsString: true, includeScaling: true, createStatus: 200 },
    });
    const created = await client.createDeployment(spec());
    expect(created.containers[0]?.image).toBe('ghcr.io/ahelme/comfyui-worker:v1');
    expect(created.scaling?.max_replica_count).toBe(2);
    expect((await client.getDeployment('unit'))?.containers[0]?.name).toBe('comfyui-worker-0');
    expect(await client.getDeployment('nope')).toBeUndefined();
    const prices = await client.containerTypes();
    expect(prices.find((p) => p.model === 'H200' && p.size === 1)).toMatchObject({
      onDemand: 4.4,
      spot: 2.2,
    });
  });

  it('normalises replica and status variants, keeping unknown values', () => {
    expect(normalizeReplicas({ list: [{ id: 'a', status: 'running' }] })).toEqual([
      { id: 'a', status: 'running' },
    ]);
    expect(normalizeReplicas([{ id: 'b', status: 'warming' }])).toEqual([
      { id: 'b', status: 'warming' },
    ]);
    expect(normalizeReplicas('')).toEqual([]);
    expect(normalizeStatus({ status: 'quota_reached' })).toBe('quota_reached');
    expect(normalizeStatus('healthy')).toBe('healthy');
    expect(normalizeStatus({})).toBe('unknown');
  });

  it('refreshes the token before it expires, with the refresh token', async () => {
    const { client, advanceLocal } = await setup({ tokenTtlSeconds: 100 });
    await client.getDeployment('x');
    advanceLocal(95_000); // past 90 % of the token's life on the runner's clock
    emu.advance(95_000);
    await client.getDeployment('x');
    expect(tokenRequests()).toBe(2);
    expect(emu.requests().filter((r) => r.status === 401)).toEqual([]);
  });

  it('gets a new token once on a 401 and then gives up with the API error', async () => {
    const { client, logger } = await setup();
    await client.getDeployment('x');
    emu.revokeTokens();
    await client.getDeployment('x');
    expect(logger.lines.some((l) => l.message.includes('401, getting a new token'))).toBe(true);
    emu.addFault({ kind: 'revoke-token', path: '/container-deployments/x', times: Infinity });
    await expect(client.getDeployment('x')).rejects.toThrow(
      'Verda API GET /container-deployments/x answered 401 unauthorized_request: invalid access token',
    );
  });

  it('redoes client credentials when the refresh token is refused', async () => {
    const { client, advanceLocal } = await setup({ tokenTtlSeconds: 100, refreshTtlSeconds: 50 });
    await client.getDeployment('x');
    advanceLocal(95_000);
    emu.advance(95_000);
    await client.getDeployment('x');
    expect(
      emu
        .requests()
        .filter((r) => r.path === '/oauth2/token')
        .map((r) => r.status),
    ).toEqual([200, 401, 200]);
  });

  it('says so when the client credentials are wrong, without repeating them', async () => {
    emu = await startVerdaEmulator();
    const client = new VerdaClient({
      apiUrl: emu.apiUrl,
      clientId: 'id',
      clientSecret: 'wrong-secret-value',
      logger: memoryLogger(),
    });
    const err = await client.getDeployment('x').catch((e: unknown) => e);
    expect(String(err)).toContain('Verda refused the client credentials (401)');
    expect(String(err)).not.toContain('wrong-secret-value');
  });

  it('backs off on 5xx and honours Retry-After, capped', async () => {
    const { client, sleeps } = await setup({}, { deadlineMs: 600_000 });
    emu.addFault({ kind: 'http', status: 503, path: '/container-types', times: 2 });
    emu.addFault({
      kind: 'http',
      status: 429,
      retryAfterSeconds: 7,
      path: '/serverless-compute-resources',
    });
    await client.containerTypes();
    expect(sleeps).toHaveLength(2);
    expect(sleeps[0]).toBeGreaterThanOrEqual(500);
    expect(sleeps[0]).toBeLessThanOrEqual(1_500);
    expect(sleeps[1]).toBeGreaterThanOrEqual(1_000);
    await client.request('GET', '/serverless-compute-resources');
    expect(sleeps[2]).toBeGreaterThanOrEqual(7_000);
    emu.addFault({
      kind: 'http',
      status: 429,
      retryAfterSeconds: 3_600,
      path: '/serverless-compute-resources',
    });
    await client.request('GET', '/serverless-compute-resources');
    expect(sleeps[3]).toBe(120_000);
  });

  it('does not wait out a Retry-After that goes past the deadline', async () => {
    const { client, sleeps } = await setup();
    emu.addFault({ kind: 'http', status: 429, retryAfterSeconds: 90, path: '/container-types' });
    await expect(client.containerTypes()).rejects.toThrow(
      /answered 429 rate_limited.*; gave up after 1 attempt in 0 ms \(deadline 1 m 0 s; the API asked to wait 1 m 30 s\)$/,
    );
    expect(sleeps).toEqual([]);
  });

  it('retries the token endpoint in the one retry loop of the call, not in a loop of its own', async () => {
    const { client, sleeps } = await setup();
    emu.addFault({ kind: 'http', status: 503, path: '/oauth2/token', times: Infinity });
    const err = await client.getDeployment('x').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(VerdaApiError);
    expect(String(err)).toMatch(
      /POST \/oauth2\/token answered 503.*; gave up after 6 attempts in .* \(deadline 1 m 0 s\)$/,
    );
    // 6 attempts of the GET, each one token request: not 6 × 6.
    expect(tokenRequests()).toBe(6);
    expect(sleeps).toHaveLength(5);
  });

  it('stops retrying at the deadline: no attempt starts whose delay would cross it', async () => {
    const { client, sleeps } = await setup({}, { deadlineMs: 10_000, attempts: 100 });
    emu.addFault({ kind: 'http', status: 503, path: '/container-types', times: Infinity });
    await expect(client.containerTypes()).rejects.toThrow(/answered 503.*\(deadline 10 s\)$/);
    const waited = sleeps.reduce((a, b) => a + b, 0);
    expect(waited).toBeLessThan(10_000);
    expect(emu.requests().filter((r) => r.path === '/container-types').length).toBe(
      sleeps.length + 1,
    );
    expect(sleeps.length).toBeLessThan(6);
  });

  it('names the URL and the cause when there is no answer; a missing host is not retried', async () => {
    const errno = (code: string, message: string) =>
      new TypeError('fetch failed', { cause: Object.assign(new Error(message), { code }) });
    const fails = (err: unknown) => {
      let calls = 0;
      const fetch = (async () => {
        calls++;
        throw err;
      }) as unknown as typeof globalThis.fetch;
      const client = new VerdaClient({
        apiUrl: 'https://api.verda.invalid/v1/',
        clientId: 'id',
        clientSecret: 'secret',
        logger: memoryLogger(),
        fetch,
        sleep: async () => {},
        deadlineMs: 5_000,
      });
      return { calls: () => calls, result: client.containerTypes().catch((e: unknown) => e) };
    };
    const dns = fails(errno('ENOTFOUND', 'getaddrinfo ENOTFOUND api.verda.invalid'));
    const dnsErr = await dns.result;
    expect(dnsErr).toBeInstanceOf(VerdaNetworkError);
    expect(String(dnsErr)).toContain(
      'Verda API POST /oauth2/token got no answer from https://api.verda.invalid/v1/oauth2/token: DNS lookup failed: no such host (ENOTFOUND)',
    );
    expect(dns.calls()).toBe(1);
    const again = fails(errno('EAI_AGAIN', 'getaddrinfo EAI_AGAIN api.verda.invalid'));
    expect(String(await again.result)).toMatch(
      /DNS lookup failed \(temporary resolver failure\) \(EAI_AGAIN\); gave up after [2-6] attempts/,
    );
    const tls = fails(errno('CERT_HAS_EXPIRED', 'certificate has expired'));
    expect(String(await tls.result)).toContain(
      ': TLS error: certificate has expired (CERT_HAS_EXPIRED)',
    );
    expect(tls.calls()).toBe(1);
    const refused = fails(
      new TypeError('fetch failed', {
        cause: Object.assign(new AggregateError([new Error('connect ECONNREFUSED ::1:9')]), {
          code: 'ECONNREFUSED',
        }),
      }),
    );
    expect(String(await refused.result)).toContain(': connection refused (ECONNREFUSED); gave up');
    const timeout = fails(
      new DOMException('The operation was aborted due to timeout', 'TimeoutError'),
    );
    expect(String(await timeout.result)).toMatch(
      /: timed out \(no answer within 5\.0 s\); gave up/,
    );
  });

  it('reports every token the API hands out to onSecret before using it', async () => {
    const secrets: string[] = [];
    const { client, advanceLocal } = await setup(
      { tokenTtlSeconds: 100 },
      { onSecret: (v) => secrets.push(v) },
    );
    await client.getDeployment('x');
    advanceLocal(95_000);
    emu.advance(95_000);
    await client.getDeployment('x');
    expect(secrets).toHaveLength(4);
    expect(secrets.filter((t) => t.startsWith('emu-at-'))).toHaveLength(2);
    expect(secrets.filter((t) => t.startsWith('emu-rt-'))).toHaveLength(2);
  });

  it('retries a reset connection, but not a 400', async () => {
    const { client } = await setup();
    emu.addFault({ kind: 'reset', path: '/container-deployments/x' });
    expect(await client.getDeployment('x')).toBeUndefined();
    const bad = await client
      .createDeployment({ ...spec(), name: 'Bad_Name' })
      .catch((e: unknown) => e);
    expect(bad).toBeInstanceOf(VerdaApiError);
    expect((bad as VerdaApiError).status).toBe(400);
    expect(emu.writes()).toHaveLength(1);
  });

  it('creates once after a 504 that created, and retries a create that failed before creating', async () => {
    const { client } = await setup();
    emu.addFault({
      kind: 'http-after-handling',
      status: 504,
      method: 'POST',
      path: '/container-deployments',
    });
    await client.createDeployment(spec('one'));
    emu.addFault({
      kind: 'http',
      status: 503,
      method: 'POST',
      path: '/container-deployments',
    });
    await client.createDeployment(spec('two'));
    expect(emu.writes().map((w) => w.status)).toEqual([504, 503, 201]);
    expect(emu.deployments().map((d) => d.name)).toEqual(['one', 'two']);
  });
});

describe('waitUntilServing', () => {
  const wait = async (
    env: Awaited<ReturnType<typeof setup>>,
    over: Partial<Parameters<typeof waitUntilServing>[0]> = {},
  ) =>
    waitUntilServing({
      client: env.client,
      name: 'unit',
      endpointUrl: `${emu.inferenceBaseUrl}/unit`,
      healthPath: '/health',
      inferenceKey: emu.inferenceKey,
      logger: env.logger,
      timeoutMs: 300_000,
      pollMs: 5_000,
      endpoint: true,
      startedAt: env.now(),
      serverStartedAt: emu.now(),
      now: env.now,
      sleep: async (ms) => {
        emu.advance(ms);
        env.advanceLocal(ms);
      },
      ...over,
    });

  it('records the status timeline and the first 200 on the API clock', async () => {
    const env = await setup();
    await env.client.createDeployment(spec());
    const start = emu.now();
    const result = await wait(env);
    expect(result.timeline.map((t) => `${(t.serverAtMs ?? 0) / 1000} ${t.event}`)).toEqual([
      '0 initializing',
      '5 image_pulling',
      '12 healthy',
      '12 endpoint 503',
      '40 endpoint 200',
    ]);
    expect(result.firstOkFromServerClock).toBe(true);
    expect(((result.firstOkAt ?? 0) - start) / 1000).toBe(40);
  });

  it('fails after the timeout with the timeline and replica list', async () => {
    const env = await setup();
    emu.addFault({ kind: 'stuck', status: 'image_pulling' });
    await env.client.createDeployment(spec());
    const err = await wait(env, { timeoutMs: 60_000 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WaitTimeoutError);
    expect((err as WaitTimeoutError).message).toMatch(
      /^unit did not serve within 1 m 0 s; last status image_pulling; replicas: none\nstatus timeline:\n {2}0 ms: initializing\n {2}5\.0 s: image_pulling$/,
    );
  });

  it('stops at once when the endpoint refuses the key', async () => {
    const env = await setup();
    await env.client.createDeployment(spec());
    emu.advance(10_000);
    await expect(wait(env, { inferenceKey: 'dc_wrong' })).rejects.toThrow(
      'the endpoint refused the inference key (401): check inference-api-key',
    );
  });
});
