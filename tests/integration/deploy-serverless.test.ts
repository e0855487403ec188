// deploy-serverless through its committed bundle (as the runner runs it) against the Verda
// emulator. The emulator's clock is frozen and ticks 1 s per request, so the child process sees
// deterministic emulated time: initializing 2 s, image pulling 8 s, a 20 s cold start.
import { afterAll, afterEach, beforeAll, describe, expect, it, jest } from '@jest/globals';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { repoRoot, runAction, type ActionRun } from '../helpers/run-action.js';
import { findLeaks } from '../helpers/secrets.js';
import { WORKSHOP_SECRETS } from '../helpers/workshop-secrets.js';
import {
  startVerdaEmulator,
  type VerdaEmulator,
  type VerdaEmulatorOptions,
} from '../../src/sandbox/verda.js';

// Real backoff sleeps (1 s base, Retry-After) run in the fault tests.
jest.setTimeout(60_000);

const delays = {
  initializingMs: 2_000,
  imagePullingMs: 8_000,
  coldStartMs: 20_000,
  deleteMs: 3_000,
};
const name = 'comfyume-workers';
let tmp: string;

beforeAll(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'deploy-serverless-'));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

async function emulator(opts: VerdaEmulatorOptions = {}): Promise<VerdaEmulator> {
  return startVerdaEmulator({
    timeScale: 0,
    tickPerRequestMs: 1_000,
    delays,
    secrets: WORKSHOP_SECRETS,
    registryCredentials: ['ghcr-ahelme'],
    ...opts,
  });
}

function deploy(
  emu: VerdaEmulator,
  inputs: Record<string, string | number | boolean | undefined>,
): Promise<ActionRun> {
  return runAction('deploy-serverless', {
    inputs: {
      'api-url': emu.apiUrl,
      'verda-client-id': emu.clientId,
      'verda-client-secret': emu.clientSecret,
      'inference-api-key': emu.inferenceKey,
      'poll-interval': '20ms',
      'wait-timeout': '60s',
      ...inputs,
    },
    secrets: [emu.clientSecret, emu.inferenceKey, emu.clientId],
  });
}

const writes = (emu: VerdaEmulator) => emu.writes().map((w) => `${w.method} ${w.path} ${w.status}`);
const failure = (run: ActionRun) => run.errors.join('\n');

