// The Verda client and the waiter against the in-process emulator. Sleeps are replaced by moving
// the emulator's clock, so backoff and waits cost no real time and are recorded exactly.
import { afterEach, describe, expect, it } from '@jest/globals';
import { memoryLogger } from '../../src/lib/logger.js';
import { VerdaApiError, VerdaClient } from '../../src/serverless/client.js';
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

async function setup(opts: VerdaEmulatorOptions = {}) {
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
    const { client, sleeps } = await setup();
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
