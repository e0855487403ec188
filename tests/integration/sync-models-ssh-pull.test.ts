// sync-models pull INTO the real sshd fixture host (target ssh://user@host:port/path) through
// the bundle: bytes go into `cat >> <file>.partial` on the host, resume from the remote partial's
// size with an HTTP Range (and again after a connection reset mid-body), are hashed by the host's
// sha256sum and only then renamed into place; a corrupt object is refused with nothing in place;
// the HuggingFace fallback lands on the host the same way.
import { execFileSync } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { copyFile, mkdir, truncate, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it, jest } from '@jest/globals';
import { startSshHost, type SshHost } from '../../src/sandbox/ssh-host.js';
import { MiB, fileSha256, sha256, startSyncWorld, type SyncWorld } from './sync-models-setup.js';

// Transfers of tens of MiB through the bundle and over SSH on a shared 2-core machine.
jest.setTimeout(120_000);

const PREFIX = 'ssh-pull';
const FILES = {
  'checkpoints/big.safetensors': 24 * MiB + 5,
  'text_encoders/enc.safetensors': 5 * MiB,
  'loras/small.safetensors': 300 * 1024 + 1,
};
const TOTAL = Object.values(FILES).reduce((a, b) => a + b, 0);

let world: SyncWorld;
let host: SshHost;
let tree: { root: string; sha: Record<string, string> };

beforeAll(async () => {
  world = await startSyncWorld();
  host = await startSshHost({ models: [] });
  tree = await world.makeTree('ssh-pull-src', FILES);
  const push = await world.run({ source: tree.root, prefix: PREFIX });
  expect(push.outputs.uploaded).toBe('3');
}, 90_000);
afterAll(async () => {
  await host?.stop();
  await world?.stop();
});
beforeEach(() => {
  world.r2.clearFaults();
  world.r2.resetCounts();
});

const pull = (dir: string, overrides: Record<string, string> = {}, secrets: string[] = []) =>
  world.run(
    {
      direction: 'pull',
      target: `ssh://${host.user}@${host.host}:${host.port}${dir}`,
      'ssh-private-key': host.privateKey,
      'host-key-fingerprints': host.hostKeyFingerprint,
      prefix: PREFIX,
      ...overrides,
    },
    [host.privateKey, ...secrets],
  );
const uid = () => Number(execFileSync('id', ['-u', host.user], { encoding: 'utf8' }).trim());