describe('a workshop from nothing to stopped', () => {
  let emu: VerdaEmulator;
  beforeAll(async () => {
    emu = await emulator();
  });
  afterAll(async () => {
    await emu.stop();
  });

  it('plan shows a create with its cost and writes nothing', async () => {
    const run = await deploy(emu, { command: 'plan', 'image-tag': 'sha-0123abc' });
    expect(failure(run)).toBe('');
    expect(run.code).toBe(0);
    expect(writes(emu)).toEqual([]);
    expect(run.outputs).toMatchObject({
      status: 'absent',
      changed: 'false',
      'hourly-cost-max': '143.20',
    });
    expect(run.summary).toContain('Plan: create');
    expect(run.summary).toMatch(
      /\| containers\[0\]\.image \| \(absent\) \| ghcr\.io\/ahelme\/comfyui-worker:sha-0123abc \|/,
    );
    expect(run.summary).toMatch(/\| max 40 replicas \| \$143\.20 \| \$429\.60 \|/);
  });

  it('start creates, waits until healthy and the endpoint answers, and reports the cold start', async () => {
    const run = await deploy(emu, { command: 'start', 'image-tag': 'sha-0123abc' });
    expect(failure(run)).toBe('');
    expect(run.code).toBe(0);
    expect(writes(emu)).toEqual(['POST /container-deployments 201']);
    const log = emu.requests();
    const created = log.find((r) => r.method === 'POST' && r.path === '/container-deployments');
    const firstOk = log.find((r) => r.host === 'inference' && r.status === 200);
    expect(created && firstOk).toBeTruthy();
    const expected = ((firstOk?.at ?? 0) - (created?.at ?? 0)) / 1000;
    // The emulated delays bound it from below: 2 s + 8 s until healthy, then a 20 s cold start.
    expect(expected).toBeGreaterThanOrEqual(30);
    expect(run.outputs['cold-start-seconds']).toBe(String(expected));
    expect(run.outputs).toMatchObject({
      'endpoint-url': `${emu.inferenceBaseUrl}/${name}`,
      status: 'healthy',
      replicas: '1',
      changed: 'true',
    });
    // The health check is the worker's readiness route (config/workshop.yml), not /health.
    const answer = await fetch(`${run.outputs['endpoint-url']}/ready`, {
      headers: { Authorization: `Bearer ${emu.inferenceKey}` },
    });
    expect(answer.status).toBe(200);
    for (const seen of [
      'initializing',
      'image_pulling',
      'healthy',
      'endpoint 503',
      'endpoint 200',
    ]) {
      expect(run.summary).toContain(`| ${seen} |`);
    }
    expect(emu.deployments()[0]).toMatchObject({
      image: 'ghcr.io/ahelme/comfyui-worker:sha-0123abc',
      compute: { name: 'H100', size: 1 },
      scaling: {
        min_replica_count: 0,
        max_replica_count: 40,
        scale_down_policy: { delay_seconds: 300 },
      },
    });
  });

  it('a second apply makes no write request', async () => {
    emu.clearRequests();
    const run = await deploy(emu, { command: 'apply', 'image-tag': 'sha-0123abc' });
    expect(failure(run)).toBe('');
    expect(writes(emu)).toEqual([]);
    expect(run.outputs.changed).toBe('false');
    expect(run.summary).toContain('Plan: no change');
  });

  it('without an image tag an existing deployment keeps its image', async () => {
    emu.clearRequests();
    const run = await deploy(emu, { command: 'apply' });
    expect(failure(run)).toBe('');
    expect(writes(emu)).toEqual([]);
  });

  it('changing max replicas PATCHes /scaling only', async () => {
    emu.clearRequests();
    const run = await deploy(emu, { command: 'apply', 'max-replicas': 16 });
    expect(failure(run)).toBe('');
    expect(writes(emu)).toEqual([`PATCH /container-deployments/${name}/scaling 200`]);
    expect(run.summary).toContain('| scaling.max_replica_count | 40 | 16 |');
    expect(run.outputs['hourly-cost-max']).toBe('57.28');
  });

  it('scale changes min/max through /scaling only', async () => {
    emu.clearRequests();
    const run = await deploy(emu, { command: 'scale', 'min-replicas': 2, 'max-replicas': 20 });
    expect(failure(run)).toBe('');
    expect(writes(emu)).toEqual([`PATCH /container-deployments/${name}/scaling 200`]);
    expect(emu.deployments()[0]?.scaling).toMatchObject({
      min_replica_count: 2,
      max_replica_count: 20,
    });
  });

  it('scale checks bounds against the live deployment, not the config', async () => {
    emu.clearRequests();
    const above = await deploy(emu, { command: 'scale', 'min-replicas': 45 });
    expect(above.code).toBe(1);
    expect(failure(above)).toContain(
      'Input \'min-replicas\' is invalid: got "45"; expected max >= max(1, min); the deployment would have min 45, max 20',
    );
    expect(writes(emu)).toEqual([]);
    const beyondConfig = await deploy(emu, {
      command: 'scale',
      'min-replicas': 45,
      'max-replicas': 50,
    });
    expect(failure(beyondConfig)).toBe('');
    await deploy(emu, { command: 'scale', 'min-replicas': 2, 'max-replicas': 20 });
  });

  it('a new image replaces the container under its server-side name', async () => {
    emu.clearRequests();
    const run = await deploy(emu, {
      command: 'apply',
      'image-tag': 'sha-4567def',
      'max-replicas': 20,
      'min-replicas': 2,
    });
    expect(failure(run)).toBe('');
    expect(writes(emu)).toEqual([`PATCH /container-deployments/${name} 200`]);
    expect(run.summary).toContain(
      '| containers[0].image | ghcr.io/ahelme/comfyui-worker:sha-0123abc | ghcr.io/ahelme/comfyui-worker:sha-4567def |',
    );
    expect(emu.deployments()[0]).toMatchObject({
      image: 'ghcr.io/ahelme/comfyui-worker:sha-4567def',
      containerNames: ['comfyui-worker-0'],
    });
  });

  it('status reports status, replicas, endpoint and the current cost', async () => {
    const run = await deploy(emu, { command: 'status' });
    expect(failure(run)).toBe('');
    expect(run.outputs).toMatchObject({
      status: 'healthy',
      replicas: '2',
      'hourly-cost-max': '71.60',
    });
    expect(run.summary).toContain('| **cost now** | $7.16/h |');
  });

  it('stop scales min to 0 and pauses, purging the queue when asked', async () => {
    emu.clearRequests();
    const run = await deploy(emu, { command: 'stop', 'purge-queue': true });
    expect(failure(run)).toBe('');
    expect(writes(emu)).toEqual([
      `PATCH /container-deployments/${name}/scaling 200`,
      `POST /container-deployments/${name}/pause 204`,
      `POST /container-deployments/${name}/purge-queue 204`,
    ]);
    expect(emu.deployments()[0]).toMatchObject({
      paused: true,
      status: 'paused',
      replicas: [],
      purges: 1,
      scaling: { min_replica_count: 0 },
    });
    expect(run.outputs).toMatchObject({ status: 'paused', replicas: '0' });
    emu.clearRequests();
    await deploy(emu, { command: 'stop' });
    expect(writes(emu)).toEqual([]);
  });

  it('apply changes a paused deployment without resuming it or waiting', async () => {
    emu.clearRequests();
    const run = await deploy(emu, { command: 'apply', 'max-replicas': 24, 'wait-timeout': '1s' });
    expect(failure(run)).toBe('');
    expect(writes(emu)).toEqual([`PATCH /container-deployments/${name}/scaling 200`]);
    expect(run.outputs.status).toBe('paused');
  });

  it('start resumes a paused deployment', async () => {
    emu.clearRequests();
    const run = await deploy(emu, { command: 'start', 'max-replicas': 20 });
    expect(failure(run)).toBe('');
    expect(writes(emu)[0]).toBe(`POST /container-deployments/${name}/resume 204`);
    expect(run.outputs.status).toBe('healthy');
  });

  it('delete needs the name confirmed, then the deployment is gone', async () => {
    emu.clearRequests();
    const refused = await deploy(emu, { command: 'delete', confirm: 'yes' });
    expect(refused.code).toBe(1);
    expect(failure(refused)).toContain(
      `Input 'confirm' is invalid: got "yes"; expected the deployment name "${name}"`,
    );
    expect(emu.requests()).toEqual([]);
    const run = await deploy(emu, { command: 'delete', confirm: name });
    expect(failure(run)).toBe('');
    expect(run.outputs.status).toBe('deleted');
    expect(emu.deployments()).toEqual([]);
  });
});

