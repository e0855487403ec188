// The Verda emulator's ComfyUI stand-in on a frozen clock moved by hand: prompts queue, replicas
// start for the queue and take one prompt each, outputs are served by /view with deterministic
// bytes, the fleet falls back to min after the scale-down delay, and a replica that dies mid-job
// fails that job naming it.
import { afterEach, describe, expect, it } from '@jest/globals';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { exampleDeployment, exampleScaling } from '../../src/sandbox/verda-examples.js';
import { emulatedOutputBytes, type ComfyPrompt } from '../../src/sandbox/verda-work.js';
import { startVerdaEmulator, type VerdaEmulator } from '../../src/sandbox/verda.js';

const warmup = JSON.parse(
  readFileSync(path.resolve(import.meta.dirname, '../../config/warmup.json'), 'utf8'),
) as ComfyPrompt;
const name = 'comfy-test';
let emu: VerdaEmulator;

afterEach(async () => {
  await emu?.stop();
});

/** A deployment of min..max replicas, healthy (10 s of rollout) when this returns. */
async function healthy(min: number, max: number): Promise<void> {
  emu = await startVerdaEmulator({
    timeScale: 0,
    delays: {
      initializingMs: 2_000,
      imagePullingMs: 8_000,
      coldStartMs: 20_000,
      renderMs: 4_000,
      modelLoadMs: 6_000,
    },
  });
  const res = await fetch(`${emu.apiUrl}/container-deployments`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${await emu.token()}`, 'Content-Type': 'application/json' },
    body: JSON.stringify(exampleDeployment(name, { scaling: exampleScaling(min, max) })),
  });
  expect(res.status).toBe(201);
  emu.advance(10_000);
}

async function comfy(
  method: string,
  target: string,
  body?: unknown,
): Promise<{ status: number; json: unknown; bytes: Buffer }> {
  const res = await fetch(`${emu.inferenceBaseUrl}/${name}${target}`, {
    method,
    headers: { Authorization: `Bearer ${emu.inferenceKey}` },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const bytes = Buffer.from(await res.arrayBuffer());
  let json: unknown;
  try {
    json = JSON.parse(bytes.toString());
  } catch {
    json = undefined;
  }
  return { status: res.status, json, bytes };
}

const submit = async (prompt: ComfyPrompt) => {
  const res = await comfy('POST', '/prompt', { prompt, client_id: 'test' });
  expect(res.status).toBe(200);
  return (res.json as { prompt_id: string }).prompt_id;
};

type Entry = {
  status: { status_str: string; messages: [string, Record<string, unknown>][] };
  outputs: Record<string, { images: { filename: string }[] }>;
};
const history = async (id: string) =>
  ((await comfy('GET', `/history/${id}`)).json as Record<string, Entry>)[id];

const replicaStates = () => emu.deployments()[0]?.replicas.map((r) => r.status) ?? [];
const withSeed = (seed: number): ComfyPrompt => ({
  ...warmup,
  '3': { class_type: 'KSampler', inputs: { ...warmup['3']?.inputs, seed } },
});

describe('a prompt through the endpoint', () => {
  it('queues, starts a replica, renders after the cold start and model load, and serves its output', async () => {
    await healthy(0, 2);
    const id = await submit(warmup);
    expect(replicaStates()).toEqual(['starting']);
    const queue = (await comfy('GET', '/queue')).json as Record<string, unknown[][]>;
    expect(queue.queue_pending?.map((item) => item[1])).toEqual([id]);
    expect(await history(id)).toBeUndefined();
    emu.advance(20_000); // cold start: the job starts now, and loads models for 6 s + renders 4 s
    expect(
      ((await comfy('GET', '/queue')).json as Record<string, unknown[]>).queue_running,
    ).toHaveLength(1);
    emu.advance(9_999);
    expect(await history(id)).toBeUndefined();
    emu.advance(1);
    const entry = await history(id);
    expect(entry?.status.status_str).toBe('success');
    const [start, success] = entry?.status.messages ?? [];
    expect(start?.[0]).toBe('execution_start');
    expect(success?.[0]).toBe('execution_success');
    expect(Number(success?.[1].timestamp) - Number(start?.[1].timestamp)).toBe(10_000);
    const file = entry?.outputs['9']?.images[0]?.filename ?? '';
    expect(file).toMatch(/^warmup_00001_\.png$/);
    const view = await comfy('GET', `/view?filename=${encodeURIComponent(file)}&type=output`);
    expect(view.status).toBe(200);
    const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
    expect(sha(view.bytes)).toBe(sha(emulatedOutputBytes(warmup, '9')));
    expect(view.bytes.toString()).toContain('frame 256x256');
    expect((await comfy('GET', '/view?filename=nope.png')).status).toBe(404);
  });

  it('refuses a prompt without an output node, a body that is not a prompt, and a wrong key', async () => {
    await healthy(0, 1);
    const noOutput = await comfy('POST', '/prompt', { prompt: { '1': warmup['5'] } });
    expect(noOutput.status).toBe(400);
    expect(noOutput.json).toMatchObject({ error: { type: 'prompt_no_outputs' } });
    const bad = await comfy('POST', '/prompt', { prompt: { '1': { inputs: {} } } });
    expect(bad.json).toMatchObject({ error: { type: 'invalid_prompt' } });
    const res = await fetch(`${emu.inferenceBaseUrl}/${name}/prompt`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${await emu.token()}` },
      body: JSON.stringify({ prompt: warmup }),
    });
    expect(res.status).toBe(401);
    expect(emu.deployments()[0]?.jobs).toEqual([]);
  });
});

