// The Verda emulator against verda-api.md: auth, validation, shapes, lifecycle on a frozen clock
// moved by hand, the inference endpoint, and every fault kind.
import { afterEach, beforeEach, describe, expect, it } from '@jest/globals';
import type { ContainerSpec } from '../../src/serverless/verda-types.js';
import { exampleDeployment, exampleScaling } from '../../src/sandbox/verda-examples.js';
import {
  startVerdaEmulator,
  type VerdaEmulator,
  type VerdaEmulatorOptions,
} from '../../src/sandbox/verda.js';

let emu: VerdaEmulator;

async function start(opts: VerdaEmulatorOptions = {}): Promise<VerdaEmulator> {
  emu = await startVerdaEmulator({
    timeScale: 0,
    delays: { initializingMs: 2_000, imagePullingMs: 8_000, coldStartMs: 20_000, deleteMs: 3_000 },
    secrets: ['hf-token'],
    registryCredentials: ['ghcr'],
    ...opts,
  });
  return emu;
}

afterEach(async () => {
  await emu?.stop();
});

interface Reply {
  status: number;
  body: unknown;
  headers: Headers;
}

const token = (): Promise<string> => emu.token();

async function call(method: string, path: string, body?: unknown, auth?: string): Promise<Reply> {
  const headers: Record<string, string> = { 'Content-Type': 'application/json' };
  headers.Authorization = `Bearer ${auth ?? (await token())}`;
  const res = await fetch(`${emu.apiUrl}${path}`, {
    method,
    headers,
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await res.text();
  let parsed: unknown = text;
  try {
    parsed = text ? JSON.parse(text) : undefined;
  } catch {
    /* text body */
  }
  return { status: res.status, body: parsed, headers: res.headers };
}

async function infer(name: string, path: string, key?: string): Promise<Reply> {
  const res = await fetch(`${emu.inferenceBaseUrl}/${name}${path}`, {
    headers: key ? { Authorization: `Bearer ${key}` } : {},
  });
  return { status: res.status, body: await res.text(), headers: res.headers };
}

function deployment(
  overrides: Record<string, unknown> = {},
  container: Record<string, unknown> = {},
) {
  return {
    ...exampleDeployment(
      'comfy-test',
      {
        container_registry_settings: { is_private: true, credentials: { name: 'ghcr' } },
        scaling: exampleScaling(0, 4),
      },
      {
        image: 'ghcr.io/ahelme/comfyui-worker:v1.2.3',
        env: [{ name: 'HF_TOKEN', value_or_reference_to_secret: 'hf-token', type: 'secret' }],
        volume_mounts: [
          { type: 'scratch', mount_path: '/data' },
          { type: 'shared', mount_path: '/mnt/sfs', volume_id: 'vol-1' },
        ],
        ...container,
      } as Partial<ContainerSpec>,
    ),
    ...overrides,
  };
}

const status = async (name = 'comfy-test') =>
  ((await call('GET', `/container-deployments/${name}/status`)).body as { status: string }).status;

describe('auth', () => {
  beforeEach(async () => {
    await start({ tokenTtlSeconds: 60 });
  });

  it('issues tokens for the client credentials only', async () => {
    const bad = await fetch(`${emu.apiUrl}/oauth2/token`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({
        grant_type: 'client_credentials',
        client_id: emu.clientId,
        client_secret: 'nope',
      }),
    });
    expect(bad.status).toBe(401);
    expect(await bad.json()).toMatchObject({ code: 'unauthorized_request' });
    const form = await fetch(`${emu.apiUrl}/oauth2/token`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({
        grant_type: 'client_credentials',
        client_id: emu.clientId,
        client_secret: emu.clientSecret,
      }).toString(),
    });
    expect(await form.json()).toMatchObject({ token_type: 'Bearer', expires_in: 60 });
    expect((await call('GET', '/container-deployments', undefined, 'made-up')).status).toBe(401);
  });

  it('answers 401 once a token has expired, and a refresh token gets a new one once', async () => {
    const res = await fetch(`${emu.apiUrl}/oauth2/token`, {
      method: 'POST',
      body: JSON.stringify({
        grant_type: 'client_credentials',
        client_id: emu.clientId,
        client_secret: emu.clientSecret,
      }),
    });
    const tokens = (await res.json()) as { access_token: string; refresh_token: string };
    expect(
      (await call('GET', '/container-deployments', undefined, tokens.access_token)).status,
    ).toBe(200);
    emu.advance(60_000);
    const expired = await call('GET', '/container-deployments', undefined, tokens.access_token);
    expect(expired.status).toBe(401);
    expect(expired.body).toEqual({ code: 'unauthorized_request', message: 'access token expired' });
    const refresh = async () =>
      fetch(`${emu.apiUrl}/oauth2/token`, {
        method: 'POST',
        body: JSON.stringify({ grant_type: 'refresh_token', refresh_token: tokens.refresh_token }),
      });
    const first = await refresh();
    expect(first.status).toBe(200);
    const fresh = ((await first.json()) as { access_token: string }).access_token;
    expect((await call('GET', '/container-deployments', undefined, fresh)).status).toBe(200);
    expect((await refresh()).status).toBe(401);
  });
});

