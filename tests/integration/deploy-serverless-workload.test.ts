// deploy-serverless's jobs through its committed bundle against the Verda emulator's ComfyUI
// stand-in, on deterministic emulated time (frozen clock, 1 s per request): the warm-up after
// start (cold start and first job reported separately, the slow phase named), status with a
// probe, a 15-job load test with max 16 (replicas rise with the queue and fall to min after the
// scale-down delay, to zero with min 0), and a replica killed mid-job failing the load test by
// name. Secrets (client secret, inference key, tokens) must show nowhere.
import { afterAll, afterEach, describe, expect, it, jest } from '@jest/globals';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { repoRoot, runAction, type ActionRun } from '../helpers/run-action.js';
import { findLeaks } from '../helpers/secrets.js';
import { WORKSHOP_SECRETS } from '../helpers/workshop-secrets.js';
import { emulatedOutputBytes, type ComfyPrompt } from '../../src/sandbox/verda-work.js';
import { startVerdaEmulator, type VerdaEmulator } from '../../src/sandbox/verda.js';

jest.setTimeout(90_000);

const name = 'comfyume-workers';
const scaleDownMs = 300_000; // config/workshop.yml's scale_down_delay_seconds
let emu: VerdaEmulator;
const tmp: string[] = [];

afterEach(async () => {
  await emu?.stop();
});
afterAll(async () => {
  await Promise.all(tmp.map((d) => rm(d, { recursive: true, force: true })));
});

async function emulator(): Promise<VerdaEmulator> {
  emu = await startVerdaEmulator({
    timeScale: 0,
    tickPerRequestMs: 1_000,
    delays: {
      initializingMs: 2_000,
      imagePullingMs: 8_000,
      coldStartMs: 20_000,
      deleteMs: 3_000,
      renderMs: 4_000,
      modelLoadMs: 6_000,
    },
    secrets: WORKSHOP_SECRETS,
    registryCredentials: ['ghcr-ahelme'],
  });
  return emu;
}

async function deploy(inputs: Record<string, string | number | boolean>): Promise<ActionRun> {
  const run = await runAction('deploy-serverless', {
    inputs: {
      'api-url': emu.apiUrl,
      'verda-client-id': emu.clientId,
      'verda-client-secret': emu.clientSecret,
      'inference-api-key': emu.inferenceKey,
      'poll-interval': '20ms',
      'wait-timeout': '60s',
      'job-timeout': '60s',
      ...inputs,
    },
    secrets: [emu.clientSecret, emu.inferenceKey, emu.clientId],
  });
  // Tokens the API handed out are masked (::add-mask::) and shown nowhere else.
  const shown = run.stdout
    .split('\n')
    .filter((l) => !l.startsWith('::add-mask::'))
    .join('\n');
  expect(
    findLeaks(emu.issuedTokens(), {
      stdout: shown,
      stderr: run.stderr,
      outputs: JSON.stringify(run.outputs),
      summary: run.summary,
    }),
  ).toEqual([]);
  return run;
}

const failure = (run: ActionRun) => run.errors.join('\n');
const jobs = () => emu.deployments()[0]?.jobs ?? [];
const replicaCount = () => emu.deployments()[0]?.replicas.length ?? -1;
const warmup = async () =>
  JSON.parse(await readFile(path.join(repoRoot, 'config/warmup.json'), 'utf8')) as ComfyPrompt;

