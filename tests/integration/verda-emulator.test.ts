// The Verda emulator as a real service on a time scale (no hand-moved clock): a client that
// polls over HTTP sees a deployment come up, serve inference after a cold start, pause and go.
import { afterAll, beforeAll, expect, it } from '@jest/globals';
import { exampleDeployment } from '../../src/sandbox/verda-examples.js';
import { startVerdaEmulator, type VerdaEmulator } from '../../src/sandbox/verda.js';

let emu: VerdaEmulator;
let token = '';

beforeAll(async () => {
  // 1 real ms = 500 emulated ms: 10 s of rollout and a 20 s cold start take ~60 ms.
  // The token lives long enough in emulated time that a paused CI machine cannot expire it.
  emu = await startVerdaEmulator({ timeScale: 500, tokenTtlSeconds: 10_000_000 });
  token = await emu.token();
});

afterAll(async () => {
  await emu.stop();
});

const api = async (method: string, path: string, body?: unknown) => {
  const res = await fetch(`${emu.apiUrl}${path}`, {
    method,
    headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await res.text();
  return {
    status: res.status,
    body: (text ? JSON.parse(text) : undefined) as Record<string, unknown>,
  };
};

/** Polls until `probe` returns a value, recording distinct statuses; gives up after 200 polls. */
async function until<T>(probe: () => Promise<T | undefined>): Promise<T> {
  for (let i = 0; i < 200; i++) {
    const value = await probe();
    if (value !== undefined) return value;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error('condition not reached in 200 polls');
}

it('runs a deployment through its life on emulated time', async () => {
  const created = await api(
    'POST',
    '/container-deployments',
    exampleDeployment(
      'life',
      { compute: { name: 'H200', size: 1 }, is_spot: true },
      {
        image: 'ghcr.io/ahelme/comfyui-worker:sha-abc1234',
        healthcheck: { enabled: true, path: '/system_stats' },
      },
    ),
  );

  expect(created.status).toBe(201);
  const seen: string[] = [];
  await until(async () => {
    const { status } = (await api('GET', '/container-deployments/life/status')).body as {
      status: string;
    };
    if (seen.at(-1) !== status) seen.push(status);
    return status === 'healthy' ? status : undefined;
  });
  // Whatever the polls caught, it is in lifecycle order and ends healthy.
  const order = ['initializing', 'image_pulling', 'healthy'];
  expect(seen.map((s) => order.indexOf(s))).toEqual(
    [...seen.map((s) => order.indexOf(s))].sort((a, b) => a - b),
  );
  expect(seen.every((s) => order.includes(s))).toBe(true);
  expect(seen.at(-1)).toBe('healthy');

  const codes: number[] = [];
  await until(async () => {
    const res = await fetch(`${created.body.endpoint_base_url as string}/system_stats`, {
      headers: { Authorization: `Bearer ${emu.inferenceKey}` },
    });
    await res.text();
    codes.push(res.status);
    return res.status === 200 ? true : undefined;
  });
  expect(codes[0]).toBe(503); // min 0: the first request starts the replica
  expect(codes.at(-1)).toBe(200);

  expect((await api('POST', '/container-deployments/life/pause')).status).toBe(204);
  expect((await api('GET', '/container-deployments/life/status')).body).toEqual({
    status: 'paused',
  });
  expect((await api('DELETE', '/container-deployments/life')).status).toBe(202);
  await until(async () =>
    (await api('GET', '/container-deployments/life')).status === 404 ? true : undefined,
  );
  expect(emu.deployments()).toEqual([]);
});