describe('validation', () => {
  beforeEach(async () => {
    await start();
  });

  const refused: [string, Record<string, unknown>, Record<string, unknown>, RegExp][] = [
    [
      'a latest tag',
      {},
      { image: 'ghcr.io/ahelme/comfyui-worker:latest' },
      /latest tag is not allowed/,
    ],
    ['a missing tag', {}, { image: 'ghcr.io/ahelme/comfyui-worker' }, /has no tag/],
    ['an invalid name', { name: 'Comfy_Test' }, {}, /must match/],
    ['a 64-character name', { name: 'a'.repeat(64) }, {}, /at most 63/],
    [
      'an unknown compute',
      { compute: { name: 'H100-SXM5-80GB', size: 1 } },
      {},
      /not a serverless compute resource/,
    ],
    ['exposed_port 0', {}, { exposed_port: 0 }, /exposed_port/],
    ['exposed_port 65536', {}, { exposed_port: 65536 }, /exposed_port/],
    [
      'max below min',
      { scaling: { ...deployment().scaling, min_replica_count: 5, max_replica_count: 2 } },
      {},
      /max_replica_count/,
    ],
    [
      'max 0',
      { scaling: { ...deployment().scaling, max_replica_count: 0 } },
      {},
      /max_replica_count/,
    ],
    [
      'a queue-load threshold below 1',
      {
        scaling: { ...deployment().scaling, scaling_triggers: { queue_load: { threshold: 0.5 } } },
      },
      {},
      /threshold/,
    ],
    [
      'a sized scratch mount',
      {},
      { volume_mounts: [{ type: 'scratch', mount_path: '/data', size_in_mb: 100 }] },
      /volume_id should not be null/,
    ],
    [
      'a shared mount without volume_id',
      {},
      { volume_mounts: [{ type: 'shared', mount_path: '/mnt/sfs' }] },
      /volume_id should not be null/,
    ],
    [
      'an unknown secret reference',
      {},
      { env: [{ name: 'X', value_or_reference_to_secret: 'nope', type: 'secret' }] },
      /does not exist/,
    ],
    [
      'a bad env name',
      {},
      { env: [{ name: 'lower', value_or_reference_to_secret: 'x', type: 'plain' }] },
      /must match/,
    ],
    [
      'unknown registry credentials',
      { container_registry_settings: { is_private: true, credentials: { name: 'x' } } },
      {},
      /do not exist/,
    ],
  ];

  it.each(refused)(
    'refuses %s with 400 invalid_request and creates nothing',
    async (_what, over, container, message) => {
      const res = await call('POST', '/container-deployments', deployment(over, container));
      expect(res.status).toBe(400);
      expect(res.body).toMatchObject({ code: 'invalid_request' });
      expect((res.body as { message: string }).message).toMatch(message);
      expect((await call('GET', '/container-deployments')).body).toEqual([]);
    },
  );

  it('accepts a digest without a tag, and refuses a duplicate name', async () => {
    const digest = `ghcr.io/ahelme/comfyui-worker@sha256:${'a'.repeat(64)}`;
    expect(
      (await call('POST', '/container-deployments', deployment({}, { image: digest }))).status,
    ).toBe(201);
    const again = await call('POST', '/container-deployments', deployment());
    expect(again.status).toBe(400);
    expect((again.body as { message: string }).message).toMatch(/already exists/);
  });

  it('requires the container name on PATCH and refuses a rename', async () => {
    await call('POST', '/container-deployments', deployment());
    const noName = await call('PATCH', '/container-deployments/comfy-test', {
      containers: [{ image: 'ghcr.io/ahelme/comfyui-worker:v2', exposed_port: 8188 }],
    });
    expect(noName.status).toBe(400);
    expect((noName.body as { message: string }).message).toMatch(/name \(required on update\)/);
    const rename = await call('PATCH', '/container-deployments/comfy-test', { name: 'other' });
    expect(rename.status).toBe(400);
    expect(
      (await call('PATCH', '/container-deployments/comfy-test/scaling', { min_replica_count: 9 }))
        .status,
    ).toBe(400);
  });

  it('answers 404 not_found for an unknown deployment and route', async () => {
    const res = await call('GET', '/container-deployments/nope/status');
    expect(res.status).toBe(404);
    expect(res.body).toMatchObject({ code: 'not_found' });
    expect((await call('GET', '/nowhere')).status).toBe(404);
  });
});