describe('scaling on the queue', () => {
  it('15 prompts with max 16: a replica each, all render, then back to zero after the delay', async () => {
    await healthy(0, 16);
    const ids: string[] = [];
    for (let i = 0; i < 15; i++) ids.push(await submit(withSeed(i)));
    expect(replicaStates()).toEqual(Array(15).fill('starting'));
    emu.advance(30_000);
    for (const id of ids) expect((await history(id))?.status.status_str).toBe('success');
    const replicasUsed = new Set(emu.deployments()[0]?.jobs.map((j) => j.replica));
    expect(replicasUsed.size).toBe(15);
    emu.advance(299_000);
    expect(replicaStates()).toHaveLength(15);
    emu.advance(1_000 + 1);
    expect(replicaStates()).toEqual([]);
  });

  it('min 2 and max 4: 9 prompts run four at a time, then the fleet falls to 2', async () => {
    await healthy(2, 4);
    for (let i = 0; i < 9; i++) await submit(withSeed(i));
    expect(replicaStates()).toEqual(['running', 'running', 'starting', 'starting']);
    emu.advance(60_000);
    expect(emu.deployments()[0]?.jobs.map((j) => j.status)).toEqual(Array(9).fill('success'));
    emu.advance(300_000);
    expect(replicaStates()).toEqual(['running', 'running']);
  });
});

describe('a replica that dies mid-job', () => {
  it('fails that job naming the replica; the others complete', async () => {
    await healthy(0, 4);
    emu.killReplicaMidJob(name, 2);
    const ids = [await submit(withSeed(1)), await submit(withSeed(2)), await submit(withSeed(3))];
    emu.advance(30_000);
    const entries = await Promise.all(ids.map(history));
    expect(entries.map((e) => e?.status.status_str)).toEqual(['success', 'error', 'success']);
    const dead = emu.deployments()[0]?.jobs[1]?.replica ?? '';
    expect(dead).toMatch(/^replica-/);
    const error = entries[1]?.status.messages.find(([kind]) => kind === 'execution_error')?.[1];
    expect(error?.exception_message).toBe(`replica ${dead} died mid-job (killed)`);
    expect(emu.deployments()[0]?.replicas.map((r) => r.id)).not.toContain(dead);
  });

  it('killReplica fails the running job at once', async () => {
    await healthy(1, 1);
    const id = await submit(warmup);
    emu.advance(1_000);
    const victim = emu.killReplica(name);
    expect(victim).toMatch(/^replica-/);
    const entry = await history(id);
    expect(entry?.status.status_str).toBe('error');
    expect(JSON.stringify(entry)).toContain(`replica ${victim} died mid-job (killed)`);
  });
});
