// sync-models pull with `pull-via: host` through the bundle: the real sshd fixture host fetches
// each vault object from the R2 emulator itself (curl on a presigned GET, the URL on curl's
// stdin), into `<file>.partial`, hashed on the host and renamed only when size and sha256 agree.
// A curl wrapper first on the host's PATH records every argv (curl's and its parent shell's) and
// the config curl was given, so the test knows each presigned URL: none may show in the run's
// output (the leak check) or in any argv on the host.
import { execFileSync } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import {
  chmod,
  copyFile,
  mkdir,
  mkdtemp,
  readFile,
  rm,
  truncate,
  writeFile,
} from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it, jest } from '@jest/globals';
import { startSshHost, type SshHost } from '../../src/sandbox/ssh-host.js';
import { runAction, type ActionRun } from '../helpers/run-action.js';
import { MiB, fileSha256, startSyncWorld, type SyncWorld } from './sync-models-setup.js';

// Tens of MiB through the bundle, curl and sshd on a shared 2-core machine.
jest.setTimeout(120_000);

const PREFIX = 'host-pull';
const BIG = 'checkpoints/big.safetensors';
const FILES = {
  // Over 16 MiB: pushed as a multipart object (two parts).
  [BIG]: 20 * MiB + 7,
  'loras/a.safetensors': MiB + 3,
  'vae/v.safetensors': 300 * 1024 + 1,
};
const TOTAL = Object.values(FILES).reduce((a, b) => a + b, 0);

let world: SyncWorld;
let host: SshHost;
let tree: { root: string; sha: Record<string, string> };
/** Where the host's curl wrapper writes what it saw (writable by the host's user). */
let spy: string;

beforeAll(async () => {
  world = await startSyncWorld();
  host = await startSshHost({ models: [] });
  spy = await mkdtemp(path.join(os.tmpdir(), 'curl-spy-'));
  await chmod(spy, 0o777);
  // Records argv and the config on stdin, then runs the real curl with that config.
  await writeFile(
    path.join(host.binDir, 'curl'),
    [
      '#!/bin/bash',
      `printf '%s\\n' "curl $*" >> ${spy}/argv`,
      `tr '\\0' ' ' < /proc/$PPID/cmdline >> ${spy}/argv; echo >> ${spy}/argv`,
      'config=$(cat)',
      `printf '%s\\n' "$config" >> ${spy}/config`,
      'printf \'%s\\n\' "$config" | exec /usr/bin/curl "$@"',
      '',
    ].join('\n'),
    { mode: 0o755 },
  );
  tree = await world.makeTree('host-pull-src', FILES);
  const push = await world.run({ source: tree.root, prefix: PREFIX });
  expect(push.outputs.uploaded).toBe('3');
}, 90_000);
afterAll(async () => {
  await host?.stop();
  await world?.stop();
  if (spy) await rm(spy, { recursive: true, force: true });
});
beforeEach(async () => {
  world.r2.clearFaults();
  world.r2.resetCounts();
  await rm(path.join(spy, 'argv'), { force: true });
  await rm(path.join(spy, 'config'), { force: true });
});

/** Every presigned URL the host's curl was given, and each one's signature. */
async function presignedUrls(): Promise<string[]> {
  const config = await readFile(path.join(spy, 'config'), 'utf8').catch(() => '');
  const urls = [...config.matchAll(/^url = "([^"]+)"$/gm)].map((m) => m[1] ?? '');
  const signatures = urls.map((u) => new URL(u).searchParams.get('X-Amz-Signature') ?? '');
  return [...urls, ...signatures].filter((s) => s !== '');
}

const target = (h: SshHost, dir: string) => `ssh://${h.user}@${h.host}:${h.port}${dir}`;

function pull(
  dir: string,
  overrides: Record<string, string> = {},
  on: SshHost = host,
): Promise<ActionRun> {
  return runAction('sync-models', {
    inputs: world.inputs({
      direction: 'pull',
      'pull-via': 'host',
      target: target(on, dir),
      'ssh-private-key': on.privateKey,
      'host-key-fingerprints': on.hostKeyFingerprint,
      prefix: PREFIX,
      ...overrides,
    }),
    // Known only once the run is over: the URLs the host received.
    secrets: async () => [...world.secrets, on.privateKey, ...(await presignedUrls())],
    timeoutMs: 110_000,
  });
}