describe('pull to an ssh:// target', () => {
  it('writes every model on the host verified by sha256, resuming the remote .partial with a Range', async () => {
    const dir = host.modelsDir;
    // An interrupted earlier pull left the first 10 MiB of the big file on the host.
    const partial = path.join(dir, 'checkpoints/big.safetensors.partial');
    await mkdir(path.dirname(partial), { recursive: true });
    await copyFile(path.join(tree.root, 'checkpoints/big.safetensors'), partial);
    await truncate(partial, 10 * MiB);
    execFileSync('chown', ['-R', host.user, path.join(dir, 'checkpoints')]);
    // And this run's first body of it is cut 4 MiB in: the retry resumes from the host's size.
    world.r2.addFault({
      operation: 'GetObject',
      keyPattern: /big\.safetensors$/,
      action: 'reset',
      resetAfterBytes: 4 * MiB,
    });

    const run = await pull(dir);
    expect(run.errors).toEqual([]);
    expect(run.outputs).toMatchObject({ downloaded: '3', uploaded: '0' });
    for (const f of Object.keys(FILES)) {
      const onHost = path.join(dir, f);
      expect(await fileSha256(onHost)).toBe(tree.sha[f]);
      // Written by the test user over SSH, not by this (root) process.
      expect(statSync(onHost).uid).toBe(uid());
      expect(existsSync(`${onHost}.partial`)).toBe(false);
    }
    const bigGets = world.r2
      .requests()
      .filter(
        (r) => r.operation === 'GetObject' && r.key === `${PREFIX}/checkpoints/big.safetensors`,
      );
    expect(bigGets[0]).toMatchObject({ range: `bytes=${10 * MiB}-`, fault: 'reset' });
    expect(bigGets).toHaveLength(2);
    const resumedAt = Number(/^bytes=(\d+)-$/.exec(bigGets[1]?.range ?? '')?.[1]);
    expect(resumedAt).toBeGreaterThan(10 * MiB);
    expect(resumedAt).toBeLessThanOrEqual(14 * MiB);
    expect(run.warnings.join('\n')).toMatch(
      /checkpoints\/big\.safetensors: download attempt 1 failed/,
    );
    expect(run.summary).toMatch(
      /checkpoints\/big\.safetensors \| downloaded .*resumed at 10\.0 MiB/,
    );
    // What this run added on the host: everything past the 10 MiB an earlier run left.
    expect(Number(run.outputs.bytes)).toBe(TOTAL - 10 * MiB);

    // A second run finds every model in place: hashed on the host, nothing downloaded.
    world.r2.resetCounts();
    const again = await pull(dir);
    expect(again.outputs).toMatchObject({ downloaded: '0', skipped: '3' });
    expect(again.summary).toContain('same sha256');
    expect(world.r2.counts().byOperation).toEqual({ ListObjectsV2: 1, GetObject: 1 });
  });

  it('refuses a corrupt object (bytes flipped in storage): nothing renamed into place on the host', async () => {
    const restore = await world.corrupt('loras/small.safetensors', PREFIX);
    try {
      // A directory that does not exist yet: created on the host with mkdir -p.
      const dir = path.join(host.scratchDir, 'fresh models');
      const run = await pull(dir, { include: 'loras/small.safetensors' });
      expect(run.code).not.toBe(0);
      expect(run.errors.join('\n')).toMatch(
        /loras\/small\.safetensors .*refused: sha256 [0-9a-f]{64} does not match the expected/,
      );
      expect(existsSync(path.join(dir, 'loras'))).toBe(true);
      expect(existsSync(path.join(dir, 'loras/small.safetensors'))).toBe(false);
      expect(existsSync(path.join(dir, 'loras/small.safetensors.partial'))).toBe(false);
    } finally {
      await restore();
    }
  });
});

describe('HuggingFace fallback to an ssh:// target', () => {
  let server: http.Server;
  let base: string;
  const hfBytes = Buffer.alloc(2 * MiB + 11, 9);
  beforeAll(async () => {
    server = http.createServer((req, res) => {
      if (req.headers.authorization !== 'Bearer hf_sshPullToken987654')
        return void res.writeHead(401).end();
      res.writeHead(200, { 'content-length': hfBytes.length }).end(hfBytes);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    await new Promise((r) => server.close(r));
  });

  it('fetches a model missing in R2 from its URL onto the host, verified against the manifest sha256', async () => {
    const manifest = path.join(world.dir, 'ssh-hf.yml');
    await writeFile(
      manifest,
      `models:\n  - path: loras/hf-only.safetensors\n    size: ${hfBytes.length}\n    sha256: "${sha256(hfBytes)}"\n    url: ${base}/Lightricks/LTX-2/resolve/main/hf-only.safetensors\n    required: true\n`,
    );
    const dir = path.join(host.scratchDir, 'hf');
    const run = await pull(
      dir,
      { include: 'none', manifest, 'hf-token': 'hf_sshPullToken987654' },
      ['hf_sshPullToken987654'],
    );
    expect(run.errors).toEqual([]);
    expect(run.outputs.downloaded).toBe('1');
    expect(await fileSha256(path.join(dir, 'loras/hf-only.safetensors'))).toBe(sha256(hfBytes));
    expect(statSync(path.join(dir, 'loras/hf-only.safetensors')).uid).toBe(uid());
    expect(run.summary).toMatch(/HuggingFace fallback, sha256 verified/);
  });
});