describe('faults', () => {
  let emu: VerdaEmulator;
  afterEach(async () => {
    await emu.stop();
  });

  it('survives a token expiring mid-run (401, refresh, retry once)', async () => {
    emu = await emulator({ tokenTtlSeconds: 15 });
    const run = await deploy(emu, { command: 'start', 'image-tag': 'v1' });
    expect(failure(run)).toBe('');
    const log = emu.requests();
    expect(log.filter((r) => r.status === 401).length).toBeGreaterThan(0);
    expect(log.filter((r) => r.path === '/oauth2/token').length).toBeGreaterThan(1);
    expect(run.stdout).toContain('401, getting a new token');
    expect(writes(emu)).toEqual(['POST /container-deployments 201']);
  });

  it('masks the access and refresh tokens the API hands out, and shows them nowhere', async () => {
    emu = await emulator({ tokenTtlSeconds: 15 }); // expiring tokens: refreshes hand out more
    const run = await deploy(emu, { command: 'start', 'image-tag': 'v1' });
    expect(failure(run)).toBe('');
    const tokens = emu.issuedTokens();
    expect(tokens.filter((t) => t.startsWith('emu-rt-')).length).toBeGreaterThan(1);
    const masked = run.stdout
      .split('\n')
      .filter((l) => l.startsWith('::add-mask::'))
      .map((l) => l.slice('::add-mask::'.length));
    for (const token of tokens) expect(masked).toContain(token);
    const shown = run.stdout
      .split('\n')
      .filter((l) => !l.startsWith('::add-mask::'))
      .join('\n');
    expect(
      findLeaks(tokens, {
        stdout: shown,
        stderr: run.stderr,
        outputs: JSON.stringify(run.outputs),
        summary: run.summary,
      }),
    ).toEqual([]);
  });

  it('waits out a 429 with Retry-After and retries 503s', async () => {
    emu = await emulator();
    emu.addFault({
      kind: 'http',
      status: 429,
      retryAfterSeconds: 1,
      method: 'GET',
      path: /\/status$/,
      nth: 2,
    });
    emu.addFault({ kind: 'http', status: 503, path: '/container-types' });
    emu.addFault({
      kind: 'http',
      status: 502,
      method: 'GET',
      path: `/container-deployments/${name}`,
    });
    const run = await deploy(emu, { command: 'start', 'image-tag': 'v1' });
    expect(failure(run)).toBe('');
    const statuses = emu.requests().map((r) => `${r.method} ${r.path} ${r.status}`);
    expect(statuses).toContain('GET /container-types 503');
    expect(statuses).toContain('GET /container-types 200');
    expect(statuses.slice(1, 3)).toEqual([
      `GET /container-deployments/${name} 502`,
      `GET /container-deployments/${name} 404`,
    ]);
    expect(statuses).toContain(`GET /container-deployments/${name}/status 429`);
    expect(run.stdout).toMatch(/status answered 429 rate_limited.*retry 1 in 1(\.\d)? s/);
  });

  it('does not duplicate a create that answered 504 but created', async () => {
    emu = await emulator();
    emu.addFault({
      kind: 'http-after-handling',
      status: 504,
      method: 'POST',
      path: '/container-deployments',
    });
    const run = await deploy(emu, { command: 'start', 'image-tag': 'v1' });
    expect(failure(run)).toBe('');
    expect(writes(emu)).toEqual(['POST /container-deployments 504']);
    expect(emu.deployments()).toHaveLength(1);
    expect(run.stdout).toContain('was created despite the error');
    // The create counts as the first write: changed, and the cold start runs from it.
    const log = emu.requests();
    const created = log.find((r) => r.method === 'POST' && r.path === '/container-deployments');
    const firstOk = log.find((r) => r.host === 'inference' && r.status === 200);
    expect(run.outputs).toMatchObject({
      changed: 'true',
      'cold-start-seconds': String(((firstOk?.at ?? 0) - (created?.at ?? 0)) / 1000),
    });
  });

  it('fails clearly when the deployment is stuck in image_pulling past the timeout', async () => {
    emu = await emulator();
    emu.addFault({ kind: 'stuck', status: 'image_pulling' });
    const run = await deploy(emu, {
      command: 'start',
      'image-tag': 'v1',
      'wait-timeout': '5s', // room for the two status polls the timeline needs on a busy runner
    });
    expect(run.code).toBe(1);
    const message = failure(run);
    expect(message).toMatch(
      /comfyume-workers did not serve within 5\.0 s; last status image_pulling; replicas: none/,
    );
    expect(message).toMatch(/status timeline:\n.*initializing\n.*image_pulling/);
    expect(run.summary).toContain('| image_pulling |');
    expect(run.outputs.status).toBe('image_pulling');
  });
});

