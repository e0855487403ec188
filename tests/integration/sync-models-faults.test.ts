// sync-models against faults and the real sshd host: pushing from ssh:// (one `find`, `cat` per
// file, `sha256sum` for compare), R2 503 SlowDown and connection resets on parts, a run killed
// mid-file that resumes without re-sending stored parts, and progress lines while parts move.
import { spawn } from 'node:child_process';
import path from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it, jest } from '@jest/globals';
import { startSshHost, type SshHost } from '../../src/sandbox/ssh-host.js';
import { sleep } from '../../src/lib/retry.js';
import { r2PartSize } from '../../src/lib/r2.js';
import { repoRoot } from '../helpers/run-action.js';
import { MiB, fileSha256, sha256, startSyncWorld, type SyncWorld } from './sync-models-setup.js';

// Transfers of tens of MiB through the bundle on a shared 2-core machine.
jest.setTimeout(120_000);

let world: SyncWorld;

beforeAll(async () => {
  world = await startSyncWorld();
}, 60_000);
afterAll(async () => {
  await world?.stop();
});
beforeEach(() => {
  world.r2.clearFaults();
  world.r2.resetCounts();
});

describe('push from the SSH host', () => {
  let host: SshHost;
  const models = [
    { path: 'checkpoints/ssh-big.safetensors', size: 40 * MiB + 5 },
    { path: 'loras/ssh-small.safetensors', size: 2 * MiB },
  ];
  beforeAll(async () => {
    host = await startSshHost({ models });
  }, 60_000);
  afterAll(async () => {
    await host?.stop();
  });

  const sshInputs = () => ({
    source: `ssh://${host.user}@${host.host}:${host.port}${host.modelsDir}`,
    'ssh-private-key': host.privateKey,
    'host-key-fingerprints': host.hostKeyFingerprint,
    prefix: 'ssh-vault',
  });

  it('uploads the host models (equal by sha256), and a second run uploads nothing', async () => {
    const run = await world.run(sshInputs(), [host.privateKey]);
    expect(run.errors).toEqual([]);
    expect(run.outputs).toMatchObject({ uploaded: '2' });
    for (const m of models) {
      const want = await fileSha256(path.join(host.modelsDir, m.path));
      expect(sha256(await world.get(m.path, 'ssh-vault'))).toBe(want);
    }
    world.r2.resetCounts();
    const again = await world.run(sshInputs(), [host.privateKey]);
    expect(again.outputs).toMatchObject({ uploaded: '0', skipped: '2' });
    // compare defaulted to sha256 (the vault has a manifest): hashed on the host, one manifest read.
    expect(world.r2.counts().byOperation).toEqual({ ListObjectsV2: 1, GetObject: 1 });
    expect(again.summary).toContain('same sha256');
  });

  it('refuses a wrong host key pin before any R2 request', async () => {
    const run = await world.run(
      { ...sshInputs(), 'host-key-fingerprints': 'SHA256:' + 'A'.repeat(43) },
      [host.privateKey],
    );
    expect(run.code).not.toBe(0);
    expect(run.errors.join('\n')).toMatch(/not pinned: the server presented SHA256:/);
    expect(world.r2.requests()).toEqual([]);
  });
});