describe('deployments', () => {
  beforeEach(async () => {
    await start();
  });

  it('creates with the documented shapes: image object, server container name, no status or scaling', async () => {
    const created = await call('POST', '/container-deployments', deployment());
    expect(created.status).toBe(201);
    const body = created.body as Record<string, unknown> & {
      containers: Record<string, unknown>[];
    };
    expect(body.endpoint_base_url).toBe(`${emu.inferenceBaseUrl}/comfy-test`);
    expect(body).not.toHaveProperty('status');
    expect(body).not.toHaveProperty('scaling');
    expect(body.containers[0]?.name).toBe('comfyui-worker-0');
    expect(body.containers[0]?.image).toMatchObject({
      image: 'ghcr.io/ahelme/comfyui-worker:v1.2.3',
    });
    const list = (await call('GET', '/container-deployments')).body as Record<string, unknown>[];
    expect(list.map((d) => d.name)).toEqual(['comfy-test']);
    expect(list[0]).not.toHaveProperty('status');
    expect((await call('GET', '/container-deployments/comfy-test/scaling')).body).toMatchObject({
      max_replica_count: 4,
    });
  });

  it('moves initializing → image_pulling → healthy on the emulated clock, with no replicas at min 0', async () => {
    await call('POST', '/container-deployments', deployment());
    expect(await status()).toBe('initializing');
    emu.advance(2_000);
    expect(await status()).toBe('image_pulling');
    emu.advance(7_999);
    expect(await status()).toBe('image_pulling');
    emu.advance(1);
    expect(await status()).toBe('healthy');
    expect((await call('GET', '/container-deployments/comfy-test/replicas')).body).toEqual({
      list: [],
    });
  });

  it('keeps min replicas and follows queue load up to max, scaling down after the delay', async () => {
    await call(
      'POST',
      '/container-deployments',
      deployment({ scaling: { ...deployment().scaling, min_replica_count: 2 } }),
    );
    emu.advance(10_000);
    const replicas = async () =>
      (
        (await call('GET', '/container-deployments/comfy-test/replicas')).body as {
          list: { status: string }[];
        }
      ).list.map((r) => r.status);
    expect(await replicas()).toEqual(['running', 'running']);
    emu.setQueueLength('comfy-test', 9);
    expect(await replicas()).toEqual(['running', 'running', 'starting', 'starting']);
    emu.advance(20_000);
    expect(await replicas()).toEqual(['running', 'running', 'running', 'running']);
    emu.setQueueLength('comfy-test', 0);
    expect(await replicas()).toHaveLength(4);
    emu.advance(300_000);
    expect(await replicas()).toEqual(['running', 'running']);
    const scaled = await call('PATCH', '/container-deployments/comfy-test/scaling', {
      min_replica_count: 1,
      max_replica_count: 1,
    });
    expect(scaled.body).toMatchObject({
      min_replica_count: 1,
      max_replica_count: 1,
      scale_down_policy: { delay_seconds: 300 },
    });
    expect(await replicas()).toHaveLength(1);
  });

  it('pauses (no replicas, paused) and resumes through initializing', async () => {
    await call(
      'POST',
      '/container-deployments',
      deployment({ scaling: { ...deployment().scaling, min_replica_count: 1 } }),
    );
    emu.advance(10_000);
    expect((await call('POST', '/container-deployments/comfy-test/pause')).status).toBe(204);
    expect(await status()).toBe('paused');
    expect(emu.deployments()[0]).toMatchObject({ paused: true, replicas: [] });
    await call('POST', '/container-deployments/comfy-test/resume');
    expect(await status()).toBe('initializing');
    emu.advance(2_000);
    expect(await status()).toBe('healthy');
    await call('POST', '/container-deployments/comfy-test/purge-queue');
    expect(emu.deployments()[0]?.purges).toBe(1);
  });

  it('replaces containers on PATCH (version_updating) and keeps the name', async () => {
    await call('POST', '/container-deployments', deployment());
    emu.advance(10_000);
    const patched = await call('PATCH', '/container-deployments/comfy-test', {
      containers: [
        {
          ...deployment().containers[0],
          name: 'comfyui-worker-0',
          image: 'ghcr.io/ahelme/comfyui-worker:v2',
        },
      ],
    });
    expect(patched.status).toBe(200);
    expect(await status()).toBe('version_updating');
    emu.advance(10_000);
    expect(await status()).toBe('healthy');
    expect(emu.deployments()[0]).toMatchObject({
      image: 'ghcr.io/ahelme/comfyui-worker:v2',
      containerNames: ['comfyui-worker-0'],
    });
  });

  it('deletes asynchronously: deleting, then 404', async () => {
    await call('POST', '/container-deployments', deployment());
    expect((await call('DELETE', '/container-deployments/comfy-test?timeout=0')).status).toBe(202);
    expect(await status()).toBe('deleting');
    emu.advance(3_000);
    expect((await call('GET', '/container-deployments/comfy-test')).status).toBe(404);
    expect((await call('DELETE', '/container-deployments/x?timeout=999999')).status).toBe(404);
  });

  it('manages environment variables with the documented response variants', async () => {
    await call('POST', '/container-deployments', deployment());
    const base = '/container-deployments/comfy-test/environment-variables';
    const added = await call('POST', base, {
      container_name: 'comfyui-worker-0',
      env: [{ name: 'A', value_or_reference_to_secret: '1', type: 'plain' }],
    });
    expect(added.status).toBe(201);
    expect(Array.isArray(added.body)).toBe(true);
    const updated = await call('PATCH', base, {
      container_name: 'comfyui-worker-0',
      env: [{ name: 'A', value_or_reference_to_secret: '2', type: 'plain' }],
    });
    expect(updated.body).toMatchObject({ container_name: 'comfyui-worker-0' });
    await call('DELETE', base, { container_name: 'comfyui-worker-0', env: ['HF_TOKEN'] });
    expect((await call('GET', base)).body).toEqual([
      {
        container_name: 'comfyui-worker-0',
        env: [{ name: 'A', value_or_reference_to_secret: '2', type: 'plain' }],
      },
    ]);
    expect((await call('POST', base, { container_name: 'nope', env: [] })).status).toBe(400);
  });

  it('serves compute resources and prices, some as strings, in usd and eur', async () => {
    const resources = (await call('GET', '/serverless-compute-resources')).body as {
      name: string;
      size: number;
    }[];
    expect(resources).toContainEqual({ name: 'H100', size: 1, is_available: true });
    const usd = (await call('GET', '/container-types?currency=usd')).body as Record<
      string,
      unknown
    >[];
    const h100 = usd.find(
      (r) => r.model === 'H100' && (r.gpu as { number_of_gpus: number }).number_of_gpus === 1,
    );
    expect(h100).toMatchObject({
      serverless_price: 3.58,
      serverless_spot_price: 1.79,
      currency: 'usd',
    });
    const h200x2 = usd.find(
      (r) => r.model === 'H200' && (r.gpu as { number_of_gpus: number }).number_of_gpus === 2,
    );
    expect(h200x2).toMatchObject({ serverless_price: '8.80', serverless_spot_price: '4.40' });
    expect(usd.some((r) => r.model === 'A100 80GB')).toBe(false);
    const eur = (await call('GET', '/container-types?currency=eur')).body as Record<
      string,
      unknown
    >[];
    expect(eur[0]).toMatchObject({ currency: 'eur' });
    expect((await call('GET', '/container-types?currency=gbp')).status).toBe(400);
  });
});