describe('bad inputs fail before any request', () => {
  let emu: VerdaEmulator;
  beforeAll(async () => {
    emu = await emulator();
  });
  afterAll(async () => {
    await emu.stop();
  });

  async function config(mutate: (c: Record<string, unknown>) => void): Promise<string> {
    const c = parseYaml(
      await readFile(path.join(repoRoot, 'config/workshop.yml'), 'utf8'),
    ) as Record<string, unknown>;
    mutate(c);
    const file = path.join(tmp, `workshop-${Math.random().toString(36).slice(2)}.yml`);
    await writeFile(file, stringifyYaml(c));
    return file;
  }

  const cases: [string, () => Promise<Record<string, string | number>>, RegExp][] = [
    [
      'max below min',
      async () => ({ command: 'start', 'min-replicas': 5, 'max-replicas': 2 }),
      /Input 'max-replicas' is invalid: got "2"; expected at least min-replicas \(5\)/,
    ],
    [
      'max 0 with start',
      async () => ({ command: 'start', 'max-replicas': 0 }),
      /Input 'max-replicas' is invalid: got "0"; expected an integer from 1 to 1000/,
    ],
    [
      'negative min',
      async () => ({ command: 'apply', 'min-replicas': -1 }),
      /Input 'min-replicas' is invalid: got "-1"; expected an integer from 0 to 1000/,
    ],
    [
      'negative cost',
      async () => ({ command: 'apply', 'max-hourly-cost': -5 }),
      /Input 'max-hourly-cost' is invalid: got "-5"/,
    ],
    [
      'unknown preset',
      async () => ({ command: 'plan', preset: 'a100' }),
      /Input 'preset' is invalid: got "a100"; expected one of h100, h100-spot, h200, h200-spot, b300, b300-spot/,
    ],
    [
      'unknown GPU',
      async () => ({ command: 'plan', gpu: 'H100-SXM5-80GB' }),
      /Input 'gpu' is invalid: got "H100-SXM5-80GB"; expected a Verda compute name/,
    ],
    [
      'latest tag',
      async () => ({ command: 'start', 'image-tag': 'latest' }),
      /Input 'image-tag' is invalid: got "latest"; expected a tag other than latest/,
    ],
    [
      'unknown command',
      async () => ({ command: 'launch' }),
      /Input 'command' is invalid: got "launch"; expected one of plan, apply/,
    ],
    [
      'start without an inference key',
      async () => ({ command: 'start', 'inference-api-key': '' }),
      /Input 'inference-api-key' is invalid/,
    ],
    [
      'scale without bounds',
      async () => ({ command: 'scale' }),
      /min-replicas and\/or max-replicas/,
    ],
    [
      'bad wait-timeout',
      async () => ({ command: 'start', 'wait-timeout': 'soon' }),
      /Input 'wait-timeout' is invalid: got "soon"/,
    ],
    [
      'invalid deployment name',
      async () => ({ command: 'plan', config: await config((c) => (c.name = 'Comfy_Workers')) }),
      /name: lower-case letters/,
    ],
    [
      'misspelt config key',
      async () => ({
        command: 'plan',
        config: await config((c) => ((c.scaling as Record<string, unknown>).max_replica = 3)),
      }),
      /scaling: Unrecognized key: "max_replica"/,
    ],
    [
      'latest tag in the config',
      async () => ({
        command: 'plan',
        config: await config((c) => ((c.image as Record<string, unknown>).tag = 'latest')),
      }),
      /image\.tag: a tag other than latest/,
    ],
    [
      'missing config file',
      async () => ({ command: 'plan', config: 'config/nope.yml' }),
      /nope\.yml is invalid:\n.*cannot be read/,
    ],
  ];

  it.each(cases)('%s', async (_what, inputs, message) => {
    emu.clearRequests();
    const run = await deploy(emu, await inputs());
    expect(run.code).toBe(1);
    expect(failure(run)).toMatch(message);
    expect(emu.requests()).toEqual([]);
  });

  it('a cost above max-hourly-cost is refused after reading prices, before any write', async () => {
    emu.clearRequests();
    const run = await deploy(emu, {
      command: 'start',
      'image-tag': 'v1',
      preset: 'b300',
      'max-hourly-cost': 100,
    });
    expect(run.code).toBe(1);
    expect(failure(run)).toContain(
      'Refusing: 40 x 1x B300 costs $330.00/h at max replicas, above max-hourly-cost $100.00/h. Lower max-replicas (at most 12)',
    );
    expect(run.outputs).toMatchObject({ 'hourly-cost-max': '330.00', changed: 'false' });
    expect(run.summary).toMatch(/\| max 40 replicas \| \$330\.00 \| \$990\.00 \|/);
    expect(run.summary).toContain('**Refused:** Refusing: 40 x 1x B300');
    expect(emu.requests().length).toBeGreaterThan(0);
    expect(writes(emu)).toEqual([]);
  });

  // The hard cap: max_hourly_cost_usd in the config; the input can only lower it.
  it('an empty max-hourly-cost leaves the config cap in force: 40 x B300 is refused', async () => {
    emu.clearRequests();
    const run = await deploy(emu, {
      command: 'apply',
      'image-tag': 'v1',
      preset: 'b300',
      'max-hourly-cost': '',
    });
    expect(run.code).toBe(1);
    expect(failure(run)).toContain(
      'Refusing: 40 x 1x B300 costs $330.00/h at max replicas, above max_hourly_cost_usd in config/workshop.yml $200.00/h. Lower max-replicas (at most 24)',
    );
    expect(writes(emu)).toEqual([]);
  });

  it('a lowered config cap refuses the default plan (40 x H100) with an empty input', async () => {
    const lowCap = await config((c) => (c.max_hourly_cost_usd = 100));
    emu.clearRequests();
    const start = await deploy(emu, { command: 'start', 'image-tag': 'v1', config: lowCap });
    expect(start.code).toBe(1);
    expect(failure(start)).toContain(
      `costs $143.20/h at max replicas, above max_hourly_cost_usd in ${lowCap} $100.00/h`,
    );
    expect(writes(emu)).toEqual([]);
    const plan = await deploy(emu, { command: 'plan', 'image-tag': 'v1', config: lowCap });
    expect(plan.code).toBe(0);
    expect(plan.warnings.join('\n')).toContain(
      `above max_hourly_cost_usd in ${lowCap} $100/h: apply would refuse it`,
    );
  });

  it.each(['start', 'scale', 'plan'])(
    '%s: a max-hourly-cost above the config cap is refused before any request',
    async (command) => {
      emu.clearRequests();
      const run = await deploy(emu, {
        command,
        'image-tag': 'v1',
        'max-replicas': 40,
        'max-hourly-cost': 500,
      });
      expect(run.code).toBe(1);
      expect(failure(run)).toContain(
        `Input 'max-hourly-cost' is invalid: got "500"; expected at most 200, the cap max_hourly_cost_usd in config/workshop.yml (the input can only lower it; empty = the cap).`,
      );
      expect(emu.requests()).toEqual([]);
    },
  );
});