describe('R2 faults on parts', () => {
  it('retries 503 SlowDown, a connection reset and a lost Complete reply, and logs progress while parts move', async () => {
    const tree = await world.makeTree('faults', { 'checkpoints/f.safetensors': 50 * MiB });
    world.r2.addFault({ operation: 'UploadPart', nth: 2, action: 'status', status: 503 });
    world.r2.addFault({ operation: 'UploadPart', nth: 3, action: 'reset' });
    world.r2.addFault({ operation: 'UploadPart', nth: 5, action: 'stall', stallMs: 700 });
    world.r2.addFault({ operation: 'CompleteMultipartUpload', action: 'lose-reply' });
    const run = await world.run({ source: tree.root, prefix: 'faults', concurrency: '1' }, [], {
      SYNC_MODELS_PROGRESS_MS: '150',
    });
    expect(run.errors).toEqual([]);
    expect(run.outputs.uploaded).toBe('1');
    const parts = world.r2.requests().filter((r) => r.operation === 'UploadPart');
    expect(parts.filter((p) => p.fault === 'status').map((p) => p.status)).toEqual([503]);
    expect(parts.filter((p) => p.fault === 'reset')).toHaveLength(1);
    expect(parts.filter((p) => p.fault === 'stall')).toHaveLength(1);
    // Every part once (part-size auto), part 2 twice more (the 503 and the reset).
    const total = Math.ceil((50 * MiB) / r2PartSize(50 * MiB));
    expect(parts).toHaveLength(total + 2);
    for (let n = 1; n <= total; n++)
      expect(parts.filter((p) => p.partNumber === n).at(-1)?.status).toBe(200);
    expect(run.warnings.join('\n')).toMatch(
      /UploadPart faults\/checkpoints\/f\.safetensors part 2/,
    );
    const completes = world.r2.requests().filter((r) => r.operation === 'CompleteMultipartUpload');
    expect(completes.map((r) => [r.status, r.fault])).toEqual([
      [0, 'lose-reply'],
      [404, undefined],
    ]);
    expect(run.warnings.join('\n')).toMatch(/already stored it \(its reply was lost\)/);
    expect(run.stdout).toMatch(
      /checkpoints\/f\.safetensors: [\d.]+ MiB \/ 50\.0 MiB \(\d+%\), [\d.]+ MiB\/s, ETA /,
    );
    expect(sha256(await world.get('checkpoints/f.safetensors', 'faults'))).toBe(
      tree.sha['checkpoints/f.safetensors'],
    );
  });

  it('a run killed mid-file resumes from the stored parts without sending them again', async () => {
    const tree = await world.makeTree('killed', { 'checkpoints/k.safetensors': 100 * MiB });
    const inputs = world.inputs({ source: tree.root, prefix: 'killed', concurrency: '1' });
    // Part 4 hangs; the run is killed once parts 1-3 are stored.
    world.r2.addFault({ operation: 'UploadPart', nth: 4, action: 'stall', stallMs: 60_000 });
    const env: Record<string, string> = {
      PATH: process.env.PATH ?? '',
      NODE_OPTIONS: '--openssl-legacy-provider',
    };
    for (const [k, v] of Object.entries({
      include: '**/*.safetensors',
      'part-size': 'auto',
      'hf-fallback': 'true',
      delete: 'false',
      'dry-run': 'false',
      ...inputs,
    })) {
      env[`INPUT_${k.toUpperCase()}`] = v;
    }
    const child = spawn(
      process.execPath,
      [path.join(repoRoot, 'actions/sync-models/dist/index.js')],
      { env, stdio: 'ignore' },
    );
    const closed = new Promise((r) => child.on('close', r));
    const stored = () =>
      world.r2.requests().filter((r) => r.operation === 'UploadPart' && r.status === 200).length;
    try {
      for (
        let i = 0;
        i < 600 && !(stored() === 3 && world.r2.requests().some((r) => r.fault === 'stall'));
        i++
      )
        await sleep(50);
      expect(stored()).toBe(3);
    } finally {
      child.kill('SIGKILL');
      await closed;
    }
    world.r2.clearFaults();
    world.r2.resetCounts();

    const run = await world.run({ source: tree.root, prefix: 'killed', concurrency: '2' });
    expect(run.errors).toEqual([]);
    const sent = world.r2
      .requests()
      .filter((r) => r.operation === 'UploadPart')
      .map((r) => r.partNumber)
      .sort((a, b) => a! - b!);
    // part-size auto: the parts of a 100 MiB file (8 MiB each, the last 4 MiB).
    const part = r2PartSize(100 * MiB);
    const total = Math.ceil((100 * MiB) / part);
    expect(sent).toEqual(Array.from({ length: total - 3 }, (_, i) => i + 4));
    expect(world.r2.counts().byOperation).toMatchObject({
      ListMultipartUploads: 1,
      ListParts: 1,
      CompleteMultipartUpload: 1,
    });
    expect(world.r2.counts().byOperation.CreateMultipartUpload).toBeUndefined();
    expect(run.summary).toContain(`resumed: 3 of ${total} parts already in R2`);
    expect(run.outputs.bytes).toBe(String(100 * MiB - 3 * part));
    expect(sha256(await world.get('checkpoints/k.safetensors', 'killed'))).toBe(
      tree.sha['checkpoints/k.safetensors'],
    );
    expect(await world.pendingUploads()).toEqual([]);
  });
});