describe('the warm-up job', () => {
  it('start renders it through the endpoint and reports cold start and first job separately', async () => {
    await emulator();
    const run = await deploy({ command: 'start', 'image-tag': 'sha-0123abc' });
    expect(failure(run)).toBe('');
    expect(run.code).toBe(0);
    const log = emu.requests();
    const created = log.find((r) => r.method === 'POST' && r.path === '/container-deployments');
    const health = log.find(
      (r) => r.host === 'inference' && r.path.endsWith('/ready') && r.status === 200,
    );
    const viewed = log.find(
      (r) => r.host === 'inference' && r.path.endsWith('/view') && r.status === 200,
    );
    const at = (r: { at: number } | undefined) => (r?.at ?? NaN) / 1000;
    expect(run.outputs['cold-start-seconds']).toBe(String(at(health) - at(created)));
    expect(run.outputs['first-job-seconds']).toBe(String(at(viewed) - at(created)));
    // The first job waits for the replica (20 s cold start) and its model load (6 s) + render (4 s).
    expect(Number(run.outputs['first-job-seconds'])).toBeGreaterThanOrEqual(
      Number(run.outputs['cold-start-seconds']) + 10,
    );
    expect(jobs()).toEqual([expect.objectContaining({ status: 'success' })]);
    const prompts = log.filter((r) => r.host === 'inference' && r.method === 'POST');
    expect(prompts.map((r) => `${r.path} ${r.status}`)).toEqual([`/${name}/prompt 200`]);
    // The bytes the action saw are the bytes the emulator's worker wrote for config/warmup.json.
    const sha = createHash('sha256')
      .update(emulatedOutputBytes(await warmup(), '9'))
      .digest('hex');
    expect(run.summary).toContain(`sha256 ${sha.slice(0, 16)}`);
    expect(run.summary).toContain('### Where the time to the first job went');
    for (const phase of ['pull', 'start', 'queue', 'first job (model load + render)'])
      expect(run.summary).toMatch(new RegExp(`\\| ${phase.replace(/[()+]/g, '\\$&')} \\| \\d`));
    // Above the seed's 30 s: the warning names the slowest phase (the replica's 20 s cold start).
    expect(run.warnings.join('\n')).toMatch(
      /first job \d+ s after the first write \(cold start \d+ s\), above the seed's 30 s target: most of it was start \(\d+ s\)/,
    );
  });

  it('status with probe wakes an idle fleet (min 0) and renders the warm-up, writing nothing', async () => {
    await emulator();
    expect((await deploy({ command: 'start', 'image-tag': 'v1' })).code).toBe(0);
    emu.advance(scaleDownMs + 1_000);
    expect(replicaCount()).toBe(0);
    emu.clearRequests();
    const run = await deploy({ command: 'status', probe: true });
    expect(failure(run)).toBe('');
    expect(emu.writes()).toEqual([]);
    expect(Number(run.outputs['cold-start-seconds'])).toBeGreaterThanOrEqual(20);
    expect(Number(run.outputs['first-job-seconds'])).toBeGreaterThan(
      Number(run.outputs['cold-start-seconds']),
    );
    expect(jobs().map((j) => j.status)).toEqual(['success', 'success']);
    expect(run.outputs.replicas).toBe('1');
  });

  it('a workflow file that is not a ComfyUI API workflow fails before any request', async () => {
    await emulator();
    const dir = await mkdtemp(path.join(os.tmpdir(), 'warmup-'));
    tmp.push(dir);
    const file = path.join(dir, 'bad.json');
    await writeFile(file, JSON.stringify({ '1': { inputs: {} } }));
    const run = await deploy({ command: 'start', 'image-tag': 'v1', workflow: file });
    expect(run.code).toBe(1);
    expect(failure(run)).toMatch(/bad\.json is invalid:.*\n.*1\.class_type/);
    expect(emu.requests()).toEqual([]);
  });
});