describe('inference endpoint', () => {
  beforeEach(async () => {
    await start();
    await call('POST', '/container-deployments', deployment());
  });

  it('needs the inference key, a healthy deployment and a ready replica (cold start at min 0)', async () => {
    expect((await infer('comfy-test', '/health')).status).toBe(401);
    expect((await infer('comfy-test', '/health', await token())).status).toBe(401);
    expect((await infer('nope', '/health', emu.inferenceKey)).status).toBe(404);
    const early = await infer('comfy-test', '/health', emu.inferenceKey);
    expect(early.status).toBe(503);
    expect(early.body).toMatch(/initializing/);
    emu.advance(10_000);
    const cold = await infer('comfy-test', '/health', emu.inferenceKey);
    expect(cold.status).toBe(503);
    expect(cold.body).toMatch(/cold start/);
    expect(emu.deployments()[0]?.replicas).toEqual([
      { id: expect.any(String), status: 'starting' },
    ]);
    emu.advance(19_999);
    expect((await infer('comfy-test', '/health', emu.inferenceKey)).status).toBe(503);
    emu.advance(1);
    const ok = await infer('comfy-test', '/health', emu.inferenceKey);
    expect(ok.status).toBe(200);
    expect(ok.body).toBe('OK');
    expect((await infer('comfy-test', '/system_stats', emu.inferenceKey)).status).toBe(200);
    expect((await infer('comfy-test', '/nope', emu.inferenceKey)).status).toBe(404);
    // Idle past the scale-down delay: back to zero replicas.
    emu.advance(300_000);
    expect(emu.deployments()[0]?.replicas).toEqual([]);
  });

  it('does not answer while paused', async () => {
    emu.advance(10_000);
    await call('POST', '/container-deployments/comfy-test/pause');
    const res = await infer('comfy-test', '/health', emu.inferenceKey);
    expect(res.status).toBe(503);
    expect(res.body).toMatch(/paused/);
  });
});