const uid = () => Number(execFileSync('id', ['-u', host.user], { encoding: 'utf8' }).trim());
const modelGets = (key?: string) =>
  world.r2
    .requests()
    .filter(
      (r) =>
        r.operation === 'GetObject' &&
        r.key !== `${PREFIX}/models-manifest.json` &&
        (key === undefined || r.key === `${PREFIX}/${key}`),
    );

describe('pull-via: host', () => {
  it('the host fetches every model itself (presigned GETs), verified by sha256 on the host; a second run fetches nothing', async () => {
    const dir = path.join(host.scratchDir, 'all');
    const run = await pull(dir);
    expect(run.errors).toEqual([]);
    expect(run.outputs).toMatchObject({ downloaded: '3', uploaded: '0', bytes: String(TOTAL) });
    for (const f of Object.keys(FILES)) {
      const onHost = path.join(dir, f);
      expect(await fileSha256(onHost)).toBe(tree.sha[f]);
      expect(statSync(onHost).uid).toBe(uid());
      expect(existsSync(`${onHost}.partial`)).toBe(false);
    }
    // Every model byte came to the host on a presigned URL, none through the runner's SDK.
    const gets = modelGets();
    expect(gets).toHaveLength(3);
    expect(gets.every((g) => g.presigned === true && g.status === 200)).toBe(true);
    expect(gets.reduce((n, g) => n + (g.replyBytes ?? 0), 0)).toBe(TOTAL);
    expect(run.summary).toMatch(
      /checkpoints\/big\.safetensors \| downloaded .*from R2 by the host, sha256 verified/,
    );
    // The host's GETs are counted in the run's R2 requests (Class B).
    expect(run.summary).toMatch(/GetObject 4/);

    // The URLs: masked before use, never in the host's argv (curl's or its shell's).
    const urls = await presignedUrls();
    expect(urls.length).toBe(6);
    const signatures = urls.filter((u) => !u.includes('://'));
    for (const sig of signatures) expect(run.stdout).toContain(`::add-mask::${sig}`);
    const argv = await readFile(path.join(spy, 'argv'), 'utf8');
    expect(argv).toMatch(/^curl --config - /m);
    expect(argv).not.toMatch(/X-Amz-|https?:\/\//);
    for (const sig of signatures) expect(argv).not.toContain(sig);

    world.r2.resetCounts();
    const again = await pull(dir);
    expect(again.outputs).toMatchObject({ downloaded: '0', skipped: '3' });
    expect(modelGets()).toHaveLength(0);
    expect(world.r2.counts().byOperation).toEqual({ ListObjectsV2: 1, GetObject: 1 });
  });

  it('resumes a partial an earlier run left, and again after a cut GET: only the rest is fetched', async () => {
    const dir = path.join(host.scratchDir, 'resume');
    const partial = path.join(dir, `${BIG}.partial`);
    await mkdir(path.dirname(partial), { recursive: true });
    await copyFile(path.join(tree.root, BIG), partial);
    await truncate(partial, 8 * MiB);
    execFileSync('chown', ['-R', host.user, dir]);
    // The host's first GET is cut 4 MiB into its body: the next attempt resumes from what came.
    world.r2.addFault({
      operation: 'GetObject',
      keyPattern: /big\.safetensors$/,
      action: 'reset',
      resetAfterBytes: 4 * MiB,
    });

    const run = await pull(dir, { include: BIG });
    expect(run.errors).toEqual([]);
    expect(await fileSha256(path.join(dir, BIG))).toBe(tree.sha[BIG]);
    expect(existsSync(partial)).toBe(false);
    const gets = modelGets(BIG);
    expect(gets).toHaveLength(2);
    expect(gets[0]).toMatchObject({ range: `bytes=${8 * MiB}-`, fault: 'reset', presigned: true });
    expect(gets[0]?.replyBytes).toBe(4 * MiB);
    // What reached the host before the cut stays in the partial; the retry asks for the rest.
    const resumedAt = Number(/^bytes=(\d+)-$/.exec(gets[1]?.range ?? '')?.[1]);
    expect(resumedAt).toBeGreaterThan(8 * MiB);
    expect(resumedAt).toBeLessThanOrEqual(12 * MiB);
    expect(gets[1]).toMatchObject({ status: 206, replyBytes: FILES[BIG] - resumedAt });
    expect(Number(run.outputs.bytes)).toBe(FILES[BIG] - 8 * MiB);
    expect(run.warnings.join('\n')).toMatch(/big\.safetensors: download attempt 1 failed/);
    expect(run.summary).toMatch(/resumed at 8\.00 MiB/);
    // Each attempt got its own signed URL (the same text when signed within one second).
    const urls = (await presignedUrls()).filter((u) => u.includes('://'));
    expect(urls).toHaveLength(2);
  });

  it('refuses a tampered object (bytes that are not the recorded sha256): partial deleted, nothing renamed', async () => {
    const restore = await world.corrupt('loras/a.safetensors', PREFIX);
    try {
      const dir = path.join(host.scratchDir, 'tampered');
      const run = await pull(dir, { include: 'loras/a.safetensors' });
      expect(run.code).not.toBe(0);
      expect(run.errors.join('\n')).toMatch(
        /loras\/a\.safetensors from r2:\/\/.* refused: sha256 [0-9a-f]{64} does not match the expected [0-9a-f]{64}/,
      );
      expect(existsSync(path.join(dir, 'loras/a.safetensors'))).toBe(false);
      expect(existsSync(path.join(dir, 'loras/a.safetensors.partial'))).toBe(false);
    } finally {
      await restore();
    }
  });

  it.each([
    [
      403,
      'AccessDenied',
      /HTTP 403 .*Forbidden: the presigned URL expired or its signature was refused/,
    ],
    [404, 'NoSuchKey', /HTTP 404 .*Not Found/],
  ])(
    'an HTTP %i from R2 to the host names the file and the status; nothing put in place',
    async (status, code, why) => {
      world.r2.addFault({
        operation: 'GetObject',
        keyPattern: /v\.safetensors$/,
        action: 'status',
        status,
        code,
        times: Infinity,
      });
      const dir = path.join(host.scratchDir, `status-${status}`);
      const run = await pull(dir, { include: 'vae/v.safetensors' });
      expect(run.code).not.toBe(0);
      const message = run.errors.join('\n');
      expect(message).toMatch(/vae\/v\.safetensors: R2 answered HTTP \d{3} to the host's GET/);
      expect(message).toMatch(why);
      // Not retried: a refused signature does not get better.
      expect(modelGets()).toHaveLength(1);
      expect(existsSync(path.join(dir, 'vae/v.safetensors'))).toBe(false);
    },
  );

  it('retries a 503 from R2 with a fresh signature and finishes', async () => {
    world.r2.addFault({
      operation: 'GetObject',
      keyPattern: /v\.safetensors$/,
      action: 'status',
      status: 503,
    });
    const dir = path.join(host.scratchDir, 'slowdown');
    const run = await pull(dir, { include: 'vae/v.safetensors' });
    expect(run.errors).toEqual([]);
    expect(await fileSha256(path.join(dir, 'vae/v.safetensors'))).toBe(
      tree.sha['vae/v.safetensors'],
    );
    expect(modelGets().map((g) => g.status)).toEqual([503, 200]);
    expect(run.warnings.join('\n')).toMatch(/v\.safetensors: download attempt 1 failed .*HTTP 503/);
  });
});

describe('pull-via: host refused', () => {
  it('a host without curl: one clear error naming pull-via and the fix, before any GET', async () => {
    const bare = await startSshHost({ models: [], withoutCommands: ['curl'] });
    try {
      const run = await pull(path.join(bare.scratchDir, 'm'), {}, bare);
      expect(run.code).not.toBe(0);
      expect(run.errors.join('\n')).toMatch(
        /pull-via: host needs curl on .*install curl there .* or use pull-via: runner/,
      );
      expect(modelGets()).toHaveLength(0);
    } finally {
      await bare.stop();
    }
  });

  it('a local target: an input error naming pull-via, the value and what is expected', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'host-pull-local-'));
    try {
      const run = await runAction('sync-models', {
        inputs: world.inputs({
          direction: 'pull',
          'pull-via': 'host',
          target: dir,
          prefix: PREFIX,
        }),
        secrets: world.secrets,
      });
      expect(run.code).not.toBe(0);
      expect(run.errors.join('\n')).toMatch(
        /Input 'pull-via' is invalid: got "host"; expected runner for a local target .*target: ssh:\/\//,
      );
      expect(world.r2.counts().byOperation).toEqual({});
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