describe('load test', () => {
  it('15 jobs with max 16 all render; replicas rise with the queue, then fall to min 2 after the delay', async () => {
    await emulator();
    const start = await deploy({
      command: 'start',
      'image-tag': 'v1',
      'min-replicas': 2,
      'max-replicas': 16,
    });
    expect(failure(start)).toBe('');
    const run = await deploy({ command: 'load-test' });
    expect(failure(run)).toBe('');
    expect(run.code).toBe(0);
    expect(run.outputs).toMatchObject({ 'jobs-succeeded': '15', 'jobs-failed': '0' });
    const peak = Number(run.outputs['peak-replicas']);
    expect(peak).toBeGreaterThan(2);
    expect(peak).toBeLessThanOrEqual(16);
    for (const key of ['latency-p50-seconds', 'latency-p95-seconds', 'latency-max-seconds'])
      expect(Number(run.outputs[key])).toBeGreaterThan(0);
    expect(Number(run.outputs['latency-p50-seconds'])).toBeLessThanOrEqual(
      Number(run.outputs['latency-max-seconds']),
    );
    // The warm-up and the 15 jobs, each rendered, spread over more replicas than the minimum.
    expect(jobs().map((j) => j.status)).toEqual(Array(16).fill('success'));
    expect(new Set(jobs().map((j) => j.replica)).size).toBeGreaterThan(2);
    const viewed = emu.requests().filter((r) => r.path.endsWith('/view') && r.status === 200);
    expect(viewed).toHaveLength(16);
    expect(run.summary).toContain('| **jobs** | 15 at once: 15 rendered, 0 failed |');
    expect(run.summary).toMatch(new RegExp(`\\n\\s*${peak} \\|[#+ ]*#`));
    expect(run.summary).toMatch(/Replicas over time[^]*```\n[^]*\n\s*0 \+-+\n/);
    expect(replicaCount()).toBeGreaterThan(2);
    emu.advance(scaleDownMs + 1_000);
    expect(replicaCount()).toBe(2);
  });

  it('with min 0 the fleet is at zero once idle past the scale-down delay', async () => {
    await emulator();
    expect((await deploy({ command: 'start', 'image-tag': 'v1', 'max-replicas': 16 })).code).toBe(
      0,
    );
    const run = await deploy({ command: 'load-test', jobs: 4 });
    expect(failure(run)).toBe('');
    expect(run.outputs['jobs-succeeded']).toBe('4');
    expect(replicaCount()).toBeGreaterThan(0);
    emu.advance(scaleDownMs + 1_000);
    expect(replicaCount()).toBe(0);
    expect(emu.deployments()[0]?.status).toBe('healthy');
  });

  it('a replica killed mid-job fails its job visibly and the load test names it', async () => {
    await emulator();
    expect((await deploy({ command: 'start', 'image-tag': 'v1', 'max-replicas': 16 })).code).toBe(
      0,
    );
    // The warm-up was prompt 1: this is the load test's last to arrive. It runs on a replica of
    // its own (the warm one renders the first few while the others start), so its death loses no
    // other output. (A replica that dies takes the outputs it holds with it: those jobs fail too,
    // as "GET /view ... answered 404".)
    emu.killReplicaMidJob(name, 1 + 15);
    const run = await deploy({ command: 'load-test' });
    expect(run.code).toBe(1);
    const dead = jobs()[15];
    expect(dead).toMatchObject({
      status: 'error',
      error: expect.stringMatching(/^replica replica-/),
    });
    const replica = dead?.replica ?? '';
    expect(failure(run)).toMatch(
      new RegExp(
        `^1 of 15 load-test jobs failed: job \\d+ \\(${dead?.id ?? ''}\\): KSampler: replica ${replica} died mid-job \\(killed\\)$`,
      ),
    );
    expect(run.outputs).toMatchObject({ 'jobs-succeeded': '14', 'jobs-failed': '1' });
    expect(run.summary).toContain(
      `| FAILED | - | KSampler: replica ${replica} died mid-job (killed) |`,
    );
    expect(run.summary).toContain('**Failed:** 1 of 15 load-test jobs failed');
    expect(jobs().filter((j) => j.status === 'success')).toHaveLength(15);
  });

  it('needs the inference key and a valid jobs count before any request', async () => {
    await emulator();
    const noKey = await deploy({ command: 'load-test', 'inference-api-key': '' });
    expect(failure(noKey)).toMatch(
      /Input 'inference-api-key' is invalid: got ""; expected the inference API key \(dc_\.\.\.\) so load-test can submit jobs/,
    );
    const zero = await deploy({ command: 'load-test', jobs: 0 });
    expect(failure(zero)).toContain(
      `Input 'jobs' is invalid: got "0"; expected an integer from 1 to 1000.`,
    );
    expect(emu.requests()).toEqual([]);
  });
});