describe('faults', () => {
  beforeEach(async () => {
    await start();
  });

  it('answers 429 with Retry-After on the n-th matching request only', async () => {
    emu.addFault({
      kind: 'http',
      status: 429,
      retryAfterSeconds: 7,
      method: 'GET',
      path: '/container-deployments',
      nth: 2,
    });
    const t = await token();
    expect((await call('GET', '/container-deployments', undefined, t)).status).toBe(200);
    const limited = await call('GET', '/container-deployments', undefined, t);
    expect(limited.status).toBe(429);
    expect(limited.headers.get('retry-after')).toBe('7');
    expect((await call('GET', '/container-deployments', undefined, t)).status).toBe(200);
  });

  it('answers 503 for `times` requests in a row, matching a RegExp path', async () => {
    emu.addFault({ kind: 'http', status: 503, path: /\/status$/, times: 2 });
    await call('POST', '/container-deployments', deployment());
    expect((await call('GET', '/container-deployments/comfy-test/status')).status).toBe(503);
    expect((await call('GET', '/container-deployments/comfy-test/status')).body).toMatchObject({
      code: 'service_unavailable',
    });
    expect((await call('GET', '/container-deployments/comfy-test/status')).status).toBe(200);
  });

  it('answers 504 to a create that still creates', async () => {
    emu.addFault({
      kind: 'http-after-handling',
      status: 504,
      method: 'POST',
      path: '/container-deployments',
    });
    expect((await call('POST', '/container-deployments', deployment())).status).toBe(504);
    expect((await call('GET', '/container-deployments/comfy-test')).status).toBe(200);
    expect(emu.writes().map((w) => `${w.method} ${w.path} ${w.status}`)).toEqual([
      'POST /container-deployments 504',
    ]);
  });

  it('revokes or expires the caller token early', async () => {
    const t = await token();
    emu.addFault({ kind: 'revoke-token', path: '/container-deployments' });
    expect((await call('GET', '/container-deployments', undefined, t)).status).toBe(401);
    expect((await call('GET', '/container-types', undefined, t)).status).toBe(401);
    const t2 = await token();
    emu.addFault({ kind: 'expire-token', path: '/serverless-compute-resources' });
    const expired = await call('GET', '/serverless-compute-resources', undefined, t2);
    expect(expired.body).toMatchObject({ message: 'access token expired' });
  });

  it('keeps a deployment stuck in image_pulling', async () => {
    emu.addFault({ kind: 'stuck', deployment: 'comfy-test' });
    await call('POST', '/container-deployments', deployment());
    emu.advance(3_600_000);
    expect(await status()).toBe('image_pulling');
    emu.clearFaults();
    expect(await status()).toBe('healthy');
  });

  it('resets the connection', async () => {
    emu.addFault({ kind: 'reset', path: '/serverless-compute-resources' });
    await expect(call('GET', '/serverless-compute-resources')).rejects.toThrow();
    expect((await call('GET', '/serverless-compute-resources')).status).toBe(200);
  });
});

describe('clock and log', () => {
  it('ticks per request, dates responses in emulated time and logs every request', async () => {
    await start({
      tickPerRequestMs: 1_000,
      variants: { imageAsString: true, includeScaling: true, createStatus: 200 },
    });
    const t0 = emu.now();
    const created = await call('POST', '/container-deployments', deployment());
    expect(created.status).toBe(200);
    expect((created.body as { containers: { image: unknown }[] }).containers[0]?.image).toBe(
      'ghcr.io/ahelme/comfyui-worker:v1.2.3',
    );
    expect(created.body).toHaveProperty('scaling');
    expect(emu.now()).toBe(t0 + 2_000); // token + create
    expect(Date.parse(created.headers.get('date') ?? '')).toBe(t0 + 2_000);
    expect(emu.requests().map((r) => `${r.method} ${r.path} ${r.status}`)).toEqual([
      'POST /oauth2/token 200',
      'POST /container-deployments 200',
    ]);
    expect(emu.writes()).toHaveLength(1);
  });
});
